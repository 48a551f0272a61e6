"""Comparisons between refinements (rLLC paper, Section 4.2): drLLC/wrLLC ratios per head type,
how held-out domains move the full-model curve, and when curves change fastest (timing).

All functions take the tidy estimates table of ``rllc.estimate.sweep`` (columns model, step, component,
data, llc_mean, …) or plain (component, step, value) curves, and return tidy tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .stages import critical_points, smooth


def ratio_table(estimates: pd.DataFrame, dr_data: str, wr_data: str = "train") -> pd.DataFrame:
    """Per (component, step): the wrLLC, the drLLC on ``dr_data`` and their ratio dr / wr."""
    wr = estimates[estimates["data"] == wr_data].set_index(["component", "step"])["llc_mean"]
    dr = estimates[estimates["data"] == dr_data].set_index(["component", "step"])["llc_mean"]
    out = pd.DataFrame({"wr": wr, "dr": dr}).dropna().reset_index()
    out["data"] = dr_data
    # a ratio is meaningful only where the wrLLC is clearly positive
    out["ratio"] = out["dr"] / out["wr"].where(out["wr"] > 1e-6)
    return out


def ratio_by_type(ratios: pd.DataFrame, groups: dict[str, Sequence[str]],
                  first_step: int | None = None) -> pd.DataFrame:
    """Mean drLLC/wrLLC ratio of each group of heads at the last checkpoint and averaged over the
    last third of training (by step), per distribution. The third is that of the steps from
    ``first_step`` (default: the ratios' first step) to the last: pass the first checkpoint of the
    whole curve when the ratios were measured only late in training."""
    rows = []
    for data, d in ratios.groupby("data"):
        last = d["step"].max()
        first = d["step"].min() if first_step is None else first_step
        start = first + 2 * (last - first) / 3
        for window, sub in (("final", d[d["step"] == last]), ("last third", d[d["step"] >= start])):
            for group, members in groups.items():
                vals = sub[sub["component"].isin(list(members))]["ratio"]
                rows.append({"data": data, "window": window, "group": group, "n_heads": len(set(members)),
                             "mean_ratio": float(vals.mean()) if len(vals) else float("nan")})
    return pd.DataFrame(rows)


def domain_summary(full: pd.DataFrame, reference: str = "train", shape_corr: float = 0.9) -> pd.DataFrame:
    """How each distribution's full-model LLC curve differs from the reference curve: the final
    value and its rank, the mean vertical offset, and the correlation of the z-scored curves
    (≥ ``shape_corr``: the same shape, shifted; below: the shape changes)."""
    wide = full.pivot_table(index="step", columns="data", values="llc_mean").dropna()
    if reference not in wide:
        raise KeyError(f"no {reference!r} curve among {list(wide.columns)}")
    ref = wide[reference]

    def z(s: pd.Series) -> pd.Series:
        return (s - s.mean()) / (s.std() or 1.0)

    rows = []
    for data in wide.columns:
        corr = float(np.corrcoef(z(wide[data]), z(ref))[0, 1]) if len(wide) > 2 else float("nan")
        rows.append({"data": data, "final_llc": float(wide[data].iloc[-1]),
                     "mean_offset": float((wide[data] - ref).mean()), "shape_corr": corr,
                     "change": "reference" if data == reference
                     else ("vertical shift" if corr >= shape_corr else "shape")})
    out = pd.DataFrame(rows).sort_values("final_llc", ascending=False).reset_index(drop=True)
    out.insert(1, "rank", np.arange(1, len(out) + 1))
    return out


TIMING_HALF_WIDTH = 0.1  # decades: the local fit that times a formation on a dense, noisy grid (03)


def steepest_change(steps: Sequence[int], values: Sequence[float], sigma: float = 1.0,
                    direction: str = "down", half_width: float = 0.0) -> int:
    """The step at which the curve falls (``down``) or rises (``up``) fastest per log-step: a
    formation time robust to noise at single checkpoints.

    With ``half_width`` = 0 the curve is smoothed (Gaussian, ``sigma`` checkpoints) and
    differentiated between neighbouring checkpoints; on a grid dense in log step (e.g. every 250
    steps up to 12k, 0.01 decades apart at the end) that divides the noise by tiny log-step
    differences and the steepest point lands where checkpoints are densest. With ``half_width``
    > 0 (and at least five checkpoints) the slope at each checkpoint is that of a least-squares
    line through every checkpoint within ± ``half_width`` decades, widened where the grid is sparse
    to reach two checkpoints on each side (``sigma`` is then not used); this weighs the noise the
    same everywhere. The first and last two checkpoints are not candidates."""
    steps_a = np.asarray(steps, dtype=float)
    if len(steps_a) < 3:
        raise ValueError("need at least three checkpoints")
    x = np.log10(steps_a + max(1.0, steps_a[steps_a > 0].min() if (steps_a > 0).any() else 1.0))
    if half_width > 0 and len(x) >= 5:
        v = np.asarray(values, dtype=float)
        slope = np.full(len(x), np.nan)
        for i in range(2, len(x) - 2):
            h = max(half_width, x[i] - x[i - 2], x[i + 2] - x[i])  # a sparse grid widens the window
            near = np.abs(x - x[i]) <= h + 1e-12
            slope[i] = np.polyfit(x[near], v[near], 1)[0]
        i = int(np.nanargmin(slope) if direction == "down" else np.nanargmax(slope))
        return int(steps_a[i])
    y = smooth(values, sigma)
    slope = np.gradient(y, x)
    i = int(np.argmin(slope) if direction == "down" else np.argmax(slope))
    return int(steps_a[i])


def steepest_change_interval(steps: Sequence[int], values: Sequence[float], se: Sequence[float] | float,
                             sigma: float = 1.0, direction: str = "up", level: float = 0.9, n_sim: int = 500,
                             seed: int = 0, half_width: float = 0.0) -> tuple[int, int, int]:
    """(steepest-change step, low, high): where the curve changes fastest, and the ``level``
    interval of that step when the curve is redrawn with its estimates' noise (N(0, se) per
    checkpoint, ``n_sim`` times). Two curves' timings are resolved when their intervals do not
    overlap; the interval's width is the smallest timing difference the checkpoint grid and the
    noise together can detect. ``sigma`` and ``half_width`` as in ``steepest_change``."""
    steps_a = np.asarray(steps)
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    scale = np.broadcast_to(np.asarray(se, dtype=float), v.shape)
    draws = [steepest_change(steps_a, v + rng.normal(0.0, scale), sigma, direction, half_width) for _ in range(n_sim)]
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], method="nearest")
    return steepest_change(steps_a, v, sigma, direction, half_width), int(lo), int(hi)


ONSET_FRACTION = 0.2  # a fifth of the rise: where a curve has clearly left its floor (rllc.analysis.criteria)


def onset_step(steps: Sequence[int], values: Sequence[float], sigma: float = 1.0, direction: str = "up",
               fraction: float = ONSET_FRACTION, half_width: float = 0.0) -> int:
    """The step at which a curve leaves its floor on the way to its steepest change: the
    checkpoint after the last one, at or before the steepest change (``steepest_change`` with
    ``half_width``), at which the smoothed curve (Gaussian, ``sigma`` checkpoints) is still below
    its floor plus ``fraction`` of its rise. The floor is the curve's lowest value up to the
    steepest change and the top its highest after it (highest and lowest for ``direction`` "down").
    Where the curve is never below that level, its first checkpoint."""
    steps_a = np.asarray(steps)
    if len(steps_a) < 3:
        raise ValueError("need at least three checkpoints")
    sign = 1.0 if direction == "up" else -1.0
    y = sign * smooth(values, sigma)
    i = int(np.searchsorted(steps_a, steepest_change(steps_a, values, sigma, direction, half_width)))
    floor, top = float(y[: i + 1].min()), float(y[i:].max())
    below = np.flatnonzero(y[: i + 1] < floor + fraction * (top - floor))
    j = int(below[-1]) + 1 if len(below) else 0
    return int(steps_a[min(j, i)])


def onset_interval(steps: Sequence[int], values: Sequence[float], se: Sequence[float] | float, sigma: float = 1.0,
                   direction: str = "up", level: float = 0.9, n_sim: int = 500, seed: int = 0,
                   half_width: float = 0.0) -> tuple[int, int, int]:
    """(onset step, low, high): ``onset_step`` and its ``level`` interval when the curve is redrawn
    with its estimates' noise (N(0, se) per checkpoint, ``n_sim`` times), as ``steepest_change_interval``,
    widened back to the checkpoint before its low end: an onset read at a checkpoint happened after
    the one before it, so a grid cannot place two onsets a single checkpoint apart in order (two
    heads forming together, each drawn with its own noise, would otherwise often be one spacing apart)."""
    steps_a = np.asarray(steps)
    v = np.asarray(values, dtype=float)
    rng = np.random.default_rng(seed)
    scale = np.broadcast_to(np.asarray(se, dtype=float), v.shape)
    draws = [onset_step(steps_a, v + rng.normal(0.0, scale), sigma, direction, half_width=half_width)
             for _ in range(n_sim)]
    lo, hi = np.quantile(draws, [(1 - level) / 2, (1 + level) / 2], method="nearest")
    before = steps_a[max(int(np.searchsorted(steps_a, lo)) - 1, 0)]
    return onset_step(steps_a, v, sigma, direction, half_width=half_width), int(before), int(hi)


def timing(curves: pd.DataFrame, measure: str, direction: str, sigma: float = 1.0,
           min_step: int = 0, level: float = 0.9, seed: int = 0, half_width: float = 0.0) -> pd.DataFrame:
    """Per component of ``curves`` (component, step, value, optionally se): the step of steepest
    change, the onset (``onset_step``: where the curve leaves its floor; claim 5's statistic), the
    first critical point of the curve, and the checkpoint spacing around the steepest step. With an
    ``se`` column, also the ``level`` intervals under the estimates' noise of the steepest step
    (``steepest_change_interval``: columns lo, hi) and of the onset (onset_lo, onset_hi). ``sigma`` and ``half_width``
    as in ``steepest_change``.

    Only checkpoints from ``min_step`` on are searched (e.g. after a learning-rate warm-up, when
    every curve moves at once); with fewer than three left, every checkpoint after step 0 is
    used. ``from_step`` records where the search began."""
    rows = []
    for comp, d in curves.groupby("component"):
        d = d.sort_values("step")
        later = d[d["step"] >= min_step]
        d = later if len(later) >= 3 else (d[d["step"] > 0] if (d["step"] > 0).sum() >= 3 else d)
        steps, vals = d["step"].to_numpy(), d["value"].to_numpy()
        when = steepest_change(steps, vals, sigma, direction, half_width)
        i = int(np.searchsorted(steps, when))
        spacing = int(max(steps[min(i + 1, len(steps) - 1)] - steps[i], steps[i] - steps[max(i - 1, 0)]))
        crit = critical_points(steps, vals, sigma=sigma)
        row = {"component": comp, "measure": measure, "from_step": int(steps[0]),
               "steepest_step": when, "onset_step": onset_step(steps, vals, sigma, direction, half_width=half_width),
               "spacing": spacing,
               "first_critical_step": int(crit["step"].iloc[0]) if len(crit) else None,
               "first_critical_kind": crit["kind"].iloc[0] if len(crit) else None}
        if "se" in d:
            _, lo, hi = steepest_change_interval(steps, vals, d["se"].to_numpy(float), sigma, direction, level,
                                                 seed=seed, half_width=half_width)
            _, onset_lo, onset_hi = onset_interval(steps, vals, d["se"].to_numpy(float), sigma, direction, level,
                                                   seed=seed, half_width=half_width)
            row |= {"lo": lo, "hi": hi, "onset_lo": onset_lo, "onset_hi": onset_hi}
        rows.append(row)
    return pd.DataFrame(rows)


def timing_resolution(t: pd.DataFrame, statistic: str = "onset") -> pd.DataFrame:
    """Per measure of a ``timing`` table with intervals and two or more components, for
    ``statistic`` ("onset": columns onset_step, onset_lo, onset_hi; "steepest": steepest_step, lo,
    hi): the largest difference between the components' steps, whether it is resolved (the
    earliest- and latest-forming components' intervals do not overlap), and the smallest
    difference the grid and noise could resolve there (the wider of those two intervals, at least
    the checkpoint spacing)."""
    at, lo, hi = (("onset_step", "onset_lo", "onset_hi") if statistic == "onset" else ("steepest_step", "lo", "hi"))
    rows = []
    for measure, g in t.groupby("measure"):
        if len(g) < 2 or not {at, lo, hi} <= set(g.columns):
            continue
        ordered = g.sort_values([at, "component"], kind="stable")
        first, last = ordered.iloc[0], ordered.iloc[-1]
        width = max(int(first[hi] - first[lo]), int(last[hi] - last[lo]))
        rows.append({"measure": measure, "first": first["component"], "last": last["component"],
                     "difference": int(last[at] - first[at]),
                     "resolved": bool(first[hi] < last[lo]),
                     "smallest_resolvable": max(width, int(g["spacing"].max()))})
    return pd.DataFrame(rows, columns=["measure", "first", "last", "difference", "resolved", "smallest_resolvable"])


def relative_gap(estimates: pd.DataFrame, dr_data: str, wr_data: str = "train") -> pd.DataFrame:
    """Per (component, step): the wrLLC, the drLLC on ``dr_data`` (e.g. a generator model's
    predictions, "model:L1") and the relative gap (wrLLC − drLLC) / wrLLC, defined where the
    wrLLC is clearly positive."""
    t = ratio_table(estimates, dr_data, wr_data)
    t["gap"] = (t["wr"] - t["dr"]) / t["wr"].where(t["wr"] > 1e-6)
    return t.drop(columns=["ratio"])


def gap_before_after(gaps: pd.DataFrame, boundary: int, groups: dict[str, Sequence[str]],
                     min_step: int = 1) -> pd.DataFrame:
    """Mean relative gap of each group of heads before ``boundary`` (from ``min_step``) and from it
    on, and the increase after − before."""
    rows = []
    for group, members in groups.items():
        d = gaps[gaps["component"].isin(list(members)) & (gaps["step"] >= min_step)]
        before = d[d["step"] < boundary]["gap"]
        after = d[d["step"] >= boundary]["gap"]
        rows.append({"group": group, "n_heads": len(set(members)), "boundary": int(boundary),
                     "gap_before": float(before.mean()) if len(before) else float("nan"),
                     "gap_after": float(after.mean()) if len(after) else float("nan")})
    out = pd.DataFrame(rows)
    out["increase"] = out["gap_after"] - out["gap_before"]
    return out


def loss_gap(log: pd.DataFrame, generator: str = "L1", model: str = "L2") -> pd.Series:
    """The generator's test loss minus the model's at each checkpoint both logged (training log
    rows step, model, split, loss): how far the data source of claim 6 trails the model."""
    test = log[(log["split"] == "test") & log["model"].isin([generator, model])]
    wide = test.pivot_table(index="step", columns="model", values="loss").dropna()
    return (wide[generator] - wide[model]) if {generator, model} <= set(wide.columns) else pd.Series(dtype=float)
