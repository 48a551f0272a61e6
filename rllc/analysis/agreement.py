"""How another per-head measure agrees with the rLLC (rLLC paper, Appendix C.3, D.1, E.3).

Three readings, each with its baseline:

* ``final_order``: Spearman's ρ between the final values of two measures over heads, over all heads
  and per layer (with its p-value: the null of unrelated orders);
* ``tracking``: for each head, Spearman's ρ across checkpoints between its curve under one measure
  and its own curve under the other; beside it the same correlation with the *other* heads of its
  layer (the mismatched null: curves that share only the common trend of training);
* ``critical_point_offsets``: the critical points of each head's curve (``rllc.analysis.stages``)
  and, for each, the distance to the nearest critical point of the same head's reference curve, in
  decades of training steps.

Inputs are tidy frames with columns step, component, value.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.stats import spearmanr

from .clustering import layer_of
from .stages import critical_points

# measure names in notebook 05's agreement tables (the scorecard reads them)
HESSIAN_TRACE = "Hessian trace (train)"
HESSIAN_TRACE_CODE = "Hessian trace (held-out code)"
ZERO, MEAN, RESAMPLE = "zero ablation", "mean ablation", "resample ablation"


def _final(frame: pd.DataFrame) -> pd.Series:
    last = frame[frame["step"] == frame["step"].max()]
    return last.set_index("component")["value"]


def _rho(a: pd.Series, b: pd.Series) -> tuple[float, float, int]:
    """Spearman's ρ over the labels where both are finite (NaN below 3 of them)."""
    a, b = a[np.isfinite(a.astype(float))], b[np.isfinite(b.astype(float))]
    common = a.index.intersection(b.index)
    if len(common) < 3:
        return float("nan"), float("nan"), len(common)
    res = spearmanr(a[common].to_numpy(), b[common].to_numpy())
    return float(res.statistic), float(res.pvalue), len(common)


def final_order(measure: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Rows (scope, rho, p_value, n_heads, layers_only): Spearman's ρ between the two measures'
    values at their last checkpoint, over all heads ("all") and within each layer ("layer L").

    ``layers_only`` (on the "all" row): the ρ a measure that knew nothing but each head's layer
    would reach — the reference against its own per-layer means. When the layers differ in
    level, most of an all-heads ρ can come from the layer split alone; the per-layer rows say
    whether the order *within* a layer agrees."""
    a, b = _final(measure), _final(reference)
    a, b = a[a.index.str.contains(":")], b[b.index.str.contains(":")]
    layer_means = b.groupby(np.asarray(layer_of(pd.Series(b.index)))).transform("mean")
    rows = [{"scope": "all", **dict(zip(("rho", "p_value", "n_heads"), _rho(a, b), strict=True)),
             "layers_only": _rho(layer_means, b)[0]}]
    layers = layer_of(pd.Series(a.index))
    for layer in sorted(set(layers)):
        idx = a.index[np.asarray(layers == layer)]
        rho = _rho(a[idx], b)
        rows.append({"scope": f"layer {layer}", **dict(zip(("rho", "p_value", "n_heads"), rho, strict=True))})
    return pd.DataFrame(rows)


def tracking(measure: pd.DataFrame, reference: pd.DataFrame) -> pd.DataFrame:
    """Per head: ``rho`` = Spearman's ρ across the checkpoints both measures share between its own
    two curves; ``null_median`` / ``null_max`` = the same against the other heads of its layer."""
    steps = sorted(set(measure["step"]) & set(reference["step"]))
    a = measure[measure["step"].isin(steps)].pivot_table(index="step", columns="component", values="value")
    b = reference[reference["step"].isin(steps)].pivot_table(index="step", columns="component", values="value")
    heads = [c for c in a.columns if ":" in c and c in b.columns]
    rows = []
    for h in heads:  # each pair over the checkpoints where both curves have a value (an estimate whose
        # every chain was flagged has none), so a head's curves may share fewer than ``steps``
        layer = h.split(":")[0]
        others = [o for o in heads if o != h and o.split(":")[0] == layer]
        null = [r for r in (_rho(a[h], b[o])[0] for o in others) if np.isfinite(r)]
        rho, _, n = _rho(a[h], b[h])
        rows.append({"component": h, "rho": rho, "n_steps": n,
                     "null_median": float(np.median(null)) if null else float("nan"),
                     "null_max": float(np.max(null)) if null else float("nan")})
    return pd.DataFrame(rows, columns=["component", "rho", "n_steps", "null_median", "null_max"])


def critical_point_offsets(measure: pd.DataFrame, reference: pd.DataFrame, sigma: float = 1.0) -> pd.DataFrame:
    """Per head, each critical point (step, kind) of its ``measure`` curve and the distance in
    decades of steps to the nearest critical point of its ``reference`` curve (NaN if it has none)."""
    rows = []
    for comp, d in measure[measure["component"].str.contains(":")].groupby("component"):
        d = d.sort_values("step")
        r = reference[reference["component"] == comp].sort_values("step")
        points = critical_points(d["step"].tolist(), d["value"].tolist(), sigma=sigma, min_gap=1)
        ref_points = critical_points(r["step"].tolist(), r["value"].tolist(), sigma=sigma, min_gap=1)
        ref_steps = np.asarray(ref_points["step"], dtype=float)
        for p in points.itertuples():
            if len(ref_steps):
                near = ref_steps[np.argmin(np.abs(np.log10(ref_steps) - np.log10(max(p.step, 1))))]
                offset = float(abs(np.log10(near) - np.log10(max(p.step, 1))))
            else:
                near, offset = float("nan"), float("nan")
            rows.append({"component": comp, "step": int(p.step), "kind": p.kind, "nearest_reference": near,
                         "offset_decades": offset})
    return pd.DataFrame(rows, columns=["component", "step", "kind", "nearest_reference", "offset_decades"])
