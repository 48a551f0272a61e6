"""Re-score the published edition (docs/notebooks) with the calibrated criteria, where its printed
tables hold what a criterion reads. Prints one line per claim: the published verdict, the new one,
or why the edition cannot decide it (a criterion that needs curves the edition does not print).

The run directory behind the edition is not in the repository; its executed notebooks are. The
tables they print (01's critical points and warm-up control, 04's turnaround and coupling tables)
are parsed from their text and fed to ``rllc.analysis.criteria`` unchanged.

    python benchmarks/rescore_published.py [docs/notebooks]
"""

from __future__ import annotations

import io
import re
import sys
from pathlib import Path

import nbformat
import pandas as pd

from rllc import paths
from rllc.analysis import criteria
from rllc.config import load_config

NEEDS_CURVES = {
    "3": "the paper's protocol clusters the wrLLC and code drLLC curves, which the edition draws but does not print",
    "5": "the onsets need the induction heads' curves at every checkpoint (00's behaviour table), not printed",
    "6": "the gap at the previous-token head's formation step needs the per-head gaps (04's l1_gap_heads), not printed",
    "10": "the transfer at seed 1's number of the four types needs the seeds' wrLLC curves, not printed",
}


def _outputs(nb: nbformat.NotebookNode, marker: str) -> list[str]:
    """The text/plain and text/markdown outputs of the code cells whose source holds ``marker``."""
    out = []
    for cell in nb.cells:
        if cell.cell_type == "code" and marker in cell.source:
            for o in cell.get("outputs", []):
                data = o.get("data", {})
                out += [str(data[k]) for k in ("text/plain", "text/markdown") if k in data]
                if "text" in o:
                    out.append(str(o["text"]))
    return out


def _frame(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text.strip()), sep=r"\s+")


def claim1(nb01: nbformat.NotebookNode) -> criteria.Verdict:
    texts = _outputs(nb01, 'nb.write("stages_L2", found)')
    n = int(re.search(r"(\d+) checkpoints,", next(t for t in texts if "checkpoints," in t)).group(1))
    points = _frame(next(t for t in texts if "prominence" in t and "kind" in t))
    last = load_config("cpu").train.steps["L2"]  # the edition's profile: its curve ends at the last checkpoint
    stage_table = pd.DataFrame({"end": [*points["step"], last], "ends_at": [*points["kind"], "end"]})
    warmup = next(t for t in _outputs(nb01, "stages.warmup_verdict") if "warm-up" in t and "**" in t)
    control = pd.DataFrame({"verdict": [warmup.split("**")[1]],
                            "peak_step": [int(_frame(next(t for t in _outputs(nb01, "stages.warmup_verdict")
                                                          if "peak_step" in t))["peak_step"].iloc[0])]})
    return criteria.stages_verdict(stage_table, n, after_step=criteria.artefact_end(stage_table, control))


def claim7(nb04: nbformat.NotebookNode) -> criteria.Verdict:
    texts = _outputs(nb04, 'nb.write("composition_turnaround"')
    turn = _frame(next(t for t in texts if "min_step" in t))
    coupling = _frame(next(t for t in texts if "across_receivers" in t))
    turn["turns"] = turn["turns"].astype(str) == "True"
    return criteria.turnaround_verdict(turn, float(coupling["ratio"].iloc[0]))


def main(folder: Path) -> None:
    read = {name: nbformat.read(folder / f"{name}.ipynb", as_version=4)
            for name in ("01_llc_theory", "04_multigram_circuit")}
    readme = (paths.REPO_ROOT / "README.md").read_text()
    published = dict(re.findall(r"^\| (\d+[ab]?)\. [^|]*\| (pass|fail|undefined) \|", readme, re.M))
    new = {"1": claim1(read["01_llc_theory"]), "7": claim7(read["04_multigram_circuit"])}
    for number in ("1", "2a", "2b", "3", "4", "5", "6", "7", "8", "9", "10"):
        old = published.get(number, "?")
        if number in new:
            print(f"claim {number}: published {old} -> {new[number].status} ({new[number].value})")
        elif number in NEEDS_CURVES:
            print(f"claim {number}: published {old} -> not re-scored: {NEEDS_CURVES[number]}")
        else:
            print(f"claim {number}: published {old} -> {old} (criterion unchanged)")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else paths.REPO_ROOT / "docs" / "notebooks")
