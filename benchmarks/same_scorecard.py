"""Does this code read a run's tables to the same scorecard the run wrote? (a refactor's check)

Computes the scorecard of a run directory (``rllc.report.claims.scorecard``) from its tables with
the code checked out now, and compares it with the ``claims.csv`` the run's notebooks wrote, row
by row (status, value, threshold, diagnosis). Prints the rows that differ and a count; asserts
nothing. Runs in seconds: nothing is estimated.

    python benchmarks/same_scorecard.py runs/cpu
"""

from __future__ import annotations

import argparse
import json

import pandas as pd

from rllc.report import claims, tables
from rllc.run import folder

COMPARED = ("status", "value", "threshold", "diagnosis")


def differences(written: pd.DataFrame, now: pd.DataFrame) -> list[dict[str, str]]:
    a, b = written.set_index("claim").fillna(""), now.set_index("claim").fillna("")
    out = []
    for claim in sorted(set(a.index) | set(b.index)):
        for col in COMPARED:
            x = str(a.at[claim, col]) if claim in a.index else "<absent>"
            y = str(b.at[claim, col]) if claim in b.index else "<absent>"
            if x != y:
                out.append({"claim": claim, "column": col, "written": x, "now": y})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    args = ap.parse_args()
    run = folder(args.run_dir)
    written = tables.read(run, "claims")
    now = claims.scorecard(run)
    diff = differences(written, now)
    for d in diff:
        print(json.dumps(d, ensure_ascii=False))
    print(f"{len(written)} claims written, {len(now)} now; {len(diff)} fields differ")


if __name__ == "__main__":
    main()
