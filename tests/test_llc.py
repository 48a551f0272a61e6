"""The LLC estimator: components, the SGLD update, diagnostics, batched chains, devinterp parity."""

from __future__ import annotations

import copy
import dataclasses
import math
import warnings

import numpy as np
import pytest
import torch
from _models import tiny_model

from rllc.config import SamplerConfig, load_config
from rllc.estimate.llc import BatchFeed, estimate_llc, generator_loss, next_token_loss, sample_llc, sgld_chain
from rllc.estimate.result import FLAG_BELOW_INIT, FLAG_DIVERGED, make_result
from rllc.model.build import build_model
from rllc.model.components import UnknownComponent, component_masks, component_size, valid_components

# ---------------------------------------------------------------------------------------------
# components


def test_head_component_is_its_slices_of_qkv_o_and_biases() -> None:
    model = tiny_model()
    masks = component_masks(model, "1:1")
    assert list(masks) == [f"blocks.1.attn.{p}" for p in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")]
    for mask in masks.values():
        assert mask is not None and mask[1].all() and not mask[0].any()
    d, dh = 16, 4
    assert component_size(model, masks) == 4 * d * dh + 3 * dh


def test_paper_head_has_32864_weights() -> None:
    model = build_model(load_config("paper"), "L2", d_vocab=5000)
    assert component_size(model, component_masks(model, "0:1")) == 32_864
    assert component_size(model, component_masks(model, "full")) == 3_355_016


def test_unions_layers_and_groups() -> None:
    model = tiny_model()
    both = component_masks(model, "1:0+1:1")
    assert all(m is None for m in both.values())  # all heads of the layer = whole tensors
    assert component_size(model, both) == 2 * component_size(model, component_masks(model, "1:0"))
    layer = component_masks(model, "layer 0")
    assert set(layer) == {n for n, _ in model.named_parameters() if n.startswith("blocks.0.")}
    assert set(component_masks(model, "embed+unembed")) == {"embed.W_E", "unembed.W_U", "unembed.b_U"}
    assert component_size(model, component_masks(model, "full")) == sum(p.numel() for p in model.parameters())
    assert "1:1" in valid_components(model) and "layer 1" in valid_components(model)


@pytest.mark.parametrize("name", ["2:0", "0:2", "layer 2", "head", "", "0:1+bogus"])
def test_unknown_components_list_valid_names(name: str) -> None:
    with pytest.raises(UnknownComponent, match="valid: full"):
        component_masks(tiny_model(), name)


# ---------------------------------------------------------------------------------------------
# the update


def test_weights_outside_the_component_are_bit_identical(trained) -> None:
    model, data = trained
    work = copy.deepcopy(model)
    before = {n: p.detach().clone() for n, p in work.named_parameters()}
    masks = component_masks(work, "0:1")
    s = SamplerConfig(epsilon=1e-2, gamma=10, nbeta=30, chains=1, draws=15, batch_size=32)
    sgld_chain(work, masks, BatchFeed(data, 32, 0), next_token_loss, s)
    for n, p in work.named_parameters():
        if n in masks:
            inside = masks[n]
            assert torch.equal(p[~inside], before[n][~inside]), n  # other heads' slices untouched
            assert not torch.equal(p[inside], before[n][inside]), n  # this head moved
        else:
            assert torch.equal(p, before[n]), n


def test_update_matches_the_formula_on_a_quadratic() -> None:
    """One step by hand: w1 = w0 - eps/2 (nbeta grad + gamma (w0 - w*)) + sqrt(eps) xi, at w0 = w*."""
    class Quad(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w = torch.nn.Parameter(torch.tensor([1.0, -2.0, 0.5]))

        def forward(self, batch: torch.Tensor) -> torch.Tensor:
            return (self.w ** 2).sum() + 0 * batch.float().sum()

    model = Quad()
    s = SamplerConfig(epsilon=0.01, gamma=5.0, nbeta=3.0, chains=1, draws=2, batch_size=1, seed=7)
    w0 = model.w.detach().clone()
    trace = sgld_chain(model, {"w": None}, BatchFeed(torch.zeros(4, 1), 1, 0), lambda m, b: m(b), s)
    g = torch.Generator().manual_seed(7)
    xi = torch.normal(0.0, 1.0, size=(3,), generator=g)
    w1 = w0 - 0.5 * s.epsilon * (s.nbeta * 2 * w0) + math.sqrt(s.epsilon) * xi
    assert trace[0] == pytest.approx(float((w0 ** 2).sum()))
    assert trace[1] == pytest.approx(float((w1 ** 2).sum()), rel=1e-6)


def test_the_callers_model_is_not_changed(trained) -> None:
    model, data = trained
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    sample_llc(model, data, None, SamplerConfig(chains=1, draws=5, batch_size=16, init_loss_batches=2))
    assert all(torch.equal(p, before[n]) for n, p in model.named_parameters())


# ---------------------------------------------------------------------------------------------
# diagnostics


def _settings(**kw: float) -> SamplerConfig:
    return SamplerConfig(**{"chains": 3, "draws": 40, "nbeta": 10.0, **kw})


def test_nonfinite_and_runaway_chains_are_flagged_and_not_averaged() -> None:
    rng = np.random.default_rng(0)
    l0 = 2.0
    good = l0 + 0.1 + 0.01 * rng.standard_normal((1, 40))
    nan = good.copy()
    nan[0, 20:] = np.nan
    runaway = l0 + np.linspace(0, 50, 40)[None]
    r = make_result(np.vstack([good, nan, runaway]), l0, _settings(), n_weights=20)
    assert r.flags[0] == [] and FLAG_DIVERGED in r.flags[1] and FLAG_DIVERGED in r.flags[2]
    assert r.n_ok == 1 and r.mean == pytest.approx(r.per_chain[0])


def test_a_trace_below_the_initial_loss_is_flagged() -> None:
    rng = np.random.default_rng(1)
    l0 = 2.0
    traces = np.vstack([l0 + 0.1 + 0.01 * rng.standard_normal(40), l0 - 0.2 + 0.01 * rng.standard_normal(40),
                        l0 + 0.12 + 0.01 * rng.standard_normal(40)])
    r = make_result(traces, l0, _settings(), n_weights=20)
    assert r.flags[1] == [FLAG_BELOW_INIT] and r.flags[0] == [] and r.flags[2] == []
    assert r.mean == pytest.approx(np.mean([r.per_chain[0], r.per_chain[2]]))
    assert r.sem == pytest.approx(np.std([r.per_chain[0], r.per_chain[2]], ddof=1) / math.sqrt(2))


def test_a_step_size_too_large_diverges_and_is_flagged(trained) -> None:
    model, data = trained
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = sample_llc(model, data, None, SamplerConfig(epsilon=10.0, gamma=1, nbeta=1000, chains=2, draws=20,
                                                        batch_size=16, init_loss_batches=2))
    assert all(FLAG_DIVERGED in f for f in r.flags)
    assert math.isnan(r.mean)


def test_bad_settings_are_refused(trained) -> None:
    model, data = trained
    with pytest.raises(ValueError, match="epsilon must be > 0"):
        sample_llc(model, data, None, SamplerConfig(epsilon=0.0))
    with pytest.raises(ValueError, match="fewer than one batch"):
        sample_llc(model, data[:4], None, SamplerConfig(batch_size=8))


def test_paired_reference_removes_the_batch_offset(trained) -> None:
    """A chain that barely moves has LLC ~0 under the paired reference; under the init reference
    its estimate is nbeta times the gap between the draws' batches and the init batches (shared by
    every chain when they share one batch order)."""
    model, data = trained
    base = SamplerConfig(epsilon=1e-12, gamma=1.0, nbeta=30.0, chains=2, draws=20, batch_size=8, init_loss_batches=2,
                         batch_order="shared")
    init = sample_llc(model, data, None, base)
    paired = sample_llc(model, data, None, dataclasses.replace(base, reference="paired"))
    assert abs(paired.mean) < 1e-3
    assert abs(init.mean) > 10 * abs(paired.mean)  # batch losses differ: the init reference is off
    assert paired.baseline is not None and paired.baseline.shape == (2, 20)
    assert init.mean - paired.mean == pytest.approx(30.0 * (paired.baseline.mean() - init.init_loss), abs=1e-6)


def test_paired_equals_init_when_every_batch_is_the_same(trained) -> None:
    model, data = trained
    full = data[:16]
    base = SamplerConfig(chains=2, draws=10, batch_size=16, init_loss_batches=1)
    init = sample_llc(model, full, component_masks(model, "0:0"), base)
    paired = sample_llc(model, full, component_masks(model, "0:0"), dataclasses.replace(base, reference="paired"))
    assert paired.per_chain == pytest.approx(init.per_chain, abs=1e-5)
    assert paired.init_loss == pytest.approx(init.init_loss, abs=1e-6)


def test_an_unknown_reference_is_refused(trained) -> None:
    model, data = trained
    with pytest.raises(ValueError, match="reference must be one of"):
        sample_llc(model, data, None, SamplerConfig(reference="mean"))


# ---------------------------------------------------------------------------------------------
# data refinement


def test_generator_loss_is_cross_entropy_to_the_generator(trained) -> None:
    model, data = trained
    # a model as its own generator: the loss is its own predictive entropy
    with torch.no_grad():
        loss = generator_loss(copy.deepcopy(model))(model, data[:8])
        p = torch.softmax(model(data[:8])[:, :-1], -1)
        entropy = -(p * p.log()).sum(-1).mean()
    assert float(loss) == pytest.approx(float(entropy), rel=1e-5)
    # and cross-entropy >= entropy for another model
    other = tiny_model(seed=3)
    with torch.no_grad():
        cross = float(generator_loss(other)(model, data[:8]))
        own = float(generator_loss(copy.deepcopy(other))(other, data[:8]))
    assert cross > own


def test_drllc_with_a_generator_samples_only_the_component(trained) -> None:
    model, data = trained
    gen = tiny_model(seed=0, n_layers=1)
    s = SamplerConfig(epsilon=1e-3, gamma=100, nbeta=30, chains=2, draws=30, batch_size=32, init_loss_batches=4)
    r = estimate_llc(model, "1:0", data, s, generator=gen)
    assert r.component == "1:0" and r.n_weights == 4 * 16 * 4 + 3 * 4
    assert len(r.per_chain) == 2 and np.isfinite(r.traces).all()
    # L(w*) is the cross-entropy to the generator, not the next-token loss
    assert r.init_loss > float(next_token_loss(model, data[:64]).detach())


# ---------------------------------------------------------------------------------------------
# batched chains


def test_batched_chains_follow_the_same_trajectories(trained) -> None:
    model, data = trained
    s = SamplerConfig(epsilon=1e-3, gamma=100, nbeta=30, chains=3, draws=15, batch_size=16, init_loss_batches=2)
    for comp in ("0:1", "full"):
        masks = component_masks(model, comp)
        a = sample_llc(model, data, masks, s, batched=False)
        b = sample_llc(model, data, masks, s, batched=True)
        np.testing.assert_allclose(a.traces, b.traces, rtol=0, atol=1e-5)
        assert a.per_chain == pytest.approx(b.per_chain, abs=1e-3)


def test_batched_components_follow_each_components_own_trajectories(trained) -> None:
    """Oracle: one sequential sample_llc per component. Heads of both layers and the full model
    stacked in one batched pass draw the same noise and batches, so the traces agree up to float
    reassociation."""
    from rllc.estimate.llc import estimate_components

    model, data = trained
    s = SamplerConfig(epsilon=1e-3, gamma=100, nbeta=30, chains=2, draws=12, batch_size=16, init_loss_batches=2,
                      reference="paired")
    comps = ["0:1", "1:0", "full", "1:0+1:1"]
    together = estimate_components(model, comps, data, s, device="cpu")
    for comp, got in zip(comps, together, strict=True):
        alone = sample_llc(model, data, component_masks(model, comp), s, batched=False)
        np.testing.assert_allclose(got.traces, alone.traces, rtol=0, atol=1e-5)
        np.testing.assert_allclose(got.baseline, alone.baseline, rtol=0, atol=1e-6)
        assert got.per_chain == pytest.approx(alone.per_chain, abs=1e-3)
        assert got.component == comp and got.n_weights == alone.n_weights
    assert together[0].traces.tolist() != together[1].traces.tolist()  # components really differ
    with pytest.raises(ValueError, match="no components"):
        estimate_components(model, [], data, s)


def test_chains_in_groups_follow_the_trajectories_of_chains_one_after_another(trained) -> None:
    """Oracle: the sequential sampler. A device too small for all of a component's chains runs
    them in groups (``chains_per_pass``); each chain keeps its batches and noise stream, with
    per-chain and with shared batch orders, for one component and for several in one pass."""
    from rllc.estimate.llc import estimate_components

    model, data = trained
    for order in ("per_chain", "shared"):
        s = SamplerConfig(epsilon=1e-3, gamma=100, nbeta=30, chains=3, draws=8, batch_size=16, init_loss_batches=2,
                          batch_order=order)
        masks = component_masks(model, "0:1")
        alone = sample_llc(model, data, masks, s, batched=False)
        for size in (1, 2):
            grouped = sample_llc(model, data, masks, s, batched=True, chains_per_pass=size)
            np.testing.assert_allclose(grouped.traces, alone.traces, rtol=0, atol=1e-5)
        both = estimate_components(model, ["0:1", "full"], data, s, device="cpu", chains_per_pass=2)
        full = sample_llc(model, data, component_masks(model, "full"), s, batched=False)
        np.testing.assert_allclose(both[0].traces, alone.traces, rtol=0, atol=1e-5)
        np.testing.assert_allclose(both[1].traces, full.traces, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="chains_per_pass must be >= 1"):
        sample_llc(model, data, masks, s, batched=True, chains_per_pass=0)


def test_batched_path_refuses_a_forward_that_loses_gradients() -> None:
    """A forward that slices an nn.ParameterList computes with fresh Parameters under
    functional_call: the vmapped gradient is zero. The first step's check must refuse it."""

    class Sliced(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            g = torch.Generator().manual_seed(0)
            self.ws = torch.nn.ParameterList([torch.nn.Parameter(torch.randn(4, 4, generator=g)) for _ in range(2)])

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for w in self.ws[:2]:  # slicing re-wraps the parameters
                x = x @ w
            return x.pow(2).mean()

    x = torch.randn(64, 4, generator=torch.Generator().manual_seed(1))
    s = SamplerConfig(chains=2, draws=4, batch_size=8, init_loss_batches=2, reference="init")
    plain = sample_llc(Sliced(), x, None, s, loss_fn=lambda m, t: m(t), batched=False)
    assert np.isfinite(plain.traces).all()
    with pytest.raises(ValueError, match="differs from autograd"):
        sample_llc(Sliced(), x, None, s, loss_fn=lambda m, t: m(t), batched=True)


def test_fused_forward_matches_transformer_lens(trained) -> None:
    from rllc.model import fused as fastforward

    model, data = trained
    assert fastforward.supports(model)
    torch.testing.assert_close(fastforward.logits(model, data[:8]), model(data[:8]), rtol=1e-5, atol=1e-5)
    for kind in ("standard", "shortformer"):  # and on a fresh model of the project's own builder
        cfg = load_config("ci", {"model": {"positional_embedding_type": kind}})
        fresh = build_model(cfg, "L2", d_vocab=64)
        tokens = torch.randint(0, 64, (4, 32))
        torch.testing.assert_close(fastforward.logits(fresh, tokens), fresh(tokens), rtol=1e-5, atol=1e-5)
    # with a hook attached the model's own forward must be used
    handle = model.blocks[0].attn.hook_pattern.add_hook(lambda t, hook: t)
    try:
        assert not fastforward.supports(model)
    finally:
        model.reset_hooks()
        del handle


@pytest.mark.parametrize("heads", [[(0, 1)], [(1, 0)], [(1, 0), (1, 1)], [(0, 0), (1, 1)]])
def test_head_loss_matches_the_full_forward(trained, heads) -> None:
    """The frozen-prefix loss gives the plain loss and the same gradients on the moving heads,
    also on a second call (from the cache) after the moving weights changed."""
    from rllc.model.fused import HeadLoss, next_token_loss

    model, data = trained
    work = copy.deepcopy(model)
    head_loss = HeadLoss(heads)
    moving = [f"blocks.{layer}.attn.{p}" for layer in {a for a, _ in heads} for p in ("W_Q", "W_K", "W_V", "W_O")]
    named = dict(work.named_parameters())
    for n, p in named.items():
        p.requires_grad_(n in moving)
    tokens = data[:8]
    for _call in range(2):  # twice: the second call reads the frozen part from the cache
        grads = []
        for fn in (head_loss, next_token_loss):
            for n in moving:
                named[n].grad = None
            loss = fn(work, tokens)
            loss.backward()
            grads.append((float(loss.detach()), {n: named[n].grad.clone() for n in moving}))
        (a, ga), (b, gb) = grads
        assert a == pytest.approx(b, abs=1e-5)
        for n in moving:
            for layer, h in heads:
                if n.startswith(f"blocks.{layer}."):
                    torch.testing.assert_close(ga[n][h], gb[n][h], rtol=1e-4, atol=1e-6)
        with torch.no_grad():  # move the heads; the cached frozen part must stay valid
            for layer, h in heads:
                named[f"blocks.{layer}.attn.W_Q"][h] += 0.3 * torch.randn_like(named[f"blocks.{layer}.attn.W_Q"][h])
    assert len(head_loss._cache) == 1
    with pytest.raises(ValueError, match="another model"):
        head_loss(model, tokens)


def test_head_estimates_use_the_frozen_prefix_and_agree_with_the_plain_loss(trained) -> None:
    from rllc.estimate.llc import head_list
    from rllc.model.fused import next_token_loss

    model, data = trained
    assert head_list("1:0+0:1") == [(1, 0), (0, 1)] and head_list("full") is None and head_list("layer 1") is None
    s = SamplerConfig(epsilon=1e-3, gamma=100.0, nbeta=10.0, chains=2, draws=20, burnin=5, batch_size=16,
                      reference="paired")
    fast = estimate_llc(model, "1:1", data, s, device="cpu")
    plain = sample_llc(model, data, component_masks(model, "1:1"), s, next_token_loss, device="cpu", batched=False)
    np.testing.assert_allclose(fast.traces, plain.traces, rtol=0, atol=1e-4)
    assert fast.mean == pytest.approx(plain.mean, rel=1e-3)


def test_generator_predictions_are_computed_once_per_batch_and_heads_agree_with_the_plain_loss(trained) -> None:
    """drLLC with a generator (eq. 11): the generator runs once per distinct batch, and the
    head-only path (frozen prefix + cached targets) gives the plain full-forward loss's traces."""
    from rllc.model.fused import SoftTargets

    model, data = trained
    gen = tiny_model(seed=0, n_layers=1)
    s = SamplerConfig(epsilon=1e-3, gamma=100.0, nbeta=10.0, chains=2, draws=20, burnin=5, batch_size=16,
                      reference="paired")
    targets = SoftTargets(gen)
    fast = estimate_llc(model, "1:1", data, s, generator=targets, device="cpu")
    # each chain has its own batch order: chains x steps distinct batches, each predicted once (not
    # again for the paired reference, nor for the next head)
    distinct = s.chains * min(s.burnin + s.draws, len(data) // s.batch_size)
    assert targets.misses == distinct
    plain = sample_llc(model, data, component_masks(model, "1:1"), s, generator_loss(gen), device="cpu",
                       batched=False)
    np.testing.assert_allclose(fast.traces, plain.traces, rtol=0, atol=1e-4)
    again = estimate_llc(model, "0:0", data, s, generator=targets, device="cpu")  # another head, same batches
    assert targets.misses == distinct and np.isfinite(again.traces).all()
    small = SoftTargets(gen, max_bytes=1)  # nothing fits: recomputed every time, still correct
    assert torch.equal(small(data[:4]), targets(data[:4])) and small.misses == 1 and not small._cache


def test_shared_layer_inputs_leave_every_head_estimate_bit_identical(trained) -> None:
    """Head estimates of one checkpoint sharing their layers' inputs (as sweeps do) give the same
    traces, bit for bit, as estimates that compute them themselves; the cache serves the second
    head of a layer from the first head's batches, and refuses another checkpoint's weights."""
    from rllc.model.fused import LayerInputs

    model, data = trained
    s = SamplerConfig(epsilon=1e-3, gamma=100.0, nbeta=10.0, chains=2, draws=10, burnin=3, batch_size=16,
                      reference="paired")
    shared = LayerInputs()
    for comp in ("1:0", "1:1", "0:1", "1:0+1:1"):
        alone = estimate_llc(model, comp, data, s, device="cpu")
        with_cache = estimate_llc(model, comp, data, s, device="cpu", layer_inputs=shared)
        assert np.array_equal(alone.traces, with_cache.traces), comp
    steps = s.chains * (s.burnin + s.draws)
    # layer 1, every batch: filled by 1:0's paired reference (each chain step reuses the frozen part
    # its reference just computed), then served to 1:1 and to 1:0+1:1 (layer 0 is never kept)
    assert shared.misses == steps and shared.hits == 2 * steps
    other = copy.deepcopy(model)
    with torch.no_grad():
        other.blocks[0].attn.W_V.mul_(1.5)
    with pytest.raises(ValueError, match="another checkpoint"):
        estimate_llc(other, "1:0", data, s, device="cpu", layer_inputs=shared)
    full = LayerInputs(max_bytes=0)  # nothing kept: every batch computed again
    estimate_llc(model, "1:0", data, s, device="cpu", layer_inputs=full)
    assert full.hits == 0 and full._bytes == 0


@pytest.mark.parametrize("comp", ["1:0", "0:1", "0:0+1:1"])
def test_a_head_estimates_inline_reference_equals_a_separate_reference_pass(trained, comp) -> None:
    """Alone, a head estimate computes its paired reference step by step inside its chains, sharing
    each batch's frozen part with the step's own loss; the reference, traces and estimate are bit for
    bit those of a separate pass at w* over every chain's batches (the oracle), also for a chain
    that diverges part-way (the reference stays defined for the steps it skips)."""
    from rllc.estimate.llc import head_list, paired_baselines
    from rllc.estimate.sgld import chain_feeds, n_steps
    from rllc.model.fused import HeadLoss

    model, data = trained
    for s in (SamplerConfig(epsilon=1e-3, gamma=100.0, nbeta=10.0, chains=3, draws=10, burnin=3, batch_size=16,
                            reference="paired"),
              SamplerConfig(epsilon=30.0, gamma=1.0, nbeta=3000.0, chains=2, draws=10, burnin=0, batch_size=16,
                            reference="paired")):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inline = estimate_llc(model, comp, data, s, device="cpu")
            oracle = paired_baselines(model, chain_feeds(data, s), HeadLoss(head_list(comp), max_batches=0),
                                      n_steps(s), torch.device("cpu"))
            separate = estimate_llc(model, comp, data, s, device="cpu", baseline=oracle)
        assert np.array_equal(inline.baseline, oracle) and np.isfinite(inline.baseline).all()
        assert np.array_equal(inline.traces, separate.traces, equal_nan=True)
        assert inline.per_chain == separate.per_chain or np.array_equal(inline.per_chain, separate.per_chain,
                                                                        equal_nan=True)
        assert inline.flags == separate.flags
    assert all(FLAG_DIVERGED in f for f in inline.flags) and np.isnan(inline.traces).any()
