"""Which heads a notebook follows: the induction heads (03, 06) and the multigram circuit's heads (04).

The rules live here once, each with its fallback: when a run has no head of the type a claim is
about, the notebooks follow *candidates* chosen by a stated rule, label them as candidates
everywhere, and report the claims that read them as undefined (the numbers are still shown).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import head_types as ht
from .clustering import layer_of

N_INDUCTION_CANDIDATES = 2  # layer-1 heads of highest induction score, when no head is of induction type
N_MULTIGRAM_CANDIDATES = 2  # layer-0 heads of largest n-gram fraction, when none has n-grams as its top pattern
# the types whose heads claim 6 names (with the layer-0 multigram heads): their gap should grow most
NAMED_TYPES = (ht.PREVIOUS_TOKEN, ht.CURRENT_TOKEN, ht.INDUCTION)


@dataclass(frozen=True)
class InductionFocus:
    """The induction heads (or their candidates) and the multigram heads outside them."""

    induction: list[str]
    multigram: list[str]
    candidates: bool  # True: no head is of induction type; ``induction`` are candidates


@dataclass(frozen=True)
class CircuitFocus:
    """The multigram circuit's heads (notebook 04): layer-0 multigram heads send, layer-1 multigram
    heads receive, layer-1 Dyck heads are the bracket heads."""

    l0_multigram: list[str]
    l0_candidates: bool  # True: layer 0 has no multigram head; ``l0_multigram`` are candidates
    l1_multigram: list[str]
    dyck: list[str]
    dyck_candidate: bool  # True: layer 1 has no Dyck head; ``dyck`` is the candidate


def induction_focus(types: pd.Series, by_score: pd.DataFrame) -> InductionFocus:
    """Heads of induction type; with none, the ``N_INDUCTION_CANDIDATES`` layer-1 heads of highest
    induction score stand in. ``types``: head -> type; ``by_score``: rows with ``component`` and
    ``induction`` (``head_types.score_table``, or 02's head table)."""
    induction = types[types == ht.INDUCTION].index.tolist()
    candidates = not induction
    if candidates:
        layer1 = by_score[by_score["component"].str.startswith("1:")].sort_values("induction", ascending=False)
        induction = layer1["component"].head(N_INDUCTION_CANDIDATES).tolist()
    multigram = [h for h in types[types.isin(ht.MULTIGRAM_TYPES)].index if h not in induction]
    return InductionFocus(induction, multigram, candidates)


def circuit_focus(head_table: pd.DataFrame) -> CircuitFocus:
    """The circuit's heads from 02's head table (``component``, ``type``, ``top_pattern``,
    ``frac_ngram``, ``frac_dyck``). With no layer-0 multigram head: the layer-0 heads that are not
    previous-token heads and whose most frequent tokens-in-context pattern is an n-gram, else the
    ``N_MULTIGRAM_CANDIDATES`` such heads of largest n-gram fraction. With no layer-1 Dyck head: the
    layer-1 head of largest Dyck fraction."""
    layer = layer_of(head_table["component"])
    multigram = head_table["type"].isin(ht.MULTIGRAM_TYPES)
    l0 = head_table[(layer == 0) & multigram]["component"].tolist()
    l0_candidates = not l0
    if l0_candidates:
        pool = head_table[(layer == 0) & (head_table["type"] != ht.PREVIOUS_TOKEN)]
        l0 = pool[pool["top_pattern"] == "ngram"]["component"].tolist()
        if not l0:
            l0 = pool.sort_values("frac_ngram", ascending=False)["component"].head(N_MULTIGRAM_CANDIDATES).tolist()
    l1 = head_table[(layer == 1) & multigram]["component"].tolist()
    dyck = head_table[(layer == 1) & (head_table["type"] == ht.DYCK)]["component"].tolist()
    dyck_candidate = not dyck
    if dyck_candidate:
        dyck = head_table[layer == 1].sort_values("frac_dyck", ascending=False)["component"].head(1).tolist()
    return CircuitFocus(l0, l0_candidates, l1, dyck, dyck_candidate)


def mid_checkpoint(steps: list[int], behaviour: pd.DataFrame) -> int:
    """The interior checkpoint of ``steps`` nearest, in log steps, to where the induction heads form
    (``head_types.formation_step`` of layer 1; else the middle checkpoint): the end of the
    paper's LM3, where 04 reads the layer-0 heads' multigrams before they migrate."""
    target = ht.formation_step(behaviour, "induction", 1) or steps[len(steps) // 2]
    return min(steps[1:-1] or steps, key=lambda s: abs(np.log1p(s) - np.log1p(target)))
