"""Diagnoses of claims 1, 3, 5 and 7-10 from constructed tables: each rule's label follows the
measurements it names, and the scorecard carries it."""

from __future__ import annotations

import pandas as pd
import pytest

from rllc.analysis import agreement, noise
from rllc.report import claims, diagnoses, tables


def _stages(n: int) -> pd.DataFrame:
    ends = list(range(100, 100 * (n + 1), 100))
    return pd.DataFrame({"stage": [f"LM{i + 1}" for i in range(n)], "start": [0, *ends[:-1]], "end": ends,
                         "llc_start": 1.0, "llc_end": 2.0, "ends_at": "maximum", "trend": "rising"})


def _budget(z: list[float]) -> pd.DataFrame:
    along = pd.DataFrame({"step_a": range(len(z)), "step_b": range(1, len(z) + 1), "change": z,
                          "se_change": 1.0, "z": z})
    return noise.budget("1", noise.summary(along=along), seconds=10.0)


def _stage_run(tmp_path, n_robust: int, z: list[float], rising_z: float):
    tables.write(tmp_path, "stages_L2", _stages(n_robust))
    tables.write(tmp_path, "stages_L2_slope", _stages(5))
    tables.write(tmp_path, "noise_budget_stages", _budget(z))
    tables.write(tmp_path, "run_end_trend", pd.DataFrame({"measure": ["induction score of 1:0"], "decades": [0.15],
                                                          "change": [0.1], "se": [0.1 / rising_z], "z": [rising_z]}))
    return diagnoses.stages(tmp_path, claims.MIN_STAGES)


def test_claim_1_noise_when_neighbouring_differences_are_not_resolved(tmp_path):
    d = _stage_run(tmp_path, 2, [0.5, 1.0, 3.0, 0.2], rising_z=1.0)
    assert d.diagnosis == "noise" and "25% of neighbouring checkpoints" in d.evidence
    assert _stage_run(tmp_path, 2, [0.5, 1.0, 3.0, 0.2], rising_z=5.0).diagnosis == "noise + scale (training length)"
    assert "2 stages with noise-tied critical points, 5 with the slope-sign rule" in d.evidence


def test_claim_1_scale_and_training_length(tmp_path):
    assert _stage_run(tmp_path, 2, [3.0, 4.0, 5.0, 0.5], rising_z=5.0).diagnosis == "scale (training length)"
    assert _stage_run(tmp_path, 2, [3.0, 4.0, 5.0, 0.5], rising_z=1.0).diagnosis == "scale"
    assert _stage_run(tmp_path, 5, [3.0, 4.0, 5.0, 0.5], rising_z=1.0).diagnosis == "none"
    # a pass rests on points that stand out of the noise by construction, even on a flat curve
    assert _stage_run(tmp_path, 5, [0.5, 1.0, 0.2, 0.1], rising_z=1.0).diagnosis == "none"


def test_claim_1_needs_its_tables(tmp_path):
    assert diagnoses.stages(tmp_path, claims.MIN_STAGES) is None
    assert diagnoses.diagnose(tmp_path, claims.MIN_STAGES).empty


def _variants(ari: float, p_family: float) -> pd.DataFrame:
    return pd.DataFrame({"layer": [0, 0], "curves": "wr", "standardised": [False, True], "algorithm": "kmeans",
                         "k": 2, "n_heads": 8, "ari": [ari, ari / 2], "null_q95": 0.3, "null_q99": 0.5,
                         "p_value": [p_family / 2, 0.5], "p_family": [p_family, 0.9]})


def _separation(p: float) -> pd.DataFrame:
    return pd.DataFrame({"layer": [0], "feature": ["final"], "n_types": [2], "eta2": [0.6], "null_q95": [0.4],
                         "p_value": [p], "p_bonferroni": [p], "p_min": [0.003]})


@pytest.mark.parametrize(("ratio", "p_family", "p_feature", "label"), [
    (1.2, 0.01, 0.01, "L0 noise"),      # the heads are not told apart: nothing else matters
    (5.0, 0.01, 0.9, "L0 method"),      # a variant separates the types beyond chance
    (5.0, 0.6, 0.01, "L0 method"),      # a feature does, though no clustering does
    (5.0, 0.6, 0.9, "L0 scale"),        # resolved heads, nothing separates the types
])
def test_claim_3_labels(tmp_path, ratio, p_family, p_feature, label):
    budget = noise.budget("3", pd.DataFrame({"difference": ["heads of layer 0"], "signal": [ratio], "noise": [1.0],
                                             "ratio": [ratio], "share_above_2se": [1.0]}), seconds=1.0)
    tables.write(tmp_path, "noise_budget_heads", budget)
    tables.write(tmp_path, "clusters_ari_variants", _variants(0.4, p_family))
    tables.write(tmp_path, "type_separation", _separation(p_feature))
    d = diagnoses.clusters(tmp_path)
    assert d.diagnosis == label and f"head spread {ratio:.1f} SE" in d.evidence


def test_claim_3_says_when_the_type_sizes_cannot_reach_significance(tmp_path):
    tables.write(tmp_path, "noise_budget_heads", noise.budget("3", pd.DataFrame(
        {"difference": ["heads of layer 0"], "signal": [3.0], "noise": [1.0], "ratio": [3.0],
         "share_above_2se": [1.0]}), seconds=1.0))
    tables.write(tmp_path, "clusters_ari_variants", _variants(0.4, 0.6))
    six = pd.concat([_separation(0.9).assign(feature=f"f{i}") for i in range(6)], ignore_index=True)
    tables.write(tmp_path, "type_separation", six.assign(p_min=2 / 70))
    assert "no feature can reach" in diagnoses.clusters(tmp_path).evidence


def test_claim_5_and_the_scorecard_column(tmp_path):
    res = pd.DataFrame({"measure": ["icl_only", "drllc"], "first": "1:0", "last": "1:5", "difference": [2000, 300],
                        "resolved": [True, False], "smallest_resolvable": [800, 1500]})
    tables.write(tmp_path, "timing_resolution", res)
    assert diagnoses.timing(tmp_path).diagnosis == "noise"
    card = claims.scorecard(tmp_path).set_index("claim")
    row5 = [c for c in card.index if c.startswith("5.")][0]
    assert card.at[row5, "diagnosis"].startswith("noise: icl_only: 1:5 2000 steps after 1:0 (resolved")
    assert (card.drop(index=row5)["diagnosis"] == "").all()
    tables.write(tmp_path, "timing_resolution", res.assign(resolved=True))
    assert diagnoses.timing(tmp_path).diagnosis == "none"
    tables.write(tmp_path, "timing_resolution", res.assign(resolved=False))
    assert "the finest measure (icl_only) puts the two heads' formation within 2,000 steps" in \
        diagnoses.timing(tmp_path).evidence


def test_claim_1_names_the_points_left_after_a_warmup_artefact(tmp_path):
    _stage_run(tmp_path, 3, [3.0, 4.0, 5.0, 0.5], rising_z=5.0)
    st = pd.DataFrame({"stage": ["LM1", "LM2", "LM3", "LM4"], "start": [0, 150, 800, 5000],
                       "end": [150, 800, 5000, 12000], "llc_start": 1.0, "llc_end": 2.0,
                       "ends_at": ["maximum", "minimum", "plateau", "end"], "trend": "rising"})
    tables.write(tmp_path, "stages_L2", st)
    tables.write(tmp_path, "warmup_control", pd.DataFrame({
        "warmup_steps": [500, 150], "peak_step": [100, 50], "peak_llc": [30.0, 20.0], "warmup_fraction": [0.2, 0.3],
        "test_loss_at_peak": [3.7, 4.0], "verdict": "warm-up artefact", "reason": "it moves"}))
    d = diagnoses.stages(tmp_path, claims.MIN_STAGES)
    assert "warm-up artefact (it moves)" in d.evidence
    assert "(to step 800): 1 critical point(s) (5,000 plateau)" in d.evidence
    assert d.diagnosis == "method (the stages include a warm-up artefact)"  # 4 stages, 2 of them the warm-up's


# ---- claims 7-10 ----------------------------------------------------------------------------------


def _composition_run(tmp_path, curve, n_pairs: int = 4, turns: int = 0, ratio: float = 0.7):
    """n_pairs (layer-0, layer-1) pairs that all follow ``curve`` (a function of the step), the
    first ``turns`` of them marked as turning, as 04 writes them."""
    steps = list(range(0, 2001, 100))
    rows, turn = [], []
    for i in range(n_pairs):
        src, dst = f"0:{i}", f"1:{i}"
        values = [curve(s) for s in steps]
        rows += [{"step": s, "variant": "raw", "mode": "K", "src": src, "dst": dst, "score": v}
                 for s, v in zip(steps, values, strict=True)]
        considered = [(s, v) for s, v in zip(steps, values, strict=True) if s >= 1]
        m = min(range(len(considered)), key=lambda j: considered[j][1])
        turn.append({"src": src, "dst": dst, "start": considered[0][1], "min_step": considered[m][0],
                     "min_value": considered[m][1], "end": considered[-1][1],
                     "fall": considered[0][1] - considered[m][1], "recovery": considered[-1][1] - considered[m][1],
                     "turns": i < turns, "stage": "LM3", "candidates": False})
    tables.write(tmp_path, "composition_L2", pd.DataFrame(rows))
    tables.write(tmp_path, "composition_turnaround", pd.DataFrame(turn))
    tables.write(tmp_path, "composition_coupling", pd.DataFrame({"from_step": [1400], "across_receivers": [ratio],
                                                                 "across_senders": [1.0], "ratio": [ratio],
                                                                 "candidates": [False]}))
    return diagnoses.composition(tmp_path, claims.MIN_TURNING)


def _jitter(s: int) -> float:
    return 0.002 * (1 if (s // 100) % 2 else -1)


def test_claim_7_labels(tmp_path):
    # falls to the last checkpoint: the composition still falls when the run ends
    assert _composition_run(tmp_path, lambda s: 0.2 - 0.00005 * s + _jitter(s)).diagnosis == "scale (training length)"
    # a fall of 0.001 to mid-run against a jitter of 0.002: 20% of it cannot be told from the jitter
    d = _composition_run(tmp_path, lambda s: 0.1 - 0.001 * min(s, 1000) / 1000 + _jitter(s))
    assert d.diagnosis == "noise", d.evidence
    # a resolved fall to mid-run that stays down
    d = _composition_run(tmp_path, lambda s: 0.2 - 0.1 * min(s, 1000) / 1000 + _jitter(s))
    assert d.diagnosis == "scale" and "0 of 4 pairs turn" in d.evidence
    # enough pairs turn: the failure lies in the minima's spread or the coupling
    d = _composition_run(tmp_path, lambda s: 0.2 - 0.1 * min(s, 1000) / 1000 + _jitter(s), turns=3, ratio=0.9)
    assert d.diagnosis == "scale" and "enough pairs turn" in d.evidence and "coupling ratio 0.90" in d.evidence


def _head_curves(tmp_path, trace_se: float, rho: float, null: float):
    steps = range(0, 1100, 100)
    trace = pd.DataFrame([{"step": s, "measure": "hessian_trace", "data": "train", "component": c,
                           "value": (1 + i) * s / 100, "se": trace_se, "n_probes": 4, "products": 4, "seconds": 0.1}
                          for i, c in enumerate(["0:0", "0:1", "1:0"]) for s in steps])
    wr = pd.DataFrame([{"step": s, "component": c, "llc_mean": (1 + i) * s / 100, "llc_sem": 0.1}
                       for i, c in enumerate(["0:0", "0:1", "1:0"]) for s in steps])
    tables.write(tmp_path, "hessian_trace_L2", trace)
    tables.write(tmp_path, "wrllc_L2", wr.reindex(columns=tables.spec("wrllc_L2").columns))
    tables.write(tmp_path, "measure_tracking", pd.DataFrame({
        "measure": agreement.HESSIAN_TRACE, "component": ["0:0", "0:1", "1:0"], "rho": rho, "n_steps": 11,
        "null_median": null, "null_max": null}))
    return diagnoses.hessian_tracking(tmp_path, claims.MIN_TRACKING_RHO)


def test_claim_8_labels(tmp_path):
    assert _head_curves(tmp_path, trace_se=0.1, rho=0.9, null=0.2).diagnosis == "none"
    assert _head_curves(tmp_path, trace_se=10.0, rho=0.1, null=0.2).diagnosis == "noise"  # the traces unresolved
    assert _head_curves(tmp_path, trace_se=0.1, rho=0.9, null=0.95).diagnosis == "method"  # one shared trend
    d = _head_curves(tmp_path, trace_se=0.1, rho=0.1, null=0.2)
    assert d.diagnosis == "scale" and "median ρ 0.10 with the own wrLLC, 0.20 with the other heads" in d.evidence


def _ablation_run(tmp_path, abl_se: float, rho_all: float, rho_layers: float):
    heads = ["0:0", "0:1", "0:2", "1:0", "1:1", "1:2"]
    tables.write(tmp_path, "ablation_L2", pd.DataFrame({"step": 1000, "component": heads, "kind": "resample",
                                                        "clean": 3.0, "ablated": 3.1, "se": abl_se,
                                                        "score": [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]}))
    wr = pd.DataFrame({"step": 1000, "component": heads, "llc_mean": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "llc_sem": 0.1})
    tables.write(tmp_path, "wrllc_L2", wr.reindex(columns=tables.spec("wrllc_L2").columns))
    tables.write(tmp_path, "measure_agreement", pd.DataFrame({
        "scope": ["all", "layer 0", "layer 1"], "rho": [rho_all, rho_layers, rho_layers], "p_value": 0.01,
        "n_heads": [6, 3, 3], "layers_only": [0.8, float("nan"), float("nan")], "measure": agreement.RESAMPLE,
        "reference": "wrLLC"}))
    return diagnoses.ablation_order(tmp_path, claims.MIN_ORDER_RHO)


def test_claim_9_labels(tmp_path):
    assert _ablation_run(tmp_path, 0.01, rho_all=0.9, rho_layers=0.9).diagnosis == "none"
    assert _ablation_run(tmp_path, 1.0, rho_all=0.2, rho_layers=0.9).diagnosis == "noise"  # scores 0.2 SE apart
    assert _ablation_run(tmp_path, 0.01, rho_all=0.2, rho_layers=0.9).diagnosis == "method"  # layers' offsets
    d = _ablation_run(tmp_path, 0.01, rho_all=0.2, rho_layers=0.1)
    assert d.diagnosis == "scale" and "within layers layer 0 0.10, layer 1 0.10" in d.evidence


def test_claim_10_follows_claim_3_where_seed_1_does_not_recover_its_types(tmp_path):
    tables.write(tmp_path, "cluster_transfer", pd.DataFrame({
        "run": "L2-s2", "layer": [0, 1], "algorithm": "kshape", "k": 2, "n_heads": 4, "ari": [0.1, 0.2],
        "null_q95": 0.3, "null_q99": 0.5, "p_value": 0.5, "n_exceptions": [2, 1], "n_types": 2,
        "matches_types": True, "n_ref_types": 2}))
    tables.write(tmp_path, "clusters_protocol", pd.DataFrame({
        "layer": [0, 1], "curves": "train", "k": 2, "n_heads": 4, "n_types": 2, "ari": [0.2, 0.9], "null_q95": 0.5,
        "p_value": 0.3, "clusters": ""}))
    budget = noise.budget("3", pd.DataFrame({"difference": ["heads of layer 0", "heads of layer 1"], "signal": 5.0,
                                             "noise": 1.0, "ratio": 5.0, "share_above_2se": 1.0}), seconds=1.0)
    tables.write(tmp_path, "noise_budget_heads", budget)
    variants = pd.concat([_variants(0.4, 0.6), _variants(0.4, 0.6).assign(layer=1)], ignore_index=True)
    tables.write(tmp_path, "clusters_ari_variants", variants)
    tables.write(tmp_path, "type_separation", pd.concat([_separation(0.9), _separation(0.9).assign(layer=1)]))
    d = diagnoses.transfer(tmp_path, claims.MIN_ARI, claims.TRANSFER_ALGORITHM)
    assert d.diagnosis == "L0 as claim 3 (scale); L1 scale", d.evidence
    assert "layer 0: seed 1's own clusters ARI 0.20; transfer L2-s2 0.10 (2 of 4 heads off-type)" in d.evidence
