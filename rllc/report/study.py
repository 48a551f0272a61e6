"""What the scale study says of a claim that fails on the cpu profile.

``benchmarks/scale_study.py`` measures the cpu profile with one factor changed at a time (vocabulary,
head width, model width, the code/prose mixture, training length), at several seeds, and writes a row
per (setting, length, seed) to ``docs/scale-study.csv`` with the verdicts of the claims a row can
check (1, 2a, 2b, 3, 5). When such a claim fails on a cpu run, its diagnosis names the cheapest
setting of the study that reproduced it, or says that none did and what was tried.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from .. import paths
from ..analysis.clustering import CLUSTER_VERSION
from ..analysis.criteria import CALIBRATED, CRITERIA_VERSION
from ..estimate.sgld import ESTIMATOR_VERSION

STUDY_ROWS = paths.REPO_ROOT / "docs" / "scale-study.csv"
# What a row measures (benchmarks/scale_study.py): 2 = head types by rule 2
# (rllc.analysis.head_types.RULE_VERSION). Rows of other versions are not read.
STUDY_VERSION = 2
STUDY_PROFILE = "cpu"  # the profile whose settings the study varies
CHECKED = ("1", "2a", "2b", "3", "5")  # the claims a row of the study checks
# CALIBRATED (rllc.analysis.criteria): the claims a row decides by a calibrated criterion, read only
# from rows of this CRITERIA_VERSION
CLUSTERED = ("3",)  # the claims a row decides from cluster labels: read only from rows of this CLUSTER_VERSION
PASS = "pass"  # the scorecard's word (rllc.report.claims.PASS; a test holds them equal)


def read_rows(path: str | Path = STUDY_ROWS) -> pd.DataFrame:
    """The study's rows made by this estimator and study version (rows of older estimators or type
    rules would mislead); empty when the study has no rows."""
    path = Path(path)
    if not path.exists():
        return pd.DataFrame()
    rows = pd.read_csv(path)
    keep = (rows["estimator_version"] == ESTIMATOR_VERSION) & (rows["study_version"] == STUDY_VERSION)
    return rows[keep].reset_index(drop=True)


def reproduced(claim: str, rows: pd.DataFrame) -> str:
    """One sentence: the cheapest (setting, length) of the study on which ``claim`` passed, with on
    how many of its seeds, or that no row reproduced it and which were tried; "" when the study does
    not check the claim or has no rows. Cost: the training minutes to the length measured by the
    setting's fastest seed (a job beside a run only slows it down)."""
    column = f"claim{claim}"
    if claim not in CHECKED or rows.empty or column not in rows:
        return ""
    gates = ((CALIBRATED, "criteria_version", CRITERIA_VERSION,
              "by the criterion of before the calibration (docs/claims.md) and are not read for it until re-measured"),
             (CLUSTERED, "cluster_version", CLUSTER_VERSION,
              f"with cluster labels older than version {CLUSTER_VERSION} (a labelling fix) and are not read for it "
              "until re-scored"))
    for claims, column_, version, why in gates:  # rows made by older code are not read for the claims it changed
        if claim in claims:
            current = rows[column_] == version if column_ in rows else pd.Series(False, index=rows.index)
            if not current.any():
                return f"scale study: its {len(rows)} rows decided claim {claim} {why}"
            rows = rows[current]
    runs = rows.groupby(["setting", "length"]).agg(seeds=("seed", "size"),
                                                    passed=(column, lambda s: int((s == PASS).sum())),
                                                    minutes=("train_min_to_length", "min")).reset_index()
    hits = runs[runs["passed"] > 0].sort_values(["minutes", "setting"])
    if hits.empty:
        tried = ", ".join(f"{r.setting} at {int(r.length):,}" for r in runs.sort_values(["setting", "length"])
                          .itertuples())
        return f"scale study: no setting reproduced it ({tried}; {int(runs['seeds'].sum())} runs)"
    best = hits.iloc[0]
    return (f"scale study: the cheapest setting that reproduced it is {best['setting']} at "
            f"{int(best['length']):,} steps ({int(best['passed'])} of {int(best['seeds'])} seeds; "
            f"{best['minutes']:.0f} min of training)")
