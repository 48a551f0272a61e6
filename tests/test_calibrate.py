"""The SGLD calibration grid: one row per setting, traces that agree with the estimates."""

from __future__ import annotations

import numpy as np
import pytest

from rllc.config import SamplerConfig
from rllc.estimate.calibrate import calibration_grid


def test_grid_rows_traces_and_monotone_step_size(trained) -> None:
    model, data = trained
    base = SamplerConfig(chains=2, draws=20, burnin=10, batch_size=16, seed=3, reference="paired")
    est, traces = calibration_grid(model, data, "1:0", epsilons=(1e-4, 1e-3), nbetas=(10.0, 30.0), base=base,
                                   progress=False)
    grid = list(zip(est["epsilon"], est["nbeta"], strict=True))
    assert grid == [(1e-4, 10.0), (1e-4, 30.0), (1e-3, 10.0), (1e-3, 30.0)]
    assert (est["n_chains"] == 2).all() and (est["n_ok"] <= 2).all()
    assert len(traces) == 4 * 2 * (base.burnin + base.draws)
    # the estimate is nbeta times the mean rise of the draws, so it can be recomputed from the traces
    for (eps, nbeta), tr in traces.groupby(["epsilon", "nbeta"]):
        draws = tr[tr["sgld_step"] >= base.burnin]
        row = est[(est["epsilon"] == eps) & (est["nbeta"] == nbeta)].iloc[0]
        if row["n_ok"] == 2:
            assert row["llc_mean"] == pytest.approx(nbeta * draws["rise"].mean(), rel=1e-6)
    # a ten times smaller step moves the chains less far from w*: a smaller rise at equal nbeta
    rise = traces[traces["sgld_step"] >= base.burnin].groupby(["epsilon", "nbeta"])["rise"].mean()
    assert rise[(1e-4, 10.0)] < rise[(1e-3, 10.0)]
    assert np.isfinite(est["late_over_early"]).all()
