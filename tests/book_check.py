"""Check a built book in a real headless browser: Debian's chromium, driven by Playwright.

Every page is opened from disk with the network blocked (any request that is not a file: or data:
URL is aborted and reported). On each page, after MathJax has finished:

* every ``<img>`` must have decoded (``naturalWidth > 0``);
* no raw ``$…$`` or ``\\(…\\)`` may remain in the text outside code;
* no ``<script src>`` or ``<link href>`` may point off the machine;
* nothing may have asked for the network.

The search page must find a word of the book. :func:`check_site` returns the problems found, one
line each (an empty list: the book passed).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
LOCAL = re.compile(r"^(file:|data:|blob:|about:)")

# text nodes outside code, scripts and MathJax's own output; then raw TeX delimiters left in them
_PAGE_JS = r"""
async () => {
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) { await MathJax.startup.promise; }
  const problems = [];
  for (const img of Array.from(document.images)) {
    img.loading = "eager";
    try { await img.decode(); } catch (e) {}
    if (!(img.complete && img.naturalWidth > 0)) { problems.push("broken image " + img.getAttribute("src")); }
  }
  const skip = "PRE,CODE,SCRIPT,STYLE,MJX-CONTAINER,TEXTAREA,NOSCRIPT";
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  let text = "";
  for (let n = walker.nextNode(); n; n = walker.nextNode()) {
    let p = n.parentElement, inside = false;
    while (p) { if (skip.split(",").includes(p.tagName)) { inside = true; break; } p = p.parentElement; }
    if (!inside) { text += n.textContent + "\n"; }
  }
  const raw = text.match(/\$[^$\s][^$\n]*\$|\\\([^\n]*?\\\)|\\\[[^\n]*?\\\]/g) || [];
  for (const r of raw.slice(0, 3)) { problems.push("raw math left: " + r.slice(0, 60)); }
  for (const s of Array.from(document.querySelectorAll("script[src]"))) {
    if (/^(https?:)?\/\//.test(s.getAttribute("src"))) { problems.push("external script " + s.getAttribute("src")); }
  }
  for (const l of Array.from(document.querySelectorAll("link[href]"))) {
    if (/^(https?:)?\/\//.test(l.getAttribute("href"))) { problems.push("external link " + l.getAttribute("href")); }
  }
  return problems;
}
"""


def chromium() -> str | None:
    """The system chromium binary, or None."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if "_static" not in p.parts and p.name != "genindex.html")


def check_site(site: str | Path, search_word: str | None = "wrLLC", screenshots: dict[str, Path] | None = None,
               browser: str | None = None) -> list[str]:
    """Problems of the built book at ``site`` (a folder of HTML), one line each; [] when it passes.
    ``screenshots`` maps a page (relative path) to a PNG to write of it."""
    from playwright.sync_api import sync_playwright

    site = Path(site).resolve()
    pages = _pages(site)
    if not pages:
        return [f"no HTML page under {site}"]
    exe = browser or chromium()
    if exe is None:
        return ["no chromium binary"]
    problems: list[str] = []
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=["--no-sandbox", "--allow-file-access-from-files"])
        context = b.new_context(viewport={"width": 1280, "height": 900})
        asked: list[str] = []

        def block(route) -> None:
            if LOCAL.match(route.request.url):
                route.continue_()
            else:
                asked.append(route.request.url)
                route.abort()

        context.route("**/*", block)
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        for p in pages:
            rel = p.relative_to(site).as_posix()
            asked.clear()
            errors.clear()
            page.goto(p.as_uri(), wait_until="load")
            found = page.evaluate(_PAGE_JS)
            problems += [f"{rel}: {f}" for f in found]
            problems += [f"{rel}: asked the network for {u}" for u in asked[:3]]
            problems += [f"{rel}: script error {e[:120]}" for e in errors[:3]]
            if screenshots and rel in screenshots:
                page.screenshot(path=str(screenshots[rel]), full_page=False)
        if search_word and (site / "search.html").exists():
            page.goto((site / "search.html").as_uri() + f"?q={search_word}", wait_until="load")
            try:
                page.wait_for_selector("#search-results ul.search li", timeout=15000)
            except Exception:  # noqa: BLE001 - Playwright's timeout: reported as a problem
                problems.append(f"search.html: no result for {search_word!r}")
        b.close()
    return problems


def must_run() -> bool:
    """Under CI the check never skips."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")
