"""Calibration of the reported standard errors: over reruns with different seeds, the spread of the
means must match the errors the estimates report (this test can fail, and does for devinterp's
shared batch order under the init reference)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rllc.config import SamplerConfig
from rllc.estimate import reruns
from rllc.estimate.llc import estimate_llc


def test_seed_spread_on_known_numbers():
    out = reruns.seed_spread([1.0, 2.0, 3.0, 4.0], [1.0, 1.0, 1.0, 1.0])
    assert out["n"] == 4 and out["mean"] == 2.5
    assert out["sd_means"] == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    assert out["variance_ratio"] == pytest.approx(np.var([1, 2, 3, 4], ddof=1))
    assert out["ratio_lo"] < 1 < out["ratio_hi"]
    one = reruns.seed_spread([1.0, float("nan")], [0.1, 0.1])  # one healthy rerun: no spread, undecided
    assert one["n"] == 1 and one["mean"] == 1.0 and one["calibrated"] is None
    assert all(math.isnan(one[k]) for k in ("sd_means", "rms_se", "variance_ratio", "z_sd"))
    assert reruns.seed_spread([], [])["n"] == 0


def test_rerun_seeds_share_no_chain():
    seeds = reruns.rerun_seeds(100, 5)
    chains = [{s + c for c in range(8)} for s in seeds]
    assert all(not (a & b) for i, a in enumerate(chains) for b in chains[i + 1:])


SETTINGS = dict(epsilon=1e-3, gamma=100.0, nbeta=30.0, chains=4, draws=20, burnin=5, batch_size=8, init_loss_batches=4)


def _spread(trained, component: str, n: int, **kw) -> dict:
    model, data = trained
    s = SamplerConfig(**{**SETTINGS, **kw})

    def one(seed: int) -> tuple[float, float]:
        r = estimate_llc(model, component, data, SamplerConfig(**{**s.__dict__, "seed": seed}), device="cpu")
        return r.mean, r.sem

    table = reruns.rerun(one, 100, n)
    return reruns.seed_spread(table["mean"], table["sem"])


def test_per_chain_batch_orders_give_calibrated_errors(trained):
    """The default (each chain its own batch order and paired reference): the seed-to-seed variance
    of the means matches the reported errors within the χ² interval of 30 reruns."""
    out = _spread(trained, "1:0", 30, reference="paired", batch_order="per_chain")
    assert out["calibrated"], out
    assert 0.7 < out["z_sd"] < 1.3, out


def test_a_shared_batch_order_under_the_init_reference_understates_the_error(trained):
    """devinterp's convention: every chain compares its draws with one L(w*) from the same first
    batches, so their offset is common to all chains and missing from the reported error."""
    out = _spread(trained, "1:0", 30, reference="init", batch_order="shared")
    assert not out["calibrated"] and out["variance_ratio"] > out["ratio_hi"], out
