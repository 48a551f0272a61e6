"""A fused forward pass for the attention-only ``HookedTransformer``s of this project.

SGLD spends nearly all its time in forward and backward passes. TransformerLens computes
attention through hook points, an explicit causal mask and a NaN check; this module computes
the same function from the same parameter tensors with ``F.layer_norm`` and PyTorch's fused
``scaled_dot_product_attention``. Gradients flow into the model's own parameters, so component
masks and the rest of the sampler are unchanged. ``supports`` says when it applies (attention-only,
LN or no normalization, standard or shortformer positions, no hooks attached); otherwise the model's
own forward is used. A test checks that both give the same logits.

``HeadLoss`` goes further for weight-refined estimates of attention heads: when only some heads
move, everything before their first layer, and the other heads of that layer, are the same at
every SGLD step on a given batch. It computes that frozen part once per batch (every chain sees
the same batches) and, at each step, only the moving heads and the layers after them.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence

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


def _embed(model: nn.Module, tokens: torch.Tensor, offset: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(residual stream after the embeddings, the positional embedding [pos, d_model]); ``tokens``
    sit at the positions from ``offset`` on."""
    resid = model.embed.W_E[tokens]
    pos = model.pos_embed.W_pos[offset: offset + tokens.shape[-1]]
    if model.cfg.positional_embedding_type != "shortformer":
        resid = resid + pos
    return resid, pos


def _attn_inputs(model: nn.Module, layer: int, resid: torch.Tensor,
                 pos: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(value input, query/key input) of a layer's heads: the normalised stream, plus positions for shortformer."""
    x = _ln(resid, getattr(model.blocks[layer], "ln1", None), model.cfg.normalization_type)
    return x, (x + pos if model.cfg.positional_embedding_type == "shortformer" else x)


def _scale(model: nn.Module) -> float:
    return 1.0 / (model.cfg.attn_scale if model.cfg.use_attn_scale else 1.0)


def _qkv(model: nn.Module, layer: int, x: torch.Tensor, qk_in: torch.Tensor,
         heads: torch.Tensor | slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Queries, keys and values of the selected heads, each [batch, head, pos, d_head]."""
    attn = model.blocks[layer].attn
    q = torch.einsum("bpd,hde->bhpe", qk_in, attn.W_Q[heads]) + attn.b_Q[heads][None, :, None, :]
    k = torch.einsum("bpd,hde->bhpe", qk_in, attn.W_K[heads]) + attn.b_K[heads][None, :, None, :]
    v = torch.einsum("bpd,hde->bhpe", x, attn.W_V[heads]) + attn.b_V[heads][None, :, None, :]
    return q, k, v


def _heads_z(model: nn.Module, layer: int, x: torch.Tensor, qk_in: torch.Tensor,
             heads: torch.Tensor | slice = slice(None)) -> torch.Tensor:
    """The selected heads' attention-weighted values (TransformerLens' ``hook_z``), [batch, head, pos, d_head]."""
    q, k, v = _qkv(model, layer, x, qk_in, heads)
    return F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=_scale(model))


def _heads_out(model: nn.Module, layer: int, x: torch.Tensor, qk_in: torch.Tensor,
               heads: torch.Tensor | slice = slice(None)) -> torch.Tensor:
    """Summed output (before b_O) of the selected heads of a layer, [batch, pos, d_model]."""
    z = _heads_z(model, layer, x, qk_in, heads)
    return torch.einsum("bhpe,hed->bpd", z, model.blocks[layer].attn.W_O[heads])


def _block(model: nn.Module, layer: int, resid: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    x, qk_in = _attn_inputs(model, layer, resid, pos)
    return resid + _heads_out(model, layer, x, qk_in) + model.blocks[layer].attn.b_O


def _unembed(model: nn.Module, resid: torch.Tensor) -> torch.Tensor:
    resid = _ln(resid, getattr(model, "ln_final", None), model.cfg.normalization_type)
    return resid @ model.unembed.W_U + model.unembed.b_U


def _next_token_ce(logits: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    out = logits[:, :-1]
    return F.cross_entropy(out.reshape(-1, out.shape[-1]).float(), tokens[:, 1:].reshape(-1))


def logits(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """The model's logits [batch, pos, d_vocab], as ``model(tokens)`` computes them."""
    resid, pos = _embed(model, tokens)
    for layer in range(len(model.blocks)):
        resid = _block(model, layer, resid, pos)
    return _unembed(model, resid)


# ---------------------------------------------------------------------------------------------
# Interventions on the heads' outputs before W_O (TransformerLens' ``hook_z``)
#
# One mechanism: an edit maps a layer to a function z -> z on that layer's z, laid out
# [batch, head, pos, d_head]. Mean, zero and resample ablation and the patching step of path
# patching are small setters of it. The same edit runs in the fused forward (``run_heads``) and,
# through ``rllc.analysis.interventions.edit_hooks``, as TransformerLens hooks (tests compare them).

ZFn = Callable[[torch.Tensor], torch.Tensor]
ZEdit = Mapping[int, ZFn]


def replace_heads(heads: Sequence[int], new_of: Callable[[torch.Tensor], torch.Tensor]) -> ZFn:
    """The generic setter: z -> z with the listed heads' z replaced by ``new_of(z)``, a tensor
    shaped like ``z[:, heads]`` computed from the layer's unedited z."""
    hs = list(heads)

    def edit(z: torch.Tensor) -> torch.Tensor:
        z = z.clone()
        z[:, hs] = new_of(z).to(z.dtype)
        return z

    return edit


def mean_ablation(heads_by_layer: Mapping[int, Sequence[int]], means: Mapping[int, torch.Tensor]) -> ZEdit:
    """Each listed head's z replaced by its mean, position by position (``means[layer]``:
    [n_ctx, n_heads, d_head], e.g. from ``rllc.analysis.interventions.mean_z``)."""
    def of(layer: int, hs: list[int]) -> ZFn:
        m = means[layer]
        return replace_heads(hs, lambda z: m[: z.shape[2], hs].transpose(0, 1)[None].expand(z.shape[0], -1, -1, -1))

    return {layer: of(layer, list(hs)) for layer, hs in heads_by_layer.items()}


def zero_ablation(heads_by_layer: Mapping[int, Sequence[int]]) -> ZEdit:
    """Each listed head's z set to zero."""
    return {layer: replace_heads(hs, lambda z, hs=list(hs): torch.zeros_like(z[:, hs]))
            for layer, hs in heads_by_layer.items()}


def resample_ablation(heads_by_layer: Mapping[int, Sequence[int]], shift: int = 1) -> ZEdit:
    """Each listed head's z taken from another sequence of the batch at the same position: sequence
    i gets the z of sequence (i - shift) mod batch (from the same, otherwise clean, forward pass)."""
    return {layer: replace_heads(hs, lambda z, hs=list(hs): z[:, hs].roll(shift, dims=0))
            for layer, hs in heads_by_layer.items()}


def patch(heads_by_layer: Mapping[int, Sequence[int]], saved: Mapping[int, torch.Tensor]) -> ZEdit:
    """Each listed head's z replaced by its z from another pass on the same tokens (``saved[layer]``:
    [batch, head, pos, d_head], all heads of the layer, e.g. ``run_heads(..., keep_z=True)``)."""
    return {layer: replace_heads(hs, lambda z, zs=saved[layer], hs=list(hs): zs[:, hs])
            for layer, hs in heads_by_layer.items()}


def combine(*edits: ZEdit) -> ZEdit:
    """Several edits applied in order (within a layer, the first edit's output feeds the next)."""
    out: dict[int, ZFn] = {}
    for e in edits:
        for layer, fn in e.items():
            prev = out.get(layer)
            out[layer] = fn if prev is None else (lambda z, f=fn, g=prev: f(g(z)))
    return out


@torch.no_grad()
def run_heads(model: nn.Module, tokens: torch.Tensor, edit: ZEdit | None = None,
              keep_z: bool = False) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(logits, per-layer ``z`` [batch, head, pos, d_head] if ``keep_z``, after any edit) without
    gradients; ``edit`` changes the heads' z layer by layer (see the setters above)."""
    resid, pos = _embed(model, tokens)
    zs = []
    for layer in range(len(model.blocks)):
        x, qk_in = _attn_inputs(model, layer, resid, pos)
        z = _heads_z(model, layer, x, qk_in)
        if edit and layer in edit:
            z = edit[layer](z)
        if keep_z:
            zs.append(z)
        resid = _add_heads(model, layer, resid, z)
    return _unembed(model, resid), zs


@torch.no_grad()
def per_token_ce(model: nn.Module, tokens: torch.Tensor, edit: ZEdit | None = None) -> torch.Tensor:
    """Per-token next-token loss [batch, pos - 1], optionally under an edit of the heads' z."""
    out, _ = run_heads(model, tokens, edit)
    return F.cross_entropy(out[:, :-1].transpose(1, 2).float(), tokens[:, 1:], reduction="none")


def _add_heads(model: nn.Module, layer: int, resid: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """The residual stream after ``layer`` from the stream entering it and its heads' ``z``."""
    attn = model.blocks[layer].attn
    return resid + torch.einsum("bhpe,hed->bpd", z, attn.W_O) + attn.b_O


@torch.no_grad()
def per_token_ce_many(model: nn.Module, tokens: torch.Tensor,
                      edits: Sequence[ZEdit | None]) -> list[torch.Tensor]:
    """``per_token_ce(model, tokens, edit)`` for every edit of ``edits``, each bit-identical to
    its own call, computing once what no edit changes: the layers below the lowest edited layer
    and that layer's unedited ``z`` (every edit then starts from the same tensors). Edits must
    not change their input in place (the setters above never do)."""
    n_layers = len(model.blocks)
    first = min((min(e) for e in edits if e), default=n_layers)
    resid, pos = _embed(model, tokens)
    for layer in range(first):
        x, qk_in = _attn_inputs(model, layer, resid, pos)
        resid = _add_heads(model, layer, resid, _heads_z(model, layer, x, qk_in))
    z_first = None
    if first < n_layers:
        x, qk_in = _attn_inputs(model, first, resid, pos)
        z_first = _heads_z(model, first, x, qk_in)
    out = []
    for edit in edits:
        r = resid
        for layer in range(first, n_layers):
            if layer == first:
                z = z_first
            else:
                x, qk_in = _attn_inputs(model, layer, r, pos)
                z = _heads_z(model, layer, x, qk_in)
            if edit and layer in edit:
                z = edit[layer](z)
            r = _add_heads(model, layer, r, z)
        logits = _unembed(model, r)
        out.append(F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), tokens[:, 1:], reduction="none"))
    return out


@torch.no_grad()
def z_sums(model: nn.Module, tokens: torch.Tensor) -> dict[int, torch.Tensor]:
    """Per layer, ``z`` summed over the batch, [pos, n_heads, d_head] (for mean ablation); the
    same ``z`` as ``run_heads(..., keep_z=True)`` without the unembedding it does not need."""
    resid, pos = _embed(model, tokens)
    sums = {}
    for layer in range(len(model.blocks)):
        x, qk_in = _attn_inputs(model, layer, resid, pos)
        z = _heads_z(model, layer, x, qk_in)
        sums[layer] = z.float().sum(0).transpose(0, 1)
        if layer + 1 < len(model.blocks):
            resid = _add_heads(model, layer, resid, z)
    return sums


def model_logits(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Logits of a language model: the fused path where it applies, else the model's forward."""
    return logits(model, tokens) if supports(model) else model(tokens)


class Decoder:
    """Next-token logits one position at a time, keeping each layer's keys and values (a KV cache).

    ``step(tokens)`` feeds one token per sequence and returns the logits [batch, d_vocab] that
    ``logits(model, seen)[:, -1]`` gives for all the tokens fed so far, at the cost of one position
    instead of all of them: sampling a window of n tokens costs O(n) positions, not O(n²). For the
    models ``supports`` accepts (attention-only: a position's stream depends on the earlier
    positions only through the keys and values of each layer). No gradients are kept."""

    def __init__(self, model: nn.Module) -> None:
        if not supports(model):
            raise ValueError("incremental decoding needs an attention-only model the fused path supports")
        self.model = model
        self.keys: list[torch.Tensor | None] = [None] * len(model.blocks)
        self.values: list[torch.Tensor | None] = [None] * len(model.blocks)
        self.position = 0

    @torch.no_grad()
    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        model = self.model
        if self.position >= model.cfg.n_ctx:
            raise ValueError(f"the model's context holds {model.cfg.n_ctx} positions; all are used")
        resid, pos = _embed(model, tokens.reshape(-1, 1), self.position)  # [batch, 1, d_model]
        for layer in range(len(model.blocks)):
            x, qk_in = _attn_inputs(model, layer, resid, pos)
            q, k, v = _qkv(model, layer, x, qk_in)
            if self.keys[layer] is not None:
                k, v = torch.cat([self.keys[layer], k], dim=2), torch.cat([self.values[layer], v], dim=2)
            self.keys[layer], self.values[layer] = k, v
            # the one query sees every cached position (all earlier): no mask
            resid = _add_heads(model, layer, resid, F.scaled_dot_product_attention(q, k, v, scale=_scale(model)))
        self.position += 1
        return _unembed(model, resid)[:, -1]


def next_token_loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy on a batch of token windows (what training and SGLD minimise)."""
    return _next_token_ce(model_logits(model, tokens), tokens)


def batch_key(tokens: torch.Tensor) -> tuple:
    """A key for a batch of token windows (its shape, dtype and a hash of its contents)."""
    digest = hashlib.blake2b(tokens.detach().cpu().numpy().tobytes(), digest_size=16).hexdigest()
    return tuple(tokens.shape), str(tokens.dtype), digest


def soft_ce(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy from ``target`` distributions [batch, pos - 1, vocab] to the model's
    next-token predictions (``logits`` [batch, pos, vocab]): the loss of a data-refined estimate
    whose targets come from a generator model (the paper's eq. 11)."""
    logp = F.log_softmax(logits[:, :-1].float(), dim=-1)
    return -(target * logp).sum(-1).mean()


class SoftTargets:
    """A generator model's next-token distributions on a batch, computed once per distinct batch.

    Every chain, every component and every checkpoint of a sweep sees the same batches, and the
    generator is frozen, so its predictions on a batch never change: they are kept (up to
    ``max_bytes``, least recently used dropped first) instead of recomputed at every SGLD step.
    ``misses`` counts the generator forward passes actually run."""

    def __init__(self, generator: nn.Module, max_bytes: int = 2 * 1024**3) -> None:
        self.generator = generator.eval()
        for p in self.generator.parameters():
            p.requires_grad_(False)
        self.max_bytes = max_bytes
        self._cache: OrderedDict[tuple, torch.Tensor] = OrderedDict()
        self._bytes = 0
        self.misses = 0

    @classmethod
    def of(cls, generator: nn.Module | SoftTargets) -> SoftTargets:
        """``generator``'s cached predictions (itself if it already is a ``SoftTargets``)."""
        return generator if isinstance(generator, SoftTargets) else cls(generator)

    @torch.no_grad()
    def __call__(self, tokens: torch.Tensor) -> torch.Tensor:
        key = batch_key(tokens)
        target = self._cache.get(key)
        if target is None:
            self.misses += 1
            target = F.softmax(model_logits(self.generator, tokens)[:, :-1].float(), dim=-1)
            size = target.numel() * target.element_size()
            if size <= self.max_bytes:
                self._cache[key] = target
                self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._cache.popitem(last=False)
                self._bytes -= old.numel() * old.element_size()
        else:
            self._cache.move_to_end(key)
        return target


@torch.no_grad()
def layer_inputs(model: nn.Module, layer: int, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(residual stream entering ``layer``, its heads' value input, their query/key input, the
    positional embedding) on a batch, without gradients."""
    resid, pos = _embed(model, tokens)
    for lower in range(layer):
        resid = _block(model, lower, resid, pos)
    x, qk_in = _attn_inputs(model, layer, resid, pos)
    return resid, x, qk_in, pos


class LayerInputs:
    """What enters a layer's heads on each batch, computed once and shared by the head losses of
    every head of one checkpoint.

    A head estimate moves only its own head's weights, so the residual stream entering its layer
    and that layer's attention inputs depend on the frozen weights below it alone, and with
    per-chain batch orders every head of a checkpoint sees the same batches (chain c's order is
    seeded by the sampler, not the component). ``get`` returns (resid, x, qk_in, pos) for a layer,
    computed by the same code as :class:`HeadLoss` computes them itself, so the losses and every
    SGLD trace are bit-identical with or without the cache (a test checks it). Layer 0's inputs
    (an embedding lookup) are cheap and never kept. Batches are kept until ``max_bytes`` is
    reached and later ones are computed without being kept: a sweep revisits the batches in the
    same cycle for every head, and an evicting (LRU) cache smaller than the cycle would drop each
    entry just before its reuse.

    One object belongs to one checkpoint's frozen weights: the first call records a fingerprint of
    the embeddings and the layers below, and a model with other weights there is refused."""

    def __init__(self, max_bytes: int = 1024**3) -> None:
        self.max_bytes = max_bytes
        self._cache: dict[tuple, tuple[torch.Tensor, ...]] = {}
        self._bytes = 0
        self._fingerprints: dict[int, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def _fingerprint(model: nn.Module, layer: int) -> torch.Tensor:
        parts = [model.embed.W_E, model.pos_embed.W_pos]
        for lower in range(layer):
            parts += list(model.blocks[lower].parameters())
        sums = [p.detach().double().sum() for p in parts] + [p.detach().double().abs().sum() for p in parts]
        return torch.stack(sums)

    def check(self, model: nn.Module, layer: int) -> None:
        """Refuse ``model`` if its weights below ``layer`` differ from those the cache was filled with."""
        if layer == 0:
            return
        fp = self._fingerprint(model, layer)
        seen = self._fingerprints.setdefault(layer, fp)
        if not torch.equal(seen, fp):
            raise ValueError("these LayerInputs were filled from another checkpoint's weights; make one per checkpoint")

    def get(self, model: nn.Module, layer: int, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if layer == 0:
            return layer_inputs(model, layer, tokens)
        key = (layer, *batch_key(tokens))
        found = self._cache.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        found = layer_inputs(model, layer, tokens)
        size = sum(t.numel() * t.element_size() for t in found[:3])
        if self._bytes + size <= self.max_bytes:
            self._cache[key] = found
            self._bytes += size
        return found


class HeadLoss:
    """``next_token_loss`` for SGLD on attention heads only, with the frozen part computed once per batch.

    ``heads``: (layer, head) pairs, the only weights that move (their W_Q, W_K, W_V, W_O, b_Q,
    b_K, b_V slices, as ``rllc.components`` defines a head). For each distinct batch the residual
    stream entering the first moving layer, that layer's attention inputs, and the summed
    output of its other heads are computed without gradients and kept (up to ``max_batches``
    batches, least recently used dropped); every call then runs only the moving heads of that
    layer and the full layers after it. The value equals ``next_token_loss`` up to floating-point
    summation order, and so do the gradients with respect to the moving heads (a test checks both).
    The cache belongs to one model's frozen weights: calling with another model object, or
    after the frozen weights changed in place, is not allowed (``sample_llc`` never does either).
    """

    def __init__(self, heads: Sequence[tuple[int, int]], max_batches: int = 512,
                 targets: SoftTargets | None = None, inputs: LayerInputs | None = None) -> None:
        if not heads:
            raise ValueError("HeadLoss needs at least one (layer, head)")
        self.targets = targets  # a generator's predictions replace the next tokens (eq. 11)
        self.inputs = inputs  # the layer's inputs shared with the other heads of the checkpoint
        self.heads = sorted(set((int(a), int(b)) for a, b in heads))
        self.layer = self.heads[0][0]
        self.moving = [h for (layer, h) in self.heads if layer == self.layer]  # moving heads of the first layer
        self.max_batches = max_batches
        self._cache: OrderedDict[tuple, tuple[torch.Tensor, ...]] = OrderedDict()
        self._model_id: int | None = None

    def _key(self, tokens: torch.Tensor) -> tuple:
        return batch_key(tokens)

    @torch.no_grad()
    def _frozen(self, model: nn.Module, tokens: torch.Tensor) -> tuple[torch.Tensor, ...]:
        if self.inputs is not None:
            resid, x, qk_in, pos = self.inputs.get(model, self.layer, tokens)
        else:
            resid, x, qk_in, pos = layer_inputs(model, self.layer, tokens)
        others = [h for h in range(model.cfg.n_heads) if h not in self.moving]
        rest = resid + model.blocks[self.layer].attn.b_O
        if others:
            rest = rest + _heads_out(model, self.layer, x, qk_in, torch.tensor(others, device=x.device))
        return rest, x, qk_in, pos, torch.tensor(self.moving, device=x.device)

    def __call__(self, model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        if not supports(model):
            raise ValueError("HeadLoss needs an attention-only model that rllc.model.fused supports")
        if self._model_id is None:
            self._model_id = id(model)
            if self.inputs is not None:
                self.inputs.check(model, self.layer)
        elif self._model_id != id(model):
            raise ValueError("a HeadLoss caches one model's frozen weights; make a new one for another model")
        key = self._key(tokens)
        frozen = self._cache.get(key)
        if frozen is None:
            frozen = self._frozen(model, tokens)
            self._cache[key] = frozen
            if len(self._cache) > self.max_batches:
                self._cache.popitem(last=False)
        else:
            self._cache.move_to_end(key)
        rest, x, qk_in, pos, moving = frozen
        resid = rest + _heads_out(model, self.layer, x, qk_in, moving)
        for layer in range(self.layer + 1, len(model.blocks)):
            resid = _block(model, layer, resid, pos)
        if self.targets is not None:
            return soft_ce(_unembed(model, resid), self.targets(tokens))
        return _next_token_ce(_unembed(model, resid), tokens)
