"""Mean ablation and tokens in context on a tiny model."""

import pytest
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


def test_many_edits_at_once_equal_one_pass_each_bit_for_bit():
    """Oracle: per_token_ce / icl_score run once per edit. Sharing the unedited layers changes
    no bit, whichever layers the edits touch."""
    from rllc.config import ScoreConfig
    from rllc.model import fused

    model = tiny_model(seed=6)
    tokens = markov_data(30, seed=8)
    means = ablation.mean_z(model, tokens, batch_size=10)
    _, zs = fused.run_heads(model, tokens[:10], keep_z=True)  # mean_z's sums without the unembedding
    sums = fused.z_sums(model, tokens[:10])
    assert all(torch.equal(sums[layer], z.float().sum(0).transpose(0, 1)) for layer, z in enumerate(zs))
    for names in (["1:0", "1:1"], ["0:1", "1:0"], ["0:0"]):
        edits = [None, *[ablation.ablation_spec([n], means) for n in names], ablation.ablation_spec(names, means),
                 ablation.ablation_edit("resample", names)]
        many = ablation.token_losses_many(model, tokens, 7, edits)
        for edit, got in zip(edits, many, strict=True):
            assert torch.equal(got, ablation.token_losses(model, tokens, 7, edit=edit))
        assert not torch.equal(many[0], many[1])
    cfg = ScoreConfig(icl_batches=3, batch_size=10, icl_halfwidth=1)
    table = scores.per_head_icl(model, tokens, cfg, ["1:0", "1:1"], means=means)
    one = {("model", "none"): scores.icl_score(model, tokens, cfg)}
    for h, other in (("1:0", "1:1"), ("1:1", "1:0")):
        one[(h, "only")] = scores.icl_score(model, tokens, cfg, edit=ablation.ablation_spec([other], means))
        one[(h, "without")] = scores.icl_score(model, tokens, cfg, edit=ablation.ablation_spec([h], means))
    assert table.set_index(["component", "variant"])["value"].to_dict() == one


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
        fused = heads.token_losses(model, tokens, 5, edit=spec)
        hooked = heads.token_losses(model, tokens, 5, hooks=ablation.mean_ablation_hooks(names, means))
        assert torch.allclose(fused, hooked, atol=1e-5)
        assert (fused - heads.token_losses(model, tokens, 5)).abs().max() > 1e-4  # the ablation did something


@pytest.mark.parametrize("kind", ["zero", "mean", "resample"])
def test_every_ablation_matches_transformer_lens_hooks(kind):
    """One edit, two forwards: the fused forward and TransformerLens' own with hand-written
    hook_z hooks (the oracle: written here from the definition, not from the package)."""
    model = tiny_model(seed=3)
    tokens = markov_data(10, seed=2)
    means = ablation.mean_z(model, tokens, batch_size=10)
    edit = ablation.ablation_edit(kind, ["0:1", "1:0"], means)
    fused_loss = ablation.token_losses(model, tokens, 10, edit=edit)

    def oracle(layer: int, head: int):
        def hook(z, hook):  # z: [batch, pos, head, d_head]
            z = z.clone()
            if kind == "zero":
                z[:, :, head] = 0.0
            elif kind == "mean":
                z[:, :, head] = means[layer][: z.shape[1], head]
            else:
                z[:, :, head] = z[:, :, head].roll(1, dims=0)
            return z
        return hook

    hooks = [("blocks.0.attn.hook_z", oracle(0, 1)), ("blocks.1.attn.hook_z", oracle(1, 0))]
    hooked = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True, fwd_hooks=hooks)
    torch.testing.assert_close(fused_loss, hooked.float(), atol=1e-5, rtol=1e-5)
    assert (fused_loss - ablation.token_losses(model, tokens, 10)).abs().max() > 1e-4


def test_path_patching_matches_a_two_pass_transformer_lens_recipe():
    model = tiny_model(seed=4)
    tokens = markov_data(8, seed=5)
    means = ablation.mean_z(model, tokens, batch_size=8)
    out = ablation.path_patch_losses(model, tokens, ["0:0", "0:1"], "1:1", means, batch_size=8)

    def set_mean(layer, heads):
        def hook(z, hook):
            z = z.clone()
            z[:, :, heads] = means[layer][: z.shape[1], heads]
            return z
        return hook

    saved = {}

    def keep(z, hook):
        saved["z"] = z[:, :, 1].clone()
        return z

    model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_z", set_mean(0, [0, 1])),
                                            ("blocks.1.attn.hook_z", keep)])

    def put(z, hook):
        z = z.clone()
        z[:, :, 1] = saved["z"]
        return z

    patched = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True,
                                   fwd_hooks=[("blocks.1.attn.hook_z", put)])
    ablated = model.run_with_hooks(tokens, return_type="loss", loss_per_token=True,
                                   fwd_hooks=[("blocks.1.attn.hook_z", set_mean(1, [1]))])
    clean = model(tokens, return_type="loss", loss_per_token=True)
    torch.testing.assert_close(out["path_patched"], patched.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["receiver_ablated"], ablated.float(), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out["clean"], clean.float(), atol=1e-5, rtol=1e-5)
    # the path matters and differs from ablating the senders everywhere
    everywhere = ablation.token_losses(model, tokens, 8, edit=ablation.ablation_spec(["0:0", "0:1"], means))
    assert (out["path_patched"] - out["clean"]).abs().max() > 1e-4
    assert (out["path_patched"] - everywhere).abs().max() > 1e-4
    with pytest.raises(ValueError, match="layers before the receiver"):
        ablation.path_patch_losses(model, tokens, ["1:0"], "1:1", means)
