"""LLC estimates over checkpoints x components x distributions, cached and resumable.

A sweep computes only the estimates whose record (``rllc.estimate.records``) it lacks, so a sweep
killed midway and restarted recomputes nothing it already has and loses at most the estimate in
flight; estimates with fewer chains or draws than a record already made are cut from it. The
records are then collected into the run's tidy tables.

Three executors, one result (every estimate is seeded by the sampler settings alone):

* one process, estimate after estimate (CPU);
* worker processes, each with an equal share of the profile's threads (CPU, ``workers`` > 1);
* batched passes of several components at once (GPU), planned by ``rllc.estimate.passes``.

What one process keeps between estimates (the last checkpoint, token data, generator predictions,
a checkpoint's layer inputs) is a ``SweepContext``.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import numerics, provenance
from ..config import Config, SamplerConfig
from ..data import tokens as tokens_mod
from ..io import read_json, write_json
from ..model.build import resolve_device
from ..model.fused import LayerInputs, SoftTargets, next_token_loss
from ..run import Run, open_run
from . import sgld
from .llc import LLCResult, estimate_components, estimate_llc, generator_loss, paired_baselines
from .passes import batchable, pass_plan
from .records import (
    Job,
    baseline_key,
    baselines_dir,
    collect,
    missing_jobs,
    parse_generator,
    record_key,
    resolve_steps,
    write_record,
)
from .sgld import n_steps


def valid_data(cfg: Config) -> list[str]:
    return [*tokens_mod.available_distributions(cfg), "model:L0", "model:L1", "model:L2"]


def strided_steps(run: Run, model: str, stride: int = 1, n: int = 0) -> list[int]:
    """Every ``stride``-th checkpoint (first and last always); with ``n`` > 0, ``n`` of those spread
    evenly by index (so they follow the schedule's density: dense early, sparse late)."""
    have = run.steps(model)
    if not have:
        raise FileNotFoundError(f"no checkpoints of {model} in {run.path}; train it first")
    return spread(sorted(set(have[:: max(1, stride)]) | {have[0], have[-1]}), n)


def spread(steps: Sequence[int], n: int = 0) -> list[int]:
    """``n`` of ``steps`` spread evenly by index, first and last kept (all of them when ``n`` is 0
    or at least their number)."""
    steps = list(steps)
    if 0 < n < len(steps):
        idx = np.unique(np.round(np.linspace(0, len(steps) - 1, n)).astype(int))
        steps = [steps[i] for i in idx]
    return steps


@dataclass
class SweepContext:
    """One process's sweep: the run, the sampler settings and the device, and what it keeps
    between estimates: the last checkpoint loaded, each distribution's tokens (and a generator's
    cached predictions: one computation per batch and process), and the layer inputs the head
    estimates of the last checkpoint share (one set per distribution and batch feed)."""

    run: Run
    settings: SamplerConfig
    device: torch.device
    _model_key: tuple[str, int] | None = None
    _model: torch.nn.Module | None = None
    _data: dict[Any, Any] = field(default_factory=dict)
    _inputs_for: tuple[str, int] | None = None
    _inputs: dict[tuple, LayerInputs] = field(default_factory=dict)

    def model(self, job: Job) -> torch.nn.Module:
        """The job's checkpoint (the last one loaded is kept)."""
        if self._model_key != (job.model, job.step) or self._model is None:
            self._model = self.run.load_model(job.model, job.step, device=self.device)
            self._model_key = (job.model, job.step)
        return self._model

    def distribution(self, data: str) -> tuple[torch.Tensor, SoftTargets | None]:
        """(token windows, the generator's cached predictions or None) of a distribution."""
        gen = parse_generator(data)
        split = "train" if gen is not None else data
        if split not in self._data:
            valid = tokens_mod.available_distributions(self.run.cfg)
            if split not in valid:
                raise KeyError(f"unknown distribution {data!r}; valid: {valid + ['model:<L0|L1|L2>[@step]']}")
            self._data[split] = tokens_mod.load_tokens(self.run.cfg, split)
        generator = None
        if gen is not None:
            if ("gen", gen) not in self._data:
                self._data[("gen", gen)] = SoftTargets(self.run.load_model(gen[0], gen[1], device=self.device))
            generator = self._data[("gen", gen)]
        return self._data[split], generator

    def layer_inputs(self, job: Job) -> LayerInputs:
        """The layer inputs shared by the head estimates of the job's checkpoint, data and batches."""
        if self._inputs_for != (job.model, job.step):
            self._inputs, self._inputs_for = {}, (job.model, job.step)
        feeds = (job.data, self.settings.batch_size, tuple(sgld.feed_seeds(self.settings)))
        return self._inputs.setdefault(feeds, LayerInputs())

    def forget(self) -> None:
        """Drop what is kept (before worker processes take over the estimates)."""
        self._model_key = self._model = self._inputs_for = None
        self._data.clear()
        self._inputs.clear()


def paired_baseline(ctx: SweepContext, job: Job) -> np.ndarray | None:
    """The loss at w* on every chain's batch at every SGLD step ([chains, steps], the paired
    reference), shared by all components.

    Every component at one checkpoint sees the same batches, so this is computed once per
    (model, checkpoint, distribution, batch orders) with the model's plain loss and cached under
    ``<run>/llc/baselines/``; a head's own fused loss equals it up to float summation order.
    None when the sampler uses another reference."""
    settings = ctx.settings
    if settings.reference != "paired":
        return None
    path = baselines_dir(ctx.run) / f"{baseline_key(ctx.run, job, settings)}.json"
    if path.exists():
        return np.asarray(read_json(path)["losses"], dtype=float).reshape(settings.chains, -1)
    model = ctx.model(job)
    data, generator = ctx.distribution(job.data)
    loss_fn = generator_loss(generator) if generator is not None else next_token_loss
    losses = paired_baselines(model, sgld.chain_feeds(data, settings), loss_fn, n_steps(settings), ctx.device)
    write_json(path, {"model": job.model, "step": job.step, "data": job.data, "losses": losses.tolist(),
                      "estimator_version": sgld.ESTIMATOR_VERSION, "provenance": provenance.provenance(ctx.device)})
    return losses


def run_sweep(
    run_or_profile: Run | str | Path,
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
    run = open_run(run_or_profile)
    ctx = SweepContext(run, settings or run.cfg.sampler, resolve_device(device))
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    jobs = [Job(m, s, c, d) for m in models for s, c, d in
            itertools.product(resolve_steps(run, m, steps), components, datas)]
    keys = {job: record_key(run, job, ctx.settings) for job in jobs}
    todo, cut = missing_jobs(run, jobs, ctx.settings, keys)  # cut: contained in longer estimates already made
    per_job = ctx.settings.chains * n_steps(ctx.settings)
    cut_note = f"; {len(cut)} cut from longer estimates" if cut else ""
    with tqdm(total=len(todo) * per_job, desc=f"LLC sweep ({len(todo)} of {len(jobs)} estimates to do{cut_note})",
              disable=not progress, mininterval=2.0, unit="step") as bar:
        pinned = numerics.torch_threads(run.cfg.train.threads)  # the profile's threads, not the machine's
        if workers > 1 and ctx.device.type == "cpu" and len(todo) > 1:
            # the shared paired references first, here, so that no two workers compute one
            with pinned:
                for job in todo:
                    paired_baseline(ctx, job)
            ctx.forget()
            _run_parallel(ctx, todo, workers, bar, per_job)
        elif ctx.device.type == "cuda":
            plan = pass_plan(run.cfg, ctx.settings, ctx.device, models)
            for chunk in batchable(todo, plan.components):
                run_chunk(ctx, chunk, bar, plan.chains)
        else:
            with pinned:
                for job in todo:
                    run_job(ctx, job, bar)
    return collect(run, [keys[j] for j in jobs])


def run_job(ctx: SweepContext, job: Job, bar: tqdm | None = None, chains_per_pass: int | None = None) -> None:
    """Estimate one job and write its record (``chains_per_pass``: on a GPU, the chains in groups
    of at most this many)."""
    model = ctx.model(job)
    baseline = paired_baseline(ctx, job)
    data, generator = ctx.distribution(job.data)
    result = estimate_llc(model, job.component, data, ctx.settings, generator=generator,
                          data_name=job.data, device=ctx.device, bar=bar, baseline=baseline,
                          layer_inputs=ctx.layer_inputs(job), chains_per_pass=chains_per_pass)
    write_record(ctx.run, job, ctx.settings, result, ctx.device)


def run_jobs_batched(ctx: SweepContext, jobs: Sequence[Job], bar: tqdm | None = None,
                     chains_per_pass: int | None = None) -> None:
    """Estimate jobs of one model, checkpoint and token distribution in one batched pass
    (``llc.estimate_components``: chains × components on a GPU) and write their records."""
    first = jobs[0]
    if any((j.model, j.step, j.data) != (first.model, first.step, first.data) for j in jobs):
        raise ValueError("a batched pass takes jobs of one model, checkpoint and distribution")
    model = ctx.model(first)
    baseline = paired_baseline(ctx, first)
    data, generator = ctx.distribution(first.data)
    if generator is not None:
        raise ValueError("generator distributions are estimated one component at a time")
    results = estimate_components(model, [j.component for j in jobs], data, ctx.settings, data_name=first.data,
                                  device=ctx.device, bar=bar, baseline=baseline, chains_per_pass=chains_per_pass)
    for job, result in zip(jobs, results, strict=True):
        write_record(ctx.run, job, ctx.settings, result, ctx.device)


def run_chunk(ctx: SweepContext, jobs: Sequence[Job], bar: tqdm | None = None,
              chains_per_pass: int | None = None) -> None:
    """One chunk of :func:`rllc.estimate.passes.batchable`: a batched pass, or a single job on its own.

    A GPU that runs out of memory anyway (``sequence_bytes`` is an estimate) gets the chunk
    again in two halves, and a single component its chains in groups half as large, down to one
    chain a pass; records already written are kept. The records do not depend on the split."""
    try:
        if len(jobs) > 1:
            run_jobs_batched(ctx, jobs, bar, chains_per_pass)
        else:
            run_job(ctx, jobs[0], bar, chains_per_pass)
    except torch.OutOfMemoryError:
        if ctx.device.type != "cuda":
            raise
        torch.cuda.empty_cache()
        chains = chains_per_pass or ctx.settings.chains
        if len(jobs) > 1:
            half = len(jobs) // 2
            for part in (jobs[:half], jobs[half:]):
                run_chunk(ctx, part, bar, chains_per_pass)
        elif chains > 1:
            run_chunk(ctx, jobs, bar, chains // 2)
        else:
            raise torch.OutOfMemoryError(
                f"one SGLD chain of {ctx.settings.batch_size} sequences of {ctx.run.cfg.model.n_ctx} tokens does not "
                f"fit in {ctx.device}'s memory: lower sampler.batch_size in the profile, or use a device with more "
                f"memory") from None


_WORKER: dict[str, SweepContext] = {}  # a worker process's context, kept between its jobs


def _worker_init(threads: int) -> None:
    torch.set_num_threads(threads)
    _WORKER.clear()


def _worker_job(run: str, job: Job, settings: SamplerConfig) -> Job:
    ctx = _WORKER.get("ctx")
    if ctx is None or ctx.settings != settings:
        ctx = _WORKER["ctx"] = SweepContext(Run(Path(run)), settings, torch.device("cpu"))
    run_job(ctx, job)
    return job


def _run_parallel(ctx: SweepContext, todo: list[Job], workers: int, bar: tqdm, per_job: int) -> None:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor, as_completed

    threads = max(1, ctx.run.cfg.train.threads // workers)  # the profile's threads, shared (rllc.numerics)
    # jobs are ordered by checkpoint and handed out in order, so each worker loads a checkpoint once
    with ProcessPoolExecutor(max_workers=workers, mp_context=mp.get_context("spawn"),
                             initializer=_worker_init, initargs=(threads,)) as pool:
        futures = [pool.submit(_worker_job, str(ctx.run.path), job, ctx.settings) for job in todo]
        try:
            for fut in as_completed(futures):
                fut.result()  # a worker's error is raised here
                bar.update(per_job)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)  # finished estimates are already on disk
            raise


def estimate_one(run_or_profile: Run | str | Path, model: str = "L2", step: int | str = "last",
                 component: str = "full", data: str = "train", overrides: dict[str, Any] | None = None,
                 device: str = "auto", progress: bool = False) -> LLCResult:
    """One estimate at a checkpoint of a run (not cached): what ``rllc llc`` prints."""
    run = open_run(run_or_profile)
    ctx = SweepContext(run, dataclasses.replace(run.cfg.sampler, **(overrides or {})), resolve_device(device))
    (s,) = resolve_steps(run, model, [step])
    data_tokens, generator = ctx.distribution(data)
    net = run.load_model(model, s, device=ctx.device)
    result = estimate_llc(net, component, data_tokens, ctx.settings, generator=generator,
                          data_name=data, device=ctx.device, progress=progress)
    result.meta.update({"model": model, "step": s, "run_dir": str(run.path),
                        "estimator_version": sgld.ESTIMATOR_VERSION, "provenance": provenance.provenance(ctx.device)})
    return result


def precision_grid(run_or_profile: Run | str | Path, model: str, step: int, components: Sequence[str],
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
