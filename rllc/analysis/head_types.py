"""The one vocabulary of head types, and how a head gets its type.

Scores are named in snake case (``previous_token``, ``current_token``, ``induction``: columns of
the behaviour tables); types are what a head *is*, in the paper's words (Table 1). Every module,
table and figure uses these constants, never a literal spelling.
"""

from __future__ import annotations

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

# A head is of a type when its final score clears the threshold (chance is ~0.03 for the
# previous/current-token scores at lengths 16-64 and ~1/induction_len for induction).
TYPE_THRESHOLDS = {"previous_token": 0.2, "current_token": 0.2, "induction": 0.2}


def classify_by_scores(scores: pd.DataFrame, thresholds: dict[str, float]) -> pd.Series:
    """A head's behavioural type from its final scores (tidy rows component, score, value): the
    type of the score that exceeds its threshold by the largest margin, else ``MULTIGRAM``."""
    wide = scores.pivot_table(index="component", columns="score", values="value")
    margins = pd.DataFrame({s: wide[s] - t for s, t in thresholds.items() if s in wide})
    best = margins.idxmax(axis=1)
    return best.map(SCORE_TO_TYPE).where(margins.max(axis=1) > 0, MULTIGRAM).rename("type")


def score_table(behaviour: pd.DataFrame) -> pd.DataFrame:
    """Each head's scores at the last checkpoint of ``behaviour`` (tidy rows step, layer,
    component, score, value) and its score type: the ``head_types_by_score`` table."""
    last = behaviour[(behaviour["step"] == behaviour["step"].max()) & (behaviour["layer"] >= 0)]
    types = classify_by_scores(last, TYPE_THRESHOLDS)
    return last.pivot_table(index="component", columns="score", values="value").join(types).reset_index()


def head_types(score_types: pd.Series, pattern_summary: pd.DataFrame | None = None) -> pd.Series:
    """Each head's final type (Table 1): its score type if it has one; otherwise a multigram
    head, "Dyck multigram" when Dyck patterns explain more of its tokens in context than any
    other pattern (``pattern_summary`` from :func:`rllc.analysis.patterns.pattern_summary`)."""
    out = score_types.where(score_types.isin(FINAL_TYPES), MULTIGRAM)
    if pattern_summary is not None and len(pattern_summary):
        top = pattern_summary.set_index("component")["top_pattern"].reindex(out.index)
        out = out.where(~((out == MULTIGRAM) & (top == "dyck")), DYCK)
    return out.rename("type")
