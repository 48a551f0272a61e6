"""The claims scorecard and the final head types it reads."""

import pandas as pd

from rllc.analysis import head_types, scores
from rllc.config import ScoreConfig
from rllc.report import claims, rules


def _write(run, name, df):
    (run / "tables").mkdir(parents=True, exist_ok=True)
    df.to_csv(run / "tables" / name, index=False)


def test_empty_run_is_not_computed(tmp_path):
    card = claims.write_scorecard(tmp_path)
    assert list(card.columns) == claims.COLUMNS
    assert set(card["status"]) == {claims.NOT_COMPUTED}
    assert (tmp_path / "claims.csv").exists()
    assert len(card) == len(claims.CLAIMS)


def _protocol(aris, ks=None):
    ks = ks or [3, 2][: len(aris)]
    return pd.DataFrame({"layer": list(range(len(aris))), "curves": "train+python_tests", "k": ks, "n_heads": 8,
                         "n_types": ks, "ari": aris, "null_q95": 0.4, "p_value": 0.01, "clusters": ""})


def test_pass_and_fail_from_tables(tmp_path):
    _write(tmp_path, "stages_L2.csv", pd.DataFrame({"stage": ["LM1", "LM2"], "start": [0, 500], "end": [500, 1000],
                                                    "ends_at": ["maximum", "end"], "n_checkpoints": 78}))
    _write(tmp_path, "head_types_by_score.csv", pd.DataFrame({
        "component": ["0:0", "0:1", "1:0", "1:1"],
        "type": ["previous-token", "multigram", "multigram", "previous-token"]}))  # no L1 induction head
    _write(tmp_path, "clusters_protocol.csv", _protocol([0.8, 0.6]))
    _write(tmp_path, "clusters_ari_wr.csv", pd.DataFrame({
        "k": [3, 2], "algorithm": ["consensus", "consensus"], "ari": [0.1, 0.2], "layer": [0, 1],
        "n_types": [3, 2], "matches_types": [True, True]}))
    card = claims.scorecard(tmp_path).set_index("claim")
    status = dict(zip(claims.scorecard(tmp_path)["claim"], claims.scorecard(tmp_path)["status"], strict=True))
    assert status["1. Full-model LLC critical points split training into stages"] == "fail"  # one critical point
    assert status["2a. Layer 0 has a previous-token head"] == "pass"
    assert status["2b. Layer 1 has an induction head"] == "fail"
    assert status["3. Per-head wrLLC curves cluster by behavioural type"] == "pass"  # 0.8 and 0.6 (the protocol)
    value = card.loc["3. Per-head wrLLC curves cluster by behavioural type", "value"]
    assert "L0 0.80" in value and "L1 0.60" in value and "consensus of the wrLLC: L0 0.10 (k=3)" in value
    # one layer below threshold fails the claim
    _write(tmp_path, "clusters_protocol.csv", _protocol([0.8, 0.4]))
    status = dict(zip(claims.scorecard(tmp_path)["claim"], claims.scorecard(tmp_path)["status"], strict=True))
    assert status["3. Per-head wrLLC curves cluster by behavioural type"] == "fail"
    # two critical points pass claim 1; on a grid too sparse to find the paper's boundaries it is undefined
    three = pd.DataFrame({"stage": ["LM1", "LM2", "LM3"], "start": [0, 500, 700], "end": [500, 700, 1000],
                          "ends_at": ["maximum", "minimum", "end"], "n_checkpoints": 78})
    _write(tmp_path, "stages_L2.csv", three)
    c1 = "1. Full-model LLC critical points split training into stages"
    assert claims.scorecard(tmp_path).set_index("claim").at[c1, "status"] == "pass"
    _write(tmp_path, "stages_L2.csv", three.assign(n_checkpoints=12))
    assert claims.scorecard(tmp_path).set_index("claim").at[c1, "status"] == "undefined"


def test_single_type_layers_are_undefined(tmp_path):
    _write(tmp_path, "clusters_protocol.csv", _protocol([]))
    card = claims.scorecard(tmp_path)
    assert card.loc[card["notebook"] == "03_drllc", "status"].tolist()[0] == claims.UNDEFINED


def test_head_types_combine_scores_and_patterns():
    score_types = pd.Series({"0:0": "previous-token", "0:1": "multigram", "1:0": "induction", "1:1": "multigram",
                             "1:2": "current-token"})
    summary = pd.DataFrame({"component": ["0:0", "0:1", "1:0", "1:1", "1:2"],
                            "top_pattern": ["dyck", "ngram", "dyck", "dyck", "induction"]})
    t = head_types.head_types(score_types, summary)
    assert t.to_dict() == {"0:0": "previous-token", "0:1": "multigram", "1:0": "induction",
                           "1:1": "Dyck multigram", "1:2": "current-token"}


def test_threshold_report_finds_the_gap_and_chance():
    cfg = ScoreConfig(min_len=16, max_len=16, induction_len=8)
    chance = scores.chance_levels(cfg)
    assert abs(chance["previous_token"] - 1 / 15) < 1e-12  # 16 keys, the first left out
    table = pd.DataFrame({"component": ["0:0", "0:1", "0:2", "0:3"], "layer": 0, "score": "previous_token",
                          "value": [0.03, 0.05, 0.06, 0.35]})
    r = scores.threshold_report(table, cfg, {"previous_token": 0.2}).iloc[0]
    assert r["heads_above"] == "0:3"
    assert (r["widest_gap_from"], r["widest_gap_to"]) == (0.06, 0.35) and r["threshold_in_gap"]


def test_claims_8_and_9_from_the_agreement_tables(tmp_path):
    from rllc.analysis import agreement

    _write(tmp_path, "measure_tracking.csv", pd.DataFrame({
        "measure": [agreement.HESSIAN_TRACE] * 3 + [agreement.RESAMPLE], "component": ["0:0", "0:1", "1:0", "0:0"],
        "rho": [0.8, 0.6, 0.2, 0.9], "n_steps": [10] * 4, "null_median": [0.3, 0.4, 0.1, 0.0], "null_max": [0.5] * 4}))
    _write(tmp_path, "measure_agreement.csv", pd.DataFrame({
        "measure": [agreement.HESSIAN_TRACE, agreement.RESAMPLE, agreement.RESAMPLE],
        "reference": ["wrLLC"] * 3, "scope": ["all", "all", "layer 0"], "rho": [0.7, 0.55, 0.9],
        "p_value": [0.01, 0.03, 0.1], "n_heads": [16, 16, 8]}))
    status = dict(zip(*[claims.scorecard(tmp_path)[k] for k in ("claim", "status")], strict=True))
    assert status["8. Hessian trace partly tracks the rLLC"] == "pass"  # median 0.6 >= 0.5, above 0.3
    assert status["9. Ablation scores order heads like the final rLLC"] == "fail"  # 0.55 < 0.6
    card = claims.scorecard(tmp_path).set_index("claim")
    assert "layer 0 0.90" in card.loc["9. Ablation scores order heads like the final rLLC", "value"]
    # tracking no better than the other heads fails, however high
    _write(tmp_path, "measure_tracking.csv", pd.DataFrame({
        "measure": [agreement.HESSIAN_TRACE] * 2, "component": ["0:0", "0:1"], "rho": [0.8, 0.8],
        "n_steps": [10, 10], "null_median": [0.9, 0.85], "null_max": [0.9, 0.9]}))
    status = dict(zip(*[claims.scorecard(tmp_path)[k] for k in ("claim", "status")], strict=True))
    assert status["8. Hessian trace partly tracks the rLLC"] == "fail"


def _transfer_rows(aris):
    return pd.DataFrame([{"run": r, "layer": lay, "algorithm": alg, "k": 2, "n_heads": 8, "ari": a, "null_q95": 0.3,
                          "p_value": 0.01, "n_exceptions": 1, "n_types": 2, "matches_types": m,
                          "n_ref_types": 2 if m else 3}
                         for r, lay, alg, a, m in aris])


def test_claim_10_reads_the_median_kshape_transfer_at_each_seeds_types(tmp_path):
    c10 = "10. Clusters fit on one seed transfer to other seeds"
    _write(tmp_path, "cluster_transfer.csv", _transfer_rows([
        ("L2-s2", 0, "kshape", 0.9, True), ("L2-s2", 1, "kshape", 0.6, True), ("L2-s3", 0, "kshape", 0.1, True),
        ("L2-s3", 1, "kshape", 0.0, False), ("L2-s3", 1, "kmeans", 1.0, True)]))  # ignored: k or algorithm
    row = claims.scorecard(tmp_path).set_index("claim").loc[c10]
    assert row["status"] == "pass" and row["value"].startswith("median 0.60")  # median of 0.9, 0.6, 0.1
    _write(tmp_path, "cluster_transfer.csv", _transfer_rows([
        ("L2-s2", 0, "kshape", 0.9, True), ("L2-s3", 0, "kshape", 0.1, True), ("L2-s3", 1, "kshape", 0.2, True)]))
    assert claims.scorecard(tmp_path).set_index("claim").at[c10, "status"] == "fail"
    _write(tmp_path, "cluster_transfer.csv", _transfer_rows([("L2-s2", 0, "kshape", 0.9, False)]))
    assert claims.scorecard(tmp_path).set_index("claim").at[c10, "status"] == "undefined"


def test_a_claim_under_the_rule_and_rule_v1_side_by_side(tmp_path):
    _write(tmp_path, "clusters_protocol.csv", _protocol([0.8, 0.6]))
    rows = rules.compare_rules(tmp_path, "3", {"clusters_protocol": _protocol([0.8, 0.1])})
    by_rule = rows.set_index("rule")["status"]
    assert by_rule[head_types.DEFAULT_RULE] == claims.PASS and by_rule["v1"] == claims.FAIL
    assert (tmp_path / "type-rules" / "v1" / "tables" / "clusters_protocol.csv").exists()
    c3 = "3. Per-head wrLLC curves cluster by behavioural type"
    assert claims.scorecard(tmp_path).set_index("claim").at[c3, "status"] == claims.PASS  # run untouched
    # a verdict the notebook decided, and a second claim: the first claim's rows are kept, its own replaced
    rules.compare_rules(tmp_path, "6", (claims.UNDEFINED, "no layer-0 multigram head under rule v1"))
    rows = rules.compare_rules(tmp_path, "6", (claims.UNDEFINED, "again"))
    assert len(rows) == 4 and rows["value"].str.contains("again").sum() == 1


def test_the_fragility_line_names_the_claims_a_flip_would_change():
    fragile = pd.DataFrame({"component": ["0:1", "1:3", "0:2"],
                            "score": ["previous_token", "induction", "current_token"],
                            "value": [0.52, 0.21, 0.9], "threshold": [0.5, 0.2, 0.5], "sd": [0.02, 0.01, 0.01],
                            "margin_sd": [1.0, 1.0, 40.0], "fragile": [True, True, False]})
    one_prev = pd.Series({"0:1": "previous-token", "0:2": "current-token", "1:3": "induction", "1:4": "induction"})
    line = rules.fragility_line(fragile, one_prev)
    # 0:1 is layer 0's only previous-token head: 2a would change; 1:3 is one of two induction heads: 2b would not
    assert "0:1 (previous_token 0.52, threshold 0.5, spread 0.020: 1.0 spreads away) → claims 2a, 3, 6, 7, 10" in line
    assert "1:3 (induction 0.21, threshold 0.2, spread 0.010: 1.0 spreads away) → claims 3, 4, 5, 6, 7, 10" in line
    assert "0:2" not in line
    assert "no type is fragile" in rules.fragility_line(fragile.assign(fragile=False), one_prev)


def _timing(candidates=False):
    return pd.DataFrame({"component": ["1:6", "1:7"], "measure": "induction_score", "from_step": 500,
                         "steepest_step": [10_600, 12_200], "onset_step": [10_400, 12_000],
                         "onset_lo": [10_000, 11_600], "onset_hi": [10_800, 12_400], "spacing": 400,
                         "candidates": candidates})


def test_one_rule_decides_a_claim_under_the_other_type_rule(tmp_path):
    """``rules.compare_under_rule``: each outcome of the one decision, as 03 and 04 take it."""
    _write(tmp_path, "induction_timing.csv", _timing())
    own = rules.compare_under_rule(tmp_path, "5", {"induction": (["1:6", "1:7"], ["1:7", "1:6"])})
    assert own["status"].tolist() == [claims.PASS, claims.PASS]  # the same heads: the run's own table, again
    differ = rules.compare_under_rule(tmp_path, "5", {"induction": (["1:6", "1:7"], [])})
    assert differ["value"].iloc[-1] == "rule v1's induction heads (none) differ from the rule's (1:6, 1:7)"
    assert differ["status"].iloc[-1] == claims.NOT_COMPUTED
    groups = {"layer-0 multigram": (["0:1"], []), "layer-1 multigram": (["1:2"], ["1:2"])}
    needed = rules.compare_under_rule(tmp_path, "7", groups, needs="layer-0 multigram")
    assert needed.iloc[-1]["status"] == claims.UNDEFINED
    assert needed.iloc[-1]["value"] == "no layer-0 multigram head under rule v1"
    two = {"layer-0 multigram": (["0:1"], ["0:3"]), "layer-1 multigram": (["1:2"], ["1:4"])}
    assert rules.compare_under_rule(tmp_path, "7", two).iloc[-1]["value"] == (
        "rule v1's head groups differ: layer-0 multigram 0:3; layer-1 multigram 1:4")
    # recomputed tables are checked whatever the heads; candidates never reuse the run's own tables
    redone = rules.compare_under_rule(tmp_path, "5", {"induction": (["1:6"], ["1:2"])},
                                      recompute=lambda: {"induction_timing": _timing().assign(onset_step=[10_400] * 2,
                                                                                            onset_lo=10_000,
                                                                                            onset_hi=10_800)})
    assert redone.iloc[-1]["status"] == claims.FAIL
    assert rules.compare_under_rule(tmp_path, "5", {"induction": (["1:6", "1:7"], ["1:6", "1:7"])},
                                    candidates=True).iloc[-1]["status"] == claims.NOT_COMPUTED


def test_type_changes_lists_the_heads_the_rules_disagree_on():
    types = pd.Series({"0:1": "previous-token", "0:2": "multigram", "1:3": "induction"})
    other = pd.Series({"0:1": "previous-token", "0:2": "current-token", "1:3": "multigram"})
    assert rules.type_changes(types, other) == ["0:2 current-token → multigram", "1:3 multigram → induction"]
    assert rules.type_changes(types, other, ["0:1", "0:2"]) == ["0:2 current-token → multigram"]
