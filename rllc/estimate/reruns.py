"""Do the reported standard errors describe what changes between reruns?

Rerun one estimate with different seeds (its batch orders and its noise change, nothing else) and
compare the spread of the means with the standard errors the estimates report. If the errors are
honest, var(means) ≈ mean(se²): their ratio is near 1, within the sampling error of that many
reruns (a χ² interval), and the z-scores of pairwise differences, (m_i − m_j)/√(se_i² + se_j²),
have a standard deviation near 1 (somewhat above with few chains per estimate: an se from n chains
is itself noisy).

Seeds of reruns are ``seed + RERUN_STRIDE·i``: chain c of an estimate uses seed + c for its noise
(and, with per-chain batch orders, for its batches), so reruns at neighbouring seeds would share
chains and look more alike than independent reruns.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.stats import chi2

RERUN_STRIDE = 1000


def rerun_seeds(seed: int, n: int) -> list[int]:
    """``n`` seeds whose estimates share no chain (``seed + RERUN_STRIDE·i``)."""
    return [seed + RERUN_STRIDE * i for i in range(n)]


def seed_spread(means: Sequence[float], sems: Sequence[float], level: float = 0.95) -> dict[str, float]:
    """Seed-to-seed spread against the reported errors: n, mean, sd of the means, the root mean
    square of the reported errors, their variance ratio with its ``level`` interval under honest
    errors, whether the ratio falls inside it, and the sd of the pairwise z-scores. With fewer
    than two finite estimates (e.g. every chain of a rerun flagged) there is no spread: n, the
    mean where one exists, NaN for the rest and ``calibrated`` None (undecided)."""
    m, s = np.asarray(means, dtype=float), np.asarray(sems, dtype=float)
    ok = np.isfinite(m) & np.isfinite(s)
    m, s = m[ok], s[ok]
    n = len(m)
    if n < 2:
        nan = float("nan")
        return {"n": n, "mean": float(m[0]) if n else nan, "sd_means": nan, "rms_se": nan, "variance_ratio": nan,
                "ratio_lo": nan, "ratio_hi": nan, "calibrated": None, "z_sd": nan}
    var = float(m.var(ddof=1))
    ms = float(np.mean(s ** 2))
    lo, hi = (chi2.ppf(q, n - 1) / (n - 1) for q in ((1 - level) / 2, (1 + level) / 2))
    z = [(m[i] - m[j]) / math.sqrt(s[i] ** 2 + s[j] ** 2) for i, j in itertools.combinations(range(n), 2)
         if s[i] ** 2 + s[j] ** 2 > 0]
    ratio = var / ms if ms > 0 else float("inf")
    return {"n": n, "mean": float(m.mean()), "sd_means": math.sqrt(var), "rms_se": math.sqrt(ms),
            "variance_ratio": ratio, "ratio_lo": float(lo), "ratio_hi": float(hi),
            "calibrated": bool(lo <= ratio <= hi), "z_sd": float(np.std(z, ddof=1)) if len(z) > 1 else float("nan")}


def rerun(estimate: Callable[[int], tuple[float, float]], seed: int, n: int) -> pd.DataFrame:
    """Rows (seed, mean, sem) of ``estimate(seed)`` (returning mean and standard error) at
    ``n`` rerun seeds."""
    return pd.DataFrame([{"seed": s, **dict(zip(("mean", "sem"), estimate(s), strict=True))}
                         for s in rerun_seeds(seed, n)])
