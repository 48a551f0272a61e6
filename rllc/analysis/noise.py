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

TARGET_RATIO = 2.0  # a difference two standard errors wide is the least a claim should rest on


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


def difference_sd(values: pd.Series | np.ndarray | list[float]) -> float:
    """The noise standard deviation of a curve's points when no standard errors were recorded
    (a deterministic score, a logged loss): from the curve's second differences, which remove a
    smooth trend; for white noise Var(Δ²y) = 6σ², estimated robustly (1.4826 × the median absolute
    deviation)."""
    d2 = np.diff(np.asarray(values, dtype=float), 2)
    if len(d2) < 3:
        raise ValueError("need at least five points to estimate a curve's noise from its differences")
    return float(1.4826 * np.median(np.abs(d2 - np.median(d2))) / np.sqrt(6.0))


def samples_needed(ratio: float, target: float = TARGET_RATIO) -> float:
    """How many times the samples (chains × draws, for independent draws) an estimate needs for
    a signal-to-noise ``ratio`` to reach ``target`` (the error shrinks as 1/√samples); 1 when it
    already does."""
    if not ratio > 0:
        return float("inf")
    return max(1.0, (target / ratio) ** 2)


def budget(claim: str, rows: pd.DataFrame, seconds: float, target: float = TARGET_RATIO) -> pd.DataFrame:
    """The noise budget of one claim: ``rows`` from ``summary`` (signal, noise, ratio) with the
    factor of samples each difference would need to reach ``target`` and what that would cost,
    given that the claim's estimates took ``seconds`` at the current settings."""
    out = rows.copy()
    out.insert(0, "claim", claim)
    out["samples_needed"] = [samples_needed(r) for r in out["ratio"]]
    out["seconds_now"] = seconds
    out["seconds_needed"] = out["samples_needed"] * seconds
    return out


def precision_table(grid: pd.DataFrame) -> pd.DataFrame:
    """A chains × draws grid of estimates (component, chains, draws, llc_mean, llc_sem, seconds)
    with each setting's error relative to the cheapest one, the error that 1/√samples predicts
    from it, and the cost of one unit of precision (se² × seconds: lower is better)."""
    out = grid.sort_values(["component", "chains", "draws"]).reset_index(drop=True).copy()
    out["samples"] = out["chains"] * out["draws"]
    rows = []
    for _, g in out.groupby("component", sort=False):
        base = g.loc[g["samples"].idxmin()]
        rows.append(pd.DataFrame({"se_predicted": base["llc_sem"] * np.sqrt(base["samples"] / g["samples"]),
                                  "se_ratio": g["llc_sem"] / base["llc_sem"],
                                  "time_ratio": g["seconds"] / base["seconds"]}, index=g.index))
    out = out.join(pd.concat(rows))
    out["se2_x_seconds"] = out["llc_sem"] ** 2 * out["seconds"]
    return out


def with_difference_se(curves: pd.DataFrame, min_step: int = 0, floor: float = 1e-9) -> pd.DataFrame:
    """Curves (component, step, value) without standard errors, each given a constant ``se``:
    its ``difference_sd`` over the checkpoints from ``min_step`` on (all of them when fewer than
    five are left), at least ``floor``."""
    parts = []
    for _, g in curves.groupby("component"):
        g = g.sort_values("step")
        later = g[g["step"] >= min_step]
        parts.append(g.assign(se=max(difference_sd((later if len(later) >= 5 else g)["value"]), floor)))
    return pd.concat(parts, ignore_index=True)
