"""The estimator against known answers and against devinterp 2.0.1 (these tests can fail)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from rllc.config import SamplerConfig
from rllc.estimate import known
from rllc.estimate.llc import sample_llc
from rllc.model.components import component_masks

pytestmark = pytest.mark.slow  # seconds to a minute each: long chains are what make them exact


def test_aoyagi_formula_known_values() -> None:
    assert known.aoyagi_rrr(3, 3, 3, 1) == 4.0
    assert known.aoyagi_rrr(3, 3, 3, 0) == 3.5  # odd case: (27 + 1) / 8
    assert known.aoyagi_rrr(5, 3, 4, 2) == 7.0
    assert known.aoyagi_rrr(1, 1, 1, 1) == 0.5  # regular 1-d linear... a*b with b*a = w0 != 0
    assert known.aoyagi_rrr(10, 1, 1, 1) == 5.0  # N + H < M + r: (HN - Hr + Mr)/2
    assert known.aoyagi_rrr(2, 2, 6, 0) == 2.0  # M + N < H + r: MN/2
    with pytest.raises(ValueError):
        known.aoyagi_rrr(3, 3, 2, 3)


@pytest.mark.parametrize("case", known.validation_cases(), ids=lambda c: f"{c.family}: {c.name}")
def test_known_learning_coefficients(case: known.Case) -> None:
    """Linear regression (d/2), normal crossings (1/(2 max k)), reduced-rank regression (Aoyagi),
    and reduced-rank regression with B frozen: a weight-refined estimate must give the reduced
    model's coefficient (the loss depends on A through B0 A[:r] alone, regular in r*N weights).
    The cases and their settings are those notebook 01 runs (rllc.estimate.known.validation_cases)."""
    row = known.run_case(case)
    assert row["n_ok"] == row["chains"]
    assert abs(row["rel_error"]) <= known.tolerance(case), row


def test_the_cases_cover_what_the_estimator_must_get_right() -> None:
    cases = known.validation_cases()
    families = {c.family for c in cases}
    assert {"regular", "normal crossing", "reduced-rank regression", "restricted (A only) RRR"} <= families
    restricted = next(c for c in cases if c.masks)
    assert restricted.truth_override == 1.5  # r N / 2 with r = 1, N = 3
    assert restricted.truth_override < 0.8 * known.aoyagi_rrr(4, 3, 3, 1)  # not the full model's
    assert all(known.tolerance(c) == (0.15 if c.family == "reduced-rank regression" else 0.10) for c in cases)


# ---------------------------------------------------------------------------------------------
# devinterp 2.0.1 on the same model and settings


def _devinterp(model, data, masks, s):
    datasets = pytest.importorskip("datasets")
    from devinterp.slt.llc import llc

    ds = datasets.Dataset.from_dict({"input_ids": data.numpy()}).with_format("torch")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = llc(model, ds, {}, lr=s.epsilon, n_beta=s.nbeta, localization=s.gamma, param_masks=masks,
                  num_chains=s.chains, num_draws=s.draws, num_burnin_steps=s.burnin, batch_size=s.batch_size,
                  num_init_loss_batches=s.init_loss_batches, init_seed=s.seed, device="cpu")
    per_chain = out.llc_per_chain.values
    return out.loss_trace.values, float(per_chain.mean()), float(per_chain.std(ddof=1) / np.sqrt(len(per_chain)))


@pytest.mark.parametrize("component", ["1:0", "full"])
def test_devinterp_agreement(trained, component: str) -> None:
    pytest.importorskip("devinterp")
    model, data = trained
    masks = component_masks(model, component)
    # init loss over the whole dataset and draws over whole epochs: the estimates then differ
    # between seeds only by chain noise, which is what the standard errors measure
    s = SamplerConfig(epsilon=1e-3, gamma=100, nbeta=30, chains=4, draws=96, burnin=0, batch_size=32,
                      init_loss_batches=32, seed=100, batch_order="shared")  # devinterp's convention
    dv_trace, dv_mean, dv_sem = _devinterp(model, data, masks, s)
    same = sample_llc(model, data, masks, s)
    np.testing.assert_allclose(same.traces, dv_trace, rtol=0, atol=1e-4)
    assert same.mean == pytest.approx(dv_mean, abs=1e-3)
    other = sample_llc(model, data, masks, SamplerConfig(**{**s.__dict__, "seed": 200}))
    assert other.n_ok == s.chains
    assert abs(other.mean - dv_mean) <= 3 * np.hypot(other.sem, dv_sem), (other.mean, other.sem, dv_mean, dv_sem)
