"""The reference run: the authors' published curves of the paper's model, as tables shaped like ours.

The CSV files under ``data/reference/`` (their README gives each file's source, commit and columns)
are read here into the tidy shapes our notebooks write, so that a claim's criterion
(``rllc.analysis.criteria``) runs unchanged on the authors' run (its positive control) and on ours.
No pickle is read: ``data/reference/convert.py`` converted them once.

Also here: the paper's checkpoint grid, its head types (Table 1, in the paper's four types) and
Hoogland et al.'s stage boundaries, the facts the controls compare against.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .. import paths
from . import head_types as ht

REFERENCE_DIR = paths.SHIPPED_DATA_DIR / "reference"
TRAINING_STEPS = 50_000

# the rLLC paper's 107 checkpoints (Appendix F.2): 0, 100, then every 200 to 10k, every 400 to 20k,
# every 1,000 to 50k
PAPER_GRID: tuple[int, ...] = (0, 100, *range(200, 10_001, 200), *range(10_400, 20_001, 400),
                               *range(21_000, 50_001, 1_000))

# Hoogland et al. 2024's boundaries between LM1 ... LM5 on this run's full-model LLC
LM_BOUNDARIES: tuple[int, ...] = (900, 6_500, 8_500, 17_500)

# rLLC paper, Table 1, with Dyck multigram heads counted as multigram heads (the paper's four types)
PAPER_TYPES: dict[str, str] = {
    "0:0": ht.MULTIGRAM, "0:1": ht.PREVIOUS_TOKEN, "0:2": ht.MULTIGRAM, "0:3": ht.MULTIGRAM,
    "0:4": ht.PREVIOUS_TOKEN, "0:5": ht.CURRENT_TOKEN, "0:6": ht.MULTIGRAM, "0:7": ht.MULTIGRAM,
    "1:0": ht.MULTIGRAM, "1:1": ht.MULTIGRAM, "1:2": ht.MULTIGRAM, "1:3": ht.MULTIGRAM,
    "1:4": ht.MULTIGRAM, "1:5": ht.MULTIGRAM, "1:6": ht.INDUCTION, "1:7": ht.INDUCTION,
}
DYCK_HEADS = ("0:7", "1:3", "1:5")  # Table 1's Dyck multigram heads


def _read(name: str) -> pd.DataFrame:
    path = REFERENCE_DIR / name
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; it is part of the repository (data/reference/README.md)")
    return pd.read_csv(path)


def paper_types() -> pd.Series:
    """Table 1's type of every head, indexed by component ("layer:head")."""
    return pd.Series(PAPER_TYPES, name="type")


def on_grid(table: pd.DataFrame, grid: Sequence[int]) -> pd.DataFrame:
    """The rows of ``table`` (a ``step`` column) at the checkpoints of ``grid``; a grid step that the
    files lack takes the nearest checkpoint they have (the LLC export stops at 49,900)."""
    have = np.unique(table["step"].to_numpy())
    wanted = {int(have[np.abs(have - s).argmin()]) for s in grid}
    return table[table["step"].isin(wanted)].sort_values([c for c in ("step", "component") if c in table])


def scaled_grid(steps: Sequence[int], length: int) -> list[int]:
    """Our checkpoint grid of a run of ``length`` steps, stretched to the reference's 50,000 and put
    on its every-100 checkpoints: where our notebook's checkpoints would fall on the paper's run."""
    return sorted({int(round(s * TRAINING_STEPS / length / 100)) * 100 for s in steps})


def llc_curve(model: str = "L2") -> pd.DataFrame:
    """The full-model LLC (rows step, llc_mean, llc_std) of ``model`` ("L2" or "L1")."""
    return _read(f"{model.lower()}_llc.csv")


def losses() -> pd.DataFrame:
    """Rows step, test_loss, icl_score of the L2 model."""
    return _read("l2_losses.csv")


def head_scores() -> pd.DataFrame:
    """Tidy behaviour rows (component, step, score, value) of the L2 model: ``induction`` (their
    prefix-matching score) and ``previous_token`` (their random-token previous-token attention)."""
    wide = _read("l2_head_scores.csv").rename(columns={"prefix_score": "induction",
                                                       "previous_token_score": "previous_token"})
    return wide.melt(id_vars=["step", "component"], var_name="score", value_name="value")


def k_composition() -> pd.DataFrame:
    """Tidy K-composition rows (step, src, dst, score) of every (layer-0, layer-1) head pair."""
    wide = _read("l2_k_composition.csv")
    long = wide.melt(id_vars="step", var_name="pair", value_name="score")
    pair = long.pop("pair").str.split("->", expand=True)
    return long.assign(src=pair[0], dst=pair[1])[["step", "src", "dst", "score"]]


def stage_table(boundaries: Sequence[int] = LM_BOUNDARIES, end: int = TRAINING_STEPS) -> pd.DataFrame:
    """Stages LM1 ... (rows stage, start, end) between ``boundaries``, in the shape of 01's table."""
    edges = [0, *boundaries, end]
    return pd.DataFrame({"stage": [f"LM{i + 1}" for i in range(len(edges) - 1)], "start": edges[:-1],
                         "end": edges[1:]})
