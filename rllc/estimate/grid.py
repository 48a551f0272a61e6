"""A sweep as a grid of tasks: one per (model, checkpoint, distribution) group.

Every estimate of a group sees the same batches, so a group is the natural unit of work to hand
to one process or one cluster task: it computes the group's paired reference once
(``sweep.paired_baseline``) and then every estimate the run does not hold yet. Records are the
content-addressed files of ``rllc.estimate.sweep``, so a task that is killed, preempted or
requeued loses at most the estimate in flight, and running the same grid again computes nothing.

Beside the records a run keeps two small logs of the grid's work (under ``<run>/llc/``):

* ``failed/<key>.json``: an estimate that raised (its error), removed once its record exists;
* ``events/<key>.<host>.<pid>.<n>.json``: one file per finished estimate (which task made it,
  when): a record whose key has two such files was computed twice.
"""

from __future__ import annotations

import itertools
import os
import socket
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from ..config import Config, SamplerConfig
from ..io import write_json
from ..model.build import resolve_device
from ..model.components import head_names
from ..model_name import ModelName
from ..run import Run
from .passes import batchable, pass_plan
from .records import Job, missing_jobs, record_key, records_dir, resolve_steps
from .sweep import SweepContext, paired_baseline, run_chunk

HEADS = "heads"  # in a list of components: every head of the model


@dataclass(frozen=True)
class Group:
    """The estimates of one (model, checkpoint, distribution): the components of the grid."""

    model: str
    step: int
    data: str
    components: tuple[str, ...]

    def jobs(self) -> list[Job]:
        return [Job(self.model, self.step, c, self.data) for c in self.components]

    @property
    def name(self) -> str:
        return f"{self.model}@{self.step}/{self.data}"


def expand_components(cfg: Config, model: str, components: Sequence[str]) -> list[str]:
    """Components as given, with ``heads`` standing for every head "L:H" of ``model`` (L2, L2-s2: two
    layers of the profile's heads; L0 has none)."""
    n_layers = ModelName.parse(model).n_layers
    out: list[str] = []
    for c in components:
        out += head_names(n_layers, cfg.model.n_heads) if c == HEADS else [c]
    return list(dict.fromkeys(out))


def make_groups(run: Run, models: Sequence[str], steps: Sequence[int | str] | str,
                components: Sequence[str], datas: Sequence[str], stride: int = 1) -> list[Group]:
    """The grid models × steps × distributions, each group holding every component; steps are
    "all", "last" or a list (checked against each model's checkpoints), of which every
    ``stride``-th is kept (the first and last always)."""
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    cfg = run.cfg
    if not components or not datas or not models:
        raise ValueError("a grid needs at least one model, one component and one distribution")
    groups = []
    for m in models:
        comps = tuple(expand_components(cfg, m, components))
        if not comps:
            raise ValueError(f"{m} has no heads; name its components (e.g. full)")
        have = resolve_steps(run, m, steps)
        kept = sorted(set(have[::stride]) | {have[0], have[-1]}) if have else []
        groups += [Group(m, s, d, comps) for s, d in itertools.product(kept, datas)]
    return groups


def failed_dir(run: Run) -> Path:
    return run.path / "llc" / "failed"


def events_dir(run: Run) -> Path:
    return run.path / "llc" / "events"


def status(run: Run, groups: Sequence[Group], settings: SamplerConfig | None = None) -> pd.DataFrame:
    """Per group: estimates in the grid, done (a record exists), failed (no record, an error logged)
    and missing (neither), and a state: done, failed, partial or missing. Runs nothing."""
    settings = settings or run.cfg.sampler
    have = {p.stem for p in records_dir(run).glob("*.json")}
    failed = {p.stem for p in failed_dir(run).glob("*.json")}
    rows = []
    for g in groups:
        keys = [record_key(run, job, settings) for job in g.jobs()]
        done = sum(k in have for k in keys)
        fail = sum(k in failed and k not in have for k in keys)
        missing = len(keys) - done - fail
        state = "done" if done == len(keys) else "failed" if fail else "partial" if done else "missing"
        rows.append({"model": g.model, "step": g.step, "data": g.data, "estimates": len(keys), "done": done,
                     "failed": fail, "missing": missing, "state": state})
    return pd.DataFrame(rows, columns=["model", "step", "data", "estimates", "done", "failed", "missing", "state"])


def pending(run: Run, groups: Sequence[Group], settings: SamplerConfig | None = None) -> list[Group]:
    """The groups that still lack a record."""
    table = status(run, groups, settings)
    return [g for g, state in zip(groups, table["state"], strict=True) if state != "done"]


def task_threads() -> int | None:
    """The CPUs a cluster task was given (SLURM's ``SLURM_CPUS_PER_TASK``), None outside one."""
    value = os.environ.get("SLURM_CPUS_PER_TASK")
    return int(value) if value and value.isdigit() else None


def run_group(run: Run, group: Group, settings: SamplerConfig | None = None, device: str = "auto",
              progress: bool = False) -> dict[str, Any]:
    """Compute every estimate of ``group`` that has no record yet (the paired reference once,
    first); skip the others. An estimate that raises is logged under ``failed/`` and the group
    goes on; the task raises at the end if any failed. Returns counts (computed, cut from longer
    estimates, skipped, failed)."""
    ctx = SweepContext(run, settings or run.cfg.sampler, resolve_device(device))
    threads = task_threads()
    if threads:
        torch.set_num_threads(threads)  # without cgroups a task would otherwise use every core of the node
    keys = {job: record_key(run, job, ctx.settings) for job in group.jobs()}
    todo, cut = missing_jobs(run, group.jobs(), ctx.settings, keys)  # cut: contained in longer estimates
    counts = {"computed": 0, "skipped": len(keys) - len(todo) - len(cut), "cut": len(cut), "failed": 0}
    errors = []
    # on a GPU the group's components go through batched passes; elsewhere one after another
    plan = pass_plan(run.cfg, ctx.settings, ctx.device, {j.model for j in todo}) if ctx.device.type == "cuda" and todo \
        else None
    chunks = batchable(todo, plan.components) if plan else [[job] for job in todo]
    for chunk in chunks:
        try:
            paired_baseline(ctx, chunk[0])
            run_chunk(ctx, chunk, chains_per_pass=plan.chains if plan else None)
        except Exception as err:  # noqa: BLE001 - one estimate's failure must not lose the group's others
            counts["failed"] += len(chunk)
            errors += [f"{job.component}: {err}" for job in chunk]
            for job in chunk:
                write_json(failed_dir(run) / f"{keys[job]}.json",
                           {"job": job.__dict__, "error": repr(err), "traceback": traceback.format_exc(),
                            "time": time.time()})
            continue
        for job in chunk:
            counts["computed"] += 1
            _log_finished(run, keys[job], group, job)
    if errors:
        raise RuntimeError(f"{group.name}: {len(errors)} estimate(s) failed: " + "; ".join(errors[:3]))
    return counts


def _log_finished(run: Run, key: str, group: Group, job: Job) -> None:
    """Clear the estimate's failure (if any) and log that it was finished, by whom."""
    (failed_dir(run) / f"{key}.json").unlink(missing_ok=True)
    write_json(events_dir(run) / f"{key}.{socket.gethostname()}.{os.getpid()}.{time.time_ns()}.json",
               {"key": key, "group": group.name, "component": job.component, "host": socket.gethostname(),
                "pid": os.getpid(), "task": os.environ.get("SLURM_ARRAY_TASK_ID"),
                "job": os.environ.get("SLURM_JOB_ID"), "time": time.time()})


def finished_events(run: Run) -> pd.Series:
    """How many times each record's estimate was finished, by key (from the events log)."""
    names = [p.name.split(".")[0] for p in events_dir(run).glob("*.json")]
    return pd.Series(names, dtype=str).value_counts()
