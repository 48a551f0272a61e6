"""The reader's edition: a run's executed notebooks, readable without running anything.

:func:`publish` copies each executed notebook of a run (``<run>/notebooks/NN_*.ipynb``), keeps its
outputs and figures, strips what changes on every execution (papermill's per-cell timings and
status, execution timestamps, widget state), and opens it with a provenance cell: the commit,
profile, date, machine and package versions that the runner stored in its metadata
(``rllc.runner.execution_provenance``). Beside the notebooks it writes ``landing.md``, the book's
landing tables (scorecard, claims by seed, the headline figure), all read from the run's tables.

:func:`update_readme` writes the same results into the README between two marker lines: the
scorecard, claims by seed, the claims under both head-type rules and each notebook's fresh time,
under one line of provenance, so that no number in the README is typed by hand.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import nbformat
import pandas as pd

from .. import numerics, paths
from ..io import write_text
from . import tables
from .claims import claim_number

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
            + (f"Numerics: {numerics.summary_line(meta['numerics'])}. " if meta.get("numerics") else "")
            + f"Every number and figure below was computed by that run; rerun it with "
            f"`rllc notebooks --profile {meta.get('profile', 'cpu')}`.")


def relative_run_dir(run: Path) -> str:
    """The run directory as a reader's checkout names it: relative to the repository root."""
    return os.path.relpath(Path(run).resolve(), paths.REPO_ROOT)


def localise(nb: nbformat.NotebookNode, run: Path) -> nbformat.NotebookNode:
    """``nb`` with the absolute run directory of the machine that executed it written relative to
    the repository, in every cell's source (papermill's injected parameters) and text output (the
    setup cell's line); in place, returned for chaining."""
    absolute, relative = str(Path(run).resolve()), relative_run_dir(run)
    for cell in nb.cells:
        cell.source = cell.source.replace(absolute, relative)
        for output in cell.get("outputs", []):
            if "text" in output:
                output["text"] = output["text"].replace(absolute, relative)
            for mime in ("text/plain", "text/markdown", "text/html"):
                if mime in output.get("data", {}):
                    output["data"][mime] = output["data"][mime].replace(absolute, relative)
    return nb


def publish_notebook(source: Path, out: Path) -> Path:
    """One executed notebook, stripped and opened with its provenance cell, written to ``out``;
    the run directory (``source``'s grandparent) is shown relative to the repository."""
    nb = nbformat.read(source, as_version=4)
    meta = nb.metadata.get("rllc")
    if not meta:
        raise NotPublishable(f"{source} carries no execution provenance (it ran through no `rllc notebooks` "
                             f"of this version, or a cell failed); execute it again with `rllc notebooks`")
    nb = localise(strip(nb), source.parent.parent)
    cell = nbformat.v4.new_markdown_cell(provenance_markdown(dict(meta), source.name))
    cell.metadata["tags"] = [PROVENANCE_TAG]
    nb.cells.insert(0, cell)
    for i, c in enumerate(nb.cells):  # ids differ between conversions of one source; make them stable
        c["id"] = f"cell-{i:03d}"
    nbformat.validate(nb)
    return write_text(out, nbformat.writes(nb))


README_START = ("<!-- rllc publish --readme: the run's results start here "
                "(generated: edit nothing before the end marker) -->")
README_END = "<!-- rllc publish --readme: end -->"


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


def _provenance_of(sources: list[Path]) -> pd.DataFrame:
    rows = []
    for source in sources:
        meta = dict(nbformat.read(source, as_version=4).metadata.get("rllc") or {})
        if not meta:
            raise NotPublishable(f"{source} carries no execution provenance; execute it again with `rllc notebooks`")
        rows.append({"notebook": source.stem, "commit": (meta.get("commit") or "no git")[:7]
                     + ("+" if meta.get("dirty") else ""), "profile": meta.get("profile", "?"),
                     "started": str(meta.get("started", "?"))[:16].replace("T", " "),
                     "minutes": float(meta.get("seconds", float("nan"))) / 60, "machine": meta.get("machine", "?")})
    return pd.DataFrame(rows)


def read_before(path: str | Path) -> pd.DataFrame:
    """An earlier scorecard to show beside the run's: one row per claim number, with ``status``,
    ``by_seed`` (06's "n of m", may be empty) and ``criteria_version``; refused in one line if a
    column is missing."""
    before = pd.read_csv(path, dtype=str).fillna("")
    missing = {"claim", "status", "by_seed", "criteria_version"} - set(before.columns)
    if missing:
        raise NotPublishable(f"{path} lacks the column(s) {sorted(missing)}; an earlier scorecard needs "
                             f"claim, status, by_seed and criteria_version")
    return before.set_index(before["claim"].map(claim_number))


def _beside(df: pd.DataFrame, before: pd.DataFrame | None, field: str, after: str) -> pd.DataFrame:
    """``df`` with the earlier verdict (``before[field]``) in a column right after ``after``."""
    if before is None:
        return df
    versions = "/".join(sorted(set(before["criteria_version"])))
    label = f"before (criteria v{versions})"
    out = df.copy()
    out.insert(list(out.columns).index(after) + 1, label,
               [before[field].get(claim_number(c), "—") or "—" for c in out["claim"]])
    return out


def results_markdown(run: Path, before: pd.DataFrame | None = None) -> str:
    """The README's results block: provenance, scorecard, claims by seed, claims under both type
    rules, and the fresh time of each notebook with their sum, all read from ``run``. With
    ``before`` (:func:`read_before`), each claim's earlier verdict stands beside the new one."""
    sources = sorted((run / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    if not sources:
        raise NotPublishable(f"{run / 'notebooks'} holds no executed notebook; run `rllc notebooks` first")
    prov = _provenance_of(sources)
    commits = ", ".join(f"`{c}`" for c in dict.fromkeys(prov["commit"]))
    machines = "; ".join(dict.fromkeys(prov["machine"]))
    parts = [f"Profile `{prov['profile'].iloc[0]}`, notebooks {prov['notebook'].iloc[0][:2]}–"
             f"{prov['notebook'].iloc[-1][:2]} executed {prov['started'].min()} to {prov['started'].max()} UTC "
             f"at commit {commits} on {machines} (a `+` marks uncommitted changes).", ""]
    card = tables.read(run, "claims")
    cols = [c for c in ("claim", "status", "value", "threshold", "diagnosis") if c in card]
    parts += ["**Scorecard**", "", _markdown_table(_beside(card[cols].fillna(""), before, "status", "status")), ""]
    by_seed = tables.read_optional(run, "claims_by_seed")
    if by_seed is not None and len(by_seed):
        cols = [c for c in ("claim", "holds", "pass_seeds", "fail_seeds", "undefined_seeds") if c in by_seed]
        parts += ["**Claims by seed** (06's protocol)", "",
                  _markdown_table(_beside(by_seed[cols].fillna(""), before, "by_seed", "holds")), ""]
    rules = tables.read_optional(run, "claims_by_type_rule")
    if rules is not None and len(rules):
        parts += ["**Claims under both head-type rules**", "",
                  _markdown_table(rules[["claim", "rule", "status", "value"]].fillna("")), ""]
    times = prov[["notebook", "minutes"]].copy()
    total = times["minutes"].sum()
    times["minutes"] = times["minutes"].map(lambda m: f"{m:.1f}")
    times.loc[len(times)] = ["sum", f"{total:.1f} ({int(total // 60)} h {int(round(total % 60))} min)"]
    parts += ["**Time per notebook** as executed (wall time, from each notebook's provenance)", "",
              _markdown_table(times), ""]
    return "\n".join(parts)


def update_readme(readme: str | Path, run_dir: str | Path, before: str | Path | None = None) -> Path:
    """Replace what lies between the README's two marker lines with :func:`results_markdown`
    (with the earlier scorecard of the file ``before`` beside the run's, if given)."""
    path = Path(readme)
    text = path.read_text()
    if text.count(README_START) != 1 or text.count(README_END) != 1 or text.index(README_START) > text.index(
            README_END):
        raise NotPublishable(f"{path} lacks the results markers (one line each, in this order): "
                             f"{README_START!r} and {README_END!r}")
    earlier = read_before(before) if before is not None else None
    head, rest = text.split(README_START)
    _, tail = rest.split(README_END)
    return write_text(path, f"{head}{README_START}\n{results_markdown(Path(run_dir), earlier)}{README_END}{tail}")


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
