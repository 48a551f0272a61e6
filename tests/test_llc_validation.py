"""The estimator against known answers and against devinterp 2.0.1 (these tests can fail)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from rllc import known
from rllc.components import component_masks
from rllc.config import SamplerConfig
from rllc.llc import sample_llc

pytestmark = pytest.mark.slow  # seconds to a minute each: long chains are what make them exact


def _estimate(model: torch.nn.Module, s: SamplerConfig, data: torch.Tensor | None = None,
              masks: dict | None = None, batched: bool = False) -> float:
    r = sample_llc(model, data if data is not None else known.dummy_data(), masks, s, known.known_loss,
                   batched=batched)
    assert r.n_ok == s.chains, r.flags
    return r.mean


def test_aoyagi_formula_known_values() -> None:
    assert known.aoyagi_rrr(3, 3, 3, 1) == 4.0
    assert known.aoyagi_rrr(3, 3, 3, 0) == 3.5  # odd case: (27 + 1) / 8
    assert known.aoyagi_rrr(5, 3, 4, 2) == 7.0
    assert known.aoyagi_rrr(1, 1, 1, 1) == 0.5  # regular 1-d linear... a*b with b*a = w0 != 0
    assert known.aoyagi_rrr(10, 1, 1, 1) == 5.0  # N + H < M + r: (HN - Hr + Mr)/2
    assert known.aoyagi_rrr(2, 2, 6, 0) == 2.0  # M + N < H + r: MN/2
    with pytest.raises(ValueError):
        known.aoyagi_rrr(3, 3, 2, 3)


def test_regular_model_has_half_its_dimension() -> None:
    model = known.LinearRegression(d=10, n=4096, seed=0)
    # minibatches of 1024 (gradient noise ~1% of the injected noise at this step size); the
    # relaxation time 1/(eps nbeta) = 20 steps leaves ~100 independent draws per chain
    s = SamplerConfig(epsilon=5e-5, gamma=1.0, nbeta=1000, chains=4, draws=4000, burnin=200, batch_size=1024,
                      init_loss_batches=4, seed=0)
    est = _estimate(model, s, model.indices())
    assert est == pytest.approx(model.truth, rel=0.10)


@pytest.mark.parametrize("k", [(2,), (1, 2), (1, 3)])
def test_normal_crossing_has_one_over_twice_the_largest_power(k: tuple[int, ...]) -> None:
    """At nbeta 1e6 and gamma 3 the exact tempered value (by quadrature) is within 5% of lambda for
    these k; the flat direction w1 relaxes in 1/(eps gamma) ~ 3,300 steps, so the chains need a
    long burn-in and many draws (run batched: 8 chains per step)."""
    model = known.NormalCrossing(k)
    s = SamplerConfig(epsilon=1e-4, gamma=3.0, nbeta=1e6, chains=8, draws=20_000, burnin=10_000, batch_size=1,
                      init_loss_batches=1, seed=0)
    assert _estimate(model, s, batched=True) == pytest.approx(model.truth, rel=0.10)


@pytest.mark.parametrize("shape", [known.RRRShape(3, 3, 3, 1), known.RRRShape(5, 3, 4, 2)])
def test_reduced_rank_regression_has_aoyagis_coefficient(shape: known.RRRShape) -> None:
    model = known.ReducedRankRegression(shape, seed=0)
    s = SamplerConfig(epsilon=2e-5, gamma=1.0, nbeta=1000, chains=4, draws=5000, burnin=1000, batch_size=1,
                      init_loss_batches=1, seed=0)
    assert _estimate(model, s) == pytest.approx(model.truth, rel=0.15)


def test_restricting_to_a_subset_gives_the_reduced_models_coefficient() -> None:
    """Only A of reduced-rank regression moves, B fixed at B* = [B0, 0]: the loss depends on A
    through B0 A[:r] alone, a regular model in r*N weights (the rest are flat), so lambda = rN/2."""
    shape = known.RRRShape(4, 3, 3, 1)
    model = known.ReducedRankRegression(shape, seed=1)
    s = SamplerConfig(epsilon=2e-5, gamma=1.0, nbeta=1000, chains=4, draws=3000, burnin=500, batch_size=1,
                      init_loss_batches=1, seed=0)
    restricted = _estimate(model, s, masks={"A": None})
    assert restricted == pytest.approx(shape.r * shape.N / 2, rel=0.10)
    assert restricted < 0.8 * shape.truth  # and it is not the full model's


# ---------------------------------------------------------------------------------------------
# devinterp 2.0.1 on the same model and settings


def _devinterp(model, data, masks, s):  # noqa: ANN001, ANN202
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
def test_devinterp_agreement(trained, component: str) -> None:  # noqa: ANN001
    pytest.importorskip("devinterp")
    model, data = trained
    masks = component_masks(model, component)
    # init loss over the whole dataset and draws over whole epochs: the estimates then differ
    # between seeds only by chain noise, which is what the standard errors measure
    s = SamplerConfig(epsilon=1e-3, gamma=100, nbeta=30, chains=4, draws=96, burnin=0, batch_size=32,
                      init_loss_batches=32, seed=100)
    dv_trace, dv_mean, dv_sem = _devinterp(model, data, masks, s)
    same = sample_llc(model, data, masks, s)
    np.testing.assert_allclose(same.traces, dv_trace, rtol=0, atol=1e-4)
    assert same.mean == pytest.approx(dv_mean, abs=1e-3)
    other = sample_llc(model, data, masks, SamplerConfig(**{**s.__dict__, "seed": 200}))
    assert other.n_ok == s.chains
    assert abs(other.mean - dv_mean) <= 3 * np.hypot(other.sem, dv_sem), (other.mean, other.sem, dv_mean, dv_sem)


def test_the_notebook_suite_uses_the_tested_settings() -> None:
    """rllc.known.validation_cases (what 01_llc_theory runs) and the tests above agree."""
    cases = {c.name: c for c in known.validation_cases()}
    assert cases["k=(1, 2)"].settings["nbeta"] == 1e6 and cases["k=(1, 2)"].batched
    assert cases["M=3 N=3 H=3 r=1"].settings["epsilon"] == 2e-5
    assert cases["linear regression d=10"].settings["batch_size"] == 1024
    assert cases["M=4 N=3 H=3 r=1, B frozen"].truth_override == 1.5
