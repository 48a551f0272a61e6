"""What pinning the numerics costs, and whether it makes the weights machine-independent.

Trains the cpu profile's L2 for ``--steps`` steps (500 by default) with `rllc train`, each in a
fresh process and run directory, and compares every weight tensor of every checkpoint bit for bit
with the first run's:

* ``pinned``: the command as shipped (it pins threads, torch's CPU capability, MKL and oneDNN);
* ``pinned again``: the same, a second time;
* ``side by side``: two copies at once (each must still equal ``pinned``);
* ``one core`` / ``two cores``: under ``taskset -c 0`` and ``taskset -c 0,1``;
* ``capability default preset``: with ``ATEN_CPU_CAPABILITY=default`` in the caller's environment
  (the command must replace it);
* ``unpinned``: the machine's defaults (no re-execution, none of the variables, torch's own thread
  count): the baseline for the speed ratio, expected to differ where the machine's defaults do.

Prints one line per arrangement (seconds of training, steps per second, tensors that differ).
Then the cost: ``--pairs`` alternating pinned and unpinned runs (and runs pinning one setting
at a time), each timed by the training loop itself (``resume.pt``'s seconds: no start-up, data
loading or re-execution), and the ratio of the means. Run it alone on the machine: the timings
are of its cores.

    python benchmarks/numerics.py [--steps 500] [--pairs 3]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import yaml

from rllc.model.checkpoints import CheckpointStore
from rllc.numerics import PINNED_ENV

ALLOCATOR = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


def profile_file(folder: Path, steps: int) -> Path:
    path = folder / "cpu-short.yaml"
    path.write_text(yaml.safe_dump({"profile": "cpu-short", "extends": "cpu", "config": {"train": {
        "steps": {"L0": 10, "L1": 10, "L2": steps}, "resume_every": steps,
        "checkpoints": [{"start": 0, "stop": steps, "every": steps // 2}]}}}))
    return path


def command(profile: Path, run: Path) -> list[str]:
    return [sys.executable, "-m", "rllc.cli", "train", "--profile", str(profile), "--run-dir", str(run),
            "--models", "L2", "--quiet"]


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in PINNED_ENV and k != "RLLC_NO_REEXEC"}
    return {**env, **extra}


def weights(run: Path) -> dict[int, dict[str, torch.Tensor]]:
    store = CheckpointStore.for_model(run, "L2")
    return {s: store.load_weights(s) for s in store.steps()}


def train_seconds(run: Path) -> float:
    """Seconds of training as the training loop counted them (no process start-up)."""
    return float(torch.load(CheckpointStore.for_model(run, "L2").root / "resume.pt", weights_only=False)["seconds"])


def differing(a: dict[int, dict[str, torch.Tensor]], b: dict[int, dict[str, torch.Tensor]]) -> int:
    if a.keys() != b.keys():
        return -1
    return sum(not torch.equal(a[s][k], b[s][k]) for s in a for k in a[s])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--pairs", type=int, default=3, help="alternating pinned/unpinned runs for the speed ratio")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="rllc-numerics-"))
    profile = profile_file(folder, args.steps)
    taskset = shutil.which("taskset")
    arrangements: list[tuple[str, list[str], dict[str, str]]] = [
        ("pinned", [], clean_env()),
        ("pinned again", [], clean_env()),
        ("capability default preset", [], clean_env(ATEN_CPU_CAPABILITY="default")),
        *([("one core", [taskset, "-c", "0"], clean_env()), ("two cores", [taskset, "-c", "0,1"], clean_env())]
          if taskset else []),
        ("unpinned", [], clean_env(RLLC_NO_REEXEC="1", **ALLOCATOR)),
    ]
    ref: dict[int, dict[str, torch.Tensor]] | None = None
    for name, prefix, env in arrangements:
        run = folder / name.replace(" ", "-")
        subprocess.run([*prefix, *command(profile, run)], check=True, env=env, capture_output=True)
        seconds, w = train_seconds(run), weights(run)
        ref = ref if ref is not None else w
        print(f"{name:28s} {seconds:7.1f} s  {args.steps / seconds:5.2f} steps/s  "
              f"{differing(ref, w):4d} tensors differ from 'pinned'", flush=True)
    procs = [subprocess.Popen(command(profile, folder / f"side-{i}"), env=clean_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL) for i in range(2)]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit("a side-by-side run failed")
    for i in range(2):
        print(f"{'side by side ' + str(i + 1):28s} {train_seconds(folder / f'side-{i}'):7.1f} s  (both at once)  "
              f"{differing(ref, weights(folder / f'side-{i}')):4d} tensors differ from 'pinned'", flush=True)
    unpinned = clean_env(RLLC_NO_REEXEC="1", **ALLOCATOR)
    settings = {"all pinned": clean_env(), "unpinned": unpinned,
                **{f"only {k}": {**unpinned, k: v} for k, v in PINNED_ENV.items()}}
    timed: dict[str, list[float]] = {k: [] for k in settings}
    for i in range(args.pairs):
        for name, env in settings.items():
            run = folder / f"speed-{name.replace(' ', '-')}-{i}"
            subprocess.run(command(profile, run), check=True, env=env, capture_output=True)
            timed[name].append(train_seconds(run))
    base = statistics.mean(timed["unpinned"])
    for name, t in timed.items():
        sd = statistics.stdev(t) if len(t) > 1 else float("nan")
        print(f"{name:40s} {statistics.mean(t):6.1f} s (sd {sd:.1f}, n {len(t)})  speed vs unpinned "
              f"{base / statistics.mean(t):.3f}")
    recorded = yaml.safe_load((folder / "pinned" / "config.yaml").read_text())["provenance"]["numerics"]
    print(f"torch {torch.__version__}; {recorded['threads']} threads pinned; runs kept in {folder}")


if __name__ == "__main__":
    main()
