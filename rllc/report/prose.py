"""The notebooks' readings of their figures as sentences, computed from the run's numbers.

Each function turns one table (or a few numbers) into Markdown, so that a notebook cell shows a
reading with one call and no reading is ever typed in by hand. They format; they decide nothing
(the claims are decided in ``rllc.analysis.criteria`` and ``rllc.report.claims``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis import head_types as ht
from ..analysis.clustering import layer_of
from ..analysis.focus import CircuitFocus, InductionFocus
from .rules import type_changes


def _names(heads: list[str]) -> str:
    return ", ".join(heads)


# --- 02: the type rules ---------------------------------------------------------------------------

def rule_sensitivity_text(sensitivity: pd.DataFrame) -> str:
    """How many heads change type from rule v1 to the rule, which, and the type counts under every
    rule of ``head_types.rule_sensitivity``."""
    table = sensitivity.set_index("component")
    changed = type_changes(table[f"type_{ht.DEFAULT_RULE}"], table["type_v1"])
    counts = {c[5:]: sensitivity[c].value_counts().to_dict() for c in sensitivity.columns if c.startswith("type_")}
    head = f"{len(changed)} of {len(sensitivity)} heads change type from `v1` to the rule"
    head += (": " + "; ".join(changed)) if changed else ""
    rows = [f"- `{rule}`: " + ", ".join(f"{t} {n}" for t, n in sorted(c.items())) for rule, c in counts.items()]
    return head + ".\n\n" + "\n".join(rows)


def wrllc_layer_lines(head_wr: pd.DataFrame, types: pd.Series) -> str:
    """Per layer: the mean wrLLC at the first checkpoint after 0, at its lowest and at the end; the
    heads ranked at the end; and the head that rises most from the layer's low point."""
    wide = head_wr[head_wr["step"] > 0].pivot_table(index="component", columns="step", values="llc_mean")
    end, lines = wide.columns[-1], []
    for layer, sub in wide.groupby(layer_of(wide.index.to_series())):
        low_step = sub.mean().idxmin()
        ranked = " > ".join(f"{c} ({types[c]}, {v:.3f})" for c, v in sub[end].sort_values(ascending=False).items())
        rise = sub[end] - sub[low_step]
        lines.append(f"- **Layer {layer}:** the mean wrLLC is {sub.iloc[:, 0].mean():.3f} at step {sub.columns[0]:,}, "
                     f"lowest ({sub.mean().min():.3f}) at step {low_step:,} and {sub[end].mean():.3f} at step "
                     f"{end:,}; at the end the heads rank {ranked}. Rise from the layer's low point to the end: "
                     f"largest for {rise.idxmax()} (+{rise.max():.3f}).")
    return "\n".join(lines)


def consensus_line(ari: pd.DataFrame) -> str:
    """The consensus ARI per layer at k = the number of types, and the range over every k and algorithm."""
    at = ari[(ari["algorithm"] == "consensus") & ari["matches_types"]]
    per_layer = "; ".join(f"layer {r.layer}: {r.ari:.2f} (k = {r.k})" for r in at.itertuples())
    return (f"Consensus ARI at k = the number of types: {per_layer if len(at) else 'no layer has two or more types'}. "
            f"Over every k and algorithm the ARI lies in {ari['ari'].min():.2f} … {ari['ari'].max():.2f}.")


def variants_lines(variants: pd.DataFrame, diagnosis: pd.DataFrame) -> str:
    """Per layer, how many clustering variants beat their random-label null's 95% quantile and the
    best one; then claim 3's diagnosis (``diagnosis``: its row of ``diagnoses.diagnose``, or none)."""
    lines = []
    for layer, v in variants.groupby("layer"):
        above = v[v["ari"] > v["null_q95"]]
        best = v.loc[v["ari"].idxmax()] if len(v) else None
        tail = (f" (best: {best['algorithm']}, ARI {v['ari'].max():.2f}, null 95% {best['null_q95']:.2f})"
                if best is not None else "")
        lines.append(f"- **Layer {layer}:** {len(above)} of {len(v)} variants above their null's 95% quantile{tail}")
    if len(diagnosis):
        lines.append(f"- **Claim 3 diagnosis: {diagnosis['diagnosis'].iloc[0]}** — {diagnosis['evidence'].iloc[0]}. "
                     "(Rule, `rllc.report.diagnoses.clusters`: *noise* when a layer's heads spread less than 2 SE; "
                     "*method* when a variant or a feature separates the types beyond chance though the consensus "
                     "does not; *scale* otherwise.)")
    return "\n".join(lines)


def consensus_under_rule_line(ari: pd.DataFrame, changes: list[str], rule: str = "v1") -> str:
    """The consensus ARI per layer at k = the number of types, against ``rule``'s types, and the
    heads whose type differs (``rules.type_changes``)."""
    at = ari[(ari["algorithm"] == "consensus") & ari["matches_types"]]
    per_layer = "; ".join(f"layer {r.layer}: {r.ari:.2f} (k = {r.k})" for r in at.itertuples())
    return (f"Consensus ARI at k = the number of types, rule `{rule}`: {per_layer or 'no layer has two types'}. "
            f"Types of rule `{rule}` that differ: {', '.join(changes) or 'none'}.")


# --- 03 and 04: the heads followed ----------------------------------------------------------------

def induction_focus_line(focus: InductionFocus) -> str:
    note = " (candidates: none clears the threshold)" if focus.candidates else ""
    return f"**Induction heads{note}:** {_names(focus.induction)}; **multigram heads:** {_names(focus.multigram)}"


def circuit_focus_lines(focus: CircuitFocus, types: pd.Series) -> str:
    label = " (candidates)" if focus.l0_candidates else ""
    others = ", ".join(f"{c} ({types[c]})" for c in types.index if c.startswith("0:") and c not in focus.l0_multigram)
    return "\n".join([
        f"- **Layer-0 multigram heads{label}:** {_names(focus.l0_multigram) or 'none'}",
        f"- **Layer-1 multigram heads:** {_names(focus.l1_multigram) or 'none'}",
        f"- **Bracket (Dyck) heads{' (candidate)' if focus.dyck_candidate else ''}:** {_names(focus.dyck)}",
        f"- other layer-0 heads: {others}"])


# --- 04: the multigram circuit ----------------------------------------------------------------------

def composition_lines(step0_mean: float, null_mean: float, per_sender: pd.DataFrame, types: pd.Series,
                      focus: CircuitFocus, turn: pd.DataFrame, coupling: pd.DataFrame) -> str:
    """The K-composition at initialisation against its null, each sender's minimum and share of
    turning pairs, and the multigram pairs' turnaround and coupling (claim 7)."""
    lines = [f"- K-composition at step 0 (all pairs): mean {step0_mean:.3f} against the random null "
             f"{null_mean:.3f}."]
    for src, r in per_sender.iterrows():
        candidate = ", candidate" if src in focus.l0_multigram and focus.l0_candidates else ""
        lines.append(f"- {src} ({types[src]}{candidate}) into the layer-1 multigram heads: minimum "
                     f"{r.min_value:.3f} at step {int(r.min_step):,} (median over receivers); {r.turns:.0%} of its "
                     f"pairs turn around.")
    if len(turn):
        named = sorted(set(turn["stage"].dropna()))
        stages = f" ({', '.join(named)})" if turn["stage"].notna().any() else ""
        lines.append(f"- Multigram pairs: {int(turn['turns'].sum())} of {len(turn)} turn around; minima at steps "
                     f"{int(turn['min_step'].min()):,}–{int(turn['min_step'].max()):,}{stages}; coupling ratio "
                     f"{coupling['ratio'].iloc[0]:.2f} from step {int(coupling['from_step'].iloc[0]):,}.")
    return "\n".join(lines)


def gap_lines(boundary: int, by_type: pd.DataFrame, loss_gap: pd.Series) -> str:
    """Claim 6's reading: the boundary, the mean relative gap before and after it per head group,
    and the L1 − L2 test-loss gap at the start, at the boundary and at the end."""
    b = by_type.set_index("group")
    lines = [f"- Boundary: step {boundary:,} (best layer-0 previous-token share, the type rule's measure, first "
             f"above {ht.TYPE_THRESHOLDS['previous_token']} at step {boundary:,})."]
    for g in ("all", "named", "layer-1 multigram"):
        if g in b.index:
            lines.append(f"- {g}: mean relative gap {b.loc[g, 'gap_before']:+.3f} before, "
                         f"{b.loc[g, 'gap_after']:+.3f} after (change {b.loc[g, 'increase']:+.3f}).")
    if len(loss_gap):
        at_boundary = loss_gap.loc[loss_gap.index <= boundary].iloc[-1]
        lines.append(f"- Test loss L1 − L2: {loss_gap.iloc[0]:+.3f} at step {loss_gap.index[0]:,}, "
                     f"{at_boundary:+.3f} at the boundary, {loss_gap.iloc[-1]:+.3f} at step {loss_gap.index[-1]:,}.")
    return "\n".join(lines)


def patching_lines(wide: pd.DataFrame) -> str:
    """Per receiver and variant (``wide``: loss_close by condition, indexed receiver, variant,
    step): the last checkpoint's losses and where the path-patching excess peaks."""
    lines = []
    for (r, v), d in wide.groupby(level=["receiver", "variant"]):
        late = d.iloc[-1]
        excess = d["path_patched"] - d["clean"]
        lines.append(f"- {r}, {v}: at step {d.index[-1][2]:,} clean {late['clean']:.3f}, receiver ablated "
                     f"{late['receiver_ablated']:.3f} ({late['receiver_ablated'] - late['clean']:+.3f}), "
                     f"path-patched {late['path_patched']:.3f} ({late['path_patched'] - late['clean']:+.3f}); the "
                     f"path-patching excess peaks at {excess.max():+.3f} (step {int(excess.idxmax()[2]):,}).")
    return "\n".join(lines)


def migration_text(mid: int, migration: pd.DataFrame, viewer: Path) -> str:
    """Where the layer-0 heads' multigrams at mid-training are at the end (``patterns.migration``)."""
    moved = migration[migration["n_moved"] > 0]
    per_head = "; ".join(f"{r.src} ({r.type}): {r.n_mid} multigrams, {r.kept} still its own at the end, {r.n_moved} "
                         f"held by layer-1 heads (most by {r.top_dst}: {r.n_top_dst})" for r in migration.itertuples())
    return (f"Mid-training checkpoint: step {mid:,}. {per_head}. Heads with migrated multigrams: "
            f"{', '.join(moved['src']) or 'none'}. Per-head pages of the final model's tokens in context: "
            f"[`viewer/index.html`]({viewer}).")
