"""The README's API tour runs as written (on a small trained model instead of yours)."""

from __future__ import annotations

import re

from rllc import paths


def test_the_first_api_example_runs(trained) -> None:
    readme = (paths.REPO_ROOT / "README.md").read_text()
    section = readme.split("## Using the package on your own model", 1)[1]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    model, data = trained
    scope = {"model": model, "tokens": data, "code_tokens": data[::2]}  # "other data": a subsample
    exec(compile(block, "README.md", "exec"), scope)
    for name in ("full", "head", "pair"):
        result = scope[name]
        assert result.n_ok >= 1 and result.mean == result.mean  # a healthy chain, a finite estimate
    assert scope["head"].n_weights < scope["full"].n_weights


def test_every_relative_link_of_the_readme_and_docs_resolves() -> None:
    """Links a reader follows (notebooks, docs, figures) point at files of the repository."""
    broken = []
    for doc in [paths.REPO_ROOT / "README.md", *sorted((paths.REPO_ROOT / "docs").glob("*.md"))]:
        for target in re.findall(r"\]\(([^)\s]+)\)", doc.read_text()):
            if target.startswith(("http://", "https://", "#", "mailto:")):
                continue
            if not (doc.parent / target.split("#")[0]).exists():
                broken.append(f"{doc.name}: {target}")
    assert not broken, broken


def test_the_readme_holds_the_generated_results_and_stays_short() -> None:
    from rllc.report.publish import README_END, README_START

    text = (paths.REPO_ROOT / "README.md").read_text()
    inside = text.split(README_START)[1].split(README_END)[0]
    assert "**Scorecard**" in inside and "**Time per notebook**" in inside  # `make publish` filled it
    assert len(text.splitlines()) <= 250
