"""Attention-only TransformerLens models: L0 (embed + unembed), L1 and L2, from one config."""

from __future__ import annotations

import warnings

import torch
from transformer_lens import HookedTransformer, HookedTransformerConfig

from ..config import Config, ModelConfig, seeded
from ..model_name import MODEL_NAMES, model_base

N_LAYERS = {"L0": 0, "L1": 1, "L2": 2}


def resolve_device(device: str = "auto") -> torch.device:
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def hooked_config(model: ModelConfig, name: str, d_vocab: int, seed: int,
                  device: str = "cpu") -> HookedTransformerConfig:
    if name not in N_LAYERS:
        raise KeyError(f"unknown model {name!r}; valid: {list(MODEL_NAMES)}")
    return HookedTransformerConfig(
        n_layers=N_LAYERS[name],
        d_model=model.d_model,
        d_head=model.d_head,
        n_heads=model.n_heads,
        n_ctx=model.n_ctx,
        d_vocab=d_vocab,
        attn_only=True,
        act_fn=None,
        normalization_type=model.normalization_type,
        positional_embedding_type=model.positional_embedding_type,
        seed=seed,
        device=str(device),
    )


def build_model(cfg: Config, name: str, d_vocab: int | None = None,
                device: str | torch.device = "cpu") -> HookedTransformer:
    """A freshly initialised model (deterministic for ``cfg.seed``; "L2-s<k>" for seed k)."""
    vocab = d_vocab if d_vocab is not None else cfg.tokenizer.vocab_size
    seed = seeded(cfg, name).seed
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*HookedTransformer is deprecated.*")
        return HookedTransformer(hooked_config(cfg.model, model_base(name), vocab, seed, str(device)))


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def head_names(model: HookedTransformer) -> list[str]:
    """Heads as "layer:head", e.g. "0:1", "1:6"."""
    return [f"{layer}:{head}" for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
