"""Behavioural head scores and the ICL score.

* previous-token score: on BOS + uniform random tokens (lengths min_len..max_len), the attention
  from the last token to the one before it, averaged over samples (as in Hoogland et al. 2024);
* current-token score: the same, attention from the last token to itself;
* first-position score: the same protocol, attention from the last token to the first position
  (BOS): the attention a head parks there is not spent on content (``head_types`` uses the rest);
* the same three on text (``*_text``): held-out windows of the training mixture, the mean over
  every query position from ``text_min_pos`` on, attention to the position before, to itself and
  to the window's first position;
* induction score (Olsson et al. 2022): on BOS + a random sequence repeated twice, the attention
  from each token of the second copy to the token after its first occurrence;
* ICL score: the loss at a late context position minus the loss at an early one (500 and 50 at
  n_ctx 1024, scaled to the model's n_ctx). It falls as in-context learning develops.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from ..config import ScoreConfig
from ..model.fused import ZEdit
from .head_types import SCORE_TYPES, TYPE_THRESHOLDS
from .interventions import ablation_spec, mean_z, per_token_loss, token_losses_many

# Part of the key of cached behaviour tables (rllc.analysis.trajectory): bump it when a change
# here alters the scores for the same settings.
SCORES_VERSION = 2  # 2: first-position and text scores beside the random-token ones
# The ICL score must end at least this much below where it started (nats) to count as falling.
ICL_DROP = -0.3


def random_sequences(n: int, length: int, d_vocab: int, bos: int, seed: int) -> torch.Tensor:
    """``n`` sequences: BOS followed by ``length - 1`` uniform random non-BOS tokens."""
    g = torch.Generator().manual_seed(seed)
    toks = torch.randint(0, d_vocab - 1, (n, length - 1), generator=g)
    toks = toks + (toks >= bos).long()  # skip the BOS id
    return torch.cat([torch.full((n, 1), bos, dtype=torch.long), toks], dim=1)


def _patterns(model: HookedTransformer, tokens: torch.Tensor,
              batch_size: int) -> Iterable[tuple[int, torch.Tensor, slice]]:
    """(layer, attention pattern [batch, head, q, k], batch slice) for each batch and layer."""
    names = [f"blocks.{layer}.attn.hook_pattern" for layer in range(model.cfg.n_layers)]
    for i in range(0, len(tokens), batch_size):
        # stop before the unembedding: the patterns are all we need, and logits dominate the cost
        _, cache = model.run_with_cache(tokens[i:i + batch_size].to(model.cfg.device),
                                        names_filter=names.__contains__, stop_at_layer=model.cfg.n_layers)
        for layer, name in enumerate(names):
            yield layer, cache[name].float().cpu(), slice(i, i + batch_size)


def head_scores(model: HookedTransformer, cfg: ScoreConfig, bos: int = 0, seed: int = 0,
                text: torch.Tensor | None = None) -> pd.DataFrame:
    """Previous-token, current-token, first-position and induction scores of every head, and with
    ``text`` (windows [n, n_ctx]; the first ``cfg.text_windows`` are used) the three attention
    shares on text: tidy rows (layer, head, component, score, value)."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    if n_layers == 0:
        return pd.DataFrame(columns=["layer", "head", "component", "score", "value"])
    if 1 + 2 * cfg.induction_len > model.cfg.n_ctx or cfg.max_len > model.cfg.n_ctx:
        raise ValueError(f"score sequences do not fit n_ctx={model.cfg.n_ctx}")
    sums = {s: torch.zeros(n_layers, n_heads) for s in (*SCORE_TYPES, "first_position")}

    # previous / current token: last position of sequences of random length
    seqs = random_sequences(cfg.n_samples, cfg.max_len, model.cfg.d_vocab, bos, seed)
    g = torch.Generator().manual_seed(seed + 1)
    last = torch.randint(cfg.min_len - 1, cfg.max_len, (cfg.n_samples,), generator=g)
    for layer, pat, sl in _patterns(model, seqs, cfg.batch_size):
        q = last[sl]
        rows = torch.arange(len(q))
        sums["previous_token"][layer] += pat[rows, :, q, q - 1].sum(0)
        sums["current_token"][layer] += pat[rows, :, q, q].sum(0)
        sums["first_position"][layer] += pat[rows, :, q, 0].sum(0)

    # induction: BOS + r + r; query 1+T+i attends to key 2+i (the token after r_i's first copy)
    T = cfg.induction_len
    half = random_sequences(cfg.n_samples, T + 1, model.cfg.d_vocab, bos, seed + 2)
    rep = torch.cat([half, half[:, 1:]], dim=1)
    qpos = torch.arange(1 + T, 1 + 2 * T - 1)  # second copy, all but its last token
    kpos = qpos - T + 1
    for layer, pat, _ in _patterns(model, rep, cfg.batch_size):
        sums["induction"][layer] += pat[:, :, qpos, kpos].mean(-1).sum(0)

    means = {score: total / cfg.n_samples for score, total in sums.items()}
    if text is not None:
        means.update(text_shares(model, text[: cfg.text_windows], cfg))
    rows = []
    for score, mean in means.items():
        for layer in range(n_layers):
            for head in range(n_heads):
                rows.append({"layer": layer, "head": head, "component": f"{layer}:{head}",
                             "score": score, "value": float(mean[layer, head])})
    return pd.DataFrame(rows)


TEXT_SCORES = ("previous_token_text", "current_token_text", "first_position_text")


def text_shares(model: HookedTransformer, windows: torch.Tensor, cfg: ScoreConfig) -> dict[str, torch.Tensor]:
    """Each head's mean attention on text ([n_layers, n_heads] per score of ``TEXT_SCORES``): from
    every query position q >= ``cfg.text_min_pos`` of ``windows`` to q - 1, to q, and to 0."""
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    n_pos = windows.shape[1]
    if not 1 <= cfg.text_min_pos < n_pos:
        raise ValueError(f"text_min_pos={cfg.text_min_pos} must lie in 1..{n_pos - 1} (the windows' length)")
    q = torch.arange(cfg.text_min_pos, n_pos)
    sums = {s: torch.zeros(n_layers, n_heads) for s in TEXT_SCORES}
    for layer, pat, _ in _patterns(model, windows, cfg.batch_size):
        sums["previous_token_text"][layer] += pat[:, :, q, q - 1].mean(-1).sum(0)
        sums["current_token_text"][layer] += pat[:, :, q, q].mean(-1).sum(0)
        sums["first_position_text"][layer] += pat[:, :, q, 0].mean(-1).sum(0)
    return {s: total / max(len(windows), 1) for s, total in sums.items()}


def icl_positions(n_ctx: int, cfg: ScoreConfig) -> tuple[int, int]:
    """The paper's positions (50, 500 at n_ctx 1024) scaled to ``n_ctx``."""
    early = max(1, round(cfg.icl_early * n_ctx / 1024))
    late = min(n_ctx - 2, round(cfg.icl_late * n_ctx / 1024))
    if late - cfg.icl_halfwidth <= early + cfg.icl_halfwidth:
        raise ValueError(f"n_ctx={n_ctx} too short for an ICL score")
    return early, late


def icl_score(model: HookedTransformer, tokens: torch.Tensor, cfg: ScoreConfig,
              hooks: Sequence[tuple[str, object]] = (), edit: ZEdit | None = None) -> float:
    """Loss at the late position minus loss at the early position (negative = in-context learning).

    Each position's loss is averaged over ``icl_halfwidth`` neighbours on either side: a single
    position's mean loss over a few hundred windows has a standard error of ~0.1 nats."""
    losses = per_token_loss(model, tokens[: cfg.icl_batches * cfg.batch_size], cfg.batch_size, hooks, edit)
    return _icl_of(losses, model.cfg.n_ctx, cfg)


def _icl_of(losses: torch.Tensor, n_ctx: int, cfg: ScoreConfig) -> float:
    """The ICL score from the mean loss at each position ([n_ctx - 1])."""
    early, late = icl_positions(n_ctx, cfg)
    w = cfg.icl_halfwidth

    def around(p: int) -> torch.Tensor:
        return losses[max(0, p - w): p + w + 1].mean()

    return float(around(late) - around(early))


def icl_scores(model: HookedTransformer, tokens: torch.Tensor, cfg: ScoreConfig,
               edits: Sequence[ZEdit | None]) -> list[float]:
    """``icl_score(model, tokens, cfg, edit=e)`` for every edit, equal to one call each, with the
    layers no edit changes run once per batch for all of them (``interventions.token_losses_many``)."""
    losses = token_losses_many(model, tokens[: cfg.icl_batches * cfg.batch_size], cfg.batch_size, edits)
    return [_icl_of(x.mean(0), model.cfg.n_ctx, cfg) for x in losses]


def per_head_icl(model: HookedTransformer, tokens: torch.Tensor, cfg: ScoreConfig, heads: Sequence[str],
                 means: dict[int, torch.Tensor] | None = None) -> pd.DataFrame:
    """The ICL score attributable to each of ``heads`` (rLLC paper, Figure 10).

    Rows (component, variant, value): ``only`` is the ICL score with every *other* head of
    ``heads`` mean-ablated (so it tracks what that head alone contributes); ``without`` is the
    score with the head itself ablated; ``none`` (component "model") is the unablated score."""
    ref = tokens[: cfg.icl_batches * cfg.batch_size]
    means = means if means is not None else mean_z(model, ref, cfg.batch_size)
    edits: list[ZEdit | None] = [None]  # the unablated model, then per head: the others ablated, itself ablated
    for h in heads:
        others = [o for o in heads if o != h]
        edits += [ablation_spec(others, means) if others else None, ablation_spec([h], means)]
    values = icl_scores(model, ref, cfg, edits)
    rows = [{"component": "model", "variant": "none", "value": values[0]}]
    for i, h in enumerate(heads):
        rows.append({"component": h, "variant": "only", "value": values[1 + 2 * i]})
        rows.append({"component": h, "variant": "without", "value": values[2 + 2 * i]})
    return pd.DataFrame(rows)


def chance_levels(cfg: ScoreConfig) -> dict[str, float]:
    """The measures of a head that attends uniformly: its share of content attention (every key but
    the first) at the last of L random tokens is 1/(L - 1), averaged over the lengths; induction:
    1/(number of keys) over the second copy's queries."""
    lengths = torch.arange(cfg.min_len, cfg.max_len + 1, dtype=torch.float64)  # query at index L-1: L keys
    uniform_content = float((1 / (lengths - 1)).mean())
    T = cfg.induction_len
    queries = torch.arange(1 + T, 1 + 2 * T - 1, dtype=torch.float64)
    return {"previous_token": uniform_content, "current_token": uniform_content,
            "induction": float((1 / (queries + 1)).mean())}


def threshold_report(measures: pd.DataFrame, cfg: ScoreConfig,
                     thresholds: dict[str, float] | None = None) -> pd.DataFrame:
    """For each measure of the type rule (``head_types.rule_measures``: tidy rows component, score,
    value): chance level, threshold, the heads above it, and where the widest gap in the sorted
    values lies (a threshold inside that gap separates the same heads)."""
    thresholds = thresholds or TYPE_THRESHOLDS
    chance = chance_levels(cfg)
    rows = []
    for score, t in thresholds.items():
        v = measures.loc[measures["score"] == score].sort_values("value")
        vals = v["value"].to_numpy()
        gaps = vals[1:] - vals[:-1] if len(vals) > 1 else []
        i = int(gaps.argmax()) if len(gaps) else 0
        above = v.loc[v["value"] > t, "component"].tolist()
        rows.append({"score": score, "chance": chance[score], "threshold": t,
                     "max": float(vals.max()) if len(vals) else float("nan"),
                     "heads_above": " ".join(above), "widest_gap_from": float(vals[i]) if len(gaps) else float("nan"),
                     "widest_gap_to": float(vals[i + 1]) if len(gaps) else float("nan"),
                     "threshold_in_gap": bool(len(gaps) and vals[i] < t <= vals[i + 1])})
    return pd.DataFrame(rows)
