"""Locations used by rllc, resolved from the package, never from the working directory.

Environment variables override the defaults:
  RLLC_DATA_DIR  where fetched corpora, tokenizers and token datasets are cached
                 (default: <repo>/data/build, ignored by git)
  RLLC_RUNS_DIR  where run directories live (default: <repo>/runs)
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
PROFILES_DIR = REPO_ROOT / "profiles"
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
SHIPPED_DATA_DIR = REPO_ROOT / "data"  # small files under version control (source pins)


def data_dir() -> Path:
    """Cache for corpora, tokenizers and token datasets (created on demand)."""
    path = Path(os.environ.get("RLLC_DATA_DIR", REPO_ROOT / "data" / "build"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def runs_dir() -> Path:
    """Where run directories live by default (not created here: finding a run never writes)."""
    return Path(os.environ.get("RLLC_RUNS_DIR", REPO_ROOT / "runs"))


def default_run_dir(profile: str) -> Path:
    return runs_dir() / profile
