"""Robust critical points: synthetic curves with known extrema and a plateau, under noise of the
size the estimates report (no spurious stages), against the slope-sign rule (which finds them)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rllc.analysis.stages import (
    critical_points,
    end_trend,
    noise_thresholds,
    peak_reading,
    robust_critical_points,
    rule_inputs,
    stages,
    warmup_verdict,
)

# the cpu profile's 54 checkpoints: dense early, sparse late
STEPS = np.array([*range(0, 501, 50), *range(600, 2001, 100), *range(2250, 6001, 250), *range(6500, 12001, 500)])
SE = 0.05


def curve() -> np.ndarray:
    """Rise to a maximum at 1k, fall to a minimum at 3.5k, rise, then flat from 8k."""
    x = np.log10(STEPS + 50.0)
    peak, trough, flat = np.log10([1050.0, 3550.0, 8050.0])
    y = np.interp(x, [x[0], peak, trough, flat, x[-1]], [0.0, 1.0, 0.4, 1.2, 1.2])
    return y


def kinds_near(points, kind: str, step: int, tol: int) -> int:
    sel = points[points["kind"] == kind]
    return int((np.abs(np.log10(sel["step"] + 50.0) - np.log10(step + 50.0)) <= np.log10(1 + tol)).sum())


@pytest.mark.parametrize("seed", range(10))
def test_robust_points_find_the_true_ones_and_nothing_else_at_the_reported_noise(seed):
    rng = np.random.default_rng(seed)
    noisy = curve() + rng.normal(0, SE, len(STEPS))
    points = robust_critical_points(STEPS, noisy, SE)
    assert kinds_near(points, "maximum", 1000, 0.3) == 1, points
    assert kinds_near(points, "minimum", 3500, 0.3) == 1, points
    assert (points["kind"] == "maximum").sum() == 1 and (points["kind"] == "minimum").sum() == 1, points
    assert (points["kind"] == "plateau").sum() <= 1, points


def test_the_slope_sign_rule_finds_spurious_points_at_the_same_noise():
    """Why the robust rule exists: the old rule turns every wiggle of the noise into a stage."""
    counts = [len(critical_points(STEPS, curve() + np.random.default_rng(s).normal(0, SE, len(STEPS)), sigma=1.0))
              for s in range(10)]
    robust = [len(robust_critical_points(STEPS, curve() + np.random.default_rng(s).normal(0, SE, len(STEPS)), SE))
              for s in range(10)]
    assert np.mean(counts) > np.mean(robust) + 1, (counts, robust)


def test_noise_alone_rarely_has_critical_points():
    """At level 0.95 a pure-noise curve shows a point with probability about 0.05 (extrema; the
    plateau rule needs a move above the same threshold first)."""
    hits = sum(not robust_critical_points(STEPS, 2.0 + np.random.default_rng(100 + s).normal(0, SE, len(STEPS)),
                                          SE).empty for s in range(40))
    assert hits <= 5, hits


def test_a_bump_counts_only_when_it_stands_out_of_the_noise():
    x = np.log10(STEPS + 50.0)
    shape = np.exp(-((x - np.log10(2050.0)) ** 2) / 0.01)
    noise = np.random.default_rng(0).normal(0, SE, len(STEPS))
    small = robust_critical_points(STEPS, 0.5 * SE * shape + noise, SE)
    big = robust_critical_points(STEPS, 20 * SE * shape + noise, SE)
    assert small.empty
    assert kinds_near(big, "maximum", 2000, 0.3) == 1 and big["prominence"].dropna().min() >= 1


def test_a_clean_plateau_is_found():
    x = np.log10(STEPS + 50.0)
    y = np.clip((x - x[0]) / (np.log10(4050.0) - x[0]), 0, 1)  # rises, flat from 4k on
    points = robust_critical_points(STEPS, y, SE / 10)
    plateaus = points[points["kind"] == "plateau"]
    assert len(plateaus) == 1 and 3000 <= plateaus["step"].iloc[0] <= 6000, points


def test_stages_use_the_robust_rule_when_given_errors():
    rng = np.random.default_rng(3)
    noisy = curve() + rng.normal(0, SE, len(STEPS))
    table = stages(STEPS, noisy, se=np.full(len(STEPS), SE))
    assert 3 <= len(table) <= 4 and table["start"].iloc[0] == 0 and table["end"].iloc[-1] == STEPS[-1]
    x = np.log10(STEPS + 50.0)
    assert noise_thresholds(x, SE, 2.0)[0] < noise_thresholds(x, SE, 0.0)[0]  # smoothing lowers the noise
    with pytest.raises(ValueError, match="positive"):
        robust_critical_points(STEPS, noisy, 0.0)


@pytest.mark.parametrize("se", [0.02, 0.05, 0.1, 0.2, 0.4])
def test_more_noise_loses_points_but_never_invents_them(se):
    """As the errors grow (up to two thirds of the dip of 0.6) the true extrema fade or shift, but
    the rule never reports more extrema than the curve has, and a second plateau (the curve has
    one) stays within the family-wise 5% (at most 4 of 40 seeds)."""
    found_true, extra_extrema, extra_plateaus = 0, 0, 0
    for s in range(40):
        noisy = curve() + np.random.default_rng(1000 + s).normal(0, se, len(STEPS))
        points = robust_critical_points(STEPS, noisy, se)
        found_true += kinds_near(points, "maximum", 1000, 0.3) + kinds_near(points, "minimum", 3500, 0.3)
        extra_extrema += int((points["kind"] == "maximum").sum() > 1 or (points["kind"] == "minimum").sum() > 1)
        extra_plateaus += int((points["kind"] == "plateau").sum() > 1)
    assert extra_extrema == 0, (se, extra_extrema)
    assert extra_plateaus <= 4, (se, extra_plateaus)
    if se <= 0.05:
        assert found_true == 80, (se, found_true)


def test_peak_reading_finds_the_early_peak_and_the_loss_there():
    curve_t = pd.DataFrame({"step": [0, 50, 100, 150, 200, 300, 600], "llc_mean": [1.0, 3.0, 7.0, 9.0, 6.0, 4.0, 8.5]})
    loss = pd.DataFrame({"step": [0, 100, 200, 400], "loss": [6.0, 4.0, 3.6, 3.4]})
    r = peak_reading(curve_t, loss, warmup_steps=500, until=300)
    assert r["peak_step"] == 150 and r["peak_llc"] == 9.0 and r["warmup_fraction"] == pytest.approx(0.3)
    x = np.log1p([100, 150, 200])
    assert r["test_loss_at_peak"] == pytest.approx(4.0 + (3.6 - 4.0) * (x[1] - x[0]) / (x[2] - x[0]))
    assert peak_reading(curve_t, loss, warmup_steps=500)["peak_step"] == 150  # 600 (8.5) < 9.0
    with pytest.raises(ValueError, match="no checkpoint"):
        peak_reading(curve_t[curve_t["step"] > 10], loss, 500, until=10)


def test_warmup_verdicts():
    def r(steps, losses):
        return pd.DataFrame({"warmup_steps": [150, 500, 1500], "peak_step": steps, "test_loss_at_peak": losses})
    assert warmup_verdict(r([150, 150, 200], [3.6, 3.7, 3.9]), spacing=50, loss_tolerance=0.05)[0] == "stage"
    assert warmup_verdict(r([50, 150, 450], [3.64, 3.65, 3.66]), 50, 0.05)[0] == "stage delayed by the warm-up"
    verdict, reason = warmup_verdict(r([50, 150, 450], [4.4, 3.64, 3.5]), 50, 0.05)
    assert verdict == "warm-up artefact" and "0.900" in reason
    assert warmup_verdict(r([450, 150, 50], [3.6, 3.6, 3.6]), 50, 0.05)[0] == "unclear"


def test_end_trend_tells_a_rising_end_from_a_plateau():
    steps = np.array([1000, 2000, 4000, 6000, 8000, 10000, 12000])
    rising = end_trend(steps, np.log10(steps), 0.01)
    flat = end_trend(steps, np.minimum(np.log10(steps), 3.6), 0.01)
    i = int(np.searchsorted(np.log10(steps), np.log10(12000) - 0.15))
    assert rising["change"] == pytest.approx(np.log10(12000) - np.log10(steps[i]))
    assert rising["se"] == pytest.approx(np.hypot(0.01, 0.01)) and rising["z"] > 2
    assert flat["change"] == 0 and flat["z"] == 0


def test_a_flat_end_shorter_than_the_window_is_not_a_plateau():
    """A rise that stops 0.1 decades before the run ends has not been seen flat for the 0.2-decade
    window; the same rise stopping 0.3 decades before the end has."""
    x = np.log10(STEPS + 50.0)
    late = np.clip((x - x[0]) / (x[-1] - 0.1 - x[0]), 0, 1)
    early = np.clip((x - x[0]) / (x[-1] - 0.3 - x[0]), 0, 1)
    assert (robust_critical_points(STEPS, late, SE / 10)["kind"] == "plateau").sum() == 0
    assert (robust_critical_points(STEPS, early, SE / 10)["kind"] == "plateau").sum() == 1


def test_rule_inputs_leave_out_estimates_without_value_or_standard_error():
    # step 20: every chain flagged (no value); step 30: one healthy chain (no standard error)
    curve = pd.DataFrame({"step": [40, 10, 20, 30, 0], "llc_mean": [4.0, 1.0, np.nan, 3.0, 0.5],
                          "llc_sem": [0.1, 0.2, np.nan, np.nan, 0.3]})
    valued, tested, note = rule_inputs(curve)
    assert valued["step"].tolist() == [0, 10, 30, 40]
    assert tested["step"].tolist() == [0, 10, 40]
    assert "1 without a healthy chain" in note and "1 with one healthy chain" in note


def test_end_trend_of_a_single_estimate_is_undefined():
    out = end_trend([100], [1.0], 0.1)
    assert all(np.isnan(v) for v in out.values())


def test_fewer_than_two_checkpoints_bound_no_stage():
    # at the smallest counts no estimate may have a standard error: the noise-tied rule gets nothing
    for steps, values in (([], []), ([100], [1.0])):
        for se in (None, [0.1] * len(steps)):
            out = stages(steps, values, se=se)
            assert out.empty and list(out.columns) == ["stage", "start", "end", "llc_start", "llc_end", "ends_at",
                                                       "trend"]
    two = stages([0, 100], [0.0, 1.0], se=[0.1, 0.1])  # two checkpoints: one stage, rising
    assert two[["stage", "start", "end", "trend"]].values.tolist() == [["LM1", 0, 100, "rising"]]
