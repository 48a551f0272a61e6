"""The noise budget on tables with known differences and errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rllc.analysis import noise


def test_along_a_curve_changes_are_compared_with_their_standard_error():
    t = pd.DataFrame({"step": [200, 0, 100], "value": [3.0, 1.0, 1.5], "se": [0.4, 0.3, 0.4]})
    out = noise.along_curve(t)
    assert out["step_a"].tolist() == [0, 100] and out["change"].tolist() == [0.5, 1.5]
    assert out["se_change"].iloc[0] == pytest.approx(0.5) and out["z"].iloc[0] == pytest.approx(1.0)


def test_between_heads_spread_against_the_typical_error():
    t = pd.DataFrame({"step": [5] * 4 + [9] * 4, "component": ["0:0", "0:1", "1:0", "1:1"] * 2,
                      "value": [1.0, 3.0, 2.0, 2.0, 1.0, 1.0, 5.0, 7.0], "se": [0.5] * 8})
    out = noise.between_heads(t).set_index(["layer", "step"])
    assert out.loc[(0, 5), "spread"] == pytest.approx(np.std([1, 3], ddof=1))
    assert out.loc[(1, 5), "spread"] == 0 and out.loc[(1, 9), "ratio"] == pytest.approx(np.sqrt(2) / 0.5)
    s = noise.summary(noise.along_curve(t[t["component"] == "0:0"]), noise.between_heads(t))
    assert s["difference"].tolist() == ["neighbouring checkpoints", "heads of layer 0", "heads of layer 1"]
    assert s.loc[0, "ratio"] == pytest.approx(0.0)  # 0:0 does not move between its two checkpoints


@pytest.mark.parametrize("sigma", [0.01, 0.1])
def test_difference_sd_recovers_white_noise_on_a_smooth_curve(sigma):
    x = np.log10(np.arange(100, 20_100, 100))
    y = 2.0 * x + 0.3 * np.sin(3 * x) + np.random.default_rng(0).normal(0, sigma, len(x))
    assert noise.difference_sd(y) == pytest.approx(sigma, rel=0.2)
    with pytest.raises(ValueError, match="five points"):
        noise.difference_sd([1.0, 2.0, 3.0, 4.0])


def test_samples_needed_follows_the_square_law():
    assert noise.samples_needed(1.0) == pytest.approx(4.0)
    assert noise.samples_needed(0.5, target=2.0) == pytest.approx(16.0)
    assert noise.samples_needed(3.0) == 1.0 and noise.samples_needed(0.0) == float("inf")


def test_budget_costs_the_samples_needed():
    rows = noise.summary(along=pd.DataFrame({"step_a": [0, 1], "step_b": [1, 2], "change": [0.1, 0.1],
                                             "se_change": [0.1, 0.1], "z": [1.0, 1.0]}))
    b = noise.budget("1", rows, seconds=60.0)
    assert b["claim"].tolist() == ["1"] and b["samples_needed"].iloc[0] == pytest.approx(4.0)
    assert b["seconds_needed"].iloc[0] == pytest.approx(240.0)


def test_precision_table_predicts_from_the_cheapest_setting():
    grid = pd.DataFrame({"component": ["full"] * 3, "chains": [3, 6, 12], "draws": [50, 50, 50],
                         "llc_mean": [1.0, 1.1, 1.0], "llc_sem": [0.4, 0.3, 0.2], "seconds": [10.0, 20.0, 40.0]})
    t = noise.precision_table(grid)
    assert t["se_predicted"].tolist() == pytest.approx([0.4, 0.4 / np.sqrt(2), 0.2])
    assert t["time_ratio"].tolist() == pytest.approx([1, 2, 4]) and t["se_ratio"].iloc[2] == pytest.approx(0.5)
    assert t["se2_x_seconds"].iloc[0] == pytest.approx(1.6)


def test_with_difference_se_gives_each_curve_its_own_noise():
    steps = np.arange(0, 3000, 100)
    rng = np.random.default_rng(1)
    curves = pd.concat([pd.DataFrame({"component": c, "step": steps, "value": np.log1p(steps) + rng.normal(0, s, 30)})
                        for c, s in (("a", 0.01), ("b", 0.2))])
    out = noise.with_difference_se(curves, min_step=500)
    se = out.groupby("component")["se"].first()
    assert se["b"] > 5 * se["a"]
    assert out.groupby("component")["se"].nunique().eq(1).all()
