"""All SGLD chains at once: ``torch.func.vmap`` over stacked copies of the sampled weights.

One small model leaves most of a GPU idle; stacking the chains fills it. Each chain keeps its
own noise generator (seed + chain), drawn in the same order as the sequential sampler, so with
identical noise the two produce the same trajectories (up to floating-point reassociation).
On two CPU cores this is no faster than running chains one after another.

:func:`run_components_batched` stacks components too (chains × components: e.g. the 16 heads
and the full model at one checkpoint in one pass), each component with the noise streams it
would have alone. The first step's gradient is checked against plain autograd
(:func:`check_first_gradients`): a forward that re-wraps its parameters would otherwise
silently sample with zero gradients.
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


def check_first_gradients(model: nn.Module, names: list[str], loss_fn: LossFn, tokens: torch.Tensor,
                          got: dict[str, torch.Tensor], rtol: float = 1e-3) -> float:
    """Refuse the batched path when its gradient at w* differs from plain autograd's; otherwise
    return the largest |difference| relative to the largest gradient (the margin under ``rtol``).

    ``functional_call`` substitutes a module's parameters by name; a forward that re-wraps them
    (e.g. slices an ``nn.ParameterList``, which builds new Parameters) computes with copies that
    no gradient reaches, and the vmapped gradient is then silently zero. One comparison on the
    first step (chain 0 of the first component) catches it."""
    params = dict(model.named_parameters())
    before = {n: params[n].requires_grad for n in names}
    for n in names:
        params[n].requires_grad_(True)
    try:
        loss = loss_fn(model, tokens)
        ref = torch.autograd.grad(loss, [params[n] for n in names], allow_unused=True)
    finally:
        for n, flag in before.items():
            params[n].requires_grad_(flag)
    refs = {n: (torch.zeros_like(params[n]) if r is None else r.detach()) for n, r in zip(names, ref, strict=True)}
    # one scale for all: a gradient that is zero in exact arithmetic (e.g. of a key bias) is float noise
    scale = max(float(r.abs().max()) for r in refs.values()) or 1.0
    worst = 0.0
    for n, r in refs.items():
        g = got[n].detach().to(r.dtype)
        if not torch.allclose(g, r, rtol=rtol, atol=rtol * scale):
            raise ValueError(
                f"batched SGLD: the vmapped gradient of {n!r} differs from autograd's at w* (max |difference| "
                f"{float((g - r).abs().max()):.3g}, largest gradient {scale:.3g}); the model's forward does not use "
                "the parameters torch.func.functional_call substitutes (e.g. it slices an nn.ParameterList). "
                "Run the chains one after another (batched=False).")
        worst = max(worst, float((g - r).abs().max()) / scale)
    return worst


def run_components_batched(model: nn.Module, masks_list: list[ParamMasks], feeds: list[BatchFeed], loss_fn: LossFn,
                           s: SamplerConfig, device: torch.device, bar: tqdm | None = None,
                           check_gradients: bool = True, chains_per_pass: int | None = None) -> np.ndarray:
    """Loss traces [components, chains, steps] of ``s.chains`` chains of every component of
    ``masks_list`` (e.g. the heads of a layer and the full model at one checkpoint), run together.

    Component k's chain c is the chain ``sample_llc`` would run for that component alone: it
    starts at w*, takes its batches from ``feeds[c]``, moves only component k's weights, and
    draws its noise from a generator seeded ``s.seed + c``, one tensor per parameter in the
    component's own mask order. The stacked state holds every parameter some component moves;
    a component leaves the others at w* bit for bit.

    ``chains_per_pass``: run the chains in groups of at most this many, one group after another
    (when all of a component's chains do not fit in device memory at once). Chains are
    independent, so the traces are the same as in one pass, up to floating-point reassociation."""
    if not masks_list:
        raise ValueError("no components to sample")
    size = s.chains if chains_per_pass is None else chains_per_pass
    if size < 1:
        raise ValueError(f"chains_per_pass must be >= 1, got {chains_per_pass}")
    parts = [_run_chain_group(model, masks_list, feeds[c0:c0 + size], loss_fn, s, device, bar,
                              check_gradients and c0 == 0, first_chain=c0)
             for c0 in range(0, s.chains, size)]
    return np.concatenate(parts, axis=1)


def _run_chain_group(model: nn.Module, masks_list: list[ParamMasks], feeds: list[BatchFeed], loss_fn: LossFn,
                     s: SamplerConfig, device: torch.device, bar: tqdm | None, check_gradients: bool,
                     first_chain: int) -> np.ndarray:
    """Traces [components, len(feeds), steps] of chains ``first_chain``, ``first_chain + 1``, ...
    (chain c on ``feeds[c - first_chain]`` with noise seeded ``s.seed + c``)."""
    K, C = len(masks_list), len(feeds)
    params = dict(model.named_parameters())
    names = list(dict.fromkeys(n for m in masks_list for n in m))  # every parameter some component moves
    fixed = {n: p.detach() for n, p in params.items() if n not in names}
    fixed.update(dict(model.named_buffers()))
    anchors = {n: params[n].detach().clone() for n in names}
    keep = {}  # [K, 1, *shape]: which weights of n component k moves
    for n in names:
        rows = [torch.zeros(anchors[n].shape, dtype=torch.bool, device=device) if n not in m
                else torch.ones(anchors[n].shape, dtype=torch.bool, device=device) if m[n] is None
                else m[n].to(device) for m in masks_list]
        keep[n] = torch.stack(rows).unsqueeze(1)
    state = {n: anchors[n].expand(K, C, *anchors[n].shape).clone() for n in names}
    gens = [[torch.Generator(device=device).manual_seed(s.seed + first_chain + c) for c in range(C)]
            for _ in range(K)]

    def loss_of(sampled: dict[str, torch.Tensor], tokens: torch.Tensor) -> torch.Tensor:
        return loss_fn(_Bound(model, {**fixed, **sampled}), tokens)

    shared = all(f is feeds[0] for f in feeds)
    per_chain = vmap(grad_and_value(loss_of), in_dims=(0, None if shared else 0))
    step_fn = vmap(per_chain, in_dims=(0, None))  # components share the chains' batches
    total = n_steps(s)
    traces = np.full((K, C, total), math.nan)
    alive = torch.ones(K, C, dtype=torch.bool)
    for step in range(total):
        batch = feeds[0][step] if shared else torch.stack([f[step] for f in feeds])
        grads, values = step_fn(state, batch.to(device))
        if step == 0 and check_gradients:
            first = list(masks_list[0])
            check_first_gradients(model, first, loss_fn, feeds[0][0].to(device), {n: grads[n][0, 0] for n in first})
        vals = values.detach().double().cpu().numpy()
        live = alive.numpy()
        traces[:, :, step] = np.where(live, vals, math.nan)
        alive &= torch.from_numpy(np.isfinite(vals))
        if not alive.any():
            if bar is not None:
                bar.update(K * C * (total - step))
            break
        with torch.no_grad():
            noise = {n: torch.zeros_like(state[n]) for n in names}
            for k, m in enumerate(masks_list):
                for c in range(C):
                    for n in m:  # this component's parameters, in its own order: the sequential noise stream
                        noise[n][k, c] = torch.normal(0.0, 1.0, size=anchors[n].shape, generator=gens[k][c],
                                                      device=device, dtype=state[n].dtype)
            live_d = alive.to(device)
            for n in names:
                new = sgld_proposal(state[n], grads[n], anchors[n], noise[n], s)
                moving = keep[n] & live_d.view(K, C, *([1] * anchors[n].dim()))
                state[n] = torch.where(moving, new, state[n])
        if bar is not None:
            bar.update(K * C)
    return traces


def run_chains_batched(model: nn.Module, masks: ParamMasks, feeds: list[BatchFeed], loss_fn: LossFn,
                       s: SamplerConfig, device: torch.device, bar: tqdm | None = None,
                       chains_per_pass: int | None = None) -> np.ndarray:
    """Loss traces [chains, steps] of ``s.chains`` chains of one component run together (in
    groups of ``chains_per_pass``, if given)."""
    return run_components_batched(model, [masks], feeds, loss_fn, s, device, bar,
                                  chains_per_pass=chains_per_pass)[0]
