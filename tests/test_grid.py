"""Sweep grids: groups, status, a group's task (skips, failures, events), and `rllc sweep`."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from rllc.config import SamplerConfig, load_config
from rllc.estimate import grid, passes, records, sweep
from rllc.run import Run, open_run
from rllc.train import train_model

FAST = SamplerConfig(chains=2, draws=6, burnin=2, batch_size=4, init_loss_batches=2)
SAMPLER_FLAGS = ["--chains", "2", "--draws", "6", "--burnin", "2", "--batch-size", "4", "--init-loss-batches", "2"]


@pytest.fixture()
def trained_run(tiny_cfg, ci_prepared, run_dir):
    train_model(tiny_cfg, "L2", run_dir, progress=False)
    return run_dir


def _sweep(run, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rllc.cli", "sweep", "--run-dir", str(run), "--quiet", *SAMPLER_FLAGS, *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def _sweep_here(capsys, run, *args: str) -> subprocess.CompletedProcess:
    """`rllc sweep` through the command line's own entry (``cli.main(argv)``) in this process: the
    same parsing, checks and messages as ``_sweep``, without a new interpreter's ~6 s of imports."""
    from rllc import cli

    capsys.readouterr()
    code = 0
    try:
        cli.main(["sweep", "--run-dir", str(run), "--quiet", *SAMPLER_FLAGS, *args])
    except SystemExit as stop:  # the parser's exit on a user error, with its one-line message
        code = stop.code if isinstance(stop.code, int) else 1
    out = capsys.readouterr()
    return subprocess.CompletedProcess(["rllc", "sweep", *args], code, out.out, out.err)


def test_groups_expand_heads_per_model_and_stride_keeps_the_ends(trained_run) -> None:
    groups = grid.make_groups(open_run(trained_run), ["L2"], "all", ["full", "heads"], ["train", "test"], stride=2)
    steps = sorted({g.step for g in groups})
    assert steps == [0, 16, 24]  # every 2nd of 0, 8, 16, 24, and the last
    assert len(groups) == 6 and groups[0].components == ("full", "0:0", "0:1", "0:2", "0:3", "1:0", "1:1", "1:2", "1:3")
    assert groups[0].name == "L2@0/train"
    with pytest.raises(ValueError, match="stride"):
        grid.make_groups(open_run(trained_run), ["L2"], "all", ["full"], ["train"], stride=0)
    with pytest.raises(KeyError, match="no checkpoint at step"):
        grid.make_groups(open_run(trained_run), ["L2"], [5], ["full"], ["train"])


def test_run_group_skips_records_logs_failures_and_events(trained_run) -> None:
    (group,) = grid.make_groups(open_run(trained_run), ["L2"], [24], ["full", "1:0"], ["train"])
    before = grid.status(open_run(trained_run), [group], FAST)
    assert before[["done", "failed", "missing", "state"]].values.tolist() == [[0, 0, 2, "missing"]]
    sweep.run_sweep(trained_run, ["L2"], [24], ["1:0"], ["train"], FAST, progress=False)  # one of the two exists
    assert grid.status(open_run(trained_run), [group], FAST)["state"].tolist() == ["partial"]
    counts = grid.run_group(open_run(trained_run), group, FAST)
    assert counts == {"computed": 1, "skipped": 1, "cut": 0, "failed": 0}
    assert grid.status(open_run(trained_run), [group], FAST)["state"].tolist() == ["done"]
    assert grid.run_group(open_run(trained_run), group, FAST) == {"computed": 0, "skipped": 2, "cut": 0, "failed": 0}
    events = grid.finished_events(open_run(trained_run))
    assert events.sum() == 1 and events.max() == 1  # only the estimate this task computed

    bad = grid.Group("L2", 24, "train", ("0:1", "7:7"))  # a head the model lacks fails; the other is computed
    with pytest.raises(RuntimeError, match="1 estimate"):
        grid.run_group(open_run(trained_run), bad, FAST)
    table = grid.status(open_run(trained_run), [bad], FAST)
    assert table[["done", "failed", "missing", "state"]].values.tolist() == [[1, 1, 0, "failed"]]
    (logged,) = grid.failed_dir(open_run(trained_run)).glob("*.json")
    assert "7:7" in json.loads(logged.read_text())["job"]["component"]


def test_sweep_command_runs_a_grid_once_and_reports_it(trained_run, capsys) -> None:
    args = ["--steps", "8", "24", "--components", "full", "1:1", "--data", "train", "--workers", "1"]
    status = _sweep_here(capsys, trained_run, *args, "--status")
    assert status.returncode == 0, status.stderr
    assert "2 groups (2 missing); 0 of 4 estimates done" in status.stdout
    first = _sweep_here(capsys, trained_run, *args)
    assert first.returncode == 0, first.stderr
    made = sorted(p.name for p in records.records_dir(open_run(trained_run)).glob("*.json"))
    assert len(made) == 4
    second = _sweep_here(capsys, trained_run, *args)
    assert "nothing to do" in second.stdout
    assert sorted(p.name for p in records.records_dir(open_run(trained_run)).glob("*.json")) == made
    done = _sweep_here(capsys, trained_run, *args, "--status")
    assert "2 groups (2 done); 4 of 4 estimates done, 0 failed, 0 missing" in done.stdout
    # the records are the ones the notebooks' run_sweep would make
    settings = dataclasses.replace(open_run(trained_run).cfg.sampler, chains=2, draws=6, burnin=2, batch_size=4,
                                   init_loss_batches=2)  # the run's sampler with the flags above
    table = sweep.run_sweep(trained_run, ["L2"], [8, 24], ["full", "1:1"], ["train"], settings, progress=False)
    assert sorted(f"{k}.json" for k in table["key"]) == made
    collected = _sweep_here(capsys, trained_run, *args, "--collect")
    assert "4 estimates" in collected.stdout
    bad = _sweep(trained_run, "--steps", "5")  # a real process: the message and status a user sees
    assert bad.returncode == 2 and "Traceback" not in bad.stderr and "no checkpoint at step 5" in bad.stderr
    # a cluster's option on a local sweep is refused, not ignored
    local = _sweep_here(capsys, trained_run, "--steps", "8", "--partition", "gpu", "--time", "30")
    assert local.returncode == 2 and "Traceback" not in local.stderr
    assert "--partition, --time: for --executor slurm only" in local.stderr


def test_slurm_executor_names_its_extra_and_checks_options(trained_run, monkeypatch) -> None:
    from rllc.estimate import slurm

    monkeypatch.setitem(sys.modules, "submitit", None)  # as if not installed
    with pytest.raises(ValueError, match=r"pip install -e '\.\[cluster\]'"):
        slurm._submitit()
    with pytest.raises(ValueError, match="--time"):
        slurm.SlurmOptions(time_min=0).check()
    with pytest.raises(ValueError, match="requeue signal"):
        slurm.SlurmOptions(time_min=1, signal_delay_s=90).check()
    with pytest.raises(ValueError, match="--max-requeues"):
        slurm.SlurmOptions(max_requeues=-1).check()


def test_a_task_requeues_itself_with_its_group() -> None:
    submitit = pytest.importorskip("submitit")
    from rllc.estimate import slurm

    group = grid.Group("L2", 24, "train", ("full",))
    task = slurm.GroupTask("/somewhere", FAST)
    again = task.checkpoint(group)
    assert isinstance(again, submitit.helpers.DelayedSubmission)
    assert again.function is task and again.args == (group,)


def test_batched_pass_of_a_group_writes_the_records_a_sequential_sweep_would(trained_run, tmp_path) -> None:
    """What a GPU task runs (one batched pass per chunk of a group), run here on CPU: the same
    record keys as the sequential sweep, traces equal up to float reassociation."""
    import shutil

    import numpy as np
    import torch

    jobs = [records.Job("L2", 24, c, "train") for c in ("full", "0:1", "1:0", "1:3")]
    chunks = passes.batchable([*jobs, records.Job("L2", 24, "0:0", "model:L2"), records.Job("L2", 8, "full", "train")],
                             size=3)
    assert [len(c) for c in chunks] == [1, 3, 1, 1]  # the generator job alone; 4 jobs of a group in 3 + 1
    other = tmp_path / "copy"
    shutil.copytree(trained_run, other)
    settings = dataclasses.replace(FAST, reference="paired")
    ctx = sweep.SweepContext(open_run(trained_run), settings, torch.device("cpu"))
    sweep.run_jobs_batched(ctx, jobs)
    sequential = sweep.run_sweep(other, ["L2"], [24], [j.component for j in jobs], ["train"], settings, progress=False)
    batched = {r["key"]: r for r in records.load_records(open_run(trained_run))}
    assert sorted(batched) == sorted(sequential["key"])
    for rec in records.load_records(open_run(other)):
        np.testing.assert_allclose(batched[rec["key"]]["traces"], rec["traces"], rtol=0, atol=1e-5)
        # each record says how it ran; only the sequential ones index themselves to be cut from
        assert (batched[rec["key"]]["pass"], rec["pass"]) == ("components x chains vmapped (4 components)",
                                                              "chains one after another")
    indexed = {p.name.split(".")[-1] for p in records.prefixes_dir(open_run(trained_run)).glob("*")}
    assert indexed.isdisjoint(batched)
    with pytest.raises(ValueError, match="one model, checkpoint and distribution"):
        sweep.run_jobs_batched(ctx, [jobs[0], records.Job("L2", 8, "full", "train")])


def test_a_batched_pass_holds_what_device_memory_allows() -> None:
    """The closed form of ``sequence_bytes`` at the paper's shape, and the plans it gives."""
    per_seq = passes.sequence_bytes(2, 8, 1024, 5000)
    logits = 1024 * 5000 * 4 * passes.LOGIT_COPIES
    attention = 2 * 8 * 1024 * 1024 * 4 * passes.ATTENTION_COPIES
    assert per_seq == logits + attention == 618_790_912
    assert passes.sequence_bytes(0, 8, 1024, 5000) == logits  # L0: no attention maps
    paper = SamplerConfig(chains=4, batch_size=32)  # one component: 128 sequences, 79.2 GB
    assert passes.plan_passes(2, 8, 1024, 5000, paper, free_bytes=141 * 10**9) == passes.PassPlan(1, 3)  # an H200
    assert passes.plan_passes(2, 8, 1024, 5000, paper, free_bytes=80 * 10**9) == passes.PassPlan(1, 2)  # an H100
    # never fewer than one chain a pass
    assert passes.plan_passes(2, 8, 1024, 5000, paper, free_bytes=10**9) == passes.PassPlan(1, 1)
    assert passes.plan_passes(2, 8, 1024, 5000, paper, free_bytes=400 * 10**9) == passes.PassPlan(2, 4)  # whole ones
    small = SamplerConfig(chains=3, batch_size=8)
    assert passes.plan_passes(2, 8, 256, 320, small, 80 * 10**9) == passes.PassPlan(17, 3)  # the cap


def test_a_pass_that_runs_out_of_gpu_memory_is_split_until_it_fits(monkeypatch) -> None:
    """A fake device that holds at most 2 chain-components a pass (the out-of-memory error torch
    raises, raised by a stand-in for the passes): every job is still estimated once, with all its
    chains, in halves and then in chain groups; a pass with one chain that does not fit says so."""
    calls: list[tuple[tuple[str, ...], int | None]] = []
    done: list[str] = []
    capacity = {"chains": 2}

    def fake_pass(jobs, chains_per_pass):
        chains = chains_per_pass or 4
        calls.append((tuple(j.component for j in jobs), chains_per_pass))
        if len(jobs) * chains > capacity["chains"]:
            raise torch.OutOfMemoryError("CUDA out of memory (fake)")
        done.extend(j.component for j in jobs)

    monkeypatch.setattr(sweep, "run_jobs_batched", lambda ctx, jobs, bar, cpp: fake_pass(jobs, cpp))
    monkeypatch.setattr(sweep, "run_job", lambda ctx, job, bar, cpp: fake_pass([job], cpp))
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    cfg = load_config("ci")
    s = SamplerConfig(chains=4, batch_size=8)
    jobs = [records.Job("L2", 8, c, "train") for c in ("0:0", "0:1", "1:0")]
    run = Run(Path("unused"), cfg)  # a run's handle with its settings on it: nothing is read
    gpu, cpu = (sweep.SweepContext(run, s, torch.device(d)) for d in ("cuda", "cpu"))
    sweep.run_chunk(gpu, jobs)
    assert sorted(done) == ["0:0", "0:1", "1:0"]
    assert calls[0] == (("0:0", "0:1", "1:0"), None)  # the planned pass first
    assert (("0:0",), 2) in calls and (("1:0",), 2) in calls  # a component's chains in two groups of 2
    capacity["chains"] = 0
    with pytest.raises(torch.OutOfMemoryError, match="lower sampler.batch_size"):
        sweep.run_chunk(gpu, jobs[:1])
    with pytest.raises(torch.OutOfMemoryError, match="fake"):  # on a CPU nothing is retried
        sweep.run_chunk(cpu, jobs[:1])
