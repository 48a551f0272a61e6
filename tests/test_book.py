"""The book's browser check (tests/book_check.py): that it catches a broken page, passes a clean
one, and, with ``make book-check``, passes every page of the built book."""

from __future__ import annotations

import os
from pathlib import Path

import book_check
import matplotlib.pyplot as plt
import pytest


def _need_chromium() -> None:
    if book_check.chromium() is None:
        if book_check.must_run():
            pytest.fail("CI=true: the book check needs Debian's chromium (.ci/run installs it)")
        pytest.skip("no chromium on this machine (apt-get install chromium); the book check is skipped")


def _page(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(2, 1))
    ax.plot([0, 1], [0, 1])
    fig.savefig(folder / "ok.png")
    plt.close(fig)
    (folder / "index.html").write_text(f"<html><head><title>t</title></head><body>{body}</body></html>")
    return folder


def test_the_check_fails_on_a_broken_page(tmp_path):
    _need_chromium()
    site = _page(tmp_path / "broken", '<p>an estimate $\\hat\\lambda$ left raw</p><img src="ok.png">'
                                      '<img src="missing.png"><script src="https://example.org/x.js"></script>')
    problems = book_check.check_site(site, search_word=None)
    joined = "\n".join(problems)
    assert "broken image missing.png" in joined
    assert "raw math left: $\\hat\\lambda$" in joined
    assert "external script https://example.org/x.js" in joined
    assert "asked the network for https://example.org/x.js" in joined
    assert "ok.png" not in joined  # the image that decoded is not reported


def test_the_check_passes_a_clean_page(tmp_path):
    _need_chromium()
    site = _page(tmp_path / "clean", '<p>no math here</p><img src="ok.png"><pre>$ echo "$HOME"</pre>')
    assert book_check.check_site(site, search_word=None) == []


@pytest.mark.book
def test_every_page_of_the_built_book_loads_offline():
    _need_chromium()
    site = os.environ.get("RLLC_BOOK_DIR")
    if not site:
        pytest.skip("RLLC_BOOK_DIR is not set: `make book-check` checks a built book")
    pages = book_check._pages(Path(site))
    problems = book_check.check_site(site)
    print(f"{len(pages)} pages checked in chromium")
    assert problems == [], "\n".join(problems)
    assert any(p.name.startswith("02_") for p in pages) and (Path(site) / "index.html").exists()
