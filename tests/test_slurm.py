"""`rllc sweep --executor slurm` against a real single-node SLURM (``.ci/slurm-up``).

A small grid goes out as a job array; one task is cancelled while its group is half done; the
same command is run again. The records must then equal a serial sweep's, none missing or
duplicated, and no finished estimate may have run twice. In CI (CI=true) SLURM is brought up
and a failure to do so fails the test; elsewhere the test skips unless SLURM is up (or
RLLC_SLURM=1 asks to bring it up).
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rllc.estimate import grid, records, sweep
from rllc.run import open_run
from rllc.train import train_model

REPO = Path(__file__).resolve().parents[1]
SLURM_UP = REPO / ".ci" / "slurm-up"
# long enough per estimate (~1 s here) that a group is still running when it is cancelled
DRAWS = 400
FLAGS = ["--chains", "2", "--draws", str(DRAWS), "--burnin", "5", "--batch-size", "4", "--init-loss-batches", "2"]
# two of the four checkpoints: two groups, one SLURM task each, both running at once (--array-parallelism 2)
STEPS = [8, 24]
GRID = ["--steps", *map(str, STEPS), "--components", "full", "heads", "--data", "train"]
SLURM = ["--executor", "slurm", "--time", "10", "--cpus-per-task", "1", "--array-parallelism", "2"]


def _slurm_is_up() -> bool:
    return subprocess.run(["bash", str(SLURM_UP), "status"], capture_output=True).returncode == 0


@pytest.fixture(scope="module")
def slurm() -> None:
    pytest.importorskip("submitit", reason="the slurm executor needs the cluster extra: pip install -e '.[cluster]'")
    if _slurm_is_up():
        return
    if os.environ.get("CI") == "true" or os.environ.get("RLLC_SLURM") == "1":
        out = subprocess.run(["bash", str(SLURM_UP)], capture_output=True, text=True)
        assert out.returncode == 0, f".ci/slurm-up failed:\n{out.stdout}\n{out.stderr}"
        assert _slurm_is_up()
        return
    pytest.skip("no SLURM here: run `.ci/slurm-up` as root (installs slurm-wlm and munge from Debian's packages "
                "and starts a single-node cluster), or set RLLC_SLURM=1 to let this test do it")


def _sweep(run: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rllc.cli", "sweep", "--run-dir", str(run), "--quiet", *FLAGS, *GRID, *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600)


def _array_tasks(array: str) -> dict[str, str] | None:
    """Task id -> state code (R running, PD pending) of an array's tasks that SLURM still lists;
    None when squeue itself failed (a busy controller), which says nothing about the array."""
    out = subprocess.run(["squeue", "-h", "-r", "-j", array, "-o", "%i %t"], capture_output=True, text=True)
    if out.returncode != 0:
        return None
    return dict(line.split() for line in out.stdout.splitlines() if line.strip())


def _wait_gone(array: str, timeout_s: float = 300.0, release: bool = False) -> None:
    """Wait until SLURM no longer lists the array. ``release``: start a pending (requeued) task now
    rather than at the begin time SLURM gives a requeued job (about two minutes on), as an
    administrator would with ``scontrol update``; the requeue itself is what the test checks."""
    start, unlisted = time.monotonic(), 0
    while unlisted < 3:  # gone means unlisted by three answers in a row: a requeued task can drop out of one
        assert time.monotonic() - start < timeout_s, f"array {array} still listed after {timeout_s:.0f} s"
        tasks = _array_tasks(array)
        unlisted = unlisted + 1 if tasks == {} else 0
        if release:
            for task in (t for t, state in (tasks or {}).items() if state == "PD"):
                subprocess.run(["scontrol", "update", f"JobId={task}", "StartTime=now"], capture_output=True)
        time.sleep(1.0)


@pytest.mark.slow
def test_slurm_sweep_survives_a_cancelled_task_and_equals_a_serial_sweep(slurm, tiny_cfg, ci_prepared,
                                                                         tmp_path) -> None:
    start = time.monotonic()
    run = tmp_path / "run"
    train_model(tiny_cfg, "L2", run, progress=False)
    serial_run = tmp_path / "serial"
    shutil.copytree(run, serial_run)
    groups = grid.make_groups(open_run(run), ["L2"], STEPS, ["full", "heads"], ["train"])
    n_estimates = sum(len(g.components) for g in groups)

    first = _sweep(run, *SLURM)
    assert first.returncode == 0, first.stderr
    array = first.stdout.split("submitted array ")[1].split(":")[0]
    # cancel a running task once its group has some records but not all
    victim, deadline = None, time.monotonic() + 240
    while victim is None and time.monotonic() < deadline:
        status = grid.status(open_run(run), groups, dataclasses.replace(open_run(run).cfg.sampler, chains=2,
                                                                        draws=DRAWS, burnin=5, batch_size=4,
                                                                        init_loss_batches=2))
        tasks = _array_tasks(array) or {}
        for task, state in tasks.items():
            index = int(task.split("_")[1])
            if state == "R" and status["state"].iloc[index] == "partial":
                victim = task
                break
        time.sleep(0.2)
    assert victim is not None, "no task was caught half-way through its group"
    # submitit lets a task ride out SIGTERM; SLURM kills it KillWait later (5 s in .ci/slurm-up's
    # configuration), well before its group (~15 s) could finish
    subprocess.run(["scancel", victim], check=True)
    _wait_gone(array)
    index = int(victim.split("_")[1])
    settings = dataclasses.replace(open_run(run).cfg.sampler, chains=2, draws=DRAWS, burnin=5, batch_size=4,
                                   init_loss_batches=2)
    after_cancel = grid.status(open_run(run), groups, settings)
    assert after_cancel["state"].iloc[index] != "done", "the cancelled task finished its group anyway"
    assert (after_cancel.drop(index)["state"] == "done").all()  # the other tasks ran to the end

    again = _sweep(run, *SLURM, "--wait")
    assert again.returncode == 0, again.stderr
    assert "1 tasks" in again.stdout  # only the cancelled group went out again
    final = grid.status(open_run(run), groups, settings)
    assert (final["state"] == "done").all() and final["done"].sum() == n_estimates
    assert "nothing to do" in _sweep(run, *SLURM).stdout

    # every record exactly once, and no finished estimate computed twice
    made = sorted(records.records_dir(open_run(run)).glob("*.json"))
    assert len(made) == n_estimates
    events = grid.finished_events(open_run(run))
    assert len(events) == n_estimates and events.max() == 1

    # the records of the cancelled group and of the one that ran through equal a serial sweep's (one
    # thread, as each SLURM task had)
    compared = sorted({groups[index].step, groups[(index + 1) % len(groups)].step})
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        serial = sweep.run_sweep(serial_run, ["L2"], compared, [c for c in groups[0].components], ["train"], settings,
                                 progress=False)
    finally:
        torch.set_num_threads(threads)
    by_key = {r["key"]: r for r in records.load_records(open_run(run))}
    assert len(serial) == 2 * len(groups[0].components) and set(serial["key"]) <= set(by_key)
    assert {by_key[k]["step"] for k in serial["key"]} == set(compared)
    for rec in records.load_records(open_run(serial_run)):
        assert by_key[rec["key"]]["traces"] == rec["traces"], rec["component"]
        assert by_key[rec["key"]]["mean"] == rec["mean"]
    print(f"SLURM sweep test: {n_estimates} estimates in {len(groups)} tasks, cancelled {victim}, "
          f"{time.monotonic() - start:.0f} s")


@pytest.mark.slow
def test_a_signalled_task_requeues_itself_and_skips_what_it_finished(slurm, tiny_cfg, ci_prepared, tmp_path) -> None:
    """SLURM warns a task of its time limit (``--signal=USR2@<delay>``) and of preemption with
    SIGUSR2; submitit then calls ``GroupTask.checkpoint`` and the task requeues itself. The signal
    is sent here by hand (``scancel --signal``) once the group is half done, as SLURM sends it.
    SLURM would start the requeued job about two minutes later; the test starts it at once."""
    run = tmp_path / "run"
    train_model(tiny_cfg, "L2", run, progress=False)
    (group,) = grid.make_groups(open_run(run), ["L2"], ["last"], ["full", "heads"], ["train"])
    settings = dataclasses.replace(open_run(run).cfg.sampler, chains=2, draws=DRAWS, burnin=5, batch_size=4,
                                   init_loss_batches=2)
    cmd = [sys.executable, "-m", "rllc.cli", "sweep", "--run-dir", str(run), "--quiet", *FLAGS, "--steps", "last",
           "--components", "full", "heads", "--data", "train", "--executor", "slurm", "--time", "5",
           "--signal-delay", "120", "--max-requeues", "2", "--cpus-per-task", "1"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    array = out.stdout.split("submitted array ")[1].split(":")[0]
    script = next((records.records_dir(open_run(run)).parent / "slurm").rglob("*_submission.sh")).read_text()
    assert "--signal=USR2@120" in script and "--time=5" in script  # what SLURM itself will send, and when

    signalled, deadline = False, time.monotonic() + 240
    while not signalled and time.monotonic() < deadline:
        done = int(grid.status(open_run(run), [group], settings)["done"].iloc[0])
        if 0 < done < len(group.components) and "R" in (_array_tasks(array) or {}).values():
            subprocess.run(["scancel", "--signal=USR2", array], check=True)
            signalled = True
        time.sleep(0.2)
    assert signalled, "the task was not caught half-way through its group"
    _wait_gone(array, release=True)

    final = grid.status(open_run(run), [group], settings)
    assert final["state"].tolist() == ["done"], final.to_string()
    events = [json.loads(p.read_text()) for p in grid.events_dir(open_run(run)).glob("*.json")]
    assert len(events) == len(group.components)  # every estimate finished exactly once
    assert len({e["pid"] for e in events}) == 2  # some before the signal, the rest after the requeue
    logs = "".join(p.read_text() for p in (records.records_dir(open_run(run)).parent / "slurm").rglob("*_log.err"))
    # submitit counts a signal as a timeout when the task has run min(80% of --time, --time - 10 min):
    # always, at a limit of minutes, so this is the timeout path (its requeues are counted)
    assert "Caught signal SIGUSR2" in logs and "this job is timed-out" in logs
    outs = "".join(p.read_text() for p in (records.records_dir(open_run(run)).parent / "slurm").rglob("*_log.out"))
    assert "Requeued job" in outs
