"""Execute the Jupytext notebooks with Papermill into a run directory."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

import jupytext
import nbformat
import papermill

from . import paths
from .config import load_config, profile_path, profile_settings
from .io import write_text
from .numerics import apply_env
from .run import resolve_path

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}


def notebook_sources() -> list[Path]:
    """Every ``notebooks/NN_name.py`` in order."""
    return sorted(p for p in paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py"))


def to_ipynb(source: Path) -> nbformat.NotebookNode:
    nb = jupytext.read(source)
    nb.metadata["kernelspec"] = KERNELSPEC
    rel = source.relative_to(paths.REPO_ROOT) if source.is_relative_to(paths.REPO_ROOT) else source
    nb.metadata.setdefault("jupytext", {})["source_path"] = str(rel)
    return nb


PACKAGES = ("rllc", "torch", "transformer-lens", "numpy", "pandas", "scikit-learn", "tslearn", "devinterp",
            "papermill")


def execution_provenance(profile: str, started: str, seconds: float, threads: int | None = None) -> dict[str, Any]:
    """What made an executed notebook: commit, profile, when, on what machine (with ``threads``, the
    profile's thread count: the CPU, its flags, torch's capability and the pinned numerics), package
    versions (stored in the notebook's metadata as ``rllc``; ``rllc publish`` shows it as its first cell)."""
    import os
    import platform
    from importlib import metadata

    from .provenance import cpu_model, git_commit

    commit, dirty = git_commit()
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    out = {"commit": commit, "dirty": dirty, "profile": profile, "started": started,
           "seconds": round(seconds, 1), "machine": f"{cpu_model()}, {os.cpu_count()} cores",
           "python": platform.python_version(), "packages": versions}
    if threads is not None:  # what the numbers depend on (rllc.numerics), as the kernels ran
        from .numerics import describe

        out["numerics"] = describe(threads)
    return out


def execute(source: Path, out: Path, parameters: dict[str, Any], progress: bool = True) -> float:
    """Run one notebook; returns its wall time in seconds. The executed notebook is written to
    ``out`` even when a cell fails (then papermill raises); a notebook that ran through carries its
    :func:`execution_provenance` in its metadata."""
    import datetime as dt

    out.parent.mkdir(parents=True, exist_ok=True)
    apply_env()  # the kernel inherits this process's environment: the project's numerics, before its torch starts
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / source.with_suffix(".ipynb").name
        nbformat.write(to_ipynb(source), src)
        started = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        start = time.perf_counter()
        papermill.execute_notebook(str(src), str(out), parameters=parameters, kernel_name="python3",
                                   progress_bar=progress, cwd=str(paths.REPO_ROOT))
        seconds = time.perf_counter() - start
    done = nbformat.read(out, as_version=4)
    threads = load_config(str(parameters["profile"]), parameters.get("config") or {}).train.threads \
        if parameters.get("profile") else None
    done.metadata["rllc"] = execution_provenance(str(parameters.get("profile", "")), started, seconds, threads)
    write_text(out, nbformat.writes(done))
    return seconds


def profile_parameters(profile: str, run_dir: Path) -> dict[str, Any]:
    """The Papermill parameters: ``profile`` (its name, or a file's absolute path), ``config`` (its
    settings with every ``extends:`` resolved, so the executed notebook shows them), and the run
    directory as an absolute path: the executed notebook then finds the same run from any working
    directory (nbval re-executes it in its own folder)."""
    path = profile_path(profile)
    is_file = Path(profile).suffix in (".yaml", ".yml")
    _, settings = profile_settings(profile)
    return {"profile": str(path.resolve()) if is_file else str(profile), "config": settings,
            "run_dir": str(resolve_path(run_dir))}


class NotebooksFailed(RuntimeError):
    """One or more notebooks stopped at a failing cell (each was still written, up to that cell)."""


def execute_all(profile: str, run_dir: Path, only: list[str] | None = None, progress: bool = True,
                keep_going: bool = True) -> dict[str, float]:
    """Execute every notebook (or those whose names start with one of ``only``) for a profile.

    With ``keep_going`` a notebook whose check fails does not stop the ones after it (they need
    only what earlier notebooks wrote before failing, e.g. trained checkpoints); the failures are
    raised together at the end as ``NotebooksFailed``.
    """
    params = profile_parameters(profile, run_dir)
    times: dict[str, float] = {}
    failed: dict[str, str] = {}
    for source in notebook_sources():
        if only and not any(source.stem.startswith(o) for o in only):
            continue
        out = run_dir / "notebooks" / source.with_suffix(".ipynb").name
        print(f"[rllc] executing {source.name} -> {out}", flush=True)
        start = time.perf_counter()
        try:
            times[source.stem] = execute(source, out, params, progress)
        except papermill.PapermillExecutionError as err:
            times[source.stem] = time.perf_counter() - start
            failed[source.stem] = f"cell {err.exec_count}: {err.ename}: {err.evalue}".strip()
            print(f"[rllc] {source.name} FAILED ({failed[source.stem][:300]}); see {out}", flush=True)
            if not keep_going:
                break
            continue
        print(f"[rllc] {source.name} done in {times[source.stem]:.0f} s", flush=True)
    if failed:
        lines = "\n".join(f"  {name}: {why[:500]}" for name, why in failed.items())
        raise NotebooksFailed(f"{len(failed)} notebook(s) failed "
                              f"(executed copies are in {run_dir / 'notebooks'}):\n{lines}")
    return times
