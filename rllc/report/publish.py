"""The reader's edition: a run's executed notebooks, readable without running anything.

:func:`publish` copies each executed notebook of a run (``<run>/notebooks/NN_*.ipynb``), keeps its
outputs and figures, strips what changes on every execution (papermill's per-cell timings and
status, execution timestamps, widget state), and opens it with a provenance cell: the commit,
profile, date, machine and package versions that the runner stored in its metadata
(``rllc.runner.execution_provenance``). Beside the notebooks it writes ``landing.md``, the book's
landing tables (scorecard, claims by seed, the headline figure), all read from the run's tables.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from ..io import write_text
from . import tables

# cell metadata written anew by every execution (papermill's status and timings, Jupyter's
# execution timestamps, front-end view state); "tags" and the rest are kept
VOLATILE_CELL_METADATA = ("papermill", "execution", "ExecuteTime", "collapsed", "scrolled")
# notebook metadata written anew by every execution; "rllc" (the provenance) becomes the first cell
VOLATILE_NOTEBOOK_METADATA = ("papermill", "widgets", "rllc")
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
HEADLINE_FIGURE = "02_wrllc_heads"
PROVENANCE_TAG = "provenance"


class NotPublishable(ValueError):
    """A run whose notebooks cannot be published as they are (one line naming the fix)."""


def strip(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """``nb`` without what changes on every execution (in place; returned for chaining)."""
    for key in VOLATILE_NOTEBOOK_METADATA:
        nb.metadata.pop(key, None)
    for cell in nb.cells:
        for key in VOLATILE_CELL_METADATA:
            cell.metadata.pop(key, None)
        if cell.cell_type == "code":
            cell.outputs = [o for o in cell.outputs if WIDGET_MIME not in o.get("data", {})]
    return nb


def provenance_markdown(meta: dict[str, Any], notebook: str) -> str:
    """The provenance cell's text from a notebook's ``rllc`` metadata."""
    commit = (meta.get("commit") or "no git")[:10] + (" (uncommitted changes)" if meta.get("dirty") else "")
    minutes = float(meta.get("seconds", float("nan"))) / 60
    packages = ", ".join(f"{k} {v}" for k, v in sorted(meta.get("packages", {}).items()))
    return (f"> **Provenance of this page.** `{notebook}` executed by `rllc notebooks` with profile "
            f"`{meta.get('profile', '?')}` at commit `{commit}`, started {meta.get('started', '?')} "
            f"({minutes:.1f} min) on {meta.get('machine', '?')}; Python {meta.get('python', '?')}; {packages}. "
            f"Every number and figure below was computed by that run; rerun it with "
            f"`rllc notebooks --profile {meta.get('profile', 'cpu')}`.")


def publish_notebook(source: Path, out: Path) -> Path:
    """One executed notebook, stripped and opened with its provenance cell, written to ``out``."""
    nb = nbformat.read(source, as_version=4)
    meta = nb.metadata.get("rllc")
    if not meta:
        raise NotPublishable(f"{source} carries no execution provenance (it ran through no `rllc notebooks` "
                             f"of this version, or a cell failed); execute it again with `rllc notebooks`")
    nb = strip(nb)
    cell = nbformat.v4.new_markdown_cell(provenance_markdown(dict(meta), source.name))
    cell.metadata["tags"] = [PROVENANCE_TAG]
    nb.cells.insert(0, cell)
    for i, c in enumerate(nb.cells):  # ids differ between conversions of one source; make them stable
        c["id"] = f"cell-{i:03d}"
    nbformat.validate(nb)
    return write_text(out, nbformat.writes(nb))


def _markdown_table(df: pd.DataFrame) -> str:
    cells = df.astype(str).map(lambda s: s.replace("|", "\\|").replace("\n", " "))
    head = "| " + " | ".join(map(str, df.columns)) + " |"
    rule = "|" + "---|" * len(df.columns)
    return "\n".join([head, rule, *("| " + " | ".join(r) + " |" for r in cells.itertuples(index=False))])


def landing_markdown(run: Path, figure: str | None) -> str:
    """The landing page's tables, from the run: the scorecard, claims by seed, the headline figure."""
    card = tables.read(run, "claims")
    parts = ["## Scorecard", "",
             _markdown_table(card[["claim", "status", "value", "threshold"]].fillna("")), ""]
    by_seed = tables.read_optional(run, "claims_by_seed")
    if by_seed is not None and len(by_seed):
        cols = [c for c in ("claim", "holds", "pass_seeds", "fail_seeds", "undefined_seeds") if c in by_seed]
        parts += ["## Claims by seed", "", _markdown_table(by_seed[cols].fillna("")), ""]
    if figure:
        parts += ["## The headline figure", "", f"![wrLLC of every head over training]({figure})", ""]
    return "\n".join(parts)


def publish(run_dir: str | Path, out_dir: str | Path) -> list[Path]:
    """Every executed notebook of ``run_dir`` into ``out_dir`` (replacing older copies), with
    ``landing.md`` and the headline figure; returns the files written."""
    run = Path(run_dir)
    sources = sorted((run / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise NotPublishable(f"{run / 'notebooks'} holds no executed notebook; run `rllc notebooks` first")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("[0-9][0-9]_*.ipynb"):
        old.unlink()
    written = [publish_notebook(s, out / s.name) for s in sources]
    figure = run / "figures" / f"{HEADLINE_FIGURE}.png"
    name = None
    if figure.exists():
        name = f"{HEADLINE_FIGURE}.png"
        shutil.copyfile(figure, out / name)
        written.append(out / name)
    if tables.path(run, "claims").exists():
        written.append(write_text(out / "landing.md", landing_markdown(run, name)))
    return written
