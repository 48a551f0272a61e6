"""A fused forward pass for the attention-only ``HookedTransformer``s of this project.

SGLD spends nearly all its time in forward and backward passes. TransformerLens computes
attention through hook points, an explicit causal mask and a NaN check; this module computes
the same function from the same parameter tensors with ``F.layer_norm`` and PyTorch's fused
``scaled_dot_product_attention``. Gradients flow into the model's own parameters, so component
masks and the rest of the sampler are unchanged. ``supports`` says when it applies (attention-only,
LN or no normalization, standard or shortformer positions, no hooks attached); otherwise the model's
own forward is used. A test checks that both give the same logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def supports(model: nn.Module) -> bool:
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(model, "blocks") or not getattr(cfg, "attn_only", False):
        return False
    if cfg.normalization_type not in ("LN", None) or cfg.positional_embedding_type not in ("standard", "shortformer"):
        return False
    if getattr(cfg, "attn_scores_soft_cap", -1.0) not in (-1.0, None) or cfg.scale_attn_by_inverse_layer_idx:
        return False
    if getattr(cfg, "n_key_value_heads", None) not in (None, cfg.n_heads):
        return False
    return not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())  # hooks need the slow path


def _ln(x: torch.Tensor, module: nn.Module, kind: str | None) -> torch.Tensor:
    if kind is None:
        return x
    return F.layer_norm(x, (x.shape[-1],), module.w, module.b, module.eps)


def logits(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The model's logits [batch, pos, d_vocab], as ``model(tokens)`` computes them."""
    cfg = model.cfg
    T = tokens.shape[-1]
    resid = model.embed.W_E[tokens]
    pos = model.pos_embed.W_pos[:T]
    shortformer = cfg.positional_embedding_type == "shortformer"
    if not shortformer:
        resid = resid + pos
    scale = 1.0 / (cfg.attn_scale if cfg.use_attn_scale else 1.0)
    for block in model.blocks:
        attn = block.attn
        x = _ln(resid, getattr(block, "ln1", None), cfg.normalization_type)
        qk_in = x + pos if shortformer else x
        q = torch.einsum("bpd,hde->bhpe", qk_in, attn.W_Q) + attn.b_Q[None, :, None, :]
        k = torch.einsum("bpd,hde->bhpe", qk_in, attn.W_K) + attn.b_K[None, :, None, :]
        v = torch.einsum("bpd,hde->bhpe", x, attn.W_V) + attn.b_V[None, :, None, :]
        z = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale)
        resid = resid + torch.einsum("bhpe,hed->bpd", z, attn.W_O) + attn.b_O
    resid = _ln(resid, getattr(model, "ln_final", None), cfg.normalization_type)
    return resid @ model.unembed.W_U + model.unembed.b_U


def model_logits(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Logits of a language model: the fused path where it applies, else the model's forward."""
    return logits(model, tokens) if supports(model) else model(tokens)


def next_token_loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy on a batch of token windows (what training and SGLD minimise)."""
    out = model_logits(model, tokens)[:, :-1]
    return F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), tokens[:, 1:].reshape(-1))
