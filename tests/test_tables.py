"""The table registry: names, columns, and that every table a claim reads is written somewhere."""

from __future__ import annotations

import ast
from pathlib import Path

import pandas as pd
import pytest

from rllc import paths
from rllc.report import claims, tables


def notebook_table_calls() -> dict[str, dict[str, set[str]]]:
    """Per notebook: the registry names passed to ``*.write`` and ``*.read*`` calls."""
    out: dict[str, dict[str, set[str]]] = {}
    for source in sorted(paths.NOTEBOOKS_DIR.glob("[0-9][0-9]_*.py")):
        calls: dict[str, set[str]] = {"write": set(), "read": set()}
        for node in ast.walk(ast.parse(source.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                kind = "write" if node.func.attr == "write" else "read" if node.func.attr.startswith("read") else None
                strings = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                if kind and strings:
                    calls[kind].add(strings[0])
        out[source.stem] = calls
    return out


def test_every_table_a_claim_reads_is_written_by_its_registered_notebook() -> None:
    calls = notebook_table_calls()
    for claim in claims.CLAIMS:
        if claim.check is None:
            continue
        assert claim.needs, f"{claim.name}: declare the tables it reads"
        for name in claim.needs:
            table = tables.spec(name)
            assert table.notebook in calls, f"{name}: registered notebook {table.notebook} does not exist"
            assert name in calls[table.notebook]["write"], f"{table.notebook} never writes {name} ({claim.name})"


def test_notebooks_use_only_registered_tables() -> None:
    for notebook, calls in notebook_table_calls().items():
        for name in calls["write"] | calls["read"]:
            assert name in tables.TABLES, f"{notebook} uses unregistered table {name!r}"
        for name in calls["write"]:
            assert tables.TABLES[name].notebook == notebook, f"{name} is registered to another notebook"


def test_every_registered_notebook_table_is_written() -> None:
    written = {name for calls in notebook_table_calls().values() for name in calls["write"]}
    for t in tables.TABLES.values():
        if t.notebook != "rllc":
            assert t.name in written, f"{t.name} is registered to {t.notebook} but no notebook writes it"


def test_write_checks_columns_and_read_says_what_is_missing(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="lacks column"):
        tables.write(tmp_path, "stages_L2", pd.DataFrame({"stage": ["LM1"]}))
    with pytest.raises(tables.MissingTable, match="01_llc_theory"):
        tables.read(tmp_path, "stages_L2")
    with pytest.raises(KeyError, match="no table named 'stage_L2'"):
        tables.read(tmp_path, "stage_L2")
    df = pd.DataFrame({"stage": ["LM1"], "start": [0], "end": [5], "llc_start": [1.0], "llc_end": [2.0],
                       "ends_at": ["max"], "trend": ["rising"], "extra": [1]})
    tables.write(tmp_path, "stages_L2", df)
    assert (tmp_path / "tables" / "stages_L2.csv").exists()
    pd.testing.assert_frame_equal(tables.read(tmp_path, "stages_L2"), df)


def test_compare_reports_equal_and_different_tables(tmp_path: Path) -> None:
    from rllc.report.compare import compare_runs, compare_table

    a = pd.DataFrame({"x": [1.0, 2.0], "y": ["a", "b"], "seconds": [1.0, 9.0]})
    assert compare_table(a, a.iloc[::-1].assign(seconds=[3.0, 4.0])) == "equal"  # order and timing ignored
    assert compare_table(a, a.assign(x=[1.0, 2.5])).startswith("x: 1 values differ")
    assert compare_table(a, a.assign(y=["a", "c"])).startswith("y: values differ")
    for run, value in ((tmp_path / "a", 1.0), (tmp_path / "b", 2.0)):
        tables.write(run, "checks_00", pd.DataFrame({"check": ["c"], "value": [value], "threshold": ["t"],
                                                     "pass": [True]}))
    result = compare_runs(tmp_path / "a", tmp_path / "b").set_index("table")["result"]
    assert result["checks_00"].startswith("value: 1 values differ") and result["stages_L2"] == "missing"
