"""Composition scores against a direct computation, their random baseline, the LN-folded variant."""

import math

import numpy as np
import pytest
import torch
from _models import tiny_model

from rllc.analysis import composition


def direct(model, mode: str, a: int, b: int, fold: bool = False) -> float:
    """‖OV_A · M_B‖_F / (‖OV_A‖_F ‖M_B‖_F) from the weights, written out (TransformerLens' row
    convention: OV = W_V W_O, QK = W_Q W_Kᵀ). With ``fold``, the matrices that read the residual
    stream act on it through the layer's LayerNorm: centring P = I - 11ᵀ/d, then the gain w, so
    W ↦ P diag(w) W for W_Q, W_K, W_V."""
    W_Q, W_K, W_V, W_O = model.W_Q.detach(), model.W_K.detach(), model.W_V.detach(), model.W_O.detach()
    if fold:
        d = model.cfg.d_model
        P = torch.eye(d) - torch.full((d, d), 1.0 / d)
        reads = [P @ torch.diag(model.blocks[layer].ln1.w.detach()) for layer in range(2)]
        W_Q, W_K, W_V = (torch.stack([reads[layer] @ W[layer] for layer in range(2)]) for W in (W_Q, W_K, W_V))
    ov_a = W_V[0, a] @ W_O[0, a]
    qk_b = W_Q[1, b] @ W_K[1, b].T
    m = {"Q": qk_b, "K": qk_b.T, "V": W_V[1, b] @ W_O[1, b]}[mode]
    return float(torch.linalg.matrix_norm(ov_a @ m) / (torch.linalg.matrix_norm(ov_a) * torch.linalg.matrix_norm(m)))


def test_scores_equal_the_direct_computation_on_random_weights():
    model = tiny_model(seed=11)
    table = composition.composition_scores(model).set_index(["mode", "src", "dst"])["score"]
    assert len(table) == 3 * 2 * 2  # every layer-0 head into every layer-1 head, three modes
    for mode in composition.MODES:
        for a in range(2):
            for b in range(2):
                assert table[(mode, f"0:{a}", f"1:{b}")] == pytest.approx(direct(model, mode, a, b), rel=1e-4)


def test_random_baseline_sits_near_one_over_root_d_model():
    for d_model, d_head in ((64, 8), (128, 16)):
        scores = composition.random_baseline(d_model, d_head, n=400, seed=1)
        assert np.mean(scores) == pytest.approx(1 / math.sqrt(d_model), rel=0.1)
        assert 0 < scores.min() and scores.max() < 1


def test_the_ln_folded_variant_reads_the_residual_through_layer_norm():
    model = tiny_model(seed=2)
    with torch.no_grad():
        model.blocks[1].ln1.w.copy_(torch.linspace(0.2, 3.0, model.cfg.d_model))
    folded = composition.composition_scores(model, "ln_folded").set_index(["mode", "src", "dst"])["score"]
    raw = composition.composition_scores(model, "raw").set_index(["mode", "src", "dst"])["score"]
    for mode in composition.MODES:
        for a in range(2):
            for b in range(2):
                key = (mode, f"0:{a}", f"1:{b}")
                assert folded[key] == pytest.approx(direct(model, mode, a, b, fold=True), rel=1e-4)
    assert not np.allclose(raw.to_numpy(), folded.to_numpy(), rtol=1e-3)
    assert model.blocks[1].ln1.w[0].item() == pytest.approx(0.2)  # the model itself is not changed
    with pytest.raises(ValueError, match="unknown variant"):
        composition.composition_scores(model, "folded")
