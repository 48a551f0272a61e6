"""Ablation scores against TransformerLens' own activation patching, and their cache."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from transformer_lens import patching

from rllc.analysis import ablation
from rllc.config import load_config
from rllc.run import Run
from tests._models import markov_data, tiny_model


def test_resample_scores_match_transformer_lens_activation_patching():
    """Resampling a head = patching its z from the other windows' run into this one: TransformerLens'
    ``get_act_patch_attn_head_out_all_pos`` with the rolled windows as the "clean" source is the oracle."""
    model = tiny_model(seed=2)
    tokens = markov_data(12, seed=7)
    table = ablation.ablation_scores(model, tokens, ["0:0", "0:1", "1:0", "1:1"], kinds=["resample"], batch_size=12)
    _, source = model.run_with_cache(tokens.roll(1, dims=0))

    def loss(logits: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), tokens[:, 1:].reshape(-1))

    patched = patching.get_act_patch_attn_head_out_all_pos(model, tokens, source, loss)  # [layer, head]
    with torch.no_grad():
        clean = float(loss(model(tokens)))
    for row in table.itertuples():
        layer, head = map(int, row.component.split(":"))
        assert row.score == pytest.approx(float(patched[layer, head]) - clean, abs=2e-5)
        assert row.clean == pytest.approx(clean, abs=2e-5)
    assert table["score"].abs().max() > 1e-4  # the heads matter on this model


def test_scores_carry_a_standard_error_over_windows():
    model = tiny_model(seed=2)
    tokens = markov_data(16, seed=1)
    t = ablation.ablation_scores(model, tokens, ["1:0"], batch_size=8)
    assert list(t["kind"]) == ["zero", "mean", "resample"]
    assert (t["se"] > 0).all() and (t["se"] < t["score"].abs().max() + 1).all()
    with pytest.raises(ValueError, match="unknown ablation kinds"):
        ablation.ablation_scores(model, tokens, ["1:0"], kinds=["gaussian"])
    with pytest.raises(ValueError, match="at least two windows"):
        ablation.ablation_scores(model, tokens, ["1:0"], kinds=["resample"], batch_size=1)


def test_ablations_over_training_are_cached_by_checkpoint(tmp_path, monkeypatch):
    model = tiny_model(seed=2)
    calls = []

    def fake_load(self, name, step):
        calls.append(step)
        return model

    monkeypatch.setattr(Run, "load_model", fake_load)
    run = Run(tmp_path, load_config("ci"))
    tokens = markov_data(8, seed=1)
    first = ablation.ablations_over_training(run, tokens, [0, 10], ["1:0"], batch_size=4, progress=False)
    again = ablation.ablations_over_training(run, tokens, [0, 10, 20], ["1:0"], batch_size=4, progress=False)
    assert calls == [0, 10, 20]  # step 0 and 10 came from the cache the second time
    pd.testing.assert_frame_equal(first, again[again["step"] < 20].reset_index(drop=True))
