"""Named components of a model → parameter masks (the weights an LLC estimate may move).

Names (case-insensitive, joined with "+" for unions, e.g. "1:6+1:7" or "0:1+unembed"):

* ``full`` — every parameter;
* ``L:H`` — attention head H of layer L: its slices of W_Q, W_K, W_V, W_O, b_Q, b_K, b_V
  (not b_O and not the layer norms, as in the paper);
* ``layer L`` (also ``layerL``) — every parameter of block L (all heads, b_O, its layer norm);
* ``embed`` (token embedding W_E), ``pos_embed`` (W_pos), ``unembed`` (W_U, b_U),
  ``ln_final`` (the final layer norm).

A mask set maps parameter names to a boolean mask of the parameter's shape, or ``None`` for the
whole parameter; parameters that are absent are frozen.
"""

from __future__ import annotations

import re

import torch
from torch import nn

ParamMasks = dict[str, "torch.Tensor | None"]

HEAD_PARAMS = ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")
_GROUPS = {
    "embed": ("embed.W_E",),
    "pos_embed": ("pos_embed.W_pos",),
    "unembed": ("unembed.W_U", "unembed.b_U"),
    "ln_final": ("ln_final.w", "ln_final.b"),
}
_HEAD = re.compile(r"^(\d+):(\d+)$")
_LAYER = re.compile(r"^layer\s*(\d+)$")


class UnknownComponent(ValueError):
    """A component name that does not exist in the model; the message lists the valid names."""


def _n_layers_heads(model: nn.Module) -> tuple[int, int]:
    cfg = getattr(model, "cfg", None)
    if cfg is None:
        return 0, 0
    return int(cfg.n_layers), int(cfg.n_heads)


def parse_head(name: str) -> tuple[int, int]:
    """``"L:H"`` → (layer, head); anything else raises ``UnknownComponent``."""
    m = _HEAD.match(name.strip().lower())
    if not m:
        raise UnknownComponent(f"{name!r} is not a head name of the form 'layer:head', e.g. '1:6'")
    return int(m.group(1)), int(m.group(2))


def head_names(n_layers: int, n_heads: int) -> list[str]:
    """All head names, layer by layer: 0:0, 0:1, …"""
    return [f"{layer}:{head}" for layer in range(n_layers) for head in range(n_heads)]


def valid_components(model: nn.Module) -> list[str]:
    """Every single (non-union) component name the model has."""
    names = {n for n, _ in model.named_parameters()}
    n_layers, n_heads = _n_layers_heads(model)
    out = ["full"]
    out += [g for g, members in _GROUPS.items() if any(m in names for m in members)]
    out += [f"layer {layer}" for layer in range(n_layers)]
    out += [f"{layer}:{head}" for layer in range(n_layers) for head in range(n_heads)]
    return out


def _describe_valid(model: nn.Module) -> str:
    n_layers, n_heads = _n_layers_heads(model)
    groups = [g for g in valid_components(model) if ":" not in g]
    heads = f"; heads 0:0 … {n_layers - 1}:{n_heads - 1}" if n_layers else "; this model has no attention heads"
    return f"valid: {', '.join(groups)}{heads}; join with '+' for unions"


def _single(model: nn.Module, name: str, params: dict[str, nn.Parameter]) -> ParamMasks:
    key = name.strip().lower()
    n_layers, n_heads = _n_layers_heads(model)
    if key in ("full", "all", "model"):
        return {n: None for n in params}
    if key in _GROUPS:
        present = [n for n in _GROUPS[key] if n in params]
        if not present:
            raise UnknownComponent(f"the model has no {key!r}; {_describe_valid(model)}")
        return {n: None for n in present}
    if m := _LAYER.match(key):
        layer = int(m.group(1))
        if layer >= n_layers:
            raise UnknownComponent(f"no layer {layer} (the model has {n_layers}); {_describe_valid(model)}")
        prefix = f"blocks.{layer}."
        return {n: None for n in params if n.startswith(prefix)}
    if m := _HEAD.match(key):
        layer, head = int(m.group(1)), int(m.group(2))
        if layer >= n_layers or head >= n_heads:
            raise UnknownComponent(f"no head {name!r} (the model has {n_layers} layers of {n_heads} heads); "
                                   f"{_describe_valid(model)}")
        out: ParamMasks = {}
        for pname in HEAD_PARAMS:
            full = f"blocks.{layer}.attn.{pname}"
            if full not in params:
                continue
            mask = torch.zeros(params[full].shape, dtype=torch.bool, device=params[full].device)
            mask[head] = True  # every per-head tensor has the head as its leading axis
            out[full] = mask
        return out
    raise UnknownComponent(f"unknown component {name!r}; {_describe_valid(model)}")


def component_masks(model: nn.Module, component: str) -> ParamMasks:
    """Parameter masks of a component name (see module docstring); unions are joined with "+"."""
    if not component or not component.strip():
        raise UnknownComponent(f"empty component name; {_describe_valid(model)}")
    params = dict(model.named_parameters())
    merged: ParamMasks = {}
    for part in component.split("+"):
        for pname, mask in _single(model, part, params).items():
            if pname not in merged:
                merged[pname] = mask
            elif merged[pname] is None or mask is None:
                merged[pname] = None
            else:
                merged[pname] = merged[pname] | mask
    # a mask that covers the whole parameter is the whole parameter
    return {n: (None if m is not None and bool(m.all()) else m) for n, m in merged.items()}


def component_size(model: nn.Module, masks: ParamMasks) -> int:
    """Number of scalar weights a mask set moves."""
    params = dict(model.named_parameters())
    return sum(params[n].numel() if m is None else int(m.sum()) for n, m in masks.items())
