"""The house style of every figure: seaborn's theme, colours per head type and pattern, stage bands,
and ``savefig``, which stamps each figure with what made it (profile, run directory, package
version and commit, date, and for a figure of LLC estimates the SGLD settings, recorded on it by
``mark_sampler`` from the ``SamplerConfig`` the estimates were made with)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from ... import provenance
from ...analysis import head_types as ht
from ...config import SamplerConfig
from ...io import atomic_write
from ...run import Run, folder, run_profile

SCORE_LABELS = {"previous_token": "previous-token score", "current_token": "current-token score",
                "induction": "induction score", "icl": "ICL score (late − early loss)"}


TYPE_COLORS = {ht.PREVIOUS_TOKEN: "#d62728", ht.CURRENT_TOKEN: "#9467bd", ht.INDUCTION: "#2ca02c",
               ht.DYCK: "#ff7f0e", ht.MULTIGRAM: "#1f77b4"}


PATTERN_COLORS = {"induction": "#2ca02c", "dyck": "#ff7f0e", "skip_ngram": "#bcbd22", "ngram": "#1f77b4",
                  "unexplained": "#c7c7c7"}


_SAMPLER_ATTR = "_rllc_sampler_line"


def use_style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130, "axes.titlesize": 11})


def savefig(fig: plt.Figure, run: Run | Path, name: str) -> Path:
    """Stamp ``fig`` (profile, run, commit, date; sampler settings if marked) and write
    ``<run>/figures/<name>.png`` atomically."""
    where = folder(run)
    profile = run.cfg.profile if isinstance(run, Run) else run_profile(where)
    lines = [provenance.stamp_line(profile, str(where))]
    if getattr(fig, _SAMPLER_ATTR, None):
        lines.insert(0, getattr(fig, _SAMPLER_ATTR))
    # below everything already drawn (legends and notes placed under the axes included)
    bottom = fig.get_tightbbox(fig.canvas.get_renderer()).y0 / fig.get_figheight()
    fig.text(0.01, min(bottom, 0.0) - 0.01, "\n".join(lines), fontsize=7, color="0.35", ha="left", va="top")
    path = where / "figures" / f"{name}.png"
    return atomic_write(path, lambda p: fig.savefig(p, format="png", bbox_inches="tight"))


def sampler_stamp(settings: SamplerConfig) -> str:
    """One line naming the SGLD settings of an estimate (stamped on every LLC figure)."""
    s = settings
    return (f"SGLD ε={s.epsilon:g}, γ={s.gamma:g}, nβ={s.nbeta:g}, {s.chains} chains × {s.draws} draws, "
            f"burn-in {s.burnin}, batch {s.batch_size}, {order_label(s)}, {reference_label(s)}, seed {s.seed}")


def order_label(s: SamplerConfig) -> str:
    """How the chains' batches were drawn: what their spread covers."""
    if s.batch_order == "per_chain":
        return "each chain its own batch order"
    return "one batch order shared by all chains"


def reference_label(s: SamplerConfig) -> str:
    if s.reference == "paired":
        return "L(w*) paired per batch"
    return f"L(w*) from {s.init_loss_batches} batches"


def mark_sampler(fig: plt.Figure, settings: SamplerConfig) -> None:
    """Record the SGLD settings a figure's estimates were made with (``savefig`` stamps them)."""
    setattr(fig, _SAMPLER_ATTR, sampler_stamp(settings))


def log_steps(ax: plt.Axes) -> None:
    """Log-scaled training-step axis with plain numbers (1, 10, 100, 1000, ...)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def head_palette(n_heads: int) -> list:
    return sns.color_palette("tab10" if n_heads <= 10 else "tab20", n_heads)


def stage_bands(ax: plt.Axes, stages: pd.DataFrame, label: bool = True) -> None:
    """Alternating shaded bands LM1..LMk (as in the paper's Figure 13)."""
    xlo, xhi = ax.get_xlim()
    for i, row in enumerate(stages.itertuples()):
        ax.axvspan(max(row.start, 1), row.end, color="0.85" if i % 2 == 0 else "0.95", zorder=0, linewidth=0)
        a, b = max(row.start, 1, xlo), min(row.end, xhi)  # label the visible part of the band only
        if label and a < b:
            ax.text((a * b) ** 0.5 if ax.get_xscale() == "log" else (a + b) / 2,
                    1.0, row.stage, transform=ax.get_xaxis_transform(), ha="center", va="bottom", fontsize=8)
    ax.set_xlim(xlo, xhi)


def boundary_lines(ax: plt.Axes, stages: pd.DataFrame | None, **kw: object) -> None:
    """Vertical lines at the inner stage boundaries (each stage's end but the last)."""
    if stages is None or len(stages) < 2:
        return
    for i, end in enumerate(stages["end"].iloc[:-1]):
        ax.axvline(max(int(end), 1), label=kw.get("label") if i == 0 else None,
                   **{k: v for k, v in kw.items() if k != "label"})


def line_with_se(ax: plt.Axes, d: pd.DataFrame, color: object, **kw: object) -> None:
    """``d``'s value against step, ± its ``se`` shaded when it has one."""
    ax.plot(d["step"], d["value"], color=color, **kw)
    if "se" in d and d["se"].notna().any():
        ax.fill_between(d["step"], d["value"] - d["se"], d["value"] + d["se"], color=color, alpha=0.12)


def type_linestyles(components: Sequence[str], types: pd.Series) -> dict[str, str]:
    """Heads of the same type get distinct line styles so they stay tellable apart."""
    styles, seen = {}, {}
    for c in components:
        t = types.get(c, ht.MULTIGRAM)
        styles[c] = ["-", "--", ":", "-."][seen.get(t, 0) % 4]
        seen[t] = seen.get(t, 0) + 1
    return styles
