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
