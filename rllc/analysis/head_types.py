"""The one vocabulary of head types, and how a head gets its type.

Scores are named in snake case (``previous_token``, ``current_token``, ``induction``: columns of
the behaviour tables); types are what a head *is*, in the paper's words (Table 1). Every module,
table and figure uses these constants, never a literal spelling.

The rule (version 2, fixed 2026-12-05 before any claim was recomputed with it)
-------------------------------------------------------------------------------
Source: the paper, Section 4.1: a head is a previous-token (current-token) head if it "strongly and
systematically" attends to the previous (current) token; induction heads are found as in Elhage et
al. (2021); every other head is a multigram head. Appendix G: every run has a single current-token
head, the rest multigram heads; Appendix B.6 describes the current-token head 0:5 as attending
"almost entirely" to the current token.

* **Systematically** = on random tokens *and* on text. The random-token score (BOS + uniform random
  tokens, lengths 16-64, attention from the last token; Hoogland et al.'s protocol) removes every
  n-gram statistic, so what is left is the head's positional habit; the text score (held-out
  windows of the training mixture, every query position from 8 on) is what the head does in use.
  A head that attends to itself on random tokens but elsewhere on text does not do so
  systematically, so a head's measure is the *smaller* of its two shares.
* **Strongly** = the position gets the *majority* of the attention the head spends on content:
  share > 0.5, where the share is the attention to that position over the attention to every
  position but the first (BOS on random tokens, the window's first token on text: where heads
  park attention they do not use). Chance is 1/(number of keys), about 0.03 on random tokens of
  length 16-64, so 0.5 is ≥ 15x chance. Two positions cannot both hold a majority, so a head with
  a current-token and a previous-token share (a local n-gram head splitting its attention, as most
  layer-0 heads of the cpu model do at 12k) is of neither type unless one share is a majority:
  it is a multigram head.
* "Almost entirely" (B.6) describes one head of the paper, not the definition of the type in 4.1;
  it is shown as a reading (the current-token head's share), and as an alternative rule (≥ 0.8).
* **Induction**: the prefix-matching score of Olsson et al. (2022) on a random sequence repeated
  twice (not the authors' single repeated token: a repeated token also rewards current- and
  previous-token heads), above 0.2 (chance ≈ 0.01 at induction_len 64), unchanged from rule 1.
* A head that clears two thresholds takes the type it clears by the widest margin.

The content share is used, rather than the raw attention, so that the rule does not depend on how
much a model parks on BOS: the authors' own previous-token heads scored 0.29 and 0.22 in raw
random-token attention at 50k steps, every other head ≤ 0.08 (their notebook; PAPER-FACTS).
:data:`RULES` holds rule 1 and the alternatives beside the rule, for the sensitivity tables (02).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

PREVIOUS_TOKEN = "previous-token"
CURRENT_TOKEN = "current-token"
INDUCTION = "induction"
DYCK = "Dyck multigram"
MULTIGRAM = "multigram"
FINAL_TYPES = (PREVIOUS_TOKEN, CURRENT_TOKEN, INDUCTION, DYCK, MULTIGRAM)
MULTIGRAM_TYPES = (MULTIGRAM, DYCK)

SCORE_TYPES = ("previous_token", "current_token", "induction")
SCORE_TO_TYPE = {"previous_token": PREVIOUS_TOKEN, "current_token": CURRENT_TOKEN, "induction": INDUCTION}

# Part of the key of every cached table that depends on the types (scale-study rows): bump it
# when the rule changes.
RULE_VERSION = 2
STRONG_SHARE = 0.5
INDUCTION_MIN = 0.2
# the rule's thresholds, on the measures of :func:`rule_measures` (same names as the scores)
TYPE_THRESHOLDS = {"previous_token": STRONG_SHARE, "current_token": STRONG_SHARE, "induction": INDUCTION_MIN}

# (score on random tokens, on text, attention to the first position on each)
_POSITION_SCORES = {"previous_token": ("previous_token", "previous_token_text"),
                    "current_token": ("current_token", "current_token_text")}
_FIRST = ("first_position", "first_position_text")


@dataclass(frozen=True)
class Rule:
    """How a head's type follows from its scores: which data count, whether attention parked on
    the first position is left out, and the thresholds on the resulting measures."""

    name: str
    data: tuple[str, ...] = ("random", "text")
    content: bool = True
    thresholds: dict[str, float] = field(default_factory=lambda: dict(TYPE_THRESHOLDS))
    doc: str = ""


RULES = {r.name: r for r in (
    Rule("paper", doc="the rule: content share > 0.5 on random tokens and on text (the smaller), induction > 0.2"),
    Rule("v1", data=("random",), content=False, thresholds={"previous_token": 0.2, "current_token": 0.2,
                                                            "induction": 0.2},
         doc="rule 1 (until 2026-12-05): raw random-token attention > 0.2, the widest margin wins"),
    Rule("raw shares", content=False, doc="the rule with raw attention (BOS and first token counted)"),
    Rule("random tokens only", data=("random",), doc="the rule on random tokens alone"),
    Rule("text only", data=("text",), doc="the rule on text alone"),
    Rule("almost entirely", thresholds={**TYPE_THRESHOLDS, "current_token": 0.8},
         doc="the rule, a current-token head needing a share ≥ 0.8 (B.6's 'almost entirely')"),
)}
DEFAULT_RULE = "paper"


def rule_measures(scores: pd.DataFrame, rule: Rule | str = DEFAULT_RULE) -> pd.DataFrame:
    """The measures ``rule`` thresholds, as tidy rows like ``scores`` (its other columns, e.g.
    step and layer, kept): ``previous_token`` and ``current_token`` are the head's attention share
    to that position (of its content attention when ``rule.content``), the smaller over
    ``rule.data``; ``induction`` is the induction score."""
    rule = RULES[rule] if isinstance(rule, str) else rule
    keys = [c for c in scores.columns if c not in ("score", "value")]
    wide = scores.pivot_table(index=keys, columns="score", values="value")
    out = {}
    for score, names in _POSITION_SCORES.items():
        per_data = []
        for data, name, first in zip(("random", "text"), names, _FIRST, strict=True):
            if data not in rule.data:
                continue
            if name not in wide:
                raise ValueError(f"the scores lack {name!r} (behaviour tables before SCORES_VERSION 2): "
                                 "recompute them with rllc.analysis.trajectory")
            share = wide[name]
            if rule.content:
                share = share / (1 - wide[first]).clip(lower=1e-9)
            per_data.append(share)
        out[score] = pd.concat(per_data, axis=1).min(axis=1)
    if "induction" in wide:
        out["induction"] = wide["induction"]
    measures = pd.DataFrame(out)
    measures.columns.name = "score"
    return measures.stack().rename("value").reset_index()


def classify_by_scores(scores: pd.DataFrame, thresholds: dict[str, float]) -> pd.Series:
    """The type of the measure that exceeds its threshold by the largest margin, else
    ``MULTIGRAM``, from tidy rows (component, score, value) of one checkpoint."""
    wide = scores.pivot_table(index="component", columns="score", values="value")
    margins = pd.DataFrame({s: wide[s] - t for s, t in thresholds.items() if s in wide})
    best = margins.idxmax(axis=1)
    return best.map(SCORE_TO_TYPE).where(margins.max(axis=1) > 0, MULTIGRAM).rename("type")


def classify(scores: pd.DataFrame, rule: Rule | str = DEFAULT_RULE) -> pd.Series:
    """Each head's score type under ``rule`` from its scores at one checkpoint (tidy rows
    component, score, value, as ``rllc.analysis.scores.head_scores`` writes them)."""
    rule = RULES[rule] if isinstance(rule, str) else rule
    return classify_by_scores(rule_measures(scores[["component", "score", "value"]], rule), rule.thresholds)


def score_table(behaviour: pd.DataFrame, rule: Rule | str = DEFAULT_RULE) -> pd.DataFrame:
    """Each head's scores at the last checkpoint of ``behaviour`` (tidy rows step, layer,
    component, score, value) and its score type: the ``head_types_by_score`` table. Columns
    ``previous_token``, ``current_token``, ``induction`` are the rule's measures; the raw scores
    follow with the suffix ``_raw``."""
    last = behaviour[(behaviour["step"] == behaviour["step"].max()) & (behaviour["layer"] >= 0)]
    rule = RULES[rule] if isinstance(rule, str) else rule
    last = last[["component", "score", "value"]]
    tidy = rule_measures(last, rule)  # computed once: the table's columns and the type
    measures = tidy.pivot_table(index="component", columns="score", values="value")
    raw = last.pivot_table(index="component", columns="score", values="value").add_suffix("_raw")
    return measures.join(raw).join(classify_by_scores(tidy, rule.thresholds)).reset_index()


FRAGILE_CHECKPOINTS = 5  # the last checkpoints whose spread is a measure's noise (fragile_heads)
FRAGILE_SPREAD = 2.0  # a head is fragile when its measure lies within this many spreads of a threshold


def fragile_heads(behaviour: pd.DataFrame, rule: Rule | str = DEFAULT_RULE, n_last: int = FRAGILE_CHECKPOINTS,
                  spread: float = FRAGILE_SPREAD) -> pd.DataFrame:
    """How close each head's type is to flipping: per head and measure of ``rule`` (tidy behaviour
    rows over training), the measure at the last checkpoint, its threshold, its noise (the standard
    deviation of the measure over the last ``n_last`` checkpoints: what it still moves by while the
    model barely changes), the margin in those units, and ``fragile``: within ``spread`` of the
    threshold. A retrain on another machine, or another seed, moves a measure by about that much
    (a head of the default run moved from 0.62 to 0.64 in its random-token share between two
    machines), so a fragile head's type is not settled by this run alone."""
    rule = RULES[rule] if isinstance(rule, str) else rule
    rows = behaviour[behaviour["layer"] >= 0][["step", "component", "score", "value"]]
    steps = sorted(rows["step"].unique())[-n_last:]
    m = rule_measures(rows[rows["step"].isin(steps)], rule)
    m = m[m["score"].isin(list(rule.thresholds))]
    last = m[m["step"] == steps[-1]].set_index(["component", "score"])["value"]
    sd = m.groupby(["component", "score"])["value"].std(ddof=1).reindex(last.index).fillna(0.0)
    out = pd.DataFrame({"value": last, "sd": sd}).reset_index()
    out["threshold"] = out["score"].map(rule.thresholds)
    out["margin_sd"] = (out["value"] - out["threshold"]) / out["sd"].where(out["sd"] > 0)
    out["fragile"] = (out["value"] - out["threshold"]).abs() <= spread * out["sd"]
    return out[["component", "score", "value", "threshold", "sd", "margin_sd", "fragile"]]


def formation_step(behaviour: pd.DataFrame, score: str, layer: int, rule: Rule | str = DEFAULT_RULE) -> int | None:
    """The first checkpoint at which the best head of ``layer`` clears ``rule``'s threshold on
    ``score`` (one of ``SCORE_TYPES``), from tidy behaviour rows over training; None if none does."""
    rule = RULES[rule] if isinstance(rule, str) else rule
    heads = behaviour[behaviour["layer"] == layer][["step", "component", "score", "value"]]
    m = rule_measures(heads, rule)
    best = m[m["score"] == score].groupby("step")["value"].max().sort_index()
    above = best[best > rule.thresholds[score]]
    return int(above.index[0]) if len(above) else None


def heads_of(types: pd.Series, kinds: Sequence[str], layer: int | None = None) -> list[str]:
    """The heads (of ``layer``, or of every layer) whose type is one of ``kinds``, in ``types``' order."""
    return [c for c in types.index if types[c] in kinds and (layer is None or str(c).startswith(f"{layer}:"))]


def formation_or_peak_step(behaviour: pd.DataFrame, score: str, layer: int, rule: Rule | str = DEFAULT_RULE) -> int:
    """``formation_step``, or, when no head of ``layer`` ever clears the threshold, the checkpoint at
    which the best head's measure is highest (notebook 04's boundary for claim 6)."""
    step = formation_step(behaviour, score, layer, rule)
    if step is not None:
        return step
    rule = RULES[rule] if isinstance(rule, str) else rule
    m = rule_measures(behaviour[behaviour["layer"] == layer][["step", "component", "score", "value"]], rule)
    return int(m[m["score"] == score].groupby("step")["value"].max().idxmax())


def rule_sensitivity(scores: pd.DataFrame, rules: tuple[str, ...] = tuple(RULES)) -> pd.DataFrame:
    """Per head at one checkpoint (tidy rows component, score, value): the raw attention to the
    previous token, to itself and to the first position on random tokens and on text, the rule's
    measures, and the score type under each of ``rules`` (columns ``type_<rule>``)."""
    scores = scores[["component", "score", "value"]]
    raw = scores.pivot_table(index="component", columns="score", values="value")
    cols = [c for c in ("previous_token", "previous_token_text", "current_token", "current_token_text",
                        "first_position", "first_position_text", "induction") if c in raw]
    out = raw[cols].rename(columns={c: f"{c}_random" for c in ("previous_token", "current_token", "first_position")})
    measures = rule_measures(scores, DEFAULT_RULE).pivot_table(index="component", columns="score", values="value")
    out = out.join(measures[["previous_token", "current_token"]].add_suffix("_share"))
    for name in rules:
        out[f"type_{name}"] = classify(scores, name)
    return out.reset_index()


def head_types(score_types: pd.Series, pattern_summary: pd.DataFrame | None = None) -> pd.Series:
    """Each head's final type (Table 1): its score type if it has one; otherwise a multigram
    head, "Dyck multigram" when Dyck patterns explain more of its tokens in context than any
    other pattern (``pattern_summary`` from :func:`rllc.analysis.patterns.pattern_summary`)."""
    out = score_types.where(score_types.isin(FINAL_TYPES), MULTIGRAM)
    if pattern_summary is not None and len(pattern_summary):
        top = pattern_summary.set_index("component")["top_pattern"].reindex(out.index)
        out = out.where(~((out == MULTIGRAM) & (top == "dyck")), DYCK)
    return out.rename("type")


def final_types(behaviour: pd.DataFrame, pattern_summary: pd.DataFrame | None,
                rule: Rule | str = DEFAULT_RULE) -> pd.Series:
    """Each head's final type under ``rule``: its score type at the last checkpoint of
    ``behaviour`` (tidy rows step, layer, component, score, value), the rest split by
    ``pattern_summary`` (columns component, top_pattern: 02's ``head_types`` table will do)."""
    last = behaviour[(behaviour["step"] == behaviour["step"].max()) & (behaviour["layer"] >= 0)]
    return head_types(classify(last, rule), pattern_summary)
