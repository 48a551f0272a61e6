"""SGLD primitives shared by the sequential and the batched sampler: the batch feed, the update

    w <- w - (eps/2) * mask * (nbeta * grad L_batch(w) + gamma * (w - w*)) + sqrt(eps) * mask * N(0, I).

``ESTIMATOR_VERSION`` is part of every cached LLC record's key (``rllc.estimate.sweep``). Bump it
whenever a change alters the numbers an estimate produces for the same settings: the SGLD update
or its noise order, the batch order, the losses (``rllc.model.fused``: the fused forward, the
head-only loss; ``generator_loss``), the reference L(w*), the draw selection or the chain flags.
Stale records are then recomputed, never reused.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import torch
from torch import nn

from ..config import SamplerConfig

ESTIMATOR_VERSION = 3  # 1: records before versions; 2: all chains on one batch order; 3: per-chain orders
BATCH_ORDERS = ("per_chain", "shared")

# (model, tokens [batch, n_ctx]) -> mean per-token loss (a scalar tensor)
LossFn = Callable[[nn.Module, torch.Tensor], torch.Tensor]


class BatchFeed:
    """The batches every chain sees: a permutation under ``seed``, in full batches, cycled."""

    def __init__(self, data: torch.Tensor, batch_size: int, seed: int) -> None:
        if len(data) < batch_size:
            raise ValueError(f"the dataset has {len(data)} rows, fewer than one batch of {batch_size}")
        self.data = data
        self.batch_size = batch_size
        g = torch.Generator().manual_seed(seed)
        # as torch's DataLoader(shuffle=True, generator=g) does (and hence devinterp): one draw
        # for the workers' base seed, then the permutation
        torch.empty((), dtype=torch.int64).random_(generator=g)
        order = torch.randperm(len(data), generator=g)
        n_batches = len(data) // batch_size
        self.batches = order[: n_batches * batch_size].view(n_batches, batch_size)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.data[self.batches[i % len(self.batches)]]

    def __iter__(self) -> Iterator[torch.Tensor]:
        i = 0
        while True:
            yield self[i]
            i += 1


def feed_seeds(s: SamplerConfig) -> list[int]:
    """The batch-order seed of each chain: seed + c with ``per_chain`` orders, else seed for all."""
    return [s.seed + c if s.batch_order == "per_chain" else s.seed for c in range(s.chains)]


def chain_feeds(data: torch.Tensor, s: SamplerConfig) -> list[BatchFeed]:
    """One feed per chain (the same object for every chain with ``shared`` orders)."""
    feeds: dict[int, BatchFeed] = {}
    for seed in feed_seeds(s):
        if seed not in feeds:
            feeds[seed] = BatchFeed(data, s.batch_size, seed)
    return [feeds[seed] for seed in feed_seeds(s)]


def n_steps(s: SamplerConfig) -> int:
    return s.burnin + s.draws * s.steps_between_draws


def sgld_proposal(p: torch.Tensor, grad: torch.Tensor | None, anchor: torch.Tensor, noise: torch.Tensor,
                  s: SamplerConfig) -> torch.Tensor:
    """One unmasked SGLD step from ``p`` (the update above); ``grad`` None is zero."""
    drift = (grad * s.nbeta if grad is not None else torch.zeros_like(p)) + s.gamma * (p - anchor)
    return p - 0.5 * s.epsilon * drift + math.sqrt(s.epsilon) * noise


def sgld_update(p: torch.Tensor, grad: torch.Tensor | None, anchor: torch.Tensor, mask: torch.Tensor | None,
                noise: torch.Tensor, s: SamplerConfig) -> None:
    """The masked update, in place: weights outside the component stay bit-identical."""
    new = sgld_proposal(p, grad, anchor, noise, s)
    if mask is None:
        p.copy_(new)
    else:
        p.copy_(torch.where(mask, new, p))  # weights outside the component stay bit-identical
