"""Behavioural head scores and the ICL score.

* previous-token score: on BOS + uniform random tokens (lengths min_len..max_len), the attention
  from the last token to the one before it, averaged over samples (as in Hoogland et al. 2024);
* current-token score: the same, attention from the last token to itself;
* induction score (Olsson et al. 2022): on BOS + a random sequence repeated twice, the attention
  from each token of the second copy to the token after its first occurrence;
* ICL score: the loss at a late context position minus the loss at an early one (500 and 50 at
  n_ctx 1024, scaled to the model's n_ctx). It falls as in-context learning develops.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from . import fastforward
from .config import ScoreConfig

SCORE_TYPES = ("previous_token", "current_token", "induction")

# A head is of a type when its final score clears the threshold (chance is ~0.03 for the
# previous/current-token scores at lengths 16-64 and ~1/induction_len for induction).
TYPE_THRESHOLDS = {"previous_token": 0.2, "current_token": 0.2, "induction": 0.2}
# The ICL score must end at least this much below where it started (nats) to count as falling.
ICL_DROP = -0.3


def random_sequences(n: int, length: int, d_vocab: int, bos: int, seed: int) -> torch.Tensor:
    """``n`` sequences: BOS followed by ``length - 1`` uniform random non-BOS tokens."""
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(0, d_vocab - 1, (n, length - 1), generator=g)
    toks = toks + (toks >= bos).long()  # skip the BOS id
    return torch.cat([torch.full((n, 1), bos, dtype=torch.long), toks], dim=1)


def _patterns(model: HookedTransformer, tokens: torch.Tensor, batch_size: int) -> Iterable[tuple[int, torch.Tensor, slice]]:
    """(layer, attention pattern [batch, head, q, k], batch slice) for each batch and layer."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    for i in range(0, len(tokens), batch_size):
        # stop before the unembedding: the patterns are all we need, and logits dominate the cost
        _, cache = model.run_with_cache(tokens[i:i + batch_size].to(model.cfg.device),
                                        names_filter=names.__contains__, stop_at_layer=model.cfg.n_layers)
        for layer, name in enumerate(names):
            yield layer, cache[name].float().cpu(), slice(i, i + batch_size)


@torch.no_grad()
def head_scores(model: HookedTransformer, cfg: ScoreConfig, bos: int = 0, seed: int = 0) -> pd.DataFrame:
    """Previous-token, current-token and induction scores of every head: tidy rows
    (layer, head, component, score, value)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if n_layers == 0:
        return pd.DataFrame(columns=["layer", "head", "component", "score", "value"])
    if 1 + 2 * cfg.induction_len > model.cfg.n_ctx or cfg.max_len > model.cfg.n_ctx:
        raise ValueError(f"score sequences do not fit n_ctx={model.cfg.n_ctx}")
    sums = {s: torch.zeros(n_layers, n_heads) for s in SCORE_TYPES}

    # previous / current token: last position of sequences of random length
    seqs = random_sequences(cfg.n_samples, cfg.max_len, model.cfg.d_vocab, bos, seed)
    g = torch.Generator().manual_seed(seed + 1)
    last = torch.randint(cfg.min_len - 1, cfg.max_len, (cfg.n_samples,), generator=g)
    for layer, pat, sl in _patterns(model, seqs, cfg.batch_size):
        q = last[sl]
        rows = torch.arange(len(q))
        sums["previous_token"][layer] += pat[rows, :, q, q - 1].sum(0)
        sums["current_token"][layer] += pat[rows, :, q, q].sum(0)

    # induction: BOS + r + r; query 1+T+i attends to key 2+i (the token after r_i's first copy)
    T = cfg.induction_len
    half = random_sequences(cfg.n_samples, T + 1, model.cfg.d_vocab, bos, seed + 2)
    rep = torch.cat([half, half[:, 1:]], dim=1)
    qpos = torch.arange(1 + T, 1 + 2 * T - 1)  # second copy, all but its last token
    kpos = qpos - T + 1
    for layer, pat, _ in _patterns(model, rep, cfg.batch_size):
        sums["induction"][layer] += pat[:, :, qpos, kpos].mean(-1).sum(0)

    rows = []
    for score, total in sums.items():
        for layer in range(n_layers):
            for head in range(n_heads):
                rows.append({"layer": layer, "head": head, "component": f"{layer}:{head}",
                             "score": score, "value": float(total[layer, head] / cfg.n_samples)})
    return pd.DataFrame(rows)


def icl_positions(n_ctx: int, cfg: ScoreConfig) -> tuple[int, int]:
    """The paper's positions (50, 500 at n_ctx 1024) scaled to ``n_ctx``."""
    early = max(1, round(cfg.icl_early * n_ctx / 1024))
    late = min(n_ctx - 2, round(cfg.icl_late * n_ctx / 1024))
    if late - cfg.icl_halfwidth <= early + cfg.icl_halfwidth:
        raise ValueError(f"n_ctx={n_ctx} too short for an ICL score")
    return early, late


@torch.no_grad()
def z_hook_name(layer: int) -> str:
    return f"blocks.{layer}.attn.hook_z"


def ablation_hooks(ablate: fastforward.Ablation) -> list[tuple[str, object]]:
    """TransformerLens forward hooks on ``hook_z`` that apply a mean ablation (layer -> (heads, means))."""
    def replace(hs: list[int], mean: torch.Tensor) -> Callable[[torch.Tensor, object], torch.Tensor]:
        def hook(z: torch.Tensor, hook: object) -> torch.Tensor:
            z[:, :, hs] = mean[: z.shape[1], hs].to(z.dtype)
            return z
        return hook

    return [(z_hook_name(layer), replace(list(hs), mean)) for layer, (hs, mean) in ablate.items()]


def token_losses(model: HookedTransformer, tokens: torch.Tensor, batch_size: int = 64,
                 hooks: Sequence[tuple[str, object]] = (), ablate: fastforward.Ablation | None = None) -> torch.Tensor:
    """Per-token next-token loss [n, n_ctx - 1], optionally with heads mean-ablated (``ablate``,
    see ``rllc.ablation``) or other forward hooks attached.

    Without ``hooks`` it runs the fused forward of ``rllc.fastforward`` (2.6x faster here than
    TransformerLens' hooked forward); with hooks, or for models it does not support, the model's own."""
    fused = not hooks and fastforward.supports(model)
    if not fused and ablate:
        hooks = [*hooks, *ablation_hooks(ablate)]
    out = []
    for i in range(0, len(tokens), batch_size):
        batch = tokens[i:i + batch_size].to(model.cfg.device)
        if fused:
            loss = fastforward.token_losses(model, batch, ablate)
        else:
            loss = model.run_with_hooks(batch, return_type="loss", loss_per_token=True, fwd_hooks=list(hooks))
        out.append(loss.float().cpu())
    return torch.cat(out)


def per_token_loss(model: HookedTransformer, tokens: torch.Tensor, batch_size: int,
                   hooks: Sequence[tuple[str, object]] = (), ablate: fastforward.Ablation | None = None) -> torch.Tensor:
    """Mean loss at each context position over ``tokens`` ([n, n_ctx] → [n_ctx - 1])."""
    return token_losses(model, tokens, batch_size, hooks, ablate).mean(0)


def icl_score(model: HookedTransformer, tokens: torch.Tensor, cfg: ScoreConfig,
              hooks: Sequence[tuple[str, object]] = (), ablate: fastforward.Ablation | None = None) -> float:
    """Loss at the late position minus loss at the early position (negative = in-context learning).

    Each position's loss is averaged over ``icl_halfwidth`` neighbours on either side: a single
    position's mean loss over a few hundred windows has a standard error of ~0.1 nats."""
    early, late = icl_positions(model.cfg.n_ctx, cfg)
    losses = per_token_loss(model, tokens[: cfg.icl_batches * cfg.batch_size], cfg.batch_size, hooks, ablate)
    w = cfg.icl_halfwidth
    around = lambda p: losses[max(0, p - w): p + w + 1].mean()  # noqa: E731
    return float(around(late) - around(early))


def classify_by_scores(scores: pd.DataFrame, thresholds: dict[str, float]) -> pd.Series:
    """A head's behavioural type from its final scores: the score type whose value exceeds its
    threshold by the largest margin, else "multigram"."""
    wide = scores.pivot_table(index="component", columns="score", values="value")
    margins = pd.DataFrame({s: wide[s] - t for s, t in thresholds.items() if s in wide})
    best = margins.idxmax(axis=1)
    return best.where(margins.max(axis=1) > 0, "multigram").rename("type")



FINAL_TYPES = ("previous-token", "current-token", "induction", "Dyck multigram", "multigram")
_SCORE_TO_TYPE = {"previous_token": "previous-token", "current_token": "current-token", "induction": "induction"}


def head_types(score_types: pd.Series, pattern_summary: pd.DataFrame | None = None) -> pd.Series:
    """Each head's final type (Table 1): its score type if it has one; otherwise a multigram
    head, "Dyck multigram" when Dyck patterns explain more of its tokens in context than any
    other pattern (``pattern_summary`` from :func:`rllc.patterns.pattern_summary`)."""
    out = score_types.map(lambda t: _SCORE_TO_TYPE.get(t, "multigram"))
    if pattern_summary is not None and len(pattern_summary):
        top = pattern_summary.set_index("component")["top_pattern"].reindex(out.index)
        out = out.where(~((out == "multigram") & (top == "dyck")), "Dyck multigram")
    return out.rename("type")


def chance_levels(cfg: ScoreConfig) -> dict[str, float]:
    """Scores of a head that attends uniformly (to BOS and every earlier token)."""
    lengths = torch.arange(cfg.min_len, cfg.max_len + 1, dtype=torch.float64)  # query at index L-1: L keys
    uniform_last = float((1 / lengths).mean())
    T = cfg.induction_len
    queries = torch.arange(1 + T, 1 + 2 * T - 1, dtype=torch.float64)
    return {"previous_token": uniform_last, "current_token": uniform_last,
            "induction": float((1 / (queries + 1)).mean())}


def threshold_report(scores: pd.DataFrame, cfg: ScoreConfig, thresholds: dict[str, float] | None = None) -> pd.DataFrame:
    """For each score: chance level, threshold, the heads above it, and where the widest gap in
    the sorted scores lies (a threshold inside that gap separates the same heads)."""
    thresholds = thresholds or TYPE_THRESHOLDS
    chance = chance_levels(cfg)
    rows = []
    for score, t in thresholds.items():
        v = scores.loc[scores["score"] == score].sort_values("value")
        vals = v["value"].to_numpy()
        gaps = vals[1:] - vals[:-1] if len(vals) > 1 else []
        i = int(gaps.argmax()) if len(gaps) else 0
        above = v.loc[v["value"] > t, "component"].tolist()
        rows.append({"score": score, "chance": chance[score], "threshold": t, "max": float(vals.max()) if len(vals) else float("nan"),
                     "heads_above": " ".join(above), "widest_gap_from": float(vals[i]) if len(gaps) else float("nan"),
                     "widest_gap_to": float(vals[i + 1]) if len(gaps) else float("nan"),
                     "threshold_in_gap": bool(len(gaps) and vals[i] < t <= vals[i + 1])})
    return pd.DataFrame(rows)
