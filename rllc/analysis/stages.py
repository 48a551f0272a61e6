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
from scipy.signal import find_peaks


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


def noise_thresholds(x: np.ndarray, se: Sequence[float] | float, sigma: float, level: float = 0.95,
                     n_sim: int = 400, seed: int = 0) -> tuple[float, float]:
    """What noise alone produces on a curve sampled at log steps ``x`` with standard errors
    ``se``, smoothed with ``sigma``: the ``level`` quantiles of the largest peak prominence and of
    the largest absolute slope over the whole curve, from ``n_sim`` simulated noise-only curves
    (a family-wise threshold: a pure-noise curve crosses it with probability 1 − ``level``)."""
    rng = np.random.default_rng(seed)
    scale = np.broadcast_to(np.asarray(se, dtype=float), x.shape)
    proms, slopes = np.empty(n_sim), np.empty(n_sim)
    for k in range(n_sim):
        y = smooth(rng.normal(0.0, scale), sigma)
        p = [find_peaks(sign * y, prominence=0.0)[1]["prominences"] for sign in (1.0, -1.0)]
        proms[k] = max((float(q.max()) for q in p if len(q)), default=0.0)
        slopes[k] = float(np.abs(np.gradient(y, x))[1:-1].max())
    return float(np.quantile(proms, level)), float(np.quantile(slopes, level))


def robust_critical_points(steps: Sequence[int], values: Sequence[float], se: Sequence[float] | float,
                           sigma: float = 1.0, level: float = 0.95, min_gap: int = 2, window: float = 0.2,
                           seed: int = 0) -> pd.DataFrame:
    """Critical points that stand out of the estimates' noise (Hoogland et al. 2024 place stage
    boundaries at extrema and plateaus of the smoothed LLC against log step).

    The thresholds come from the estimates' standard errors ``se``, through ``noise_thresholds``:
    curves of pure noise with those errors, sampled and smoothed the same way, cross them anywhere
    with probability 1 − ``level``.

    * **extrema**: ``scipy.signal.find_peaks`` of the smoothed curve (and of its negative) with a
      prominence above the noise threshold;
    * **plateaus**: where the curve has moved by more than the threshold over the last ``window``
      decades of steps and then stays within half of it over the next ``window`` decades (at
      least ``min_gap`` checkpoints; the run must extend that far: a flat end shorter than the
      window is not yet a plateau), more than ``min_gap`` checkpoints from any extremum and with
      none in the next 2·``window`` decades (a rise flattening into a peak is not a plateau); the
      first checkpoint of such a run.

    Rows: step, kind (maximum, minimum, plateau), value (smoothed), prominence (in units of the
    threshold; NaN for plateaus). Points within ``min_gap`` checkpoints of either end are dropped."""
    steps_a = np.asarray(steps, dtype=float)
    y_raw = np.asarray(values, dtype=float)
    if len(steps_a) != len(y_raw):
        raise ValueError(f"{len(steps_a)} steps but {len(y_raw)} values")
    columns = ["step", "kind", "value", "prominence"]
    if len(steps_a) < 2 * min_gap + 2:
        return pd.DataFrame(columns=columns)
    if not np.all(np.asarray(se, dtype=float) > 0):
        raise ValueError("the standard errors must be positive to tell a critical point from noise")
    x = np.log10(steps_a + max(1.0, steps_a[steps_a > 0].min() if (steps_a > 0).any() else 1.0))
    y = smooth(y_raw, sigma)
    prom_thr, _ = noise_thresholds(x, se, sigma, level, seed=seed)
    found: list[tuple[int, str, float]] = []
    for sign, kind in ((1.0, "maximum"), (-1.0, "minimum")):
        idx, props = find_peaks(sign * y, prominence=prom_thr)
        found += [(int(i), kind, float(p) / prom_thr) for i, p in zip(idx, props["prominences"], strict=True)]
    extrema = [i for i, _, _ in found]
    # a plateau begins where the curve has moved by more than noise can over the last ``window``
    # decades of steps and then stays within noise over the next ``window`` decades
    plateau_run = False
    for i in range(1, len(y) - 1):
        since = max([j for j, _, _ in found if j < i], default=0)  # a new point needs a new move
        before = y[i] - y[max(int(np.searchsorted(x, x[i] - window)), since)]
        ahead = np.abs(y[(x > x[i]) & (x <= x[i] + window)] - y[i])
        seen = x[-1] - x[i] >= window - 1e-9  # a plateau must be watched for the whole window
        is_onset = abs(before) > prom_thr and len(ahead) >= min_gap and ahead.max() < prom_thr / 2 and seen
        clear = all(abs(i - j) > min_gap and not 0 < x[j] - x[i] <= 2 * window for j in extrema)
        if is_onset and not plateau_run and clear:
            found.append((i, "plateau", float("nan")))
        plateau_run = is_onset or (plateau_run and len(ahead) > 0 and ahead.max() < prom_thr / 2)
    found = sorted(f for f in found if min_gap <= f[0] <= len(y) - 1 - min_gap)
    return pd.DataFrame({"step": [int(steps_a[i]) for i, _, _ in found], "kind": [k for _, k, _ in found],
                         "value": [float(y[i]) for i, _, _ in found], "prominence": [p for _, _, p in found]},
                        columns=columns)


STAGE_COLUMNS = ["stage", "start", "end", "llc_start", "llc_end", "ends_at", "trend"]


def stages(steps: Sequence[int], values: Sequence[float], se: Sequence[float] | None = None,
           **kwargs: float) -> pd.DataFrame:
    """Stages LM1..LMk: start and end step, the LLC at both ends (smoothed), and the kind of the
    critical point that ends each stage, and the number of checkpoints the curve had
    (``n_checkpoints``, on every row). With the estimates' standard errors ``se`` the
    boundaries are ``robust_critical_points`` (extrema and plateaus that stand out of the noise);
    without, the slope-sign rule of ``critical_points``. Fewer than two checkpoints bound no stage:
    the table is then empty (at the smallest counts every estimate may lack a standard error)."""
    steps = list(int(s) for s in steps)
    if len(steps) < 2:
        return pd.DataFrame(columns=STAGE_COLUMNS)
    points = (robust_critical_points(steps, values, se, **kwargs) if se is not None
              else critical_points(steps, values, **kwargs))
    y = smooth(values, kwargs.get("sigma", 1.0 if se is not None else 1.5))
    bounds = [steps[0], *points["step"].tolist(), steps[-1]]
    ends = [*points["kind"].tolist(), "end"]
    rows = []
    for k, (a, b) in enumerate(zip(bounds[:-1], bounds[1:], strict=True)):
        if b <= a:
            continue
        rows.append({"stage": f"LM{len(rows) + 1}", "start": a, "end": b,
                     "llc_start": float(y[steps.index(a)]), "llc_end": float(y[steps.index(b)]),
                     "ends_at": ends[k]})
    out = pd.DataFrame(rows, columns=STAGE_COLUMNS[:-1])
    out["trend"] = np.where(out["llc_end"] >= out["llc_start"], "rising", "falling")
    out["n_checkpoints"] = len(steps)  # the resolution the stages were found at (claim 1 reads it)
    return out


def rule_inputs(curve: pd.DataFrame, value: str = "llc_mean", se: str = "llc_sem"
                ) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The checkpoints of an LLC curve (rows step, ``value``, ``se``) that each stage rule can use:
    (valued — a finite value, for the slope-sign rule; tested — also a positive standard error,
    for the noise-tied rule; a one-line account of what was left out). An estimate whose every
    chain was flagged has no value, and one with a single healthy chain no standard error; both
    are legal at the smallest counts and are left out rather than read as numbers."""
    d = curve.sort_values("step").reset_index(drop=True)
    valued = d[np.isfinite(d[value].to_numpy(float))].reset_index(drop=True)
    tested = valued[valued[se].to_numpy(float) > 0].reset_index(drop=True)
    note = (f"{len(d)} checkpoints: {len(d) - len(valued)} without a healthy chain (no value), "
            f"{len(valued) - len(tested)} with one healthy chain (no standard error); the slope-sign rule uses "
            f"{len(valued)}, the noise-tied rule {len(tested)}")
    return valued, tested, note


def stage_of(stages_table: pd.DataFrame, step: int) -> str | None:
    """The name of the stage containing ``step`` (a boundary belongs to the stage it starts)."""
    for row in stages_table.itertuples():
        if row.start <= step < row.end or (step == row.end and row.Index == stages_table.index[-1]):
            return str(row.stage)
    return None


def peak_reading(curve: pd.DataFrame, test_loss: pd.DataFrame, warmup_steps: int, until: int | None = None,
                 value: str = "llc_mean") -> dict[str, float]:
    """The largest value of an LLC curve (rows step, ``value``) up to step ``until``: its step,
    its value, where it falls in the learning-rate warm-up (step / ``warmup_steps``; NaN without
    one) and the test loss there (rows step, loss; interpolated on log steps)."""
    c = curve[curve["step"] <= (until if until is not None else curve["step"].max())]
    if c.empty:
        raise ValueError("no checkpoint before the end of the window to look for a peak")
    row = c.loc[c[value].idxmax()]
    step = int(row["step"])
    tl = test_loss.sort_values("step")
    loss = float(np.interp(np.log1p(step), np.log1p(tl["step"].to_numpy(float)), tl["loss"].to_numpy(float)))
    return {"peak_step": step, "peak_llc": float(row[value]),
            "warmup_fraction": step / warmup_steps if warmup_steps > 0 else float("nan"), "test_loss_at_peak": loss}


def warmup_verdict(readings: pd.DataFrame, spacing: int, loss_tolerance: float) -> tuple[str, str]:
    """Whether an early LLC peak follows the learning-rate warm-up or what the model learns, from
    ``readings`` (one row per run: warmup_steps, peak_step, test_loss_at_peak) of runs that differ
    only in their warm-up. Returns (verdict, reason):

    * ``stage``: the peak stays within one checkpoint ``spacing`` whatever the warm-up;
    * ``stage delayed by the warm-up``: it moves with the warm-up but always comes at the same
      test loss (within ``loss_tolerance``): the model reaches the same point of learning later;
    * ``warm-up artefact``: it moves with the warm-up and comes at different test losses;
    * ``unclear``: it moves, but not monotonically with the warm-up."""
    r = readings.sort_values("warmup_steps")
    steps, losses = r["peak_step"].to_numpy(float), r["test_loss_at_peak"].to_numpy(float)
    loss_range = float(losses.max() - losses.min())
    if steps.max() - steps.min() <= spacing:
        return "stage", (f"the peak stays at steps {int(steps.min())}–{int(steps.max())} (within one checkpoint "
                         f"spacing, {spacing}) for warm-ups of {', '.join(str(int(w)) for w in r['warmup_steps'])}")
    moves = bool(np.all(np.diff(steps) >= 0))
    where = ", ".join(f"warm-up {int(w)}: step {int(s)} (test loss {lo:.3f})"
                      for w, s, lo in zip(r["warmup_steps"], steps, losses, strict=True))
    if not moves:
        return "unclear", f"the peak moves by more than a checkpoint spacing but not in step with the warm-up ({where})"
    if loss_range <= loss_tolerance:
        return "stage delayed by the warm-up", (f"the peak moves with the warm-up ({where}) but comes at the same "
                                                f"test loss (range {loss_range:.3f} ≤ {loss_tolerance:.3f})")
    return "warm-up artefact", (f"the peak moves with the warm-up ({where}), at test losses {loss_range:.3f} apart "
                                f"(more than {loss_tolerance:.3f}): it follows the learning-rate schedule, not "
                                f"what the model has learned")


def end_trend(steps: Sequence[int], values: Sequence[float], se: Sequence[float] | float,
              decades: float = 0.15) -> dict[str, float]:
    """How much a curve still moves at the end of training: the change of its values over the last
    ``decades`` of log step (last value minus the value at the first checkpoint inside the window),
    its standard error from the two points' errors, and z = change / se. A large z says the run
    ends while the curve is still moving (no plateau yet)."""
    steps_a = np.asarray(steps, dtype=float)
    v = np.asarray(values, dtype=float)
    s = np.broadcast_to(np.asarray(se, dtype=float), v.shape)
    if len(v) < 2:  # nothing to compare: every estimate but one had no healthy chain
        return {"decades": float("nan"), "change": float("nan"), "se": float("nan"), "z": float("nan")}
    x = np.log10(np.maximum(steps_a, 1.0))
    i = int(np.searchsorted(x, x[-1] - decades))
    i = min(i, len(v) - 2)
    change = float(v[-1] - v[i])
    err = float(np.hypot(s[-1], s[i]))
    return {"decades": float(x[-1] - x[i]), "change": change, "se": err, "z": change / err if err > 0 else float("inf")}
