"""What the scale study's rows say of a failing claim (rllc.report.study) and the scorecard's use of it."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import yaml

from rllc.config import load_config
from rllc.estimate.sgld import ESTIMATOR_VERSION
from rllc.report import claims, study


def _row(setting: str, seed: int, minutes: float, claim5: str, length: int = 12_000, version: int = ESTIMATOR_VERSION):
    return {"setting": setting, "length": length, "seed": seed, "claim1": "fail", "claim2a": "pass",
            "claim2b": "pass", "claim3": "fail", "claim5": claim5, "train_min_to_length": minutes,
            "estimator_version": version, "study_version": study.STUDY_VERSION,
            "cluster_version": study.CLUSTER_VERSION, "criteria_version": study.CRITERIA_VERSION}


ROWS = pd.DataFrame([_row("base", 1, 14.0, "fail"), _row("base", 2, 13.0, "pass"), _row("base", 3, 15.0, "fail"),
                     _row("vocab1024", 1, 19.0, "pass"), _row("base", 1, 28.0, "pass", length=24_000),
                     _row("heads4x32", 1, 30.0, "pass", version=ESTIMATOR_VERSION - 1),
                     {**_row("d256", 1, 31.0, "pass"), "study_version": study.STUDY_VERSION - 1}])


def test_the_cheapest_reproducing_setting_counts_its_seeds_and_ignores_rows_of_older_versions(tmp_path) -> None:
    path = tmp_path / "rows.csv"
    ROWS.to_csv(path, index=False)
    rows = study.read_rows(path)
    assert len(rows) == 5 and "heads4x32" not in set(rows["setting"])  # made by an older estimator
    assert "d256" not in set(rows["setting"])  # made by an older study version (head types of rule 1)
    # base at 12k passes on 1 of its 3 seeds and costs 13 min (its fastest seed): cheaper than vocab1024 (19)
    assert study.reproduced("5", rows) == ("scale study: the cheapest setting that reproduced it is base at 12,000 "
                                           "steps (1 of 3 seeds; 13 min of training)")
    assert study.reproduced("3", rows) == ("scale study: no setting reproduced it (base at 12,000, base at 24,000, "
                                           "vocab1024 at 12,000; 5 runs)")
    assert study.reproduced("7", rows) == ""  # a claim no row checks
    assert study.reproduced("5", pd.DataFrame()) == "" and study.read_rows(tmp_path / "none.csv").empty
    assert study.PASS == claims.PASS


def _cpu_run(run: Path, profile: str) -> Path:
    (run / "tables").mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump(load_config(profile).to_dict()))
    pd.DataFrame({"stage": ["LM1", "LM2"], "start": [0, 500], "end": [500, 1000], "ends_at": ["maximum", "end"],
                  "n_checkpoints": 78}).to_csv(run / "tables" / "stages_L2.csv", index=False)
    return run


def test_a_failing_claim_of_a_cpu_run_names_the_study_and_other_profiles_do_not(tmp_path) -> None:
    path = tmp_path / "rows.csv"
    ROWS.to_csv(path, index=False)
    for profile in ("cpu", "ci"):
        card = claims.scorecard(_cpu_run(tmp_path / profile, profile), study_rows=path).set_index("claim")
        row = card.loc[next(c for c in card.index if c.startswith("1."))]
        assert row["status"] == claims.FAIL
        assert ("scale study: no setting reproduced it" in row["diagnosis"]) == (profile == "cpu"), profile
        # claims not computed carry no study note
        assert not card[card["status"] != claims.FAIL]["diagnosis"].str.contains("scale study").any()


def test_claim3_rows_of_an_older_cluster_version_are_not_read():
    rows = pd.DataFrame([{**_row("base", 1, 20.0, "pass"), "claim3": "pass"}]).drop(columns="cluster_version")
    assert "not read for it" in study.reproduced("3", rows)  # no cluster_version: labels of before the fix
    rows["cluster_version"] = study.CLUSTER_VERSION
    assert "reproduced it is base" in study.reproduced("3", rows)


def test_rows_decided_by_a_criterion_of_before_the_calibration_are_not_read_for_it():
    rows = pd.DataFrame([{**_row("base", 1, 20.0, "pass"), "claim1": "pass", "claim2a": "pass"}])
    old = rows.drop(columns="criteria_version")  # the rows written before the criteria were calibrated
    for claim in ("1", "3", "5"):  # changed by the calibration: the old verdicts say nothing of the new rule
        assert "before the calibration" in study.reproduced(claim, old), claim
        assert "reproduced it is base" in study.reproduced(claim, rows.assign(claim3="pass")), claim
    assert "reproduced it is base" in study.reproduced("2a", old)  # unchanged: still read
    older = rows.assign(criteria_version=study.CRITERIA_VERSION - 1)
    assert "before the calibration" in study.reproduced("5", older)
