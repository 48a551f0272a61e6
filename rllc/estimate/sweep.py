"""LLC estimates over checkpoints x components x distributions, cached and resumable.

Every estimate is stored as one JSON record under ``<run>/llc/records/<key>.json`` (written
atomically), where the key hashes everything that changes its number: the model's identity,
the checkpoint, the component, the distribution (and its token dataset), every sampler
setting, and the estimator's version (``rllc.estimate.sgld.ESTIMATOR_VERSION``: a change to the
sampler or its losses bumps it, and older records are then recomputed, never reused). Each record
carries its provenance (package version, git commit, torch version, device).

A sweep computes only the records it lacks, so a sweep killed midway and restarted
recomputes nothing it already has and loses at most the estimate in flight. The tidy tables
(``llc_estimates``, ``llc_chains``, ``llc_traces``) are assembled from the records.

Distributions: a token split of the run ("train", "test", or a held-out domain such as
"python_tests"), or ``model:<name>[@<step>]`` — a generator model of the same run (default its
last checkpoint) whose predictions on training contexts replace the next-token targets (eq. 11).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import numerics, provenance
from ..config import Config, SamplerConfig, config_hash, model_base
from ..data import tokens as data_mod
from ..io import read_json, write_json, write_table
from ..model.build import N_LAYERS, resolve_device
from ..model.checkpoints import CheckpointStore
from ..model.fused import LayerInputs, SoftTargets, next_token_loss
from ..run import find_run, identity, load_model, require_run, run_config
from . import sgld
from .llc import (
    PASS_SEQUENTIAL,
    PREFIX_SETTINGS,
    LLCResult,
    estimate_components,
    estimate_llc,
    generator_loss,
    paired_baselines,
    prefix_result,
)
from .sgld import n_steps

GENERATOR_PREFIX = "model:"


@dataclass(frozen=True)
class Job:
    model: str
    step: int
    component: str
    data: str


def parse_generator(data: str) -> tuple[str, int | str] | None:
    """("L1", "last") for "model:L1", ("L1", 4000) for "model:L1@4000"; None for a token split."""
    if not data.startswith(GENERATOR_PREFIX):
        return None
    spec = data[len(GENERATOR_PREFIX):]
    name, _, step = spec.partition("@")
    return name, (int(step) if step else "last")


def valid_data(cfg: Config) -> list[str]:
    return [*data_mod.available_distributions(cfg), "model:L0", "model:L1", "model:L2"]


def resolve_steps(run: Path, model: str, steps: Iterable[int | str] | str) -> list[int]:
    """Checkpoint steps: "all", "last", or a list (each int or "last"); unknown steps are an error."""
    have = CheckpointStore.for_model(run, model).steps()
    if not have:
        raise FileNotFoundError(f"no checkpoints of {model} in {run}; train it first")
    if isinstance(steps, str):
        steps = have if steps == "all" else [steps]
    out = []
    for s in steps:
        s = have[-1] if s == "last" else int(s)
        if s not in have:
            raise KeyError(f"no checkpoint at step {s} for {model}; have {have[0]}..{have[-1]} ({len(have)} steps)")
        out.append(s)
    return out


def strided_steps(run: Path, model: str, stride: int = 1, n: int = 0) -> list[int]:
    """Every ``stride``-th checkpoint (first and last always); with ``n`` > 0, ``n`` of those spread
    evenly by index (so they follow the schedule's density: dense early, sparse late)."""
    have = CheckpointStore.for_model(run, model).steps()
    if not have:
        raise FileNotFoundError(f"no checkpoints of {model} in {run}; train it first")
    return spread(sorted(set(have[:: max(1, stride)]) | {have[0], have[-1]}), n)


def spread(steps: Sequence[int], n: int = 0) -> list[int]:
    """``n`` of ``steps`` spread evenly by index, first and last kept (all of them when ``n`` is 0
    or at least their number)."""
    steps = list(steps)
    if 0 < n < len(steps):
        idx = np.unique(np.round(np.linspace(0, len(steps) - 1, n)).astype(int))
        steps = [steps[i] for i in idx]
    return steps


def _generator_key(run: Path, cfg: Config, data: str) -> dict[str, Any] | None:
    """What a generator distribution depends on: the generator's identity and its checkpoint
    ("model:L1" means its last one, resolved here so that training it further changes the key)."""
    gen = parse_generator(data)
    if gen is None:
        return None
    (step,) = resolve_steps(run, gen[0], [gen[1]])
    return {"identity": identity(cfg, gen[0]), "step": step}


def _key_parts(cfg: Config, job: Job, sampler: dict[str, Any], run: Path) -> dict[str, Any]:
    return {
        "identity": identity(cfg, job.model), "step": job.step, "component": job.component.replace(" ", "").lower(),
        "data": job.data, "tokens": data_mod.tokens_key(cfg),
        "generator": _generator_key(run, cfg, job.data),
        "sampler": sampler, "estimator": sgld.ESTIMATOR_VERSION,
    }


def record_key(cfg: Config, job: Job, settings: SamplerConfig, run: Path) -> str:
    return config_hash(_key_parts(cfg, job, dataclasses.asdict(settings), run), n=16)


def family_key(cfg: Config, job: Job, settings: SamplerConfig, run: Path) -> str:
    """The record key less the numbers of chains and draws: an estimate of one family can be cut
    from any record of it with at least as many chains and draws (``llc.prefix_result``)."""
    sampler = {k: v for k, v in dataclasses.asdict(settings).items() if k not in PREFIX_SETTINGS}
    return config_hash({**_key_parts(cfg, job, sampler, run), "family": True}, n=16)


def records_dir(run: Path) -> Path:
    return run / "llc" / "records"


def prefixes_dir(run: Path) -> Path:
    """An index of the records estimates can be cut from: one empty file per record whose chains
    ran one after another, named ``<family key>.<chains>.<draws>.<record key>``."""
    return run / "llc" / "prefixes"


def write_record(run: Path, cfg: Config, job: Job, settings: SamplerConfig, result: LLCResult,
                 dev: torch.device) -> str:
    """Write an estimate's record (atomically) and, for one whose chains ran one after another
    (on a CPU), its entry in the prefix index (vmapped chains on a GPU share their sums' order
    across chains, so only sequential records are cut from). Returns the key."""
    key = record_key(cfg, job, settings, run)
    write_json(records_dir(run) / f"{key}.json", _record(job, result, key, dev))
    if result.meta.get("pass") == PASS_SEQUENTIAL and "derived_from" not in result.meta:
        index = prefixes_dir(run)
        index.mkdir(parents=True, exist_ok=True)
        (index / f"{family_key(cfg, job, settings, run)}.{settings.chains}.{settings.draws}.{key}").touch()
    return key


def prefix_index(run: Path) -> dict[str, list[tuple[int, int, str]]]:
    """Family key -> [(chains, draws, record key)] of every indexed record."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    index = prefixes_dir(run)
    if index.is_dir():
        for entry in index.iterdir():
            parts = entry.name.split(".")
            if len(parts) == 4:
                out.setdefault(parts[0], []).append((int(parts[1]), int(parts[2]), parts[3]))
    return out


def derive_records(run: Path, cfg: Config, jobs: Sequence[Job], settings: SamplerConfig) -> list[Job]:
    """Write the records of ``jobs`` that can be cut from longer estimates already computed (same
    everything but at least as many chains and draws: ``llc.prefix_result``, bit-identical to
    computing them); return the jobs so done. Each such record names its source (``derived_from``)."""
    index = prefix_index(run) if jobs else {}
    if not index:
        return []
    done = []
    for job in jobs:
        family = index.get(family_key(cfg, job, settings, run), [])
        sources = sorted((c * d, key) for c, d, key in family if c >= settings.chains and d >= settings.draws)
        for _, key in sources:
            path = records_dir(run) / f"{key}.json"
            if not path.exists():
                continue
            source = read_json(path)
            result = prefix_result(source, settings)
            if result is None:
                continue
            result.meta["derived_from"] = key
            write_record(run, cfg, job, settings, result, torch.device("cpu"))  # a cut record is not indexed
            done.append(job)
            break
    return done


def missing_jobs(run: Path, cfg: Config, jobs: Sequence[Job], settings: SamplerConfig,
                 keys: dict[Job, str]) -> tuple[list[Job], list[Job]]:
    """(jobs to compute, jobs just cut from longer estimates) among ``jobs`` without a record."""
    absent = [job for job in jobs if not (records_dir(run) / f"{keys[job]}.json").exists()]
    cut = derive_records(run, cfg, absent, settings)
    return [job for job in absent if job not in cut], cut


def baselines_dir(run: Path) -> Path:
    return run / "llc" / "baselines"


def baseline_key(cfg: Config, job: Job, settings: SamplerConfig, run: Path) -> str:
    """What the paired reference depends on: the model and checkpoint, the data and its batches."""
    return config_hash({
        "identity": identity(cfg, job.model), "step": job.step, "data": job.data, "tokens": data_mod.tokens_key(cfg),
        "generator": _generator_key(run, cfg, job.data),
        "batch_size": settings.batch_size, "feeds": sgld.feed_seeds(settings), "steps": n_steps(settings),
        "estimator": sgld.ESTIMATOR_VERSION,
    }, n=16)


def paired_baseline(run: Path, cfg: Config, job: Job, settings: SamplerConfig, dev: torch.device,
                    state: dict[Any, Any]) -> np.ndarray | None:
    """The loss at w* on every chain's batch at every SGLD step ([chains, steps], the paired
    reference), shared by all components.

    Every component at one checkpoint sees the same batches, so this is computed once per
    (model, checkpoint, distribution, batch orders) with the model's plain loss and cached under
    ``<run>/llc/baselines/``; a head's own fused loss equals it up to float summation order.
    None when the sampler uses another reference."""
    if settings.reference != "paired":
        return None
    path = baselines_dir(run) / f"{baseline_key(cfg, job, settings, run)}.json"
    if path.exists():
        return np.asarray(read_json(path)["losses"], dtype=float).reshape(settings.chains, -1)
    model = _model(run, job, dev, state)
    tokens, generator = _data_tensor(cfg, run, job.data, dev, state.setdefault("data", {}))
    loss_fn = generator_loss(generator) if generator is not None else next_token_loss
    losses = paired_baselines(model, sgld.chain_feeds(tokens, settings), loss_fn, n_steps(settings), dev)
    write_json(path, {"model": job.model, "step": job.step, "data": job.data, "losses": losses.tolist(),
                      "estimator_version": sgld.ESTIMATOR_VERSION, "provenance": provenance.provenance(dev)})
    return losses


def _data_tensor(cfg: Config, run: Path, data: str, dev: torch.device,
                 cache: dict[str, Any]) -> tuple[torch.Tensor, SoftTargets | None]:
    """(token windows, the generator's cached predictions or None) of a distribution; ``cache``
    keeps both, so a generator's prediction on a batch is computed once per sweep (process)."""
    gen = parse_generator(data)
    split = "train" if gen is not None else data
    if split not in cache:
        valid = data_mod.available_distributions(cfg)
        if split not in valid:
            raise KeyError(f"unknown distribution {data!r}; valid: {valid + ['model:<L0|L1|L2>[@step]']}")
        cache[split] = data_mod.load_tokens(cfg, split)
    generator = None
    if gen is not None:
        if ("gen", gen) not in cache:
            cache[("gen", gen)] = SoftTargets(load_model(run, gen[0], gen[1], device=dev))
        generator = cache[("gen", gen)]
    return cache[split], generator


def run_sweep(
    run_or_profile: str | Path,
    models: Sequence[str] = ("L2",),
    steps: Iterable[int | str] | str = "all",
    components: Sequence[str] = ("full",),
    datas: Sequence[str] = ("train",),
    settings: SamplerConfig | None = None,
    device: str = "auto",
    progress: bool = True,
    workers: int = 1,
) -> pd.DataFrame:
    """Estimate every (model, step, component, data) combination not yet cached; return the table.

    ``workers`` > 1 (CPU only) runs estimates in that many processes, each with an equal share of
    torch's threads: small models use many threads poorly, so on 2 cores two single-threaded
    workers get through a sweep faster than one process with two threads. Every estimate is
    seeded by the sampler settings alone, so the records do not depend on which worker made them.
    Workers are spawned processes: a script that calls this with ``workers`` > 1 must do so under
    ``if __name__ == "__main__":`` (notebooks need nothing).
    """
    run = require_run(run_or_profile)
    cfg = run_config(run)
    settings = settings or cfg.sampler
    dev = resolve_device(device)
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    jobs = [Job(m, s, c, d) for m in models for s, c, d in
            itertools.product(resolve_steps(run, m, steps), components, datas)]
    keys = {job: record_key(cfg, job, settings, run) for job in jobs}
    todo, cut = missing_jobs(run, cfg, jobs, settings, keys)  # cut: contained in longer estimates already made
    per_job = settings.chains * n_steps(settings)
    cut_note = f"; {len(cut)} cut from longer estimates" if cut else ""
    with tqdm(total=len(todo) * per_job, desc=f"LLC sweep ({len(todo)} of {len(jobs)} estimates to do{cut_note})",
              disable=not progress, mininterval=2.0, unit="step") as bar:
        state: dict[Any, Any] = {}
        pinned = numerics.torch_threads(cfg.train.threads)  # the profile's threads, not the machine's
        if workers > 1 and dev.type == "cpu" and len(todo) > 1:
            # the shared paired references first, here, so that no two workers compute one
            with pinned:
                for job in todo:
                    paired_baseline(run, cfg, job, settings, dev, state)
            state.clear()
            _run_parallel(run, todo, settings, workers, bar, per_job)
        elif dev.type == "cuda":
            plan = pass_plan(cfg, settings, dev, models)
            for chunk in batchable(todo, plan.components):
                run_chunk(run, cfg, chunk, settings, dev, state, bar, plan.chains)
        else:
            with pinned:
                for job in todo:
                    run_job(run, cfg, job, settings, dev, state, bar)
    table = collect(run, [keys[j] for j in jobs])
    return table


def _model(run: Path, job: Job, dev: torch.device, state: dict[Any, Any]) -> torch.nn.Module:
    """The job's checkpoint; ``state`` keeps the last one loaded."""
    if state.get("model_key") != (job.model, job.step):
        state["model"] = load_model(run, job.model, job.step, device=dev)
        state["model_key"] = (job.model, job.step)
    return state["model"]


def _layer_inputs(job: Job, settings: SamplerConfig, state: dict[Any, Any]) -> LayerInputs:
    """The layer inputs shared by the head estimates of the job's checkpoint, data and batches
    (``state`` keeps those of the last checkpoint, one per distribution and batch feed)."""
    if state.get("inputs_for") != (job.model, job.step):
        state["inputs"], state["inputs_for"] = {}, (job.model, job.step)
    feeds = (job.data, settings.batch_size, tuple(sgld.feed_seeds(settings)))
    return state["inputs"].setdefault(feeds, LayerInputs())


def run_job(run: Path, cfg: Config, job: Job, settings: SamplerConfig, dev: torch.device,
             state: dict[Any, Any], bar: tqdm | None = None, chains_per_pass: int | None = None) -> None:
    """Estimate one job and write its record; ``state`` keeps the last model and the token data
    (``chains_per_pass``: on a GPU, the chains in groups of at most this many)."""
    model = _model(run, job, dev, state)
    baseline = paired_baseline(run, cfg, job, settings, dev, state)
    tokens, generator = _data_tensor(cfg, run, job.data, dev, state.setdefault("data", {}))
    result = estimate_llc(model, job.component, tokens, settings, generator=generator,
                          data_name=job.data, device=dev, bar=bar, baseline=baseline,
                          layer_inputs=_layer_inputs(job, settings, state), chains_per_pass=chains_per_pass)
    write_record(run, cfg, job, settings, result, dev)


BATCH_COMPONENTS = 17  # on a GPU, components estimated in one batched pass at most (16 heads and the full model)
# What one sequence (a row of one chain's SGLD batch) of a batched step holds live, in float32
# tensors: the vocabulary-sized ones (the logits, their log-softmax and the gradients of both) and
# the attention maps, n_ctx x n_ctx per head and layer (the scores, the masked scores, the
# softmax pattern, TransformerLens's NaN-guarded pattern, and the gradient of each). The rest of
# an attention-only model (residual stream, weights) is smaller at every profile's shape. At the
# paper's shape this counts 619 MB a sequence; one batched step measured on CPU took 0.97-1.20x that
# (docs/results-cpu.md), where the logits alone (the old estimate) were 7-9x too low.
LOGIT_COPIES = 4
ATTENTION_COPIES = 8


def sequence_bytes(n_layers: int, n_heads: int, n_ctx: int, d_vocab: int) -> int:
    """Device memory one sequence of a batched SGLD step needs (see ``ATTENTION_COPIES``)."""
    return 4 * (LOGIT_COPIES * n_ctx * d_vocab + ATTENTION_COPIES * n_layers * n_heads * n_ctx * n_ctx)


@dataclass(frozen=True)
class PassPlan:
    """How a GPU sweep groups its work: ``components`` per batched pass, and each component's
    chains in groups of ``chains`` (all of them, unless one component's chains do not fit)."""

    components: int
    chains: int


def plan_passes(n_layers: int, n_heads: int, n_ctx: int, d_vocab: int, settings: SamplerConfig,
                free_bytes: int, fraction: float = 0.5, cap: int = BATCH_COMPONENTS) -> PassPlan:
    """The largest passes that fit in ``fraction`` of ``free_bytes`` by ``sequence_bytes``: as many
    whole components (``settings.chains`` x ``batch_size`` sequences each) as fit, at most ``cap``;
    when not even one fits, one component with as many chains at a time as fit (at least one).

    At the paper's shape (2 layers x 8 heads, n_ctx 1024, vocabulary 5,000; 4 chains x 32) a
    component needs 79 GB, so an H200 (141 GB free) runs it 3 chains at a time, an H100 (80 GB) 2."""
    budget = fraction * free_bytes
    per_chain = settings.batch_size * sequence_bytes(n_layers, n_heads, n_ctx, d_vocab)
    per_component = settings.chains * per_chain
    if per_component <= budget:
        return PassPlan(max(1, min(cap, int(budget // per_component))), settings.chains)
    return PassPlan(1, max(1, min(settings.chains, int(budget // per_chain))))


def pass_plan(cfg: Config, settings: SamplerConfig, dev: torch.device, models: Iterable[str] = ("L2",)) -> PassPlan:
    """The pass plan on ``dev`` (a CUDA device: from its free memory now) for the deepest of
    ``models``; the profile's vocabulary size bounds the model's."""
    free, _ = torch.cuda.mem_get_info(dev)
    n_layers = max(N_LAYERS[model_base(m)] for m in models)
    return plan_passes(n_layers, cfg.model.n_heads, cfg.model.n_ctx, cfg.tokenizer.vocab_size, settings, free)


def batchable(jobs: Sequence[Job], size: int = BATCH_COMPONENTS) -> list[list[Job]]:
    """Jobs in chunks that one batched pass can take: the same model, checkpoint and token
    distribution, at most ``size`` components; a generator distribution runs one job at a time."""
    chunks: list[list[Job]] = []
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        if parse_generator(job.data) is not None:
            chunks.append([job])
        else:
            groups.setdefault((job.model, job.step, job.data), []).append(job)
    for group in groups.values():
        chunks += [group[i:i + size] for i in range(0, len(group), size)]
    return chunks


def run_jobs_batched(run: Path, cfg: Config, jobs: Sequence[Job], settings: SamplerConfig, dev: torch.device,
                     state: dict[Any, Any], bar: tqdm | None = None, chains_per_pass: int | None = None) -> None:
    """Estimate jobs of one model, checkpoint and token distribution in one batched pass
    (``llc.estimate_components``: chains × components on a GPU) and write their records."""
    first = jobs[0]
    if any((j.model, j.step, j.data) != (first.model, first.step, first.data) for j in jobs):
        raise ValueError("a batched pass takes jobs of one model, checkpoint and distribution")
    model = _model(run, first, dev, state)
    baseline = paired_baseline(run, cfg, first, settings, dev, state)
    tokens, generator = _data_tensor(cfg, run, first.data, dev, state.setdefault("data", {}))
    if generator is not None:
        raise ValueError("generator distributions are estimated one component at a time")
    results = estimate_components(model, [j.component for j in jobs], tokens, settings, data_name=first.data,
                                  device=dev, bar=bar, baseline=baseline, chains_per_pass=chains_per_pass)
    for job, result in zip(jobs, results, strict=True):
        write_record(run, cfg, job, settings, result, dev)


def run_chunk(run: Path, cfg: Config, jobs: Sequence[Job], settings: SamplerConfig, dev: torch.device,
              state: dict[Any, Any], bar: tqdm | None = None, chains_per_pass: int | None = None) -> None:
    """One chunk of :func:`batchable`: a batched pass, or a single job on its own.

    A GPU that runs out of memory anyway (``sequence_bytes`` is an estimate) gets the chunk
    again in two halves, and a single component its chains in groups half as large, down to one
    chain a pass; records already written are kept. The records do not depend on the split."""
    try:
        if len(jobs) > 1:
            run_jobs_batched(run, cfg, jobs, settings, dev, state, bar, chains_per_pass)
        else:
            run_job(run, cfg, jobs[0], settings, dev, state, bar, chains_per_pass)
    except torch.OutOfMemoryError:
        if dev.type != "cuda":
            raise
        torch.cuda.empty_cache()
        chains = chains_per_pass or settings.chains
        if len(jobs) > 1:
            half = len(jobs) // 2
            for part in (jobs[:half], jobs[half:]):
                run_chunk(run, cfg, part, settings, dev, state, bar, chains_per_pass)
        elif chains > 1:
            run_chunk(run, cfg, jobs, settings, dev, state, bar, chains // 2)
        else:
            raise torch.OutOfMemoryError(
                f"one SGLD chain of {settings.batch_size} sequences of {cfg.model.n_ctx} tokens does not fit in "
                f"{dev}'s memory: lower sampler.batch_size in the profile, or use a device with more memory") from None


_WORKER: dict[str, Any] = {}


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.clear()


def _worker_job(run: str, job: Job, settings: SamplerConfig) -> Job:
    path = Path(run)
    cfg = _WORKER.setdefault("cfg", run_config(path))
    run_job(path, cfg, job, settings, torch.device("cpu"), _WORKER.setdefault("state", {}))
    return job


def _run_parallel(run: Path, todo: list[Job], settings: SamplerConfig, workers: int, bar: tqdm, per_job: int) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, run_config(run).train.threads // workers)  # the profile's threads, shared (rllc.numerics)
    # jobs are ordered by checkpoint and handed out in order, so each worker loads a checkpoint once
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        futures = [pool.submit(_worker_job, str(run), job, settings) for job in todo]
        try:
            for fut in as_completed(futures):
                fut.result()  # a worker's error is raised here
                bar.update(per_job)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # finished estimates are already on disk
            raise


def _record(job: Job, result: LLCResult, key: str, device: torch.device) -> dict[str, Any]:
    rec = result.to_dict(traces=True)
    rec.update({"key": key, "model": job.model, "step": job.step, "component": job.component, "data": job.data,
                "estimator_version": sgld.ESTIMATOR_VERSION, "provenance": provenance.provenance(device)})
    return rec


def load_records(run: Path, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
    d = records_dir(run)
    files = [d / f"{k}.json" for k in keys] if keys is not None else sorted(d.glob("*.json"))
    return [read_json(f) for f in files]


def collect(run: str | Path, keys: Iterable[str] | None = None, write: bool = True) -> pd.DataFrame:
    """The tidy estimates table (one row per estimate; only ``keys`` if given) from cached records.

    Also (re)writes the ``llc_estimates``, ``llc_chains`` and ``llc_traces`` tables under
    ``<run>/tables`` from every record the run has.
    """
    run = find_run(run)
    records = load_records(run)
    table = _tables(run, records, write)
    if keys is not None:
        keys = list(keys)
        table = table.set_index("key").loc[keys].reset_index() if keys else table.iloc[:0]
    return table


def _traces_table(records: list[dict[str, Any]]) -> pd.DataFrame:
    """Every chain's loss trace as tidy rows (key, model, step, component, data, chain, sgld_step,
    loss), built from one array per record (no DataFrame per chain: 15k records take seconds)."""
    labels = ("key", "model", "step", "component", "data")
    arrays = [np.asarray(r["traces"], dtype=float) for r in records]
    sizes = np.array([a.size for a in arrays], dtype=np.int64)
    if not sizes.sum():
        return pd.DataFrame(columns=[*labels, "chain", "sgld_step", "loss"])
    out: dict[str, Any] = {}
    for name in labels:
        values = [r[name] for r in records]
        if name == "step":
            out[name] = np.repeat(np.asarray(values, dtype=np.int64), sizes)
        else:  # few distinct values repeated many times: categorical codes
            cats = pd.Categorical(values)
            out[name] = pd.Categorical.from_codes(np.repeat(cats.codes, sizes), cats.categories)
    out["chain"] = np.concatenate([np.repeat(np.arange(a.shape[0]), a.shape[1]) for a in arrays])
    out["sgld_step"] = np.concatenate([np.tile(np.arange(a.shape[1]), a.shape[0]) for a in arrays])
    out["loss"] = np.concatenate([a.ravel() for a in arrays])
    return pd.DataFrame(out)


def _tables(run: Path, records: list[dict[str, Any]], write: bool) -> pd.DataFrame:
    rows, chains = [], []
    for r in records:
        s = r["settings"]
        flags = r["flags"]
        rows.append({
            "model": r["model"], "step": r["step"], "component": r["component"], "data": r["data"],
            "llc_mean": r["mean"], "llc_std": r["std"], "llc_sem": r["sem"],
            "se_kind": r.get("se_kind", "chains on one shared batch order (chain noise only)"), "n_chains": len(flags),
            "n_ok": r["n_ok"], "n_diverged": sum("diverged" in f for f in flags),
            "n_below_init": sum("below_init" in f for f in flags), "init_loss": r["init_loss"],
            "n_weights": r["n_weights"], "seconds": r["seconds"], **{f"sampler_{k}": v for k, v in s.items()},
            "estimator_version": r.get("estimator_version", 1), "key": r["key"],
        })
        for c, (v, f) in enumerate(zip(r["per_chain"], flags, strict=True)):
            chains.append({"key": r["key"], "model": r["model"], "step": r["step"], "component": r["component"],
                           "data": r["data"], "chain": c, "llc": v, "flags": ",".join(f)})
    table = pd.DataFrame(rows)
    if len(table):
        table = table.sort_values(["model", "data", "component", "step"]).reset_index(drop=True)
    if write and len(table):
        tables = run / "tables"
        write_table(table, tables / "llc_estimates.parquet")
        write_table(pd.DataFrame(chains), tables / "llc_chains.parquet")
        write_table(_traces_table(records), tables / "llc_traces.parquet")
    return table


def estimate_one(run_or_profile: str | Path, model: str = "L2", step: int | str = "last", component: str = "full",
                 data: str = "train", overrides: dict[str, Any] | None = None, device: str = "auto",
                 progress: bool = False) -> LLCResult:
    """One estimate at a checkpoint of a run (not cached): what ``rllc llc`` prints."""
    run = require_run(run_or_profile)
    cfg = run_config(run)
    settings = dataclasses.replace(cfg.sampler, **(overrides or {}))
    (s,) = resolve_steps(run, model, [step])
    dev = resolve_device(device)
    tokens, generator = _data_tensor(cfg, run, data, dev, {})
    net = load_model(run, model, s, device=dev)
    result = estimate_llc(net, component, tokens, settings, generator=generator,
                          data_name=data, device=dev, progress=progress)
    result.meta.update({"model": model, "step": s, "run_dir": str(run), "estimator_version": sgld.ESTIMATOR_VERSION,
                        "provenance": provenance.provenance(dev)})
    return result


def precision_grid(run_or_profile: str | Path, model: str, step: int, components: Sequence[str],
                   chains: Sequence[int], draws: Sequence[int], settings: SamplerConfig, device: str = "auto",
                   workers: int = 1, progress: bool = True) -> pd.DataFrame:
    """The same estimates (``components`` of ``model`` at ``step``, training data) at every
    ``chains`` × ``draws`` combination of the sampler ``settings``: rows of ``run_sweep`` with
    columns chains and draws (each cached like any estimate)."""
    grid = [(int(c), int(d)) for c in chains for d in draws]
    parts = {}
    # the longest first: on a CPU every shorter setting is then cut from it (``derive_records``)
    for c, d in sorted(grid, key=lambda cd: (cd[0] * cd[1], cd), reverse=True):
        s = dataclasses.replace(settings, chains=c, draws=d)
        est = run_sweep(run_or_profile, [model], [step], list(components), ["train"], s, device=device,
                        workers=workers, progress=progress)
        parts[(c, d)] = est.assign(chains=c, draws=d)
    return pd.concat([parts[cd] for cd in grid], ignore_index=True)
