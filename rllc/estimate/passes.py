"""Planning batched passes on a GPU: how many components, and how many of their chains, one pass takes.

A GPU sweep estimates several components of one checkpoint in one vmapped pass
(``rllc.estimate.batched``: chains x components). How many fit is planned here from the device's
free memory and an estimate of what one sequence of a batched SGLD step holds (``sequence_bytes``);
``batchable`` groups a sweep's jobs into chunks one pass can take. On a CPU nothing is batched.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from ..config import Config, SamplerConfig
from ..model.build import N_LAYERS
from ..model_name import model_base
from .records import Job, parse_generator

BATCH_COMPONENTS = 17  # on a GPU, components estimated in one batched pass at most (16 heads and the full model)
# What one sequence (a row of one chain's SGLD batch) of a batched step holds live, in float32
# tensors: the vocabulary-sized ones (the logits, their log-softmax and the gradients of both) and
# the attention maps, n_ctx x n_ctx per head and layer (the scores, the masked scores, the
# softmax pattern, TransformerLens's NaN-guarded pattern, and the gradient of each). The rest of
# an attention-only model (residual stream, weights) is smaller at every profile's shape. At the
# paper's shape this counts 619 MB a sequence; one batched step measured on CPU took 0.97-1.20x that
# (docs/results-cpu.md), where the logits alone (the old estimate) were 7-9x too low.
LOGIT_COPIES = 4
ATTENTION_COPIES = 8


def sequence_bytes(n_layers: int, n_heads: int, n_ctx: int, d_vocab: int) -> int:
    """Device memory one sequence of a batched SGLD step needs (see ``ATTENTION_COPIES``)."""
    return 4 * (LOGIT_COPIES * n_ctx * d_vocab + ATTENTION_COPIES * n_layers * n_heads * n_ctx * n_ctx)


@dataclass(frozen=True)
class PassPlan:
    """How a GPU sweep groups its work: ``components`` per batched pass, and each component's
    chains in groups of ``chains`` (all of them, unless one component's chains do not fit)."""

    components: int
    chains: int


def plan_passes(n_layers: int, n_heads: int, n_ctx: int, d_vocab: int, settings: SamplerConfig,
                free_bytes: int, fraction: float = 0.5, cap: int = BATCH_COMPONENTS) -> PassPlan:
    """The largest passes that fit in ``fraction`` of ``free_bytes`` by ``sequence_bytes``: as many
    whole components (``settings.chains`` x ``batch_size`` sequences each) as fit, at most ``cap``;
    when not even one fits, one component with as many chains at a time as fit (at least one).

    At the paper's shape (2 layers x 8 heads, n_ctx 1024, vocabulary 5,000; 4 chains x 32) a
    component needs 79 GB, so an H200 (141 GB free) runs it 3 chains at a time, an H100 (80 GB) 2."""
    budget = fraction * free_bytes
    per_chain = settings.batch_size * sequence_bytes(n_layers, n_heads, n_ctx, d_vocab)
    per_component = settings.chains * per_chain
    if per_component <= budget:
        return PassPlan(max(1, min(cap, int(budget // per_component))), settings.chains)
    return PassPlan(1, max(1, min(settings.chains, int(budget // per_chain))))


def pass_plan(cfg: Config, settings: SamplerConfig, dev: torch.device, models: Iterable[str] = ("L2",)) -> PassPlan:
    """The pass plan on ``dev`` (a CUDA device: from its free memory now) for the deepest of
    ``models``; the profile's vocabulary size bounds the model's."""
    free, _ = torch.cuda.mem_get_info(dev)
    n_layers = max(N_LAYERS[model_base(m)] for m in models)
    return plan_passes(n_layers, cfg.model.n_heads, cfg.model.n_ctx, cfg.tokenizer.vocab_size, settings, free)


def batchable(jobs: Sequence[Job], size: int = BATCH_COMPONENTS) -> list[list[Job]]:
    """Jobs in chunks that one batched pass can take: the same model, checkpoint and token
    distribution, at most ``size`` components; a generator distribution runs one job at a time."""
    chunks: list[list[Job]] = []
    groups: dict[tuple, list[Job]] = {}
    for job in jobs:
        if parse_generator(job.data) is not None:
            chunks.append([job])
        else:
            groups.setdefault((job.model, job.step, job.data), []).append(job)
    for group in groups.values():
        chunks += [group[i:i + size] for i in range(0, len(group), size)]
    return chunks
