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
