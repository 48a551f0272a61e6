"""What made a result: package version, git commit, torch version, device, date.

Every cached artifact (LLC records, paired references, a run's ``config.yaml``) carries
:func:`provenance`; every figure is stamped with :func:`stamp_line`. The git commit is read once
per process from the repository the package lives in (``None`` outside a checkout, e.g. an
installed wheel); ``dirty`` says whether tracked files differed from that commit.
"""

from __future__ import annotations

import datetime as _dt
import functools
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from . import paths


def package_version() -> str:
    try:
        return metadata.version("rllc")
    except metadata.PackageNotFoundError:  # run from a source tree that was never installed
        return "unknown"


@functools.lru_cache(maxsize=1)
def git_commit() -> tuple[str | None, bool]:
    """(commit hash, dirty) of the checkout the package runs from; (None, False) outside one."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(paths.REPO_ROOT), *args], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", "rllc"))
    except (OSError, subprocess.SubprocessError):
        return None, False
    return commit, dirty


def short_commit() -> str:
    commit, dirty = git_commit()
    if commit is None:
        return "no git"
    return commit[:8] + ("+dirty" if dirty else "")


@functools.lru_cache(maxsize=1)
def cpu_model() -> str:
    """The processor's model name (floating-point kernels, and so trained weights, can differ
    between processors: a run is deterministic on one machine, not across machines)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: str | None = None) -> dict[str, Any]:
    """Versions and the commit, for a record or an artifact (plus the device when given)."""
    import torch  # imported here: provenance is cheap to import for modules that need no torch

    commit, dirty = git_commit()
    out: dict[str, Any] = {
        "package_version": package_version(),
        "git_commit": commit,
        "git_dirty": dirty,
        "torch": str(torch.__version__),  # a TorchVersion (a str subclass) that YAML cannot write
        "cpu": cpu_model(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    if device is not None:
        out["device"] = str(device)
    return out


def stamp_line(profile: str | None = None, run_dir: str | None = None) -> str:
    """One line for the foot of a figure: profile, run directory, commit, date."""
    parts = []
    if profile:
        parts.append(f"profile {profile}")
    if run_dir:
        parts.append(f"run {run_dir}")
    parts.append(f"rllc {package_version()} @ {short_commit()}")
    parts.append(_dt.date.today().isoformat())
    return " · ".join(parts)
