"""Sweeps on a SLURM cluster: one job-array task per (model, checkpoint, distribution) group.

submitit (an optional extra: ``pip install -e .[cluster]``) pickles a :class:`GroupTask` per
group and submits them as one array. Each task runs ``grid.run_group``: the group's paired
reference once, then every estimate without a record. When SLURM signals a task before its time
limit or on preemption, submitit calls :meth:`GroupTask.checkpoint`, which requeues the same
task; finished records are skipped when it restarts, so at most the estimate in flight is lost.

Submissions are logged in ``<run>/llc/slurm/submitted.jsonl`` (array id, groups); a new
submission leaves out the groups of an array that ``squeue`` still lists, so that no group runs
in two tasks at once. Nothing here needs SLURM's accounting database: ``squeue`` alone says
what is still queued or running, and the run's records what is done.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..config import SamplerConfig
from ..io import atomic_write
from ..run import Run, open_run
from .grid import Group, run_group

INSTALL_HINT = ("the slurm executor needs submitit, an optional extra: pip install -e '.[cluster]' "
                "(or pip install submitit==1.5.4)")


def _submitit() -> Any:
    try:
        import submitit
    except ImportError as err:
        raise ValueError(INSTALL_HINT) from err
    return submitit


def slurm_dir(run: Run) -> Path:
    return run.path / "llc" / "slurm"


class GroupTask:
    """One array task: the estimates of one group (a callable that submitit can requeue)."""

    def __init__(self, run_dir: str, settings: SamplerConfig, device: str = "auto") -> None:
        self.run_dir = run_dir
        self.settings = settings
        self.device = device

    def __call__(self, group: Group) -> dict[str, Any]:
        return run_group(open_run(self.run_dir), group, self.settings, self.device)

    def checkpoint(self, group: Group) -> Any:
        """Called by submitit on a timeout or preemption signal: requeue this task as it is (its
        finished estimates are records already and will be skipped)."""
        return _submitit().helpers.DelayedSubmission(self, group)


@dataclass(frozen=True)
class SlurmOptions:
    partition: str | None = None
    time_min: int = 60
    gpus_per_task: int = 0
    cpus_per_task: int = 1
    mem_gb: float | None = None
    array_parallelism: int = 64
    signal_delay_s: int = 90  # SLURM signals a task this long before its limit: it requeues then
    # requeues after a timeout before a task gives up (preemptions do not count); each run of a
    # task finishes at least the estimates that fit before its signal, so a group gets through
    # unless one estimate outlasts --time
    max_requeues: int = 20

    def check(self) -> None:
        problems = []
        if self.signal_delay_s < 1:
            problems.append(f"--signal-delay must be >= 1 second (got {self.signal_delay_s})")
        if self.max_requeues < 0:
            problems.append(f"--max-requeues must be >= 0 (got {self.max_requeues})")
        if self.time_min < 1:
            problems.append(f"--time must be >= 1 minute (got {self.time_min})")
        if self.gpus_per_task < 0 or self.cpus_per_task < 1 or self.array_parallelism < 1:
            problems.append("--gpus-per-task must be >= 0, --cpus-per-task and --array-parallelism >= 1")
        if self.signal_delay_s >= 60 * self.time_min:
            problems.append(f"the requeue signal ({self.signal_delay_s} s before the limit) needs --time above it")
        if problems:
            raise ValueError("; ".join(problems))


def squeue_ids(user_only: bool = True) -> set[str]:
    """Array ids (and plain job ids) that SLURM still lists as queued or running."""
    if shutil.which("squeue") is None:
        raise ValueError("squeue was not found: is this a SLURM login node? (use --executor local otherwise)")
    cmd = ["squeue", "-h", "-r", "-o", "%F %i"]  # array job id, job id (array ids as <array>_<task>)
    if user_only:
        cmd += ["--me"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    ids = set()
    for line in out.split():
        ids.add(line.split("_")[0])
    return ids


def _submitted(run: Run) -> list[dict[str, Any]]:
    path = slurm_dir(run) / "submitted.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _log_submission(run: Run, entry: dict[str, Any]) -> None:
    path = slurm_dir(run) / "submitted.jsonl"
    text = path.read_text() if path.exists() else ""
    atomic_write(path, lambda p: p.write_text(text + json.dumps(entry) + "\n"))


def queued_groups(run: Run) -> dict[str, str]:
    """Group name -> array id, for the groups of this run's arrays that SLURM still lists."""
    live = squeue_ids()
    out = {}
    for entry in _submitted(run):
        if str(entry["array"]) in live:
            out.update({name: str(entry["array"]) for name in entry["groups"]})
    return out


def submit(run: Run, groups: Sequence[Group], settings: SamplerConfig, options: SlurmOptions,
           device: str = "auto") -> tuple[str | None, list[Group], dict[str, str]]:
    """Submit one array task per group (leaving out groups an earlier array of this run still has
    queued or running). Returns (array id or None, the groups submitted, the groups left out with
    the array that holds them)."""
    options.check()
    submitit = _submitit()
    busy = queued_groups(run)
    todo = [g for g in groups if g.name not in busy]
    if not todo:
        return None, [], busy
    executor = submitit.AutoExecutor(folder=slurm_dir(run) / "%j", cluster="slurm",
                                     slurm_max_num_timeout=options.max_requeues)
    params: dict[str, Any] = {
        "name": f"rllc-{run.path.name}", "timeout_min": options.time_min, "cpus_per_task": options.cpus_per_task,
        "slurm_array_parallelism": options.array_parallelism, "slurm_signal_delay_s": options.signal_delay_s,
    }
    if options.partition:
        params["slurm_partition"] = options.partition
    if options.gpus_per_task:
        params["slurm_gpus_per_task"] = options.gpus_per_task
    if options.mem_gb:
        params["mem_gb"] = options.mem_gb
    executor.update_parameters(**params)
    jobs = executor.map_array(GroupTask(str(run.path), settings, device), todo)
    array = str(jobs[0].job_id).split("_")[0]
    _log_submission(run, {"array": array, "time": time.time(), "groups": [g.name for g in todo],
                          "options": asdict(options), "device": device})
    return array, todo, busy


def wait(run: Run, array: str, poll_s: float = 5.0, timeout_s: float | None = None) -> None:
    """Block until SLURM no longer lists ``array`` (done, failed or cancelled)."""
    start = time.monotonic()
    while array in squeue_ids():
        if timeout_s is not None and time.monotonic() - start > timeout_s:
            raise TimeoutError(f"array {array} still queued or running after {timeout_s:.0f} s")
        time.sleep(poll_s)
