"""The claims scorecard: each checkable claim of the paper as a function of a run's tables.

Every claim reads the tidy tables its notebook writes under ``<run>/tables``, through the table
registry (``rllc.report.tables``: a claim names the tables it needs, and a test checks that some
notebook writes each of them), and returns a row (claim, status, value, threshold, notebook).
``status`` is ``pass`` or ``fail``; ``not computed``
when a table it needs does not exist yet (its notebook has not run); ``undefined`` when the run
cannot decide it (e.g. a layer with a single behavioural type has no clustering to recover).
:func:`write_scorecard` writes ``claims.csv`` at the top of the run directory.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import agreement, criteria
from ..analysis import head_types as ht
from ..run import Run, folder, run_profile
from . import diagnoses, study, tables

PASS, FAIL, NOT_COMPUTED, UNDEFINED = "pass", "fail", "not computed", "undefined"
COLUMNS = ["claim", "status", "value", "threshold", "notebook", "diagnosis"]


def claim_number(claim: str) -> str:
    """A scorecard row's claim number ("1", "2a", "10") from its label ("2a. Layer 0 has ...")."""
    return str(claim).split(".", 1)[0].strip()

# The criteria and their calibration live in rllc.analysis.criteria (each quotes the paper's words,
# passes the authors' run and fails a null: tests/test_criteria.py, docs/claims.md); here they read
# the run's tables.
MIN_STAGES = criteria.MIN_CRITICAL_POINTS + 1
MIN_ARI = criteria.MIN_ARI
MIN_TURNING = criteria.MIN_TURNING
MAX_COUPLING_RATIO = criteria.MAX_COUPLING_RATIO
# claim 8 (the Hessian trace partly tracks the rLLC): the typical head's Hessian-trace curve rises
# and falls with its own wrLLC curve (median Spearman rho across checkpoints >= 0.5) and more than
# with the curves of the other heads of its layer, which share only the common trend of training.
# No value of the paper's is published to calibrate it on (docs/claims.md).
MIN_TRACKING_RHO = 0.5
# claim 9 (ablation order ~ rLLC order): Spearman rho between final resample-ablation scores and
# final wrLLCs over all heads (the threshold; the paper gives no number, docs/claims.md).
MIN_ORDER_RHO = 0.6
# claim 10 (clusters transfer across seeds, Appendix G): shape-based k-means fitted on the run's own
# seed at its number of the four types in the layer, other seeds' heads assigned to its centroids.
TRANSFER_ALGORITHM = "kshape"


@dataclass(frozen=True)
class Claim:
    name: str
    notebook: str
    check: Callable[[Path], tuple[str, str, str]] | None  # None: no notebook computes it yet
    needs: tuple[str, ...] = ()  # registry names of the tables ``check`` reads


def _table(run: Path, name: str) -> pd.DataFrame:
    return tables.read(run, name)


def _out(v: criteria.Verdict) -> tuple[str, str, str]:
    return v.status, v.value, v.threshold


def check_stages(run: Path) -> tuple[str, str, str]:
    found = _table(run, "stages_L2")
    if "n_checkpoints" not in found:
        return UNDEFINED, "the stage table does not say how many checkpoints it was found on (rerun 01)", \
            criteria.stages_verdict(found, 0).threshold
    n = int(found["n_checkpoints"].iloc[0]) if len(found) else 0
    after = criteria.artefact_end(found, tables.read_optional(run, "warmup_control"))
    return _out(criteria.stages_verdict(found, n, after_step=after))


def _types(run: Path) -> pd.Series:
    t = _table(run, "head_types_by_score")
    return t.set_index("component")["type"]


def check_previous_token(run: Path) -> tuple[str, str, str]:
    return _out(criteria.type_count_verdict(_types(run), 0, ht.PREVIOUS_TOKEN))


def check_induction(run: Path) -> tuple[str, str, str]:
    return _out(criteria.type_count_verdict(_types(run), 1, ht.INDUCTION))


def check_clusters(run: Path) -> tuple[str, str, str]:
    """Claim 3 by the paper's protocol (``clusters_protocol``), the consensus of 02 beside it."""
    verdict = criteria.clusters_verdict(_table(run, "clusters_protocol"))
    consensus = tables.read_optional(run, "clusters_ari_wr")
    if consensus is not None and len(consensus):
        best = consensus[(consensus["algorithm"] == "consensus") & consensus["matches_types"]]
        if len(best):
            secondary = ", ".join(f"L{int(r.layer)} {r.ari:.2f} (k={int(r.k)})" for r in best.itertuples())
            verdict = criteria.Verdict(verdict.status, f"{verdict.value}; secondary, 02's consensus of the wrLLC: "
                                                       f"{secondary}", verdict.threshold)
    return _out(verdict)


def check_code_ratio(run: Path, data: str = "python_tests") -> tuple[str, str, str]:
    t = _table(run, "dr_ratio_by_type")
    t = t[t["data"] == data]
    threshold = f"induction − multigram mean drLLC/wrLLC ratio ({data}) > 0, at the end and over the last third"
    if "candidates" in t and t["candidates"].any():
        return UNDEFINED, "the run has no induction head (only candidates were followed)", threshold
    wide = t.pivot_table(index="window", columns="group", values="mean_ratio")
    groups = [ht.INDUCTION, ht.MULTIGRAM]  # the group names 03 writes (multigram: every multigram type)
    if any(g not in wide for g in groups) or wide[groups].isna().any().any():
        return UNDEFINED, "no induction head (or no multigram head) with a ratio", threshold
    diff = wide[ht.INDUCTION] - wide[ht.MULTIGRAM]
    value = "; ".join(f"{w} {d:+.3f}" for w, d in diff.items())
    return (PASS if bool((diff > 0).all()) else FAIL), value, threshold


def check_induction_timing(run: Path) -> tuple[str, str, str]:
    t = _table(run, "induction_timing")
    verdict = criteria.timing_verdict(t)
    if "candidates" in t and t["candidates"].any():
        return UNDEFINED, "the run has no induction head (only candidates were followed)", verdict.threshold
    if not {"onset_step", "onset_lo", "onset_hi"} <= set(t.columns):
        return UNDEFINED, "the timing table has no onset intervals (made before claim 5's criterion; rerun 03)", \
            verdict.threshold
    return _out(verdict)


def _candidates_note(t: pd.DataFrame) -> str | None:
    if "candidates" in t and t["candidates"].any():
        return "the run has no layer-0 multigram head (only candidates were followed)"
    return None


def check_l1_generator(run: Path) -> tuple[str, str, str]:
    t = _table(run, "l1_gap_by_type").set_index("group")
    threshold = ("relative gap (wrLLC − drLLC_L1)/wrLLC grows after the previous-token boundary over all heads, "
                 "and more for previous-/current-token, induction and layer-0 multigram heads than for "
                 "layer-1 multigram heads")
    need = {"all", "named", "layer-1 multigram"}
    if not need <= set(t.index) or t.loc[list(need), "increase"].isna().any():
        return UNDEFINED, "a head group is missing or has no estimates on both sides of the boundary", threshold
    inc = t["increase"]
    value = (f"increase all {inc['all']:+.3f}; named {inc['named']:+.3f}; layer-1 multigram "
             f"{inc['layer-1 multigram']:+.3f} (boundary {int(t['boundary'].iloc[0])})")
    note = _candidates_note(t.reset_index())
    if note:
        return UNDEFINED, f"{note}: {value}", threshold
    ok = inc["all"] > 0 and inc["named"] > inc["layer-1 multigram"]
    return (PASS if ok else FAIL), value, threshold


def check_composition_turnaround(run: Path) -> tuple[str, str, str]:
    turn = _table(run, "composition_turnaround")
    coup = _table(run, "composition_coupling")
    ratio = float(coup["ratio"].iloc[0]) if len(coup) else float("nan")
    verdict = criteria.turnaround_verdict(turn, ratio)
    note = _candidates_note(turn)
    if note and verdict.status != UNDEFINED:
        return UNDEFINED, f"{note}: {verdict.value}", verdict.threshold
    return _out(verdict)


def check_hessian_tracking(run: Path) -> tuple[str, str, str]:
    track = _table(run, "measure_tracking")
    track = track[track["measure"] == agreement.HESSIAN_TRACE]
    order = _table(run, "measure_agreement")
    order = order[(order["measure"] == agreement.HESSIAN_TRACE) & (order["scope"] == "all")]
    threshold = (f"median over heads of Spearman rho (Hessian trace vs own wrLLC, across checkpoints) >= "
                 f"{MIN_TRACKING_RHO} and above the median with other heads of the layer")
    if track.empty or track["rho"].isna().all():
        return UNDEFINED, "no head has both curves", threshold
    med, null = float(track["rho"].median()), float(track["null_median"].median())
    final = (f"; final-order rho {float(order['rho'].iloc[0]):.2f} (layer split alone "
             f"{float(order['layers_only'].iloc[0]):.2f})" if len(order) and "layers_only" in order else "")
    value = f"median rho {med:.2f} over {len(track)} heads (other heads: {null:.2f}){final}"
    ok = med >= MIN_TRACKING_RHO and med > null
    return (PASS if ok else FAIL), value, threshold


def check_ablation_order(run: Path) -> tuple[str, str, str]:
    order = _table(run, "measure_agreement")
    order = order[order["measure"] == agreement.RESAMPLE].set_index("scope")
    threshold = f"Spearman rho (final resample-ablation score vs final wrLLC) >= {MIN_ORDER_RHO} over all heads"
    if "all" not in order.index or np.isnan(order.loc["all", "rho"]):
        return UNDEFINED, "fewer than three heads with both values", threshold
    rho = float(order.loc["all", "rho"])
    per_layer = "; ".join(f"{s} {r:.2f}" for s, r in order["rho"].items() if s != "all")
    layers = order.loc["all", "layers_only"] if "layers_only" in order else float("nan")
    value = (f"rho {rho:.2f} (p {float(order.loc['all', 'p_value']):.2g}) over {int(order.loc['all', 'n_heads'])} "
             f"heads (the layer split alone: {layers:.2f}); within layers: {per_layer}")
    return (PASS if rho >= MIN_ORDER_RHO else FAIL), value, threshold


def transfer_scores(t: pd.DataFrame) -> pd.DataFrame:
    """The rows of a ``cluster_transfer`` table claim 10 reads: k-shape at k = the reference seed's
    number of the four types in the layer (Appendix G fits on seed 1 and applies those clusters)."""
    if t.empty or "n_ref_types" not in t:
        return t.iloc[0:0]
    return t[(t["algorithm"] == TRANSFER_ALGORITHM) & (t["k"] == t["n_ref_types"])]


def check_transfer(run: Path) -> tuple[str, str, str]:
    t = _table(run, "cluster_transfer")
    verdict = criteria.transfer_verdict(transfer_scores(t))
    if len(t) and "n_ref_types" not in t:
        return UNDEFINED, "the transfer table predates claim 10's criterion (no n_ref_types; rerun 06)", \
            verdict.threshold
    rows = transfer_scores(t).dropna(subset=["ari"]).sort_values(["run", "layer"])
    if verdict.status == UNDEFINED or rows.empty:
        return _out(verdict)
    parts = [f"{r.run} L{int(r.layer)} {r.ari:.2f} (null 95% {r.null_q95:.2f}, {int(r.n_exceptions)} of "
             f"{int(r.n_heads)} heads off-type)" for r in rows.itertuples()]
    return verdict.status, f"median {rows['ari'].median():.2f}: " + "; ".join(parts), verdict.threshold


CLAIMS: tuple[Claim, ...] = (
    Claim("1. Full-model LLC critical points split training into stages", "01_llc_theory", check_stages,
          ("stages_L2",)),
    Claim("2a. Layer 0 has a previous-token head", "00_train", check_previous_token, ("head_types_by_score",)),
    Claim("2b. Layer 1 has an induction head", "00_train", check_induction, ("head_types_by_score",)),
    Claim("3. Per-head wrLLC curves cluster by behavioural type", "03_drllc", check_clusters,
          ("clusters_protocol",)),
    Claim("4. Code drLLC raises induction heads' rLLC relative to multigram heads'", "03_drllc", check_code_ratio,
          ("dr_ratio_by_type",)),
    Claim("5. The induction heads form at different times", "03_drllc", check_induction_timing,
          ("induction_timing",)),
    Claim("6. drLLC with an L1 generator tracks the wrLLC until LM3, then diverges", "04_multigram_circuit",
          check_l1_generator, ("l1_gap_by_type",)),
    Claim("7. K-composition of L0 into L1 multigram heads turns around at LM3/LM4", "04_multigram_circuit",
          check_composition_turnaround, ("composition_turnaround", "composition_coupling")),
    Claim("8. Hessian trace partly tracks the rLLC", "05_curvature_ablation", check_hessian_tracking,
          ("measure_tracking", "measure_agreement")),
    Claim("9. Ablation scores order heads like the final rLLC", "05_curvature_ablation", check_ablation_order,
          ("measure_agreement",)),
    Claim("10. Clusters fit on one seed transfer to other seeds", "06_seeds", check_transfer, ("cluster_transfer",)),
)


def scorecard(run_dir: Run | Path, study_rows: str | Path = study.STUDY_ROWS) -> pd.DataFrame:
    """One row per claim: claim, status, value, threshold, notebook, and diagnosis (why it holds
    or fails: scale, noise or method, with its evidence; ``rllc.report.diagnoses``) where the
    run's tables allow one. On a cpu run a failing claim's diagnosis also names the cheapest
    setting of the scale study (``study_rows``, ``rllc.report.study``) that reproduced it."""
    run = folder(run_dir)
    rows = []
    for c in CLAIMS:
        if c.check is None:
            status, value, threshold = NOT_COMPUTED, "", "no notebook computes it yet"
        else:
            try:
                status, value, threshold = c.check(run)
            except tables.MissingTable as missing:
                status, value, threshold = NOT_COMPUTED, "", f"needs tables/{missing.file}"
        rows.append({"claim": c.name, "status": status, "value": value, "threshold": threshold,
                     "notebook": c.notebook})
    card = pd.DataFrame(rows, columns=COLUMNS)
    found = diagnoses.diagnose(run, MIN_STAGES, min_turning=MIN_TURNING, min_tracking_rho=MIN_TRACKING_RHO,
                               min_order_rho=MIN_ORDER_RHO, min_ari=MIN_ARI,
                               transfer_algorithm=TRANSFER_ALGORITHM).set_index("claim")
    number = card["claim"].str.split(".").str[0]
    card["diagnosis"] = [f"{found.at[n, 'diagnosis']}: {found.at[n, 'evidence']}" if n in found.index else ""
                         for n in number]
    if run_profile(run) == study.STUDY_PROFILE:  # a failing claim: what the scale study of this profile found
        rows = study.read_rows(study_rows)
        notes = [study.reproduced(n, rows) if s == FAIL else "" for n, s in zip(number, card["status"], strict=True)]
        card["diagnosis"] = ["; ".join(p for p in (d, note) if p) for d, note in zip(card["diagnosis"], notes,
                                                                                   strict=True)]
    return card



def write_scorecard(run_dir: Run | Path) -> pd.DataFrame:
    """Compute the scorecard and write it to ``<run>/claims.csv`` (atomically)."""
    card = scorecard(run_dir)
    tables.write(run_dir, "claims", card)
    return card
