"""Which features of the per-head curves separate the head types, when whole curves do not cluster by type.

Per head: summaries of its curve (``curve_features``: final value, mean, time of the steepest
rise and fall, ...). Per feature: how much of its variance the types explain (eta squared), with
a permutation p-value (``type_separation``) whose floor, set by how the heads split into types,
is ``smallest_p``. Notebook 02 reads it beside the clustering of ``rllc.analysis.clustering``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd

from .clustering import layer_of


def curve_features(estimates: pd.DataFrame, value: str = "llc_mean", min_step: int = 1) -> pd.DataFrame:
    """Summaries of each head's curve (tidy rows component, step, ``value`` of one distribution)
    that could separate head types when whole curves do not: one row per head with

    * ``final``: the value at the last checkpoint; ``mean``: the mean over checkpoints;
    * ``peak_step``: log10 of the step of the largest value;
    * ``rise_from_low``: the last value minus the head's lowest;
    * ``late_rise``: the change over the second half of the checkpoints (by log step);
    * ``early_change``: the change over the first half."""
    d = estimates[estimates["step"] >= min_step]
    wide = d.pivot_table(index="component", columns="step", values=value).dropna(axis=1)
    steps = np.asarray(wide.columns, dtype=float)
    x = np.log10(steps)
    mid = int(np.searchsorted(x, (x[0] + x[-1]) / 2))
    v = wide.to_numpy(dtype=float)
    return pd.DataFrame({"final": v[:, -1], "mean": v.mean(axis=1), "peak_step": x[v.argmax(axis=1)],
                         "rise_from_low": v[:, -1] - v.min(axis=1), "late_rise": v[:, -1] - v[:, mid],
                         "early_change": v[:, mid] - v[:, 0]}, index=wide.index)


def type_separation(features: pd.DataFrame, types: pd.Series, n_perm: int = 5000, seed: int = 0) -> pd.DataFrame:
    """How well each feature separates the behavioural types within each layer: the share of the
    feature's variance between types (η², the one-way ANOVA ratio), against a permutation null
    (types shuffled over the layer's heads, ``n_perm`` times). Rows (layer, feature, n_types,
    eta2, null_q95, p_value, p_bonferroni — p times the number of features, capped at 1 — and
    p_min, the smallest p-value the layer's type sizes allow). Layers with a single type are
    skipped."""
    rng = np.random.default_rng(seed)
    rows = []
    comps = features.index.to_series()
    for layer, idx in comps.groupby(layer_of(comps)).groups.items():
        f = features.loc[idx]
        t = types.reindex(f.index).to_numpy()
        if len(set(t)) < 2:
            continue
        codes = pd.factorize(t)[0]
        perms = np.stack([rng.permutation(codes) for _ in range(n_perm)])
        for name in f.columns:
            y = f[name].to_numpy(dtype=float)
            obs = _eta2(y, codes[None, :])[0]
            null = _eta2(y, perms)
            p = float((null >= obs - 1e-12).mean())
            rows.append({"layer": int(layer), "feature": name, "n_types": len(set(t)), "eta2": float(obs),
                         "null_q95": float(np.quantile(null, 0.95)), "p_value": p,
                         "p_bonferroni": min(1.0, p * len(f.columns)), "p_min": smallest_p(t)})
    return pd.DataFrame(rows, columns=["layer", "feature", "n_types", "eta2", "null_q95", "p_value", "p_bonferroni",
                                       "p_min"])


def smallest_p(types: Sequence) -> float:
    """The smallest p-value a permutation test of ``types`` over so few heads can give: the share
    of relabelings that induce the observed partition (with 4 + 4 heads 2/70 ≈ 0.029, so no test
    corrected for more than one comparison can reach 0.05)."""
    sizes = pd.Series(np.asarray(types)).value_counts().to_numpy()
    n = int(sizes.sum())
    distinct = math.factorial(n)
    for m in sizes:
        distinct //= math.factorial(int(m))
    same = 1
    for _, count in pd.Series(sizes).value_counts().items():  # equal-sized types can swap labels
        same *= math.factorial(int(count))
    return same / distinct


def _eta2(y: np.ndarray, codes: np.ndarray) -> np.ndarray:
    """Between-group share of the variance of ``y`` for each row of group codes (shape [n, heads])."""
    total = float(((y - y.mean()) ** 2).sum())
    if total == 0:
        return np.zeros(len(codes))
    k = int(codes.max()) + 1
    onehot = codes[:, :, None] == np.arange(k)[None, None, :]  # [n, heads, k]
    counts = onehot.sum(axis=1)
    sums = (onehot * y[None, :, None]).sum(axis=1)
    means = np.divide(sums, counts, out=np.zeros_like(sums, dtype=float), where=counts > 0)
    between = (counts * (means - y.mean()) ** 2).sum(axis=1)
    return between / total
