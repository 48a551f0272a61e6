"""Mean ablation and tokens in context on a tiny model."""

import torch
from _models import markov_data, tiny_model

from rllc.analysis import interventions as ablation
from rllc.analysis import scores


def test_ablation_with_own_mean_is_a_no_op():
    model = tiny_model(seed=1)
    one = markov_data(1, seed=3).repeat(4, 1)  # identical samples: the mean equals each sample
    means = ablation.mean_z(model, one)
    clean = ablation.token_losses(model, one)
    hooked = ablation.token_losses(model, one, hooks=ablation.mean_ablation_hooks(["0:1", "1:0"], means))
    assert torch.allclose(clean, hooked, atol=1e-5)


def test_ablating_a_silent_head_changes_nothing_and_others_do():
    model = tiny_model(seed=2)
    with torch.no_grad():
        model.blocks[1].attn.W_O[1].zero_()  # head 1:1 writes nothing
    tokens = markov_data(32, seed=4)
    delta = ablation.ablation_loss_increase(model, tokens, ["1:1", "1:0"])
    assert abs(delta["1:1"]) < 1e-6
    assert abs(delta["1:0"]) > 1e-4


def test_tokens_in_context_rows():
    model = tiny_model(seed=3)
    tokens = markov_data(24, seed=5)
    k = 10
    tic = ablation.tokens_in_context(model, tokens, ["0:0", "1:1"], k=k, progress=False)
    assert len(tic) == 2 * k
    for _, g in tic.groupby("component"):
        assert g["delta_loss"].is_monotonic_decreasing
        assert (g["rank"] == range(k)).all()
    assert (tic["max_attn"] <= tic["pos"]).all()
    for row in tic.itertuples():
        assert len(row.attention) == row.pos + 1
        assert abs(sum(row.attention) - 1) < 1e-4
        assert row.attention[row.max_attn] == max(row.attention)
    # the recorded delta is the loss change at that (sample, position)
    means = ablation.mean_z(model, tokens)
    clean = ablation.token_losses(model, tokens)
    hooked = ablation.token_losses(model, tokens, hooks=ablation.mean_ablation_hooks(["1:1"], means))
    first = tic[tic["component"] == "1:1"].iloc[0]
    assert abs((hooked - clean)[first["sample"], first["pos"]] - first["delta_loss"]) < 1e-5
    assert abs((hooked - clean).max() - first["delta_loss"]) < 1e-5


def test_per_head_icl_score():
    from rllc.config import ScoreConfig

    model = tiny_model(seed=4)
    with torch.no_grad():
        model.blocks[1].attn.W_O[1].zero_()  # head 1:1 writes nothing
    tokens = markov_data(40, seed=6)
    cfg = ScoreConfig(icl_batches=2, batch_size=20, icl_halfwidth=0)
    t = scores.per_head_icl(model, tokens, cfg, ["1:0", "1:1"]).set_index(["component", "variant"])["value"]
    base = t[("model", "none")]
    assert abs(t[("1:1", "without")] - base) < 1e-6  # ablating a silent head changes nothing
    assert abs(t[("1:0", "only")] - base) < 1e-6  # ... nor does ablating it as "the other head"
    assert abs(t[("1:0", "without")] - base) > 1e-5  # a working head matters
    assert abs(t[("1:1", "only")] - t[("1:0", "without")]) < 1e-6  # the same ablation, two names
    single = scores.per_head_icl(model, tokens, cfg, ["1:0"]).set_index(["component", "variant"])["value"]
    assert single[("1:0", "only")] == single[("model", "none")]


def test_fused_ablation_matches_transformer_lens_hooks():
    """The fused forward's mean ablation and z means equal TransformerLens' hook_z hooks and cache."""
    from rllc.analysis import interventions as heads
    from rllc.model import fused as fastforward

    model = tiny_model(seed=5)
    tokens = markov_data(12, seed=7)
    assert fastforward.supports(model)
    means = ablation.mean_z(model, tokens, batch_size=5)  # the fused path
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_z"))
    for layer in range(model.cfg.n_layers):
        assert torch.allclose(means[layer], cache[heads.z_hook_name(layer)].mean(0), atol=1e-6)
    for names in (["1:0"], ["0:1", "1:1"]):
        spec = ablation.ablation_spec(names, means)
        fused = heads.token_losses(model, tokens, 5, ablate=spec)
        hooked = heads.token_losses(model, tokens, 5, hooks=ablation.mean_ablation_hooks(names, means))
        assert torch.allclose(fused, hooked, atol=1e-5)
        assert (fused - heads.token_losses(model, tokens, 5)).abs().max() > 1e-4  # the ablation did something
