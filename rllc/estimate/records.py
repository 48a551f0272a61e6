"""Cached LLC estimates on disk: the record of each estimate, its key, and the tables made from them.

Every estimate is stored as one JSON record under ``<run>/llc/records/<key>.json`` (written
atomically), where the key hashes everything that changes its number: the model's identity,
the checkpoint, the component, the distribution (and its token dataset), every sampler
setting, and the estimator's version (``rllc.estimate.sgld.ESTIMATOR_VERSION``: a change to the
sampler or its losses bumps it, and older records are then recomputed, never reused). Each record
carries its provenance (package version, git commit, torch version, device).

A record whose chains ran one after another is also indexed by its *family* (its key less the
numbers of chains and draws): an estimate with fewer chains or draws is cut from it
(``prefix_result``) instead of being sampled again. The tidy tables (``llc_estimates``,
``llc_chains``, ``llc_traces``) are assembled from the records (``collect``).

Distributions: a token split of the run ("train", "test", or a held-out domain such as
"python_tests"), or ``model:<name>[@<step>]``: a generator model of the same run (default its
last checkpoint) whose predictions on training contexts replace the next-token targets (eq. 11).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from .. import provenance
from ..config import SamplerConfig, config_hash
from ..data import tokens as tokens_mod
from ..io import read_json, write_json, write_table
from ..run import Run, identity, open_run
from . import sgld
from .result import PASS_SEQUENTIAL, LLCResult, make_result, select_draws
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


def resolve_steps(run: Run, model: str, steps: Iterable[int | str] | str) -> list[int]:
    """Checkpoint steps: "all", "last", or a list (each int or "last"); unknown steps are an error."""
    have = run.steps(model)
    if not have:
        raise FileNotFoundError(f"no checkpoints of {model} in {run.path}; train it first")
    if isinstance(steps, str):
        steps = have if steps == "all" else [steps]
    out = []
    for s in steps:
        s = have[-1] if s == "last" else int(s)
        if s not in have:
            raise KeyError(f"no checkpoint at step {s} for {model}; have {have[0]}..{have[-1]} ({len(have)} steps)")
        out.append(s)
    return out


def _generator_key(run: Run, data: str) -> dict[str, Any] | None:
    """What a generator distribution depends on: the generator's identity and its checkpoint
    ("model:L1" means its last one, resolved here so that training it further changes the key)."""
    gen = parse_generator(data)
    if gen is None:
        return None
    (step,) = resolve_steps(run, gen[0], [gen[1]])
    return {"identity": identity(run.cfg, gen[0]), "step": step}


def _key_parts(run: Run, job: Job, sampler: dict[str, Any]) -> dict[str, Any]:
    cfg = run.cfg
    return {
        "identity": identity(cfg, job.model), "step": job.step, "component": job.component.replace(" ", "").lower(),
        "data": job.data, "tokens": tokens_mod.tokens_key(cfg),
        "generator": _generator_key(run, job.data),
        "sampler": sampler, "estimator": sgld.ESTIMATOR_VERSION,
    }


def record_key(run: Run, job: Job, settings: SamplerConfig) -> str:
    return config_hash(_key_parts(run, job, asdict(settings)), n=16)


def family_key(run: Run, job: Job, settings: SamplerConfig) -> str:
    """The record key less the numbers of chains and draws: an estimate of one family can be cut
    from any record of it with at least as many chains and draws (``prefix_result``)."""
    sampler = {k: v for k, v in asdict(settings).items() if k not in PREFIX_SETTINGS}
    return config_hash({**_key_parts(run, job, sampler), "family": True}, n=16)


def records_dir(run: Run) -> Path:
    return run.path / "llc" / "records"


def prefixes_dir(run: Run) -> Path:
    """An index of the records estimates can be cut from: one empty file per record whose chains
    ran one after another, named ``<family key>.<chains>.<draws>.<record key>``."""
    return run.path / "llc" / "prefixes"


def write_record(run: Run, job: Job, settings: SamplerConfig, result: LLCResult, dev: torch.device) -> str:
    """Write an estimate's record (atomically) and, for one whose chains ran one after another
    (on a CPU), its entry in the prefix index (vmapped chains on a GPU share their sums' order
    across chains, so only sequential records are cut from). Returns the key."""
    key = record_key(run, job, settings)
    write_json(records_dir(run) / f"{key}.json", _record(job, result, key, dev))
    if result.meta.get("pass") == PASS_SEQUENTIAL and "derived_from" not in result.meta:
        index = prefixes_dir(run)
        index.mkdir(parents=True, exist_ok=True)
        (index / f"{family_key(run, job, settings)}.{settings.chains}.{settings.draws}.{key}").touch()
    return key


def prefix_index(run: Run) -> dict[str, list[tuple[int, int, str]]]:
    """Family key -> [(chains, draws, record key)] of every indexed record."""
    out: dict[str, list[tuple[int, int, str]]] = {}
    index = prefixes_dir(run)
    if index.is_dir():
        for entry in index.iterdir():
            parts = entry.name.split(".")
            if len(parts) == 4:
                out.setdefault(parts[0], []).append((int(parts[1]), int(parts[2]), parts[3]))
    return out


def derive_records(run: Run, jobs: Sequence[Job], settings: SamplerConfig) -> list[Job]:
    """Write the records of ``jobs`` that can be cut from longer estimates already computed (same
    everything but at least as many chains and draws: ``prefix_result``, bit-identical to
    computing them); return the jobs so done. Each such record names its source (``derived_from``)."""
    index = prefix_index(run) if jobs else {}
    if not index:
        return []
    done = []
    for job in jobs:
        family = index.get(family_key(run, job, settings), [])
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
            write_record(run, job, settings, result, torch.device("cpu"))  # a cut record is not indexed
            done.append(job)
            break
    return done


def missing_jobs(run: Run, jobs: Sequence[Job], settings: SamplerConfig,
                 keys: dict[Job, str]) -> tuple[list[Job], list[Job]]:
    """(jobs to compute, jobs just cut from longer estimates) among ``jobs`` without a record."""
    absent = [job for job in jobs if not (records_dir(run) / f"{keys[job]}.json").exists()]
    cut = derive_records(run, absent, settings)
    return [job for job in absent if job not in cut], cut


def baselines_dir(run: Run) -> Path:
    return run.path / "llc" / "baselines"


def baseline_key(run: Run, job: Job, settings: SamplerConfig) -> str:
    """What the paired reference depends on: the model and checkpoint, the data and its batches."""
    return config_hash({
        "identity": identity(run.cfg, job.model), "step": job.step, "data": job.data,
        "tokens": tokens_mod.tokens_key(run.cfg), "generator": _generator_key(run, job.data),
        "batch_size": settings.batch_size, "feeds": sgld.feed_seeds(settings), "steps": n_steps(settings),
        "estimator": sgld.ESTIMATOR_VERSION,
    }, n=16)


PREFIX_SETTINGS = ("chains", "draws")  # the settings a shorter estimate may differ in from the record it is cut from


def prefix_result(record: dict[str, Any], settings: SamplerConfig) -> LLCResult | None:
    """The estimate under ``settings`` cut from the record of a longer one: its first
    ``settings.chains`` chains, each to its first ``settings.draws`` draws.

    Chain c's batches and noise are seeded by the sampler's seed and c alone and each chain runs
    on its own, so the estimate with fewer chains or draws (all other settings equal) sees exactly
    the first chains and steps of the longer one: its per-chain values, flags and summary are
    recomputed here from those traces and references by ``make_result``, bit-identical to running
    it (a test checks it). None when the record cannot give it: fewer chains or draws, other
    settings, or (reference "init") no per-chain L(w*) stored. The time is the record's, scaled
    to the number of chain-steps."""
    src = record.get("settings", {})
    want = asdict(settings)
    if any(src.get(k) != v for k, v in want.items() if k not in PREFIX_SETTINGS):
        return None
    if src.get("chains", 0) < settings.chains or src.get("draws", 0) < settings.draws:
        return None
    chains, steps = settings.chains, n_steps(settings)
    traces = np.asarray(record["traces"], dtype=float)[:chains, :steps]
    baseline = None
    if settings.reference == "paired":
        if record.get("baseline") is None:
            return None
        baseline = np.asarray(record["baseline"], dtype=float)[:chains, :steps]
        l0: float | np.ndarray = float(select_draws(baseline, settings.burnin, settings.steps_between_draws,
                                                    settings.draws).mean())
    elif record.get("chain_init_loss") is not None:
        l0 = np.asarray(record["chain_init_loss"], dtype=float)[:chains]
    else:
        return None
    if traces.shape != (chains, steps):
        return None
    src_steps = src["burnin"] + src["draws"] * src["steps_between_draws"]
    seconds = float(record.get("seconds", 0.0)) * (chains * steps) / (src["chains"] * src_steps)
    result = make_result(traces, l0, settings, int(record["n_weights"]), component=record.get("component", ""),
                         data=record.get("data", ""), seconds=seconds, baseline=baseline)
    result.meta["pass"] = record.get("pass", PASS_SEQUENTIAL)
    return result


def _record(job: Job, result: LLCResult, key: str, device: torch.device) -> dict[str, Any]:
    rec = result.to_dict(traces=True)
    rec.update({"key": key, "model": job.model, "step": job.step, "component": job.component, "data": job.data,
                "estimator_version": sgld.ESTIMATOR_VERSION, "provenance": provenance.provenance(device)})
    return rec


def load_records(run: Run, keys: Iterable[str] | None = None) -> list[dict[str, Any]]:
    d = records_dir(run)
    files = [d / f"{k}.json" for k in keys] if keys is not None else sorted(d.glob("*.json"))
    return [read_json(f) for f in files]


def collect(run: Run | str | Path, keys: Iterable[str] | None = None, write: bool = True) -> pd.DataFrame:
    """The tidy estimates table (one row per estimate; only ``keys`` if given) from cached records.

    Also (re)writes the ``llc_estimates``, ``llc_chains`` and ``llc_traces`` tables under
    ``<run>/tables`` from every record the run has.
    """
    run = open_run(run)
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


def _tables(run: Run, records: list[dict[str, Any]], write: bool) -> pd.DataFrame:
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
        tables = run.tables
        write_table(table, tables / "llc_estimates.parquet")
        write_table(pd.DataFrame(chains), tables / "llc_chains.parquet")
        write_table(_traces_table(records), tables / "llc_traces.parquet")
    return table


