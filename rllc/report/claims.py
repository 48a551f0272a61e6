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

from ..analysis import agreement
from ..analysis import head_types as ht
from ..analysis.clustering import layer_of
from ..run import run_profile
from . import diagnoses, study, tables

PASS, FAIL, NOT_COMPUTED, UNDEFINED = "pass", "fail", "not computed", "undefined"
COLUMNS = ["claim", "status", "value", "threshold", "notebook", "diagnosis"]

MIN_STAGES = 4
MIN_ARI = 0.5
# claim 7 (K-composition turnaround and coupling): most pairs turn around, their minima fall within
# one stage of each other, and a sender composes about equally with every receiver. The paper's
# run (Hoogland et al.'s checkpoints): 27 of 30 pairs have their minimum at 7.6k-9.6k, inside
# LM3/LM4, and the late spread across receivers is ~1/20 of that across senders.
MIN_TURNING = 2 / 3
MAX_COUPLING_RATIO = 0.5
# claim 8 (the Hessian trace partly tracks the rLLC): the typical head's Hessian-trace curve rises
# and falls with its own wrLLC curve (median Spearman rho across checkpoints >= 0.5) and more than
# with the curves of the other heads of its layer, which share only the common trend of training.
MIN_TRACKING_RHO = 0.5
# claim 9 (ablation order ~ rLLC order): Spearman rho between final resample-ablation scores and
# final wrLLCs over all heads (the threshold; the paper gives no number).
MIN_ORDER_RHO = 0.6
# claim 10 (clusters transfer across seeds): shape-based k-means fitted on the run's own seed,
# other seeds' heads assigned to its nearest centroids; the median over (other seed, layer) of the
# ARI against that seed's own types, at k = its number of types, reaches claim 3's threshold.
TRANSFER_ALGORITHM = "kshape"


@dataclass(frozen=True)
class Claim:
    name: str
    notebook: str
    check: Callable[[Path], tuple[str, str, str]] | None  # None: no notebook computes it yet
    needs: tuple[str, ...] = ()  # registry names of the tables ``check`` reads


def _table(run: Path, name: str) -> pd.DataFrame:
    return tables.read(run, name)


def check_stages(run: Path) -> tuple[str, str, str]:
    n = len(_table(run, "stages_L2"))
    return (PASS if n >= MIN_STAGES else FAIL), str(n), f">= {MIN_STAGES} stages"


def _types(run: Path) -> pd.DataFrame:
    t = _table(run, "head_types_by_score")
    t["layer"] = layer_of(t["component"])
    return t


def check_previous_token(run: Path) -> tuple[str, str, str]:
    t = _types(run)
    n = int(((t["layer"] == 0) & (t["type"] == ht.PREVIOUS_TOKEN)).sum())
    return (PASS if n >= 1 else FAIL), str(n), ">= 1 layer-0 head"


def check_induction(run: Path) -> tuple[str, str, str]:
    t = _types(run)
    n = int(((t["layer"] == 1) & (t["type"] == ht.INDUCTION)).sum())
    return (PASS if n >= 1 else FAIL), str(n), ">= 1 layer-1 head"


def check_wr_clusters(run: Path, table: str = "clusters_ari_wr") -> tuple[str, str, str]:
    ari = _table(run, table)
    best = ari[(ari["algorithm"] == "consensus") & ari["matches_types"]]
    threshold = f"ARI >= {MIN_ARI} in every layer (consensus, k = number of types)"
    if best.empty or best["ari"].isna().all():
        return UNDEFINED, "no layer has two or more behavioural types", threshold
    parts = [f"L{int(r.layer)} {r.ari:.2f} (k={int(r.k)})" for r in best.itertuples()]
    ok = bool((best["ari"] >= MIN_ARI).all())
    return (PASS if ok else FAIL), "; ".join(parts), threshold


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
    noisy = {"lo", "hi"} <= set(t.columns) and t[["lo", "hi"]].notna().all().all()
    threshold = ("for every measure, the 90% intervals of the two induction heads' steepest-change steps (under "
                 "the estimates' noise) do not overlap" if noisy else
                 "steepest-change steps of the two induction heads differ by more than the checkpoint spacing there")
    if "candidates" in t and t["candidates"].any():
        return UNDEFINED, "the run has no induction head (only candidates were followed)", threshold
    parts, verdicts = [], []
    for measure, d in t.groupby("measure"):
        if len(d) < 2:
            continue
        d = d.sort_values("steepest_step")
        gap = int(d["steepest_step"].iloc[-1] - d["steepest_step"].iloc[0])
        spacing = int(d["spacing"].max())
        if noisy:
            first, last = d.iloc[0], d.iloc[-1]
            parts.append(f"{measure}: {gap} steps apart ({first['component']} {int(first['lo'])}–{int(first['hi'])}, "
                         f"{last['component']} {int(last['lo'])}–{int(last['hi'])})")
            verdicts.append(bool(first["hi"] < last["lo"]))
        else:
            parts.append(f"{measure}: {gap} steps apart (spacing {spacing})")
            verdicts.append(gap > spacing)
    if not verdicts:
        return UNDEFINED, "fewer than two induction heads", threshold
    return (PASS if all(verdicts) else FAIL), "; ".join(parts), threshold


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
    threshold = (f">= {MIN_TURNING:.0%} of (L0 multigram, L1 multigram) pairs turn around, their minima within one "
                 f"stage of each other, coupling ratio <= {MAX_COUPLING_RATIO}")
    if turn.empty or coup.empty:
        return UNDEFINED, "no (layer-0 multigram, layer-1 multigram) pair", threshold
    frac = float(turn["turns"].mean())
    stage_numbers = sorted({int(str(s)[2:]) for s in turn.loc[turn["turns"], "stage"].dropna()})
    within_one = bool(stage_numbers) and stage_numbers[-1] - stage_numbers[0] <= 1
    ratio = float(coup["ratio"].iloc[0])
    minima_stages = sorted({str(s) for s in turn["stage"].dropna()}, key=lambda s: int(s[2:]))
    value = (f"{int(turn['turns'].sum())}/{len(turn)} pairs turn; minima at "
             f"{int(turn['min_step'].min())}–{int(turn['min_step'].max())} "
             f"({', '.join(minima_stages) or 'no stage table'}); coupling ratio {ratio:.2f}")
    note = _candidates_note(turn)
    if note:
        return UNDEFINED, f"{note}: {value}", threshold
    ok = frac >= MIN_TURNING and within_one and ratio <= MAX_COUPLING_RATIO
    return (PASS if ok else FAIL), value, threshold


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


def check_transfer(run: Path) -> tuple[str, str, str]:
    t = _table(run, "cluster_transfer")
    threshold = (f"median over (other seed, layer) of the {TRANSFER_ALGORITHM} transfer ARI (k = that seed's "
                 f"number of types in the layer) >= {MIN_ARI}")
    t = t[(t["algorithm"] == TRANSFER_ALGORITHM) & t["matches_types"]] if len(t) else t
    if t.empty or t["ari"].isna().all():
        return UNDEFINED, "no other seed has a layer with two or more types", threshold
    t = t.dropna(subset=["ari"]).sort_values(["run", "layer"])
    med = float(t["ari"].median())
    parts = [f"{r.run} L{int(r.layer)} {r.ari:.2f} (null 95% {r.null_q95:.2f}, {int(r.n_exceptions)} of "
             f"{int(r.n_heads)} heads off-type)" for r in t.itertuples()]
    return (PASS if med >= MIN_ARI else FAIL), f"median {med:.2f}: " + "; ".join(parts), threshold


CLAIMS: tuple[Claim, ...] = (
    Claim("1. Full-model LLC critical points split training into stages", "01_llc_theory", check_stages,
          ("stages_L2",)),
    Claim("2a. Layer 0 has a previous-token head", "00_train", check_previous_token, ("head_types_by_score",)),
    Claim("2b. Layer 1 has an induction head", "00_train", check_induction, ("head_types_by_score",)),
    Claim("3. Per-head wrLLC curves cluster by behavioural type", "02_wrllc", check_wr_clusters,
          ("clusters_ari_wr",)),
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


def scorecard(run_dir: str | Path, study_rows: str | Path = study.STUDY_ROWS) -> pd.DataFrame:
    """One row per claim: claim, status, value, threshold, notebook, and diagnosis (why it holds
    or fails: scale, noise or method, with its evidence; ``rllc.report.diagnoses``) where the
    run's tables allow one. On a cpu run a failing claim's diagnosis also names the cheapest
    setting of the scale study (``study_rows``, ``rllc.report.study``) that reproduced it."""
    run = Path(run_dir)
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



def write_scorecard(run_dir: str | Path) -> pd.DataFrame:
    """Compute the scorecard and write it to ``<run>/claims.csv`` (atomically)."""
    card = scorecard(run_dir)
    tables.write(run_dir, "claims", card)
    return card


RULE_CLAIMS_COLUMNS = ["claim", "rule", "status", "value"]


def compare_rules(run_dir: str | Path, number: str, other: dict[str, pd.DataFrame] | tuple[str, str],
                  rule: str = "v1") -> pd.DataFrame:
    """Claim ``number`` under the type rule (the run's own tables) and under ``rule``, written to
    the run's ``claims_by_type_rule`` table (this claim's rows replaced). ``other``: the tables the
    claim reads, recomputed with ``rule``'s types (written to ``<run>/type-rules/<rule>``, where the
    claim's own check reads them), or a (status, value) the notebook decided without them."""
    run = Path(run_dir)
    claim = next(c for c in CLAIMS if c.name.split(".")[0] == number)
    if claim.check is None:
        raise ValueError(f"claim {number} has no check")
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
