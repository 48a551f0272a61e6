"""Small models and data shared by the estimator tests."""

from __future__ import annotations

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig


def tiny_model(seed: int = 0, n_layers: int = 2) -> HookedTransformer:
    cfg = HookedTransformerConfig(n_layers=n_layers, d_model=16, d_head=4, n_heads=2, n_ctx=16, d_vocab=16,
                                  attn_only=True, act_fn=None, normalization_type="LN",
                                  positional_embedding_type="shortformer", seed=seed)
    return HookedTransformer(cfg)


def markov_data(n: int, n_ctx: int = 16, vocab: int = 16, seed: int = 0) -> torch.Tensor:
    """Sequences from a random first-order Markov chain (learnable, so training finds a minimum)."""
    g = torch.Generator().manual_seed(seed)
    trans = torch.softmax(3 * torch.randn(vocab, vocab, generator=g), -1)
    x = torch.empty(n, n_ctx, dtype=torch.long)
    x[:, 0] = torch.randint(0, vocab, (n,), generator=g)
    for t in range(1, n_ctx):
        x[:, t] = torch.multinomial(trans[x[:, t - 1]], 1, generator=g)[:, 0]
    return x
