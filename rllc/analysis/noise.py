"""The noise budget of a claim: the differences it rests on against the estimates' standard errors.

Two kinds of difference carry the paper's claims:

* **along a curve** (stages, timing): the change between neighbouring checkpoints, against the
  standard error of that change, √(se_a² + se_b²) (independent estimates);
* **between heads** (clusters, orders): at one checkpoint, the spread of the heads of a layer,
  against the typical standard error of one head's estimate.

A ratio near 1 or below means the estimates cannot show the difference; the claims built on it
then say more about the noise than about the model.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .clustering import layer_of


def along_curve(table: pd.DataFrame, value: str = "value", se: str = "se") -> pd.DataFrame:
    """Per pair of neighbouring checkpoints of one curve (rows step, ``value``, ``se``): rows
    (step_a, step_b, change, se_change, z)."""
    d = table.sort_values("step")
    v, s, steps = d[value].to_numpy(float), d[se].to_numpy(float), d["step"].to_numpy()
    change = np.diff(v)
    se_change = np.hypot(s[:-1], s[1:])
    return pd.DataFrame({"step_a": steps[:-1], "step_b": steps[1:], "change": change, "se_change": se_change,
                         "z": change / se_change})


def between_heads(table: pd.DataFrame, value: str = "value", se: str = "se") -> pd.DataFrame:
    """Per layer and checkpoint of per-head rows (step, component "L:H", ``value``, ``se``): rows
    (layer, step, n_heads, spread = sd across the layer's heads, median_se, ratio = spread /
    median_se)."""
    heads = table[table["component"].str.fullmatch(r"\d+:\d+")]
    rows = []
    for (layer, step), g in heads.groupby([layer_of(heads["component"]), "step"]):
        spread, med = float(g[value].std(ddof=1)), float(g[se].median())
        rows.append({"layer": int(layer), "step": int(step), "n_heads": len(g), "spread": spread, "median_se": med,
                     "ratio": spread / med if med > 0 else float("inf")})
    return pd.DataFrame(rows, columns=["layer", "step", "n_heads", "spread", "median_se", "ratio"])


def summary(along: pd.DataFrame | None = None, between: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per kind of difference: the median signal, the median noise and their ratio (and
    the share of differences more than two standard errors from zero, along a curve)."""
    rows = []
    if along is not None and len(along):
        rows.append({"difference": "neighbouring checkpoints", "signal": float(along["change"].abs().median()),
                     "noise": float(along["se_change"].median()), "ratio": float(along["z"].abs().median()),
                     "share_above_2se": float((along["z"].abs() > 2).mean())})
    if between is not None and len(between):
        for layer, g in between.groupby("layer"):
            rows.append({"difference": f"heads of layer {layer}", "signal": float(g["spread"].median()),
                         "noise": float(g["median_se"].median()), "ratio": float(g["ratio"].median()),
                         "share_above_2se": float((g["ratio"] > 2).mean())})
    return pd.DataFrame(rows, columns=["difference", "signal", "noise", "ratio", "share_above_2se"])
