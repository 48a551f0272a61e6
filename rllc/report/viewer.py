"""HTML pages showing each head's top tokens in context (like the paper's Figure 4 samples).

Each example shows the context before the query position with every token's background shaded
by the head's attention from that position (orange), the current token boxed, and the token to
be predicted in blue, with the pattern the classifier assigned and the loss increase under
ablation. One page per head under ``<run>/viewer/`` plus an index linking them.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from ..io import write_text
from ..run import Run, folder

STYLE = """
body { font-family: sans-serif; margin: 1.5em; max-width: 70em; }
.ex { font-family: monospace; white-space: pre-wrap; border-bottom: 1px solid #ddd; padding: .4em 0; }
.meta { color: #666; font-size: 80%; font-family: sans-serif; }
.cur { outline: 1px solid #333; }
.next { color: #fff; background: #1f77b4; }
table { border-collapse: collapse; } td, th { padding: .2em .6em; border-bottom: 1px solid #eee; text-align: left; }
"""


def _token_html(text: str, weight: float, cls: str = "") -> str:
    alpha = max(0.0, min(1.0, weight))
    style = f' style="background: rgba(255,127,14,{alpha:.2f})"' if alpha > 0.02 and cls != "next" else ""
    shown = html.escape(text).replace("\n", "⏎")
    if text.strip() == "":  # whitespace-only tokens: make the spaces visible
        shown = shown.replace(" ", "·")
    title = f' title="attention {weight:.3f}"' if cls != "next" else ' title="predicted token"'
    return f'<span class="{cls}"{style}{title}>{shown}</span>'


def example_html(tokens: Sequence[int], pos: int, attention: Sequence[float], decode: Callable[[int], str],
                 window: int = 48) -> str:
    """One token in context: ``window`` tokens before ``pos`` shaded by attention, then the next token."""
    start = max(0, pos - window + 1)
    scale = max(attention[start: pos + 1]) or 1.0
    parts = [_token_html(decode(int(tokens[j])), attention[j] / scale, "cur" if j == pos else "")
             for j in range(start, pos + 1)]
    parts.append(_token_html(decode(int(tokens[pos + 1])), 0.0, "next"))
    return "".join(parts)


def head_page(component: str, head_type: str, contexts: pd.DataFrame, tokens: Sequence[Sequence[int]],
              decode: Callable[[int], str], n: int = 40) -> str:
    """The HTML page of one head: its top ``n`` tokens in context (rows of ``contexts`` with
    columns rank, sample, pos, delta_loss, attention and, if classified, pattern)."""
    rows = contexts.sort_values("rank").head(n)
    body = [f"<h1>Head {html.escape(component)} — {html.escape(head_type)}</h1>",
            "<p>Top tokens in context by loss increase under mean ablation. Orange: the head's attention "
            "from the boxed token (scaled to its maximum in the window); blue: the token to predict.</p>"]
    if "pattern" in rows:
        counts = contexts["pattern"].value_counts(normalize=True)
        body.append("<p>Patterns over all tokens in context: " +
                    ", ".join(f"{html.escape(p)} {v:.0%}" for p, v in counts.items()) + "</p>")
    for r in rows.itertuples():
        meta = f"#{r.rank} Δloss {r.delta_loss:.2f}" + (f" · {html.escape(r.pattern)}" if hasattr(r, "pattern") else "")
        body.append(f'<div class="ex"><div class="meta">{meta}</div>'
                    f"{example_html(tokens[r.sample], r.pos, r.attention, decode)}</div>")
    head = f"<!doctype html><meta charset='utf-8'><title>{html.escape(component)}</title><style>{STYLE}</style>"
    return head + "\n".join(body)


def write_viewer(run_dir: Run | Path, contexts: pd.DataFrame, types: pd.Series, tokens: Sequence[Sequence[int]],
                 decode: Callable[[int], str], n: int = 40) -> Path:
    """Write ``<run>/viewer/<L>_<H>.html`` for every head and ``index.html``; returns the index."""
    out = folder(run_dir) / "viewer"
    links = []
    for comp, g in contexts.groupby("component", sort=False):
        name = comp.replace(":", "_") + ".html"
        write_text(out / name, head_page(comp, str(types.get(comp, "")), g, tokens, decode, n))
        top = g["pattern"].value_counts(normalize=True).head(2) if "pattern" in g else pd.Series(dtype=float)
        summary = ", ".join(f"{p} {v:.0%}" for p, v in top.items())
        links.append(f'<tr><td><a href="{name}">{html.escape(comp)}</a></td><td>{html.escape(str(types.get(comp, "")))}'
                     f"</td><td>{html.escape(summary)}</td></tr>")
    index = (f"<!doctype html><meta charset='utf-8'><title>heads</title><style>{STYLE}</style>"
             "<h1>Tokens in context per head</h1><table><tr><th>head</th><th>type</th><th>main patterns</th></tr>"
             + "\n".join(links) + "</table>")
    return write_text(out / "index.html", index)


def examples_table(classified: pd.DataFrame, tokens: Sequence[Sequence[int]], decode: Callable[[int], str],
                   components: Sequence[str], n: int = 3, width: int = 15) -> pd.DataFrame:
    """The top ``n`` tokens in context of each of ``components`` as text: the last ``width`` tokens
    of context, the predicted token, the max-attention token, the pattern and Δloss."""
    rows = []
    for comp in components:
        sub = classified[classified["component"] == comp].sort_values("rank").head(n)
        for r in sub.itertuples():
            seq = tokens[r.sample]
            rows.append({"component": comp, "rank": r.rank, "pattern": getattr(r, "pattern", ""),
                         "context": "…" + "".join(decode(t) for t in seq[max(0, r.pos - width + 1): r.pos + 1]),
                         "next": decode(seq[r.pos + 1]), "attends_to": decode(seq[r.max_attn]),
                         "delta_loss": round(float(r.delta_loss), 3)})
    return pd.DataFrame(rows)
