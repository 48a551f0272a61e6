"""The training loop: AdamW on a checkpoint schedule; deterministic for a seed and resumable.

The batch at step ``s`` is a pure function of (seed, s): windows are visited in a fresh
permutation each epoch. Together with the optimiser state saved in ``resume.pt`` this makes a
resumed run bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import contextlib
import dataclasses
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from . import numerics
from .config import Config, data_seed
from .data import tokens as tokens_mod
from .io import write_table
from .model.build import build_model, resolve_device
from .model.checkpoints import CheckpointStore
from .model.fused import next_token_loss
from .model_name import model_base
from .run import Run, create_run, identity, open_run, run_path


class BatchOrder:
    """Indices of the training windows used at each step (epoch-wise permutations)."""

    def __init__(self, n_windows: int, batch_size: int, seed: int):
        if n_windows < batch_size:
            raise ValueError(f"{n_windows} training windows is fewer than one batch of {batch_size}")
        self.n, self.b, self.seed = n_windows, batch_size, seed
        self.per_epoch = n_windows // batch_size
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __call__(self, step: int) -> torch.Tensor:
        epoch, j = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._epoch, self._perm = epoch, torch.randperm(self.n, generator=g)
        return self._perm[j * self.b:(j + 1) * self.b]


def learning_rate(cfg: Config, step: int) -> float:
    """The learning rate of update ``step`` (0-based): linear warm-up, then constant."""
    warm = cfg.train.warmup_steps
    return cfg.train.lr * min(1.0, (step + 1) / warm) if warm > 0 else cfg.train.lr


@torch.no_grad()
def evaluate(model: HookedTransformer, tokens: torch.Tensor, batch_size: int) -> float:
    losses = []
    for i in range(0, len(tokens), batch_size):
        batch = tokens[i:i + batch_size].to(model.cfg.device)
        losses.append(model(batch, return_type="loss").item() * len(batch))
    return sum(losses) / len(tokens)


@dataclass
class TrainResult:
    name: str
    store: CheckpointStore
    log: pd.DataFrame
    seconds: float
    steps: int


def train_model(
    cfg: Config,
    name: str,
    run_dir: str | Path | None = None,
    progress: bool = True,
    on_step: Callable[[int], None] | None = None,
) -> TrainResult:
    """Train (or resume, or just load) model ``name`` ("L0", "L1", "L2") of a profile, or the
    same architecture initialised with another seed ("L2-s2": seed 2, the run's batch order kept;
    its checkpoints go to ``models/L2-s2``).

    ``on_step(step)`` is called after each optimiser step (tests use it to interrupt a run).
    """
    model_base(name)  # refuses an unknown name
    # refuse weights of other settings before anything is written (config.yaml included)
    CheckpointStore.for_model(run_path(cfg, run_dir), name).verify_identity(identity(cfg, name))
    run = create_run(cfg, run_dir).path
    prepared = tokens_mod.prepare(cfg)
    store = CheckpointStore.for_model(run, name)
    store.check_identity(identity(cfg, name))
    store.remove_stale_temporaries()  # a killed run may have died mid-write
    schedule = set(cfg.checkpoint_steps(name))
    device = resolve_device(cfg.train.device)

    model = build_model(cfg, name, prepared.vocab_size, device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                            betas=tuple(cfg.train.betas))
    train_tokens = tokens_mod.load_tokens(cfg, "train")
    eval_tokens = tokens_mod.load_tokens(cfg, "test")[: cfg.train.eval_batches * cfg.train.batch_size]
    order = BatchOrder(len(train_tokens), cfg.train.batch_size, data_seed(cfg))

    pinned = numerics.torch_threads(numerics.threads(cfg, name))
    with deterministic_algorithms(cfg.train.deterministic), pinned:
        return _train_loop(cfg, name, run, store, model, opt, train_tokens, eval_tokens, order, schedule,
                           device, progress, on_step)


@dataclass(frozen=True)
class TrainSummary:
    """What one training process reports back: enough to print and to tabulate."""

    name: str
    steps: int
    seconds: float  # of training, summed over the calls that trained it (resumed runs included)
    test_loss: float
    threads: int


def _summary(result: TrainResult, threads: int) -> TrainSummary:
    test = result.log[result.log["split"] == "test"]
    loss = float(test["loss"].iloc[-1]) if len(test) else float("nan")
    return TrainSummary(result.name, result.steps, result.seconds, loss, threads)


def _train_in_worker(cfg: Config, name: str, run_dir: str, threads: int) -> TrainSummary:
    torch.set_num_threads(threads)
    return _summary(train_model(cfg, name, run_dir, progress=False), threads)


def train_models(cfg: Config, names: list[str], run_dir: str | Path | None = None, processes: int = 1,
                 progress: bool = True) -> list[TrainSummary]:
    """Train (or resume, or load) several models, ``processes`` at a time, each with the thread
    count the profile gives it (``rllc.numerics.threads``: a model of another seed gets
    ``train.threads // seeds.processes``, however it is launched). On 2 cores two one-thread
    processes get through 1.3x the steps of one two-thread process (README, "Other seeds"). Each
    model is bit-identical to one trained alone (float sums depend on the thread count, which the
    profile fixes; the summaries report it), and a killed call resumes every model from its last
    checkpoint. Spawned processes: a script calling this with ``processes`` > 1 must do so under
    ``if __name__ == "__main__":`` (notebooks need nothing)."""
    if processes < 1:
        raise ValueError(f"processes must be >= 1, got {processes}")
    for name in names:
        model_base(name)  # refuse an unknown name before anything starts
    run = str(create_run(cfg, run_dir).path)
    if processes == 1 or len(names) == 1:
        return [_summary(train_model(cfg, name, run, progress=progress), numerics.threads(cfg, name))
                for name in names]
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max_workers=processes, mp_context=mp.get_context("spawn")) as pool:
        futures = [pool.submit(_train_in_worker, cfg, name, run, numerics.threads(cfg, name)) for name in names]
        out = []
        for fut in tqdm(futures, desc=f"training {len(names)} models, {processes} at a time", disable=not progress):
            out.append(fut.result())
    return out


def start_from(cfg: Config, name: str, source: str | Path, run_dir: str | Path | None = None) -> int:
    """Begin model ``name`` of a run with another run's checkpoints, log and resume state (e.g.
    ``cpu-long`` from ``cpu``: same weights, more steps), so that training continues from the
    source's last step instead of repeating it. The source must hold weights of the same identity
    (everything the weights depend on but the number of steps), and the run must have none of
    its own yet. Returns the step training will resume from."""
    src = CheckpointStore.for_model(source, name)
    if not src.steps() or not src.resume_path.exists():
        raise FileNotFoundError(f"{src.root} holds no checkpoints and resume state of {name} to start from")
    src.verify_identity(identity(cfg, name))
    if not (src.root / "identity.json").exists():
        raise FileNotFoundError(f"{src.root} records no identity; cannot tell whether its weights fit this profile")
    dst = CheckpointStore.for_model(run_path(cfg, run_dir), name)
    if dst.steps():
        raise FileExistsError(f"{dst.root} already has checkpoints; start_from only begins an empty run")
    create_run(cfg, run_dir)
    tmp = dst.root.with_name(dst.root.name + ".copying")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src.root, tmp)
    if dst.root.exists():
        shutil.rmtree(dst.root)
    tmp.rename(dst.root)
    return int(dst.load_resume()["step"])


def control_dir(run_dir: str | Path, warmup_steps: int) -> Path:
    """Where a warm-up control of a run lives: ``<run>/controls/warmup_<n>``."""
    return Path(run_dir) / "controls" / f"warmup_{int(warmup_steps)}"


def warmup_control(cfg: Config, run_dir: str | Path, warmup_steps: int, steps: int, name: str = "L2",
                   progress: bool = True) -> Run:
    """Train (or resume, or load) model ``name`` of ``cfg`` again for ``steps`` steps with a
    learning-rate warm-up of ``warmup_steps`` instead of the profile's, everything else equal
    (seed, data order, checkpoint schedule up to ``steps``), in its own run directory under
    ``run_dir``. It tells an LLC feature that follows the learning-rate schedule from one that
    follows what the model learns. Returns the control's run."""
    if warmup_steps < 0 or steps <= 0:
        raise ValueError(f"a warm-up control needs warmup_steps >= 0 and steps > 0, not {warmup_steps} and {steps}")
    train = dataclasses.replace(cfg.train, warmup_steps=int(warmup_steps), steps={**cfg.train.steps, name: int(steps)})
    out = control_dir(run_dir, warmup_steps)
    train_model(dataclasses.replace(cfg, train=train), name, run_dir=out, progress=progress)
    return open_run(out)


@contextlib.contextmanager
def deterministic_algorithms(enabled: bool) -> Iterator[None]:
    """Deterministic kernels (on CPU the embedding backward is otherwise not bit-reproducible)."""
    before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(enabled, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before)


def _train_loop(cfg: Config, name: str, run: Path, store: CheckpointStore, model: HookedTransformer,
                opt: torch.optim.Optimizer, train_tokens: torch.Tensor, eval_tokens: torch.Tensor,
                order: BatchOrder, schedule: set[int], device: torch.device, progress: bool,
                on_step: Callable[[int], None] | None) -> TrainResult:
    total = cfg.train.steps[model_base(name)]
    step, log, seconds = 0, [], 0.0
    state = store.load_resume()
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        step, log, seconds = state["step"], state["log"], state.get("seconds", 0.0)

    def save_resume() -> None:
        store.save_resume({"model": model.state_dict(), "optimizer": opt.state_dict(), "step": step,
                           "log": log, "seconds": seconds})

    def checkpoint() -> None:
        store.save_weights(step, model.state_dict())
        log.append({"step": step, "split": "test", "loss": evaluate(model, eval_tokens, cfg.train.batch_size)})
        write_table(pd.DataFrame(log), store.log_path)
        save_resume()

    if step == 0 and 0 not in store.steps():
        checkpoint()
    bar = tqdm(total=total, initial=step, desc=f"train {name}", disable=not progress, mininterval=2.0)
    running, n_running = 0.0, 0
    start = time.perf_counter() - seconds
    model.train()
    while step < total:
        batch = train_tokens[order(step)].to(device)
        loss = next_token_loss(model, batch)  # the fused forward (rllc.model.fused) where it applies
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:  # a function of the step alone, so resumes need no state
            group["lr"] = learning_rate(cfg, step)
        opt.step()
        step += 1
        running += loss.item()
        n_running += 1
        if step % cfg.train.log_every == 0 or step == total:
            log.append({"step": step, "split": "train", "loss": running / n_running})
            bar.set_postfix(loss=f"{running / n_running:.3f}")
            running, n_running = 0.0, 0
        seconds = time.perf_counter() - start
        if step in schedule:
            checkpoint()
        elif step % cfg.train.resume_every == 0:
            save_resume()
        bar.update(1)
        if on_step is not None:
            on_step(step)
    bar.close()
    if not store.path(total).exists():  # e.g. steps were raised after the run ended
        checkpoint()
    return TrainResult(name, store, pd.DataFrame(log), seconds, total)
