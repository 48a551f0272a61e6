"""Training with AdamW on a checkpoint schedule; deterministic for a seed and resumable.

The batch at step ``s`` is a pure function of (seed, s): windows are visited in a fresh
permutation each epoch. Together with the optimiser state saved in ``resume.pt`` this makes a
resumed run bit-identical to an uninterrupted one on CPU.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from . import data as data_mod
from . import paths
from .checkpoints import CheckpointStore
from .config import MODEL_NAMES, Config, config_hash, from_dict
from .fastforward import next_token_loss
from .io import write_table, write_text
from .model import build_model, resolve_device


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


def identity(cfg: Config, name: str) -> dict[str, Any]:
    """Everything the weights of a model depend on, except how long it trains."""
    t = cfg.train
    return {
        "model": name,
        "model_config": config_hash(cfg.model),
        "tokens": data_mod.tokens_key(cfg),
        "seed": cfg.seed,
        "optimizer": config_hash({"batch": t.batch_size, "lr": t.lr, "wd": t.weight_decay, "betas": t.betas,
                                  **({"warmup": t.warmup_steps} if t.warmup_steps else {})}),
    }


def learning_rate(cfg: Config, step: int) -> float:
    """The learning rate of update ``step`` (0-based): linear warm-up, then constant."""
    warm = cfg.train.warmup_steps
    return cfg.train.lr * min(1.0, (step + 1) / warm) if warm > 0 else cfg.train.lr


def resolve_run_dir(cfg: Config, run_dir: str | Path | None = None) -> Path:
    """The run directory (``runs/<profile>`` by default), with the resolved config written in it."""
    out = Path(run_dir) if run_dir else paths.default_run_dir(cfg.profile)
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / "config.yaml", yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    return out


def run_config(run_dir: str | Path) -> Config:
    """The config a run directory was made with."""
    raw = yaml.safe_load((Path(run_dir) / "config.yaml").read_text())
    return from_dict(raw["profile"], raw)


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
    """Train (or resume, or just load) model ``name`` ("L0", "L1", "L2") of a profile.

    ``on_step(step)`` is called after each optimiser step (tests use it to interrupt a run).
    """
    if name not in MODEL_NAMES:
        raise KeyError(f"unknown model {name!r}; valid: {list(MODEL_NAMES)}")
    run = resolve_run_dir(cfg, run_dir)
    prepared = data_mod.prepare(cfg)
    store = CheckpointStore.for_model(run, name)
    store.check_identity(identity(cfg, name))
    store.remove_stale_temporaries()  # a killed run may have died mid-write
    schedule = set(cfg.checkpoint_steps(name))
    device = resolve_device(cfg.train.device)

    model = build_model(cfg, name, prepared.vocab_size, device)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.train.lr, weight_decay=cfg.train.weight_decay,
                            betas=tuple(cfg.train.betas))
    train_tokens = data_mod.load_tokens(cfg, "train")
    eval_tokens = data_mod.load_tokens(cfg, "test")[: cfg.train.eval_batches * cfg.train.batch_size]
    order = BatchOrder(len(train_tokens), cfg.train.batch_size, cfg.seed)

    with deterministic_algorithms(cfg.train.deterministic):
        return _train_loop(cfg, name, run, store, model, opt, train_tokens, eval_tokens, order, schedule,
                           device, progress, on_step)


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
    total = cfg.train.steps[name]
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
        loss = next_token_loss(model, batch)  # the fused forward (rllc.fastforward) where it applies
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


def load_model(profile_or_run_dir: str | Path, name: str = "L2", step: int | str = "last",
               device: str | torch.device = "cpu") -> HookedTransformer:
    """Any checkpoint of a run as a ``HookedTransformer``.

    ``profile_or_run_dir`` is a profile name (its default run directory) or a run directory.
    """
    run = require_run(profile_or_run_dir)
    cfg = run_config(run)
    store = CheckpointStore.for_model(run, name)
    weights = store.load_weights(step)
    vocab = weights["embed.W_E"].shape[0]
    model = build_model(cfg, name, vocab, device)
    model.load_state_dict(weights)
    model.eval()
    return model


def find_run(profile_or_run_dir: str | Path) -> Path:
    """A run directory as given, else the default run directory of a profile of that name."""
    run = Path(profile_or_run_dir)
    return run if (run / "config.yaml").exists() else paths.default_run_dir(str(profile_or_run_dir))


def require_run(profile_or_run_dir: str | Path) -> Path:
    """``find_run``, with a clear error when there is no run there yet."""
    run = find_run(profile_or_run_dir)
    if not (run / "config.yaml").exists():
        raise FileNotFoundError(f"{profile_or_run_dir!r} is neither a run directory nor a trained profile; "
                                f"train it with `rllc train --profile {profile_or_run_dir}`")
    return run


def checkpoint_steps(profile_or_run_dir: str | Path, name: str = "L2") -> list[int]:
    return CheckpointStore.for_model(find_run(profile_or_run_dir), name).steps()
