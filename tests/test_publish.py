"""rllc publish: executed notebooks for readers (rllc.report.publish)."""

from __future__ import annotations

import os

import nbformat
import pandas as pd
import pytest

from rllc import paths, runner
from rllc.report import publish, tables


def _executed(path, with_provenance=True):
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("print(1)", execution_count=1)
    code.metadata.update({"papermill": {"duration": 1.2, "status": "completed"},
                          "execution": {"iopub.execute_input": "2026-12-05T04:00:00"}, "tags": ["keep"]})
    code.outputs = [nbformat.v4.new_output("stream", text="1\n"),
                    nbformat.v4.new_output("display_data", data={publish.WIDGET_MIME: {"model_id": "x"}})]
    nb.cells = [nbformat.v4.new_markdown_cell("# 00 — a title"), code]
    nb.metadata["papermill"] = {"start_time": "2026-12-05T04:00:00", "parameters": {"run_dir": "/somewhere"}}
    nb.metadata["widgets"] = {"state": {}}
    if with_provenance:
        nb.metadata["rllc"] = runner.execution_provenance("ci", "2026-12-05T04:00:00+00:00", 61.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def test_publish_strips_what_changes_and_opens_with_the_provenance(tmp_path):
    run = tmp_path / "run"
    _executed(run / "notebooks" / "00_train.ipynb")
    tables.write(run, "claims", pd.DataFrame({"claim": ["1. x"], "status": ["pass"], "value": ["4"],
                                              "threshold": [">= 4"], "notebook": ["01"]}))
    written = publish.publish(run, tmp_path / "out")
    out = nbformat.read(tmp_path / "out" / "00_train.ipynb", as_version=4)
    first, _, code = out.cells
    assert first.metadata["tags"] == [publish.PROVENANCE_TAG] and "profile `ci`" in first.source
    assert "1.0 min" in first.source and "torch" in first.source
    assert "papermill" not in out.metadata and "widgets" not in out.metadata and "rllc" not in out.metadata
    assert code.metadata == {"tags": ["keep"]}  # timings gone, tags kept
    assert [o.output_type for o in code.outputs] == ["stream"]  # the widget output is gone, the text kept
    assert [c.id for c in out.cells] == ["cell-000", "cell-001", "cell-002"]
    landing = (tmp_path / "out" / "landing.md").read_text()
    assert "| 1. x | pass | 4 | >= 4 |" in landing
    assert {p.name for p in written} == {"00_train.ipynb", "landing.md"}
    # publishing twice gives the same bytes: nothing in it depends on when it was published
    before = (tmp_path / "out" / "00_train.ipynb").read_bytes()
    publish.publish(run, tmp_path / "out")
    assert (tmp_path / "out" / "00_train.ipynb").read_bytes() == before


def test_the_published_notebook_names_the_run_directory_relative_to_the_repository(tmp_path):
    run = tmp_path / "run"
    source = _executed(run / "notebooks" / "00_train.ipynb")
    nb = nbformat.read(source, as_version=4)
    absolute = str(run.resolve())
    nb.cells[1].source = f'run_dir = "{absolute}"'
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text=f"profile ci; run directory {absolute}\n")]
    nbformat.write(nb, source)
    out = nbformat.read(publish.publish_notebook(source, tmp_path / "out.ipynb"), as_version=4)
    relative = os.path.relpath(absolute, paths.REPO_ROOT)
    assert out.cells[2].source == f'run_dir = "{relative}"' and not relative.startswith("/")
    assert out.cells[2].outputs[0]["text"] == f"profile ci; run directory {relative}\n"


def test_a_notebook_without_provenance_or_a_run_without_notebooks_is_refused(tmp_path):
    with pytest.raises(publish.NotPublishable, match="no executed notebook"):
        publish.publish(tmp_path / "empty", tmp_path / "out")
    _executed(tmp_path / "run" / "notebooks" / "00_train.ipynb", with_provenance=False)
    with pytest.raises(publish.NotPublishable, match="carries no execution provenance"):
        publish.publish(tmp_path / "run", tmp_path / "out")


def test_the_readme_results_block_is_written_from_the_run_between_its_markers(tmp_path):
    run = tmp_path / "run"
    _executed(run / "notebooks" / "00_train.ipynb")
    _executed(run / "notebooks" / "01_llc_theory.ipynb")
    tables.write(run, "claims", pd.DataFrame({"claim": ["1. x", "2. y"], "status": ["pass", "fail"],
                                              "value": ["4", "1"], "threshold": [">= 4", ">= 2"],
                                              "notebook": ["01", "01"], "diagnosis": [None, "noise: z"]}))
    tables.write(run, "claims_by_seed", pd.DataFrame({"claim": ["1. x"], "n_seeds": [3], "n_pass": [2],
                                                      "n_decided": [3], "holds": ["2 of 3"], "pass_seeds": ["1 2"],
                                                      "fail_seeds": ["3"], "undefined_seeds": [None],
                                                      "main_scorecard": ["pass"]}))
    readme = tmp_path / "README.md"
    readme.write_text(f"# t\n\nbefore\n{publish.README_START}\nold numbers\n{publish.README_END}\nafter\n")
    publish.update_readme(readme, run)
    text = readme.read_text()
    assert "old numbers" not in text and text.startswith("# t\n\nbefore\n") and text.endswith("after\n")
    assert "| 2. y | fail | 1 | >= 2 | noise: z |" in text and "| 1. x | 2 of 3 | 1 2 | 3 |  |" in text
    assert "| 00_train | 1.0 |" in text and "| sum | 2.0 (0 h 2 min) |" in text  # 61 s each
    assert "Profile `ci`" in text
    again = readme.read_text()
    publish.update_readme(readme, run)
    assert readme.read_text() == again  # rewriting changes nothing
    readme.write_text("# no markers\n")
    with pytest.raises(publish.NotPublishable, match="lacks the results markers"):
        publish.update_readme(readme, run)


def test_an_earlier_scorecard_stands_beside_the_runs_by_claim_number(tmp_path):
    run = tmp_path / "run"
    _executed(run / "notebooks" / "00_train.ipynb")
    tables.write(run, "claims", pd.DataFrame({"claim": ["1. x", "2a. y", "11. new"], "status": ["fail", "pass", "pass"],
                                              "value": ["1", "1", "1"], "threshold": ["a", "b", "c"],
                                              "notebook": ["01", "02", "02"], "diagnosis": [None, None, None]}))
    tables.write(run, "claims_by_seed", pd.DataFrame({"claim": ["1. x"], "n_seeds": [3], "n_pass": [0],
                                                      "n_decided": [0], "holds": ["0 of 3"], "pass_seeds": [None],
                                                      "fail_seeds": [None], "undefined_seeds": ["1 2 3"],
                                                      "main_scorecard": ["fail"]}))
    before = tmp_path / "before.csv"
    pd.DataFrame({"claim": ["1", "2a"], "status": ["pass", "pass"], "by_seed": ["0 of 3", ""],
                  "criteria_version": ["1", "1"]}).to_csv(before, index=False)
    readme = tmp_path / "README.md"
    readme.write_text(f"{publish.README_START}\n{publish.README_END}\n")
    publish.update_readme(readme, run, before)
    text = readme.read_text()
    assert "| claim | status | before (criteria v1) | value |" in text
    assert "| 1. x | fail | pass | 1 |" in text and "| 2a. y | pass | pass | 1 |" in text
    assert "| 11. new | pass | — | 1 |" in text  # a claim the earlier card lacks
    assert "| 1. x | 0 of 3 | 0 of 3 |  |  | 1 2 3 |" in text
    pd.DataFrame({"claim": ["1"], "verdict": ["pass"]}).to_csv(before, index=False)
    with pytest.raises(publish.NotPublishable, match="lacks the column"):
        publish.update_readme(readme, run, before)
