"""Diagnoses of claims 1, 3 and 5 from constructed tables: each rule's label follows the
measurements it names, and the scorecard carries it."""

from __future__ import annotations

import pandas as pd
import pytest

from rllc.analysis import noise
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
    d = _stage_run(tmp_path, 3, [0.5, 1.0, 3.0, 0.2], rising_z=1.0)
    assert d.diagnosis == "noise" and "25% of neighbouring checkpoints" in d.evidence
    assert _stage_run(tmp_path, 3, [0.5, 1.0, 3.0, 0.2], rising_z=5.0).diagnosis == "noise + scale (training length)"
    assert "3 stages with noise-tied critical points, 5 with the slope-sign rule" in d.evidence


def test_claim_1_scale_and_training_length(tmp_path):
    assert _stage_run(tmp_path, 3, [3.0, 4.0, 5.0, 0.5], rising_z=5.0).diagnosis == "scale (training length)"
    assert _stage_run(tmp_path, 3, [3.0, 4.0, 5.0, 0.5], rising_z=1.0).diagnosis == "scale"
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
