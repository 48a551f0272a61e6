"""Sweeps are cached, keyed by every setting, and resumable; stages; the llc command line."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from rllc.analysis.stages import critical_points, stages
from rllc.config import SamplerConfig
from rllc.data import tokens as tokens_mod
from rllc.estimate import records, sweep
from rllc.run import open_run
from rllc.train import train_model

FAST = SamplerConfig(chains=2, draws=6, burnin=2, batch_size=4, init_loss_batches=2)


@pytest.fixture()
def trained_run(tiny_cfg, ci_prepared, run_dir):
    train_model(tiny_cfg, "L1", run_dir, progress=False)
    train_model(tiny_cfg, "L2", run_dir, progress=False)
    return run_dir


def test_sweep_is_cached_resumable_and_keyed_by_settings(trained_run, monkeypatch) -> None:
    calls = []
    real = sweep.estimate_llc

    def counting(*args, **kwargs):
        calls.append(args[1])
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed midway through the third estimate
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "estimate_llc", counting)
    jobs = dict(models=["L2"], steps=[0, 24], components=["0:1", "full"], datas=["train"], settings=FAST,
                progress=False)
    with pytest.raises(KeyboardInterrupt):
        sweep.run_sweep(trained_run, **jobs)
    assert len(list(records.records_dir(open_run(trained_run)).glob("*.json"))) == 2  # two finished, nothing partial

    calls.clear()
    monkeypatch.setattr(sweep, "estimate_llc", real)
    table = sweep.run_sweep(trained_run, **jobs)
    assert len(table) == 4 and set(table["component"]) == {"0:1", "full"}
    again = sweep.run_sweep(trained_run, **jobs)  # nothing left to do: identical numbers
    np.testing.assert_array_equal(again["llc_mean"].to_numpy(), table["llc_mean"].to_numpy())

    other = sweep.run_sweep(trained_run, **{**jobs, "steps": [24], "components": ["full"],
                                            "settings": SamplerConfig(**{**FAST.__dict__, "nbeta": 10.0})})
    assert len(other) == 1 and other["sampler_nbeta"].iloc[0] == 10.0
    assert len(list(records.records_dir(open_run(trained_run)).glob("*.json"))) == 5  # a new setting is a new record
    written = records.collect(open_run(trained_run))
    assert len(written) == 5 and (trained_run / "tables" / "llc_traces.parquet").exists()


@pytest.mark.parametrize("reference", ["paired", "init"])
def test_shorter_estimates_are_cut_from_longer_ones_bit_for_bit(trained_run, monkeypatch, reference) -> None:
    long = dataclasses.replace(FAST, chains=3, draws=8, reference=reference)
    short = dataclasses.replace(long, chains=2, draws=5)
    jobs = dict(models=["L2"], steps=[24], components=["1:0", "full"], datas=["train"], progress=False)
    sweep.run_sweep(trained_run, settings=long, **jobs)
    real, calls = sweep.estimate_llc, []

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(sweep, "estimate_llc", counting)
    cut = sweep.run_sweep(trained_run, settings=short, **jobs)
    assert calls == []  # nothing sampled: both cut from the longer records
    cut_records = {r["component"]: r for r in records.load_records(open_run(trained_run), cut["key"])}
    assert all(r["derived_from"] for r in cut_records.values())
    # the same estimates sampled from scratch, with the index of longer records gone
    for key in cut["key"]:
        (records.records_dir(open_run(trained_run)) / f"{key}.json").unlink()
    shutil.rmtree(records.prefixes_dir(open_run(trained_run)))
    direct = sweep.run_sweep(trained_run, settings=short, **jobs)
    assert sorted(calls) == ["1:0", "full"]
    for rec in records.load_records(open_run(trained_run), direct["key"]):
        other = cut_records[rec["component"]]
        assert "derived_from" not in rec
        for name in ("mean", "std", "sem", "per_chain", "flags", "n_ok", "init_loss", "traces", "baseline",
                     "chain_init_loss", "n_weights", "settings", "key"):
            assert other.get(name) == rec.get(name), name
    # more chains but fewer draws, or another setting, cannot give an estimate: it is sampled
    calls.clear()
    sweep.run_sweep(trained_run, settings=dataclasses.replace(long, chains=2, draws=10), **jobs)
    sweep.run_sweep(trained_run, settings=dataclasses.replace(short, nbeta=10.0), **jobs)
    assert len(calls) == 4


def test_generator_distribution_and_bad_names(trained_run) -> None:
    table = sweep.run_sweep(trained_run, ["L2"], ["last"], ["1:0"], ["model:L1"], FAST, progress=False)
    assert table["data"].tolist() == ["model:L1"] and np.isfinite(table["init_loss"]).all()
    with pytest.raises(KeyError, match="valid"):
        sweep.run_sweep(trained_run, ["L2"], ["last"], ["full"], ["wikipedia"], FAST, progress=False)
    with pytest.raises(KeyError, match="no checkpoint at step 5"):
        sweep.run_sweep(trained_run, ["L2"], [5], ["full"], ["train"], FAST, progress=False)


def test_llc_command_prints_one_estimate_as_json(trained_run, capsys) -> None:
    from rllc import cli

    args = ["llc", "--run-dir", str(trained_run), "--component", "1:0+1:1", "--data", "test", "--chains", "2",
            "--draws", "4", "--batch-size", "4", "--init-loss-batches", "2", "--quiet"]
    capsys.readouterr()
    cli.main(args)  # the command line's own entry, in this process (a new interpreter costs ~6 s of imports)
    result = json.loads(capsys.readouterr().out)
    assert result["component"] == "1:0+1:1" and result["step"] == 24 and len(result["per_chain"]) == 2
    assert result["settings"]["draws"] == 4 and result["settings"]["epsilon"] == 1e-3
    cmd = [sys.executable, "-m", "rllc.cli", *args[:4]]  # up to --component
    bad = subprocess.run([*cmd, "9:9"], capture_output=True, text=True)  # a real process: what a user sees
    assert "Traceback" not in bad.stderr
    assert bad.returncode != 0 and "valid: full" in bad.stderr


def test_stages_sit_at_the_critical_points_of_a_curve() -> None:
    steps = [0, 100, *range(300, 50_001, 400)]
    ref = [(0, 120.0), (900, 150.0), (6500, 172.0), (8500, 168.0), (17500, 179.5), (50_000, 181.0)]
    x, y = zip(*ref, strict=True)
    curve = np.interp(steps, x, y)
    points = critical_points(steps, curve)
    kinds = dict(zip(points["step"], points["kind"], strict=True))
    maxima = [s for s, k in kinds.items() if k == "maximum"]
    minima = [s for s, k in kinds.items() if k == "minimum"]
    assert len(maxima) == 1 and abs(maxima[0] - 6500) <= 800
    assert len(minima) == 1 and abs(minima[0] - 8500) <= 800
    table = stages(steps, curve)
    assert table["stage"].tolist()[:3] == ["LM1", "LM2", "LM3"]
    assert table["start"].iloc[0] == 0 and table["end"].iloc[-1] == steps[-1]
    assert (table["end"] > table["start"]).all()
    assert table.loc[1, "trend"] == "falling"  # the dip between the maximum and the minimum
    flat = stages(steps, np.full(len(steps), 3.0))
    assert len(flat) == 1  # no critical points: one stage


def test_parallel_workers_write_the_same_records(trained_run) -> None:
    jobs = dict(models=["L2"], steps=[8, 24], components=["1:0", "0:1", "full"], datas=["train"], settings=FAST,
                progress=False)
    parallel = sweep.run_sweep(trained_run, **jobs, workers=2)
    assert len(parallel) == 6 and parallel["llc_mean"].notna().all()
    for f in records.records_dir(open_run(trained_run)).glob("*.json"):
        f.unlink()
    serial = sweep.run_sweep(trained_run, **jobs)
    assert serial["key"].tolist() == parallel["key"].tolist()
    # same seeds and batches; only the thread count (summation order) differs
    np.testing.assert_allclose(serial["llc_mean"], parallel["llc_mean"], rtol=1e-3, atol=1e-4)
    with pytest.raises(ValueError, match="workers"):
        sweep.run_sweep(trained_run, **jobs, workers=0)


def test_paired_reference_is_computed_once_per_checkpoint_and_distribution(trained_run) -> None:
    from rllc.estimate.llc import estimate_llc
    from rllc.run import load_model

    settings = SamplerConfig(**{**FAST.__dict__, "reference": "paired"})
    table = sweep.run_sweep(trained_run, ["L2"], [24], ["1:0", "0:1", "full"], ["train", "test"], settings,
                            progress=False)
    assert len(table) == 6
    files = sorted(records.baselines_dir(open_run(trained_run)).glob("*.json"))
    assert len(files) == 2  # one per (checkpoint, distribution), not one per component
    stored = {json.loads(f.read_text())["data"]: json.loads(f.read_text())["losses"] for f in files}
    for rec in records.load_records(open_run(trained_run)):
        assert rec["baseline"] == stored[rec["data"]]
    assert stored["train"] != stored["test"]
    # the shared reference (plain loss) equals what a head's estimate computes on its own (fused head loss)
    model = load_model(trained_run, "L2", 24)
    tokens = tokens_mod.load_tokens(open_run(trained_run).cfg, "train")
    alone = estimate_llc(model, "0:1", tokens, settings)
    np.testing.assert_allclose(alone.baseline, stored["train"], rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="baseline"):
        estimate_llc(model, "0:1", tokens, settings, baseline=np.zeros(3))


def test_records_carry_provenance_and_a_version_bump_recomputes(trained_run, monkeypatch) -> None:
    from rllc import provenance
    from rllc.estimate import sgld

    jobs = dict(models=["L2"], steps=[24], components=["1:0"], datas=["train"], settings=FAST, progress=False)
    sweep.run_sweep(trained_run, **jobs)
    (rec,) = records.load_records(open_run(trained_run))
    assert rec["estimator_version"] == sgld.ESTIMATOR_VERSION
    assert rec["provenance"]["package_version"] == provenance.package_version()
    assert rec["provenance"]["device"] == "cpu" and rec["provenance"]["torch"]

    calls = []
    real = sweep.estimate_llc
    monkeypatch.setattr(sweep, "estimate_llc", lambda *a, **k: calls.append(a[1]) or real(*a, **k))
    sweep.run_sweep(trained_run, **jobs)
    assert calls == []  # cached
    monkeypatch.setattr(sgld, "ESTIMATOR_VERSION", sgld.ESTIMATOR_VERSION + 1)
    table = sweep.run_sweep(trained_run, **jobs)
    assert calls == ["1:0"]  # a new estimator version never reuses an old record
    assert table["estimator_version"].tolist() == [sgld.ESTIMATOR_VERSION]
    assert len(records.load_records(open_run(trained_run))) == 2


def test_a_generator_trained_further_is_a_new_distribution(trained_run, tiny_cfg) -> None:
    from rllc import config

    jobs = dict(models=["L2"], steps=[24], components=["1:0"], datas=["model:L1"], settings=FAST, progress=False)
    first = sweep.run_sweep(trained_run, **jobs)
    longer = config.load_config("ci", {"train": {"steps": {"L0": 12, "L1": 20, "L2": 24},
                                                 "checkpoints": [{"start": 0, "stop": 24, "every": 8}],
                                                 "resume_every": 4, "log_every": 2}})
    train_model(longer, "L1", trained_run, progress=False)  # another length: used, with a line saying so
    second = sweep.run_sweep(trained_run, **jobs)  # "model:L1" now means L1 at step 20, not 12
    assert first["key"].item() != second["key"].item()
    assert len(records.load_records(open_run(trained_run))) == 2


def test_traces_table_matches_one_frame_per_chain() -> None:
    """The vectorised traces table equals the plain construction (one DataFrame per chain)."""
    import pandas as pd

    rng = np.random.default_rng(0)
    made = [{"key": f"k{i}", "model": m, "step": s, "component": c, "data": d,
                "traces": rng.normal(size=(chains, steps)).tolist()}
               for i, (m, s, c, d, chains, steps) in enumerate([
                   ("L2", 0, "full", "train", 3, 5), ("L2-s2", 100, "1:0", "python_tests", 2, 7),
                   ("L2", 100, "1:0", "train", 1, 1), ("L1", 7, "0:1+0:2", "model:L1", 4, 3)])]
    plain = pd.concat([pd.DataFrame({"key": r["key"], "model": r["model"], "step": r["step"],
                                     "component": r["component"], "data": r["data"], "chain": c,
                                     "sgld_step": np.arange(len(t)), "loss": t})
                       for r in made for c, t in enumerate(np.asarray(r["traces"]))], ignore_index=True)
    fast = records._traces_table(made)
    for col in ("key", "model", "component", "data"):
        fast[col] = fast[col].astype(str)
    pd.testing.assert_frame_equal(fast, plain, check_dtype=False)
    assert records._traces_table([]).empty
