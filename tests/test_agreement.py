"""Agreement of a per-head measure with the rLLC: orders, tracking and critical points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rllc.analysis import agreement
from rllc.analysis.stages import critical_points
from rllc.estimate.sweep import spread

HEADS = [f"{layer}:{h}" for layer in (0, 1) for h in range(4)]
STEPS = [100, 200, 400, 800, 1600, 3200, 6400]


def frame(fn) -> pd.DataFrame:
    return pd.DataFrame([{"step": s, "component": h, "value": fn(i, s)} for i, h in enumerate(HEADS) for s in STEPS])


def test_final_order_is_one_for_a_monotone_transform_and_minus_one_reversed():
    ref = frame(lambda i, s: i + np.log(s))
    same = frame(lambda i, s: np.exp(i) * 3)
    rev = frame(lambda i, s: -i)
    o = agreement.final_order(same, ref).set_index("scope")
    assert o.loc["all", "rho"] == pytest.approx(1.0) and o.loc["all", "n_heads"] == 8
    assert set(o.index) == {"all", "layer 0", "layer 1"}
    assert agreement.final_order(rev, ref).set_index("scope").loc["layer 1", "rho"] == pytest.approx(-1.0)


def test_tracking_separates_a_head_own_curve_from_the_other_heads():
    rng = np.random.default_rng(0)
    shapes = {i: rng.permutation(len(STEPS)) for i in range(len(HEADS))}  # each head its own shape
    ref = frame(lambda i, s: float(shapes[i][STEPS.index(s)]))
    measure = frame(lambda i, s: 2.0 * shapes[i][STEPS.index(s)] + 1)
    t = agreement.tracking(measure, ref).set_index("component")
    assert t["rho"].to_numpy() == pytest.approx(1.0)
    assert (t["null_median"] < 0.9).all() and t["n_steps"].eq(len(STEPS)).all()


def test_tracking_skips_checkpoints_without_a_value():
    """An estimate whose every chain was flagged is NaN: that head's pairs use the other checkpoints
    (pivoting would drop the NaN and leave curves of unequal length)."""
    rng = np.random.default_rng(1)
    shapes = {i: rng.permutation(len(STEPS)) for i in range(len(HEADS))}
    ref = frame(lambda i, s: float(shapes[i][STEPS.index(s)]))
    ref.loc[(ref["component"] == HEADS[0]) & (ref["step"] == STEPS[2]), "value"] = np.nan
    measure = frame(lambda i, s: 2.0 * shapes[i][STEPS.index(s)] + 1)
    t = agreement.tracking(measure, ref).set_index("component")
    assert t.loc[HEADS[0], "n_steps"] == len(STEPS) - 1 and t.loc[HEADS[1], "n_steps"] == len(STEPS)
    assert t["rho"].to_numpy() == pytest.approx(1.0)


def test_critical_point_offsets_measure_distance_in_decades():
    def bump(peak):
        return lambda i, s: float(np.exp(-((np.log10(s) - np.log10(peak)) ** 2) / 0.05))

    ref = frame(bump(800))
    same = agreement.critical_point_offsets(ref, ref, sigma=0.0)
    assert len(same) >= len(HEADS) and (same["offset_decades"] == 0).all()
    shifted = agreement.critical_point_offsets(frame(bump(1600)), ref, sigma=0.0)
    ref_steps = np.array(critical_points(STEPS, [bump(800)(0, s) for s in STEPS], sigma=0.0, min_gap=1)["step"])
    for row in shifted.itertuples():  # the distance to the nearest reference point, computed here
        assert row.offset_decades == pytest.approx(np.abs(np.log10(ref_steps) - np.log10(row.step)).min())
    assert shifted["offset_decades"].max() == pytest.approx(np.log10(2))  # one checkpoint of a doubling grid


def test_spread_keeps_the_ends():
    assert spread([0, 1, 2, 3, 4, 5, 6], 3) == [0, 3, 6]
    assert spread([5, 7], 0) == [5, 7] and spread([5, 7], 9) == [5, 7]
