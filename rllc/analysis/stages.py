"""Developmental stages from critical points of an LLC curve (Hoogland et al. 2024; paper Fig. 13).

The curve over checkpoints is smoothed (Gaussian, in checkpoint index), its slope taken against
log(step), and stage boundaries are placed where the slope changes sign (local maxima and minima
of the LLC) or where a rise flattens into a plateau (the slope falls below ``plateau`` times its
largest absolute value). Boundaries closer than ``min_gap`` checkpoints are merged, keeping the
earlier unless the later one is an extremum and the earlier a plateau onset; boundaries within
``min_gap`` checkpoints of either end are dropped. Stages are named LM1 ... LMk between consecutive boundaries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.ndimage import gaussian_filter1d


def smooth(values: Sequence[float], sigma: float) -> np.ndarray:
    v = np.asarray(values, dtype=float)
    return gaussian_filter1d(v, sigma, mode="nearest") if sigma > 0 else v


def critical_points(steps: Sequence[int], values: Sequence[float], sigma: float = 1.5, plateau: float = 0.1,
                    min_gap: int = 2) -> pd.DataFrame:
    """Critical points of a curve: one row per boundary with its step, kind and smoothed value."""
    steps = np.asarray(steps, dtype=float)
    if len(steps) != len(values):
        raise ValueError(f"{len(steps)} steps but {len(values)} values")
    if len(steps) < 4:
        return pd.DataFrame(columns=["step", "kind", "value"])
    y = smooth(values, sigma)
    x = np.log10(steps + max(1.0, steps[steps > 0].min() if (steps > 0).any() else 1.0))
    slope = np.gradient(y, x)
    scale = float(np.abs(slope).max())
    if scale <= 1e-9 * max(1.0, float(np.abs(y).max())):
        return pd.DataFrame(columns=["step", "kind", "value"])  # a flat curve has no critical points
    slope = np.where(np.abs(slope) < 1e-3 * scale, 0.0, slope)  # rounding noise is not a turn
    found: list[tuple[int, str]] = []
    for i in range(1, len(y) - 1):
        if slope[i - 1] > 0 > slope[i] or (slope[i - 1] > 0 == slope[i] and slope[i + 1:i + 2].min(initial=0) < 0):
            found.append((i, "maximum"))
        elif slope[i - 1] < 0 < slope[i] or (slope[i - 1] < 0 == slope[i] and slope[i + 1:i + 2].max(initial=0) > 0):
            found.append((i, "minimum"))
        elif abs(slope[i - 1]) >= plateau * scale > abs(slope[i]):
            found.append((i, "plateau"))
    # an extremum beats a plateau onset it crowds; nothing within min_gap of either end
    found = [(i, k) for i, k in found if min_gap <= i <= len(y) - 1 - min_gap]
    kept: list[tuple[int, str]] = []
    for i, kind in found:
        if kept and i - kept[-1][0] < min_gap:
            if kept[-1][1] == "plateau" and kind != "plateau":
                kept[-1] = (i, kind)
            continue
        kept.append((i, kind))
    return pd.DataFrame({"step": [int(steps[i]) for i, _ in kept], "kind": [k for _, k in kept],
                         "value": [float(y[i]) for i, _ in kept]})


def stages(steps: Sequence[int], values: Sequence[float], **kwargs: float) -> pd.DataFrame:
    """Stages LM1..LMk: start and end step, the LLC at both ends (smoothed), and the kind of the
    critical point that ends each stage."""
    steps = list(int(s) for s in steps)
    points = critical_points(steps, values, **kwargs)
    y = smooth(values, kwargs.get("sigma", 1.5))
    bounds = [steps[0], *points["step"].tolist(), steps[-1]]
    ends = [*points["kind"].tolist(), "end"]
    rows = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if b <= a:
            continue
        rows.append({"stage": f"LM{len(rows) + 1}", "start": a, "end": b,
                     "llc_start": float(y[steps.index(a)]), "llc_end": float(y[steps.index(b)]),
                     "ends_at": ends[k]})
    out = pd.DataFrame(rows)
    if len(out):
        out["trend"] = np.where(out["llc_end"] >= out["llc_start"], "rising", "falling")
    return out


def stage_of(stages_table: pd.DataFrame, step: int) -> str | None:
    """The name of the stage containing ``step`` (a boundary belongs to the stage it starts)."""
    for row in stages_table.itertuples():
        if row.start <= step < row.end or (step == row.end and row.Index == stages_table.index[-1]):
            return str(row.stage)
    return None


def nearest_boundary(stages_table: pd.DataFrame, step: int) -> int | None:
    """The stage boundary (a stage's end, not the last) closest to ``step``; None without one."""
    inner = stages_table["end"].iloc[:-1].to_numpy() if len(stages_table) > 1 else np.array([])
    if not len(inner):
        return None
    return int(inner[np.abs(np.log1p(inner) - np.log1p(step)).argmin()])
