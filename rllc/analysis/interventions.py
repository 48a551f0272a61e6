"""Interventions on attention heads: mean ablation, per-token losses, tokens in context.

Mean ablation (rLLC paper, Appendix E) replaces a head's output before W_O (``hook_z``) with its
mean over a reference set of samples, position by position. The *tokens in context* of a head
(Appendix B.1) are the (sample, position) pairs whose next-token loss rises most when the head
is mean-ablated; with each we record the head's attention from that position.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformer_lens import HookedTransformer

from ..model import fused
from ..model.components import parse_head
from . import patterns


def z_hook_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def edit_hooks(edit: fused.ZEdit) -> list[tuple[str, object]]:
    """The same edit as TransformerLens forward hooks on ``hook_z`` (which is laid out
    [batch, pos, head, d_head]; the edit sees [batch, head, pos, d_head], as in the fused forward)."""
    def hook_of(fn: fused.ZFn) -> Callable[[torch.Tensor, object], torch.Tensor]:
        def hook(z: torch.Tensor, hook: object) -> torch.Tensor:
            return fn(z.transpose(1, 2)).transpose(1, 2)
        return hook

    return [(z_hook_name(layer), hook_of(fn)) for layer, fn in edit.items()]


def token_losses(model: HookedTransformer, tokens: torch.Tensor, batch_size: int = 64,
                 hooks: Sequence[tuple[str, object]] = (), edit: fused.ZEdit | None = None) -> torch.Tensor:
    """Per-token next-token loss [n, n_ctx - 1], optionally under an intervention on the heads'
    z (``edit``: e.g. :func:`ablation_spec`, or a setter of ``rllc.model.fused``) or with other
    forward hooks attached. An edit sees one batch of ``batch_size`` at a time (resampling draws
    within it).

    Without ``hooks`` it runs the fused forward of ``rllc.model.fused`` (2.6x faster here than
    TransformerLens' hooked forward); with hooks, or for models it does not support, the model's own."""
    use_fused = not hooks and fused.supports(model)
    if not use_fused and edit:
        hooks = [*hooks, *edit_hooks(edit)]
    out = []
    for i in range(0, len(tokens), batch_size):
        batch = tokens[i:i + batch_size].to(model.cfg.device)
        if use_fused:
            loss = fused.per_token_ce(model, batch, edit)
        else:
            loss = model.run_with_hooks(batch, return_type="loss", loss_per_token=True, fwd_hooks=list(hooks))
        out.append(loss.float().cpu())
    return torch.cat(out)


def token_losses_many(model: HookedTransformer, tokens: torch.Tensor, batch_size: int,
                      edits: Sequence[fused.ZEdit | None]) -> list[torch.Tensor]:
    """``token_losses(model, tokens, batch_size, edit=e)`` for every ``e`` in ``edits``, each equal
    to its own call bit for bit; on the fused forward every batch runs the layers no edit changes
    once for all of them (``rllc.model.fused.per_token_ce_many``)."""
    if not fused.supports(model):
        return [token_losses(model, tokens, batch_size, edit=e) for e in edits]
    out: list[list[torch.Tensor]] = [[] for _ in edits]
    for i in range(0, len(tokens), batch_size):
        batch = tokens[i:i + batch_size].to(model.cfg.device)
        for parts, loss in zip(out, fused.per_token_ce_many(model, batch, edits), strict=True):
            parts.append(loss.float().cpu())
    return [torch.cat(parts) for parts in out]


def per_token_loss(model: HookedTransformer, tokens: torch.Tensor, batch_size: int,
                   hooks: Sequence[tuple[str, object]] = (), edit: fused.ZEdit | None = None) -> torch.Tensor:
    """Mean loss at each context position over ``tokens`` ([n, n_ctx] → [n_ctx - 1])."""
    return token_losses(model, tokens, batch_size, hooks, edit).mean(0)


@torch.no_grad()
def mean_z(model: HookedTransformer, tokens: torch.Tensor, batch_size: int = 64) -> dict[int, torch.Tensor]:
    """Per layer, the mean of ``hook_z`` over samples: [n_ctx, n_heads, d_head]."""
    use_fused = fused.supports(model)
    names = [z_hook_name(layer) for layer in range(model.cfg.n_layers)]
    sums: dict[int, torch.Tensor] = {}
    for i in range(0, len(tokens), batch_size):
        batch = tokens[i:i + batch_size].to(model.cfg.device)
        if use_fused:
            part = fused.z_sums(model, batch)
        else:
            _, cache = model.run_with_cache(batch, names_filter=names.__contains__, stop_at_layer=model.cfg.n_layers)
            part = {layer: cache[z_hook_name(layer)].float().sum(0) for layer in range(model.cfg.n_layers)}
        for layer, z in part.items():
            sums[layer] = z if layer not in sums else sums[layer] + z
    return {layer: s / len(tokens) for layer, s in sums.items()}


def heads_by_layer(heads: Sequence[str]) -> dict[int, list[int]]:
    """Head names "L:H" grouped by layer: {L: [H, ...]}."""
    by_layer: dict[int, list[int]] = {}
    for name in heads:
        layer, head = parse_head(name)
        by_layer.setdefault(layer, []).append(head)
    return by_layer


def ablation_spec(heads: Sequence[str], means: dict[int, torch.Tensor]) -> fused.ZEdit:
    """The mean ablation of ``heads`` (names "L:H"), for ``token_losses(..., edit=)``."""
    return fused.mean_ablation(heads_by_layer(heads), means)


def mean_ablation_hooks(heads: Sequence[str], means: dict[int, torch.Tensor]) -> list[tuple[str, object]]:
    """TransformerLens forward hooks that mean-ablate each head in ``heads`` (names "L:H")."""
    return edit_hooks(ablation_spec(heads, means))


ABLATIONS = ("zero", "mean", "resample")


def ablation_edit(kind: str, heads: Sequence[str], means: dict[int, torch.Tensor] | None = None) -> fused.ZEdit:
    """Zero, mean (needs ``means``) or resample ablation of ``heads`` as an edit."""
    by_layer = heads_by_layer(heads)
    if kind == "zero":
        return fused.zero_ablation(by_layer)
    if kind == "mean":
        if means is None:
            raise ValueError("mean ablation needs the heads' means (mean_z)")
        return fused.mean_ablation(by_layer, means)
    if kind == "resample":
        return fused.resample_ablation(by_layer)
    raise ValueError(f"unknown ablation {kind!r}; valid: {ABLATIONS}")


@torch.no_grad()
def path_patch_losses(model: HookedTransformer, tokens: torch.Tensor, senders: Sequence[str], receiver: str,
                      means: dict[int, torch.Tensor], batch_size: int = 64) -> dict[str, torch.Tensor]:
    """Per-token losses [n, n_ctx - 1] of the clean model, with ``receiver`` mean-ablated, and with
    ``senders`` mean-ablated only on their path into ``receiver`` (rLLC paper, Appendix E.2).

    Path patching in two passes per batch: (1) the senders mean-ablated, the receiver's z kept;
    (2) a clean pass in which only the receiver's z is replaced by the one from (1). The senders'
    change thus reaches the output only through the receiver (all its inputs: queries, keys and
    values); every other head and the direct path see the clean senders."""
    if not fused.supports(model):
        raise ValueError("path patching runs through the fused forward; this model is not supported")
    r_layer, r_head = parse_head(receiver)
    if any(parse_head(s)[0] >= r_layer for s in senders):
        raise ValueError(f"senders {list(senders)} must all sit in layers before the receiver {receiver}")
    corrupt = ablation_spec(senders, means)
    receiver_ablated = ablation_spec([receiver], means)
    out: dict[str, list[torch.Tensor]] = {"clean": [], "receiver_ablated": [], "path_patched": []}
    for i in range(0, len(tokens), batch_size):
        batch = tokens[i:i + batch_size].to(model.cfg.device)
        _, zs = fused.run_heads(model, batch, corrupt, keep_z=True)
        patched = fused.patch({r_layer: [r_head]}, {r_layer: zs[r_layer]})
        out["clean"].append(fused.per_token_ce(model, batch).cpu())
        out["receiver_ablated"].append(fused.per_token_ce(model, batch, receiver_ablated).cpu())
        out["path_patched"].append(fused.per_token_ce(model, batch, patched).cpu())
    return {k: torch.cat(v) for k, v in out.items()}


@torch.no_grad()
def head_pattern(model: HookedTransformer, tokens: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """The head's attention pattern on ``tokens``: [n, q, k]."""
    name = f"blocks.{layer}.attn.hook_pattern"
    _, cache = model.run_with_cache(tokens.to(model.cfg.device), names_filter=name.__eq__, stop_at_layer=layer + 1)
    return cache[name][:, head].float().cpu()


def tokens_in_context(model: HookedTransformer, tokens: torch.Tensor, heads: Sequence[str], k: int = 200,
                      batch_size: int = 64, means: dict[int, torch.Tensor] | None = None,
                      progress: bool = True) -> pd.DataFrame:
    """For each head, the ``k`` (sample, position) pairs whose loss rises most under mean ablation.

    Rows: component, rank, sample, pos (the query position; the predicted token is at pos + 1),
    delta_loss, max_attn (key position of the head's largest attention from pos), max_weight,
    attention (the head's attention row from pos over keys 0..pos)."""
    if k < 1:
        raise ValueError("k must be at least 1")
    means = means if means is not None else mean_z(model, tokens, batch_size)
    by_layer: dict[int, list[str]] = {}
    for name in dict.fromkeys(heads):
        by_layer.setdefault(parse_head(name)[0], []).append(name)
    losses: dict[str, torch.Tensor] = {}
    for layer in tqdm(sorted(by_layer), desc="tokens in context (layers)", disable=not progress):
        # one pass per layer: the layers below it, and its clean z, are shared by its heads' ablations
        names = by_layer[layer]
        clean_here = layer == max(by_layer)  # the clean loss shares the most with the top layer's heads
        edits = [None] * clean_here + [ablation_spec([n], means) for n in names]
        out = token_losses_many(model, tokens, batch_size, edits)
        if clean_here:
            losses["clean"] = out.pop(0)
        losses.update(zip(names, out, strict=True))
    clean = losses["clean"]
    rows = []
    for name in heads:
        layer, head = parse_head(name)
        delta = losses[name] - clean
        top = torch.topk(delta.flatten(), min(k, delta.numel()))
        samples = (top.indices // delta.shape[1]).tolist()
        positions = (top.indices % delta.shape[1]).tolist()
        uniq = sorted(set(samples))
        pattern = head_pattern(model, tokens[uniq], layer, head)
        where = {s: i for i, s in enumerate(uniq)}
        for rank, (s, p, d) in enumerate(zip(samples, positions, top.values.tolist(), strict=True)):
            row = pattern[where[s], p, : p + 1]
            rows.append({"component": name, "rank": rank, "sample": s, "pos": p, "delta_loss": d,
                         "max_attn": int(row.argmax()), "max_weight": float(row.max()),
                         "attention": row.tolist()})
    return pd.DataFrame(rows)


def ablation_loss_increase(model: HookedTransformer, tokens: torch.Tensor, heads: Sequence[str],
                           batch_size: int = 64, means: dict[int, torch.Tensor] | None = None) -> pd.Series:
    """Mean loss increase when each head alone is mean-ablated (one number per head)."""
    means = means if means is not None else mean_z(model, tokens, batch_size)
    clean = token_losses(model, tokens, batch_size).mean()
    return pd.Series({h: float(token_losses(model, tokens, batch_size, edit=ablation_spec([h], means)).mean() - clean)
                      for h in heads}, name="delta_loss")


def migration_from(model: HookedTransformer, held_in: torch.Tensor, decode: Callable[[Sequence[int]], str],
                   senders: list[str], receivers: list[str], end: pd.DataFrame, k: int, batch_size: int,
                   progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``patterns.migration`` of the senders' multigrams from ``model`` (a mid-training checkpoint:
    its tokens in context on ``held_in``, classified) to ``end`` (the final model's classified
    tokens in context)."""
    tic = tokens_in_context(model, held_in, senders, k=k, batch_size=batch_size, progress=progress)
    seqs = held_in.tolist()
    mid = pd.concat([patterns.classify_contexts(g, seqs, decode) for _, g in tic.groupby("component")],
                    ignore_index=True)
    return patterns.migration(mid, end, senders, receivers)
