"""Claims and head types under the two type rules: one home for every comparison of them.

The project's type rule (``rllc.analysis.head_types.DEFAULT_RULE``) replaced rule ``v1`` on
2026-12-05. A claim that reads head types is shown under both (``compare_rules``, the run's
``claims_by_type_rule`` table), decided the same way in every notebook (``compare_under_rule``):
undefined when the rule leaves the claim without the heads it needs, re-checked on tables
recomputed with the rule's heads or, where the heads are the same, on the run's own tables, and
not computed otherwise. ``type_changes`` lists the heads whose type the rules disagree on, and
``fragility_line`` the heads whose type measure lies within its own noise of a threshold.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pandas as pd

from ..analysis import head_types as ht
from ..model.components import parse_head
from ..run import Run, folder
from . import tables
from .claims import CLAIMS, NOT_COMPUTED, UNDEFINED, Claim, claim_number

# The claims that read a head's type, by the measure that decides it: a previous-token or
# current-token flip changes layer 0's type partition (3, 10) and its multigram heads (6, 7); an
# induction flip changes the induction heads (4, 5) and layer 1's multigram heads (6, 7) too.
CLAIMS_BY_MEASURE = {"previous_token": ("2a", "3", "6", "7", "10"), "current_token": ("3", "6", "7", "10"),
                     "induction": ("2b", "3", "4", "5", "6", "7", "10")}
COUNTED = {"previous_token": ("2a", 0, ht.PREVIOUS_TOKEN), "induction": ("2b", 1, ht.INDUCTION)}


def fragility_line(fragile: pd.DataFrame, types: pd.Series) -> str:
    """One line for 02: the heads whose type measure lies within its own noise of a threshold
    (``head_types.fragile_heads``), and the claims whose inputs would change if each flipped. A
    count claim (2a, 2b) is named only where the flip would change its verdict: the head is that
    layer's only one of the type, or would be its first."""
    near = fragile[fragile["fragile"]]
    if near.empty:
        return "No head's type measure lies within two of its own spreads of a threshold: no type is fragile."
    parts = []
    for r in near.itertuples():
        layer = parse_head(str(r.component))[0]
        affected = []
        for number in CLAIMS_BY_MEASURE.get(r.score, ()):
            if number in ("2a", "2b"):
                _, count_layer, kind = COUNTED[r.score]
                n = sum(1 for c, t in types.items() if t == kind and parse_head(str(c))[0] == count_layer)
                if layer != count_layer or n > 1:
                    continue
            affected.append(number)
        parts.append(f"{r.component} ({r.score} {r.value:.2f}, threshold {r.threshold:g}, spread {r.sd:.3f}: "
                     f"{abs(r.margin_sd):.1f} spreads away) → claims {', '.join(affected) or 'none'}")
    return "**Fragile types** (measure within two of its own spreads of a threshold): " + "; ".join(parts) + "."


RULE_CLAIMS_COLUMNS = ["claim", "rule", "status", "value"]


def _claim(number: str) -> Claim:
    claim = next(c for c in CLAIMS if claim_number(c.name) == number)
    if claim.check is None:
        raise ValueError(f"claim {number} has no check")
    return claim


def compare_rules(run_dir: Run | Path, number: str, other: dict[str, pd.DataFrame] | tuple[str, str],
                  rule: str = "v1") -> pd.DataFrame:
    """Claim ``number`` under the type rule (the run's own tables) and under ``rule``, written to
    the run's ``claims_by_type_rule`` table (this claim's rows replaced). ``other``: the tables the
    claim reads, recomputed with ``rule``'s types (written to ``<run>/type-rules/<rule>``, where the
    claim's own check reads them), or a (status, value) the notebook decided without them."""
    run = folder(run_dir)
    claim = _claim(number)
    if isinstance(other, tuple):
        status_o, value_o = other
    else:
        view = run / "type-rules" / rule
        for name, df in other.items():
            tables.write(view, name, df)
        status_o, value_o, _ = claim.check(view)
    try:
        status, value, _ = claim.check(run)
    except tables.MissingTable as err:
        status, value = NOT_COMPUTED, str(err)
    rows = pd.DataFrame([{"claim": claim.name, "rule": ht.DEFAULT_RULE, "status": status, "value": value},
                         {"claim": claim.name, "rule": rule, "status": status_o, "value": value_o}])
    old = tables.read_optional(run, "claims_by_type_rule")
    old = old[old["claim"] != claim.name] if old is not None else None
    out = pd.concat([old, rows], ignore_index=True) if old is not None and len(old) else rows
    tables.write(run, "claims_by_type_rule", out)
    return out


def type_changes(types: pd.Series, other: pd.Series, heads: Sequence[str] | None = None) -> list[str]:
    """"head other-type → type" for each head (of ``heads``, default all of ``types``) whose type
    under another rule (``other``) differs from its type under the rule (``types``)."""
    heads = list(types.index) if heads is None else list(heads)
    return [f"{c} {other[c]} → {types[c]}" for c in heads if other[c] != types[c]]


def compare_under_rule(run_dir: Run | Path, number: str, groups: Mapping[str, tuple[Sequence[str], Sequence[str]]],
                       recompute: Callable[[], dict[str, pd.DataFrame]] | None = None, candidates: bool = False,
                       needs: str | None = None, rule: str = "v1") -> pd.DataFrame:
    """Claim ``number`` under the type rule and under ``rule``, decided one way in every notebook.

    ``groups``: each group of heads the claim reads -> (its heads under the type rule, under
    ``rule``). ``recompute``: a function returning the claim's tables recomputed with ``rule``'s
    heads, where the notebook can. ``candidates``: the rule's heads are stand-ins (no head of the
    type), so the run's own tables say nothing of ``rule``.

    * ``needs`` (a group the claim cannot be decided without) is empty under ``rule``: undefined;
    * ``recompute`` given: the claim is checked on what it returns;
    * every group holds the same heads under both rules (and they are not candidates): the claim's
      own tables (``Claim.needs``), checked again under ``rule``'s name;
    * otherwise: not computed, naming the groups that differ."""
    claim = _claim(number)
    same = all(sorted(a) == sorted(b) for a, b in groups.values()) and not candidates
    if needs is not None and not groups[needs][1]:
        other: dict[str, pd.DataFrame] | tuple[str, str] = (UNDEFINED, f"no {needs} head under rule {rule}")
    elif recompute is not None:
        other = recompute()
    elif same:
        other = {name: tables.read(run_dir, name) for name in claim.needs}
    else:
        differ = {g: ab for g, ab in groups.items() if sorted(ab[0]) != sorted(ab[1])} or dict(groups)
        if len(differ) == 1:
            ((g, (own, theirs)),) = differ.items()
            why = f"rule {rule}'s {g} heads ({', '.join(theirs) or 'none'}) differ from the rule's ({', '.join(own)})"
        else:
            why = f"rule {rule}'s head groups differ: " + "; ".join(f"{g} {', '.join(theirs) or 'none'}"
                                                                  for g, (_, theirs) in differ.items())
        other = (NOT_COMPUTED, why)
    return compare_rules(run_dir, number, other, rule)
