"""All SGLD chains at once: ``torch.func.vmap`` over stacked copies of the sampled weights.

One small model leaves most of a GPU idle; stacking the chains fills it. Each chain keeps its
own noise generator (seed + chain), drawn in the same order as the sequential sampler, so with
identical noise the two produce the same trajectories (up to floating-point reassociation).
On two CPU cores this is no faster than running chains one after another.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, grad_and_value, vmap
from tqdm.auto import tqdm

from ..config import SamplerConfig
from ..model.components import ParamMasks
from .sgld import BatchFeed, LossFn, n_steps, sgld_proposal


class _Bound(nn.Module):
    """``model`` called with substituted parameters (what ``loss_fn`` sees under vmap)."""

    def __init__(self, model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
        super().__init__()
        object.__setattr__(self, "_model", model)
        object.__setattr__(self, "_tensors", tensors)

    def forward(self, *args: object, **kwargs: object) -> torch.Tensor:
        return functional_call(self._model, self._tensors, args, kwargs)


def run_chains_batched(model: nn.Module, masks: ParamMasks, feeds: list[BatchFeed], loss_fn: LossFn,
                       s: SamplerConfig, device: torch.device, bar: tqdm | None = None) -> np.ndarray:
    """Loss traces [chains, steps] of ``s.chains`` chains run together from the model's weights;
    chain c takes its batches from ``feeds[c]`` (one object for all: a shared batch order)."""
    params = dict(model.named_parameters())
    names = list(masks)
    fixed = {n: p.detach() for n, p in params.items() if n not in masks}
    fixed.update(dict(model.named_buffers()))
    anchors = {n: params[n].detach().clone() for n in names}
    mask_t = {n: (None if masks[n] is None else masks[n].to(device)) for n in names}
    C = s.chains
    state = {n: anchors[n].unsqueeze(0).repeat(C, *([1] * anchors[n].dim())).contiguous() for n in names}
    gens = [torch.Generator(device=device).manual_seed(s.seed + c) for c in range(C)]

    def loss_of(sampled: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        return loss_fn(_Bound(model, {**fixed, **sampled}), tokens)

    shared = all(f is feeds[0] for f in feeds)
    step_fn = vmap(grad_and_value(loss_of), in_dims=(0, None if shared else 0))
    total = n_steps(s)
    traces = np.full((C, total), math.nan)
    alive = torch.ones(C, dtype=torch.bool)
    for step in range(total):
        batch = feeds[0][step] if shared else torch.stack([f[step] for f in feeds])
        grads, values = step_fn(state, batch.to(device))
        vals = values.detach().double().cpu().numpy()
        traces[alive.numpy(), step] = vals[alive.numpy()]
        alive &= torch.from_numpy(np.isfinite(vals))
        if not alive.any():
            if bar is not None:
                bar.update(C * (total - step))
            break
        with torch.no_grad():
            for n in names:
                p = state[n]
                noise = torch.stack([torch.normal(0.0, 1.0, size=anchors[n].shape, generator=g, device=device,
                                                  dtype=p.dtype) for g in gens])
                new = sgld_proposal(p, grads[n], anchors[n], noise, s)
                keep = alive.to(device).view(C, *([1] * anchors[n].dim()))
                if mask_t[n] is not None:
                    keep = keep & mask_t[n]
                state[n] = torch.where(keep, new, p)
        if bar is not None:
            bar.update(C)
    return traces
