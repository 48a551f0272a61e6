"""Every figure in one house style (seaborn), saved atomically under the run directory.

:func:`savefig` stamps each figure with what made it: profile, run directory, package version
and commit, date, and, for LLC figures, the SGLD settings (a figure function that draws
estimates marks its figure with :func:`mark_sampler`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib import ticker

from .. import provenance
from ..analysis import head_types as ht
from ..analysis.clustering import layer_of
from ..analysis.patterns import PATTERNS
from ..io import atomic_write
from ..run import Run, folder, run_profile

SCORE_LABELS = {"previous_token": "previous-token score", "current_token": "current-token score",
                "induction": "induction score", "icl": "ICL score (late − early loss)"}


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130, "axes.titlesize": 11})


_SAMPLER_ATTR = "_rllc_sampler_line"


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


def log_steps(ax: plt.Axes) -> None:
    """Log-scaled training-step axis with plain numbers (1, 10, 100, 1000, ...)."""
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:,.0f}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def head_palette(n_heads: int) -> list:
    return sns.color_palette("tab10" if n_heads <= 10 else "tab20", n_heads)


def loss_curves(log: pd.DataFrame, checkpoints: dict[str, Sequence[int]] | None = None) -> plt.Figure:
    """Train and test loss per model over steps (log x-axis), checkpoints as ticks on the axis."""
    models = list(dict.fromkeys(log["model"]))
    fig, axes = plt.subplots(1, len(models), figsize=(4.2 * len(models), 3.4), sharey=True, squeeze=False)
    for ax, name in zip(axes[0], models, strict=True):
        sub = log[(log["model"] == name) & (log["step"] > 0)]
        sns.lineplot(sub, x="step", y="loss", hue="split", ax=ax, hue_order=["train", "test"],
                     marker=None, linewidth=1.2)
        if checkpoints and name in checkpoints:
            ymin = ax.get_ylim()[0]
            ax.plot([s for s in checkpoints[name] if s > 0], [ymin] * sum(s > 0 for s in checkpoints[name]),
                    "|", color="0.3", markersize=8, label="checkpoints")
        log_steps(ax)
        ax.set_title(f"{name}")
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("loss (nats / token)")
    fig.tight_layout()
    return fig


def score_curves(behaviour: pd.DataFrame, scores: Sequence[str] = ("previous_token", "induction", "current_token"),
                 log_x: bool = True) -> plt.Figure:
    """One row per score type, one column per layer, one line per head."""
    heads = behaviour[behaviour["layer"] >= 0]
    layers = sorted(heads["layer"].unique())
    n_heads = int(heads["head"].max()) + 1
    fig, axes = plt.subplots(len(scores), len(layers), figsize=(4.6 * len(layers), 2.7 * len(scores)),
                             sharex=True, squeeze=False)
    palette = head_palette(n_heads)
    for i, score in enumerate(scores):
        for j, layer in enumerate(layers):
            ax = axes[i][j]
            sub = heads[(heads["score"] == score) & (heads["layer"] == layer)]
            for h in range(n_heads):
                d = sub[sub["head"] == h].sort_values("step")
                ax.plot(d["step"].clip(lower=1), d["value"], color=palette[h], label=f"{layer}:{h}", linewidth=1.3)
            if log_x:
                log_steps(ax)
            ax.set_title(f"layer {layer}: {SCORE_LABELS[score]}")
            if i == len(scores) - 1:
                ax.set_xlabel("training step")
            if i == 0:
                ax.legend(fontsize=7, ncol=2, loc="upper left")
    fig.tight_layout()
    return fig


def icl_curve(behaviour: pd.DataFrame, label: str = "") -> plt.Figure:
    d = behaviour[behaviour["score"] == "icl"].sort_values("step")
    fig, ax = plt.subplots(figsize=(5.5, 3.2))
    ax.plot(d["step"].clip(lower=1), d["value"], marker="o", markersize=3)
    ax.axhline(0, color="0.5", linewidth=0.8)
    log_steps(ax)
    ax.set_xlabel("training step")
    ax.set_ylabel(SCORE_LABELS["icl"])
    ax.set_title(f"In-context learning score{(' — ' + label) if label else ''}")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# LLC figures: every one carries the sampler settings it was made with


def sampler_stamp(settings: dict) -> str:
    """One line naming the SGLD settings of an estimate (stamped on every LLC figure)."""
    s = settings
    return (f"SGLD ε={s['epsilon']:g}, γ={s['gamma']:g}, nβ={s['nbeta']:g}, {s['chains']} chains × {s['draws']} draws, "
            f"burn-in {s['burnin']}, batch {s['batch_size']}, {_order(s)}, {_reference(s)}, seed {s['seed']}")


def _order(s: dict) -> str:
    """How the chains' batches were drawn: what their spread covers."""
    if s.get("batch_order", "shared") == "per_chain":
        return "each chain its own batch order"
    return "one batch order shared by all chains"


def _reference(s: dict) -> str:
    if s.get("reference", "init") == "paired":
        return "L(w*) paired per batch"
    return f"L(w*) from {s['init_loss_batches']} batches"


def mark_sampler(fig: plt.Figure, settings: dict) -> None:
    """Record the SGLD settings a figure's estimates were made with (``savefig`` stamps them)."""
    setattr(fig, _SAMPLER_ATTR, sampler_stamp(settings))


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


def llc_curve(estimates: pd.DataFrame, settings: dict, stages: pd.DataFrame | None = None,
              loss: pd.DataFrame | None = None, title: str = "", log_x: bool = True) -> plt.Figure:
    """LLC (mean ± std over healthy chains) over training, with stage bands and the test loss."""
    d = estimates.sort_values("step")
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    x = d["step"].clip(lower=1)
    ax.plot(x, d["llc_mean"], marker="o", markersize=3, color="C0", label="LLC (healthy chains)")
    ax.fill_between(x, d["llc_mean"] - d["llc_std"], d["llc_mean"] + d["llc_std"], color="C0", alpha=0.2,
                    label=f"± std across chains ({_order(settings)})")
    bad = d[d["n_ok"] < d["n_chains"]]
    if len(bad):
        ax.scatter(bad["step"].clip(lower=1), bad["llc_mean"], marker="x", color="C3", zorder=5,
                   label="some chains flagged")
    if log_x:
        log_steps(ax)
    if stages is not None and len(stages):
        stage_bands(ax, stages)
    ax.set_xlabel("training step")
    ax.set_ylabel("estimated LLC", color="C0")
    if loss is not None and len(loss):
        ax2 = ax.twinx()
        lo = loss.sort_values("step")
        ax2.plot(lo["step"].clip(lower=1), lo["loss"], color="C1", linewidth=1.2, label="test loss")
        ax2.set_ylabel("test loss", color="C1")
        ax2.grid(False)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_title(title, pad=14)
    fig.tight_layout()
    mark_sampler(fig, settings)
    return fig


def calibration_traces(traces: pd.DataFrame, estimates: pd.DataFrame, base: dict) -> plt.Figure:
    """Loss rise over L(w*) along the chains, one panel per (epsilon, nbeta), estimate in the title."""
    eps = sorted(traces["epsilon"].unique())
    nbs = sorted(traces["nbeta"].unique())
    fig, axes = plt.subplots(len(eps), len(nbs), figsize=(3.2 * len(nbs), 2.3 * len(eps)), sharex=True,
                             squeeze=False)
    for i, e in enumerate(eps):
        for j, b in enumerate(nbs):
            ax = axes[i][j]
            sub = traces[(traces["epsilon"] == e) & (traces["nbeta"] == b)]
            for c, g in sub.groupby("chain"):
                ax.plot(g["sgld_step"], g["rise"], linewidth=0.8, color=f"C{c}")
            ax.axhline(0, color="0.4", linewidth=0.7)
            est = estimates[(estimates["epsilon"] == e) & (estimates["nbeta"] == b)].iloc[0]
            flag = " ⚑" if est["n_ok"] < est["n_chains"] else ""
            ax.set_title(f"ε={e:g}, nβ={b:g}: λ̂={est['llc_mean']:.3g}{flag}", fontsize=9)
            if i == len(eps) - 1:
                ax.set_xlabel("SGLD step")
            if j == 0:
                ax.set_ylabel("L − L(w*)")
    fig.tight_layout()
    mark_sampler(fig, {**base, "epsilon": float("nan"), "nbeta": float("nan")})
    return fig


def known_vs_truth(table: pd.DataFrame) -> plt.Figure:
    """Estimated against true learning coefficients (log-log), with the ±10% band."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    lo, hi = table["truth"].min() * 0.7, table["truth"].max() * 1.4
    grid = np.geomspace(lo, hi, 50)
    ax.plot(grid, grid, color="0.3", linewidth=0.8)
    ax.fill_between(grid, grid * 0.9, grid * 1.1, color="0.85", label="±10%")
    for i, (fam, g) in enumerate(table.groupby("family")):
        ax.errorbar(g["truth"], g["estimate"], yerr=2 * g["sem"], fmt="o", color=f"C{i}", label=fam, capsize=2)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("true λ")
    ax.set_ylabel("estimated λ̂ (± 2 s.e.)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Per-head rLLCs, head classification and clustering (notebook 02)

TYPE_COLORS = {ht.PREVIOUS_TOKEN: "#d62728", ht.CURRENT_TOKEN: "#9467bd", ht.INDUCTION: "#2ca02c",
               ht.DYCK: "#ff7f0e", ht.MULTIGRAM: "#1f77b4"}
PATTERN_COLORS = {"induction": "#2ca02c", "dyck": "#ff7f0e", "skip_ngram": "#bcbd22", "ngram": "#1f77b4",
                  "unexplained": "#c7c7c7"}


def _type_linestyles(components: Sequence[str], types: pd.Series) -> dict[str, str]:
    """Heads of the same type get distinct line styles so they stay tellable apart."""
    styles, seen = {}, {}
    for c in components:
        t = types.get(c, ht.MULTIGRAM)
        styles[c] = ["-", "--", ":", "-."][seen.get(t, 0) % 4]
        seen[t] = seen.get(t, 0) + 1
    return styles


def head_llc_curves(estimates: pd.DataFrame, types: pd.Series, settings: dict, stages: pd.DataFrame | None = None,
                    title: str = "", value: str = "llc_mean", ylabel: str = "wrLLC",
                    min_step: int = 1) -> plt.Figure:
    """Figure 2 analogue: one panel per layer, one line per head coloured by behavioural type,
    ± std across chains shaded, stage bands behind.

    Checkpoints before ``min_step`` are left out (default: step 0, the random initialisation,
    which is no local minimum, so its SGLD estimates are noisy and often flagged; a log step axis
    would also give it half the width). The figure says so; the tables keep every estimate.

    Lines join the healthy estimates only; an estimate with a flagged chain is a black × (its
    mean over the remaining chains), and the y-axis is fitted to the healthy estimates, so a
    flagged outlier (typically at initialisation, which is no minimum) sits clipped at the edge
    instead of squashing every curve."""
    heads = estimates[estimates["component"].str.contains(":")].copy()
    omitted = sorted(heads.loc[heads["step"] < min_step, "step"].unique())
    if len(omitted) < heads["step"].nunique():
        heads = heads[heads["step"] >= min_step]
    else:
        omitted = []
    heads["layer"] = layer_of(heads["component"])
    layers = sorted(heads["layer"].unique())
    fig, axes = plt.subplots(1, len(layers), figsize=(5.4 * len(layers), 4.6), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        sub = heads[heads["layer"] == layer]
        comps = sorted(sub["component"].unique(), key=lambda c: int(c.split(":")[1]))
        ls = _type_linestyles(comps, types)
        healthy_all = sub[sub["n_ok"] == sub["n_chains"]] if "n_ok" in sub else sub
        for c in comps:
            d = sub[sub["component"] == c].sort_values("step")
            color = TYPE_COLORS.get(types.get(c, ht.MULTIGRAM), "0.4")
            ok = d[d["n_ok"] == d["n_chains"]] if "n_ok" in d else d
            x = ok["step"].clip(lower=1)
            ax.plot(x, ok[value], color=color, linestyle=ls[c], linewidth=1.5, label=f"{c} {types.get(c, '')}")
            if "llc_std" in ok and value == "llc_mean":
                ax.fill_between(x, ok[value] - ok["llc_std"], ok[value] + ok["llc_std"], color=color, alpha=0.08)
        flagged = sub[sub["n_ok"] < sub["n_chains"]] if "n_ok" in sub else sub.iloc[:0]
        vals = healthy_all[value].dropna()
        if len(vals):
            lo, hi = float(vals.min()), float(vals.max())
            pad = 0.08 * (hi - lo or abs(hi) or 1.0)
            lo, hi = lo - pad, hi + pad
            ax.set_ylim(lo, hi)
            if len(flagged):
                ax.scatter(flagged["step"].clip(lower=1), flagged[value].clip(lo, hi), marker="x", color="k",
                           zorder=5, label=f"flagged chain(s) ({len(flagged)}; clipped to the axes)")
        log_steps(ax)
        shown = sub["step"].clip(lower=1)
        ax.set_xlim(float(shown.min()) / 1.25, float(shown.max()) * 1.25)
        if stages is not None and len(stages):
            stage_bands(ax, stages)
        ax.set_title(f"layer {layer}", pad=14)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=6.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    if omitted:
        title = f"{title}{'  ' if title else ''}(step {', '.join(map(str, omitted))} not shown: initialisation)"
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    mark_sampler(fig, settings)
    return fig


def score_distribution(scores: pd.DataFrame, report: pd.DataFrame) -> plt.Figure:
    """The type rule's measures of every head at the last checkpoint (strip plot per measure; tidy
    rows component, score, value) with threshold and chance."""
    fig, axes = plt.subplots(1, len(report), figsize=(3.2 * len(report), 3.0), squeeze=False)
    for ax, r in zip(axes[0], report.itertuples(), strict=True):
        d = scores[scores["score"] == r.score]
        ax.scatter(np.zeros(len(d)) + np.random.default_rng(0).uniform(-0.15, 0.15, len(d)), d["value"],
                   c=["C0" if c.startswith("0:") else "C2" for c in d["component"]], s=18)
        for _, row in d[d["value"] > r.threshold].iterrows():
            ax.annotate(row["component"], (0.18, row["value"]), fontsize=7)
        ax.axhline(r.threshold, color="C3", linestyle="--", linewidth=1, label=f"threshold {r.threshold:g}")
        ax.axhline(r.chance, color="0.5", linestyle=":", linewidth=1, label=f"uniform {r.chance:.3f}")
        ax.set_xticks([])
        ax.set_xlim(-0.5, 0.8)
        ax.set_title(SCORE_LABELS.get(r.score, r.score), fontsize=9)
        ax.legend(fontsize=6.5, loc="upper right")
    axes[0][0].set_ylabel("measure at the last checkpoint (blue L0, green L1)")
    fig.tight_layout()
    return fig


def pattern_fractions(summary: pd.DataFrame, types: pd.Series) -> plt.Figure:
    """Figure 9 analogue: stacked fractions of each head's tokens in context per pattern."""

    d = summary.set_index("component")
    d = d.loc[sorted(d.index, key=lambda c: tuple(int(x) for x in c.split(":")))]
    fig, ax = plt.subplots(figsize=(max(6.0, 0.45 * len(d)), 3.4))
    bottom = np.zeros(len(d))
    for p in PATTERNS:
        vals = d[f"frac_{p}"].to_numpy()
        ax.bar(range(len(d)), vals, bottom=bottom, color=PATTERN_COLORS[p], label=p.replace("_", " "))
        bottom += vals
    ax.set_xticks(range(len(d)), [f"{c}\n{types.get(c, '')[:10]}" for c in d.index], fontsize=7, rotation=90)
    ax.set_ylabel("fraction of tokens in context")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=7, ncol=5, loc="upper center", bbox_to_anchor=(0.5, 1.15))
    fig.tight_layout()
    return fig


def multigrams_vs_llc(summary: pd.DataFrame, final_llc: pd.Series, types: pd.Series, settings: dict) -> plt.Figure:
    """Figure 11 analogue: distinct multigrams among a head's tokens in context against its final wrLLC."""
    d = summary.set_index("component").join(final_llc.rename("llc"))
    d["layer"] = [int(c.split(":")[0]) for c in d.index]
    layers = sorted(d["layer"].unique())
    fig, axes = plt.subplots(1, len(layers), figsize=(4.4 * len(layers), 3.4), squeeze=False)
    for ax, layer in zip(axes[0], layers, strict=True):
        sub = d[d["layer"] == layer]
        for c, row in sub.iterrows():
            ax.scatter(row["llc"], row["n_multigrams"], color=TYPE_COLORS.get(types.get(c, ht.MULTIGRAM), "0.4"), s=30)
            ax.annotate(c, (row["llc"], row["n_multigrams"]), fontsize=7, xytext=(3, 2), textcoords="offset points")
        if len(sub) > 2 and sub["llc"].std() > 0 and sub["n_multigrams"].std() > 0:
            rho = sub["llc"].corr(sub["n_multigrams"], method="spearman")
            ax.set_title(f"layer {layer} (Spearman ρ = {rho:.2f})")
        else:
            ax.set_title(f"layer {layer}")
        ax.set_xlabel("final wrLLC")
        ax.set_ylabel("distinct multigrams memorised")
    fig.tight_layout()
    mark_sampler(fig, settings)
    return fig


def cluster_splits(labels: pd.DataFrame, types: pd.Series, title: str = "") -> plt.Figure:
    """Figures 18/19 analogue: for each algorithm, a heads × k grid of (aligned) cluster labels,
    so a cluster splitting as k grows reads left to right."""
    algs = list(dict.fromkeys(labels["algorithm"]))
    comps = sorted(labels["component"].unique(), key=lambda c: tuple(int(x) for x in c.split(":")))
    fig, axes = plt.subplots(1, len(algs), figsize=(2.3 * len(algs) + 1.5, 0.32 * len(comps) + 1.2), squeeze=False)
    for ax, alg in zip(axes[0], algs, strict=True):
        wide = labels[labels["algorithm"] == alg].pivot(index="component", columns="k", values="cluster").loc[comps]
        sns.heatmap(wide, ax=ax, cmap="tab10", vmin=0, vmax=9, cbar=False, annot=True, fmt="d",
                    annot_kws={"fontsize": 7},
                    linewidths=0.5, linecolor="white")
        ax.set_title(alg, fontsize=9)
        ax.set_ylabel("")
        if ax is axes[0][0]:
            ax.set_yticks(np.arange(len(comps)) + 0.5, [f"{c} {types.get(c, '')}" for c in comps], fontsize=7,
                          rotation=0)
        else:
            ax.set_yticks([])
    if title:
        fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------------------------------------
# Data-refined LLCs (notebook 03)


def domain_curves(full: pd.DataFrame, settings: dict, stages: pd.DataFrame | None = None,
                  title: str = "") -> plt.Figure:
    """Figure 12 analogue: the full-model LLC over training on each distribution."""
    fig, ax = plt.subplots(figsize=(7.2, 3.9))
    for i, (data, d) in enumerate(full.groupby("data")):
        d = d.sort_values("step")
        x = d["step"].clip(lower=1)
        style = {"color": "k", "linewidth": 2.2} if data == "train" else {"color": f"C{i}", "linewidth": 1.4}
        ax.plot(x, d["llc_mean"], marker="o", markersize=2.5, label=data, **style)
        ax.fill_between(x, d["llc_mean"] - d["llc_std"], d["llc_mean"] + d["llc_std"], color=style["color"], alpha=0.1)
    log_steps(ax)
    if stages is not None and len(stages):
        stage_bands(ax, stages)
    ax.set_xlabel("training step")
    ax.set_ylabel("full-model LLC (wr on train, dr elsewhere)")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax.set_title(title, pad=14)
    fig.tight_layout()
    mark_sampler(fig, settings)
    return fig


def induction_timing(panels: Sequence[tuple[pd.DataFrame, str, str, str]], timing: pd.DataFrame, settings: dict,
                     stages: pd.DataFrame | None = None) -> plt.Figure:
    """Figure 10 analogue, one panel per (curves, y label, measure, title): e.g. per-head ICL
    scores (each induction head with the others ablated), induction scores, and the code drLLC of
    each induction head (and of all together). Each head's steepest-change step is marked (dotted)
    with its 90% interval under the curve's noise (shaded) where the timing table has one."""
    fig, axes = plt.subplots(1, len(panels), figsize=(5.2 * len(panels), 3.6), squeeze=False)
    for ax, (table, ylabel, measure, title) in zip(axes[0], panels, strict=True):
        for i, (comp, d) in enumerate(table.groupby("component")):
            d = d.sort_values("step")
            color = "k" if comp in ("model", "together") else f"C{i}"
            ax.plot(d["step"].clip(lower=1), d["value"], marker="o", markersize=2.5, color=color, label=comp)
            t = timing[(timing["component"] == comp) & (timing["measure"] == measure)]
            if len(t):
                ax.axvline(max(1, int(t["steepest_step"].iloc[0])), color=color, linestyle=":", linewidth=1)
                if {"lo", "hi"} <= set(t.columns) and t[["lo", "hi"]].notna().all(axis=None):
                    ax.axvspan(max(1, int(t["lo"].iloc[0])), max(1, int(t["hi"].iloc[0])), color=color, alpha=0.12)
        log_steps(ax)
        if stages is not None and len(stages):
            stage_bands(ax, stages)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
        ax.set_title(title, fontsize=9, pad=14)
    fig.tight_layout()
    mark_sampler(fig, settings)
    return fig


# ---------------------------------------------------------------------------------------------
# The multigram circuit (notebook 04)


def composition_curves(scores: pd.DataFrame, types: pd.Series, baselines: dict[str, float],
                       stages: pd.DataFrame | None = None, title: str = "", candidates: Sequence[str] = ()
                       ) -> plt.Figure:
    """Figure 7 analogue: one panel per sender (layer-0 head), one line per receiver (layer-1
    head) coloured by the receiver's type, random baselines dashed, stage bands behind.
    ``scores``: rows step, src, dst, score of one mode and variant."""
    senders = sorted(scores["src"].unique(), key=lambda c: int(c.split(":")[1]))
    ncol = min(4, len(senders))
    nrow = -(-len(senders) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.6 * ncol, 2.8 * nrow), sharex=True, sharey=True, squeeze=False)
    for ax, src in zip(axes.flat, senders, strict=False):
        sub = scores[scores["src"] == src]
        receivers = sorted(sub["dst"].unique(), key=lambda c: int(c.split(":")[1]))
        ls = _type_linestyles(receivers, types)
        for dst in receivers:
            d = sub[sub["dst"] == dst].sort_values("step")
            ax.plot(d["step"].clip(lower=1), d["score"], color=TYPE_COLORS.get(types.get(dst, ht.MULTIGRAM), "0.4"),
                    linestyle=ls[dst], linewidth=1.2, label=f"{dst} {types.get(dst, '')}")
        for (name, value), style in zip(baselines.items(), ("--", ":"), strict=False):
            ax.axhline(value, color="0.3", linestyle=style, linewidth=0.9, label=name)
        log_steps(ax)
        if stages is not None and len(stages):
            stage_bands(ax, stages, label=False)
        mark = " (candidate)" if src in candidates else ""
        ax.set_title(f"{src} {types.get(src, '')}{mark} →", fontsize=9)
    for ax in axes.flat[len(senders):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper center", ncol=5, fontsize=7, bbox_to_anchor=(0.5, 0.0), frameon=False)
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def path_patching_curves(table: pd.DataFrame, stages: pd.DataFrame | None = None, title: str = "") -> plt.Figure:
    """Figure 6 analogue: per receiver and bracket variant, the loss at closing-bracket positions
    of the clean model, with the receiver ablated, and with the senders ablated only on their
    path into the receiver. ``table``: rows step, receiver, variant, condition, loss_close."""
    receivers = sorted(table["receiver"].unique())
    variants = [v for v in ("unnested", "nested") if v in set(table["variant"])]
    colors = {"clean": "C0", "receiver_ablated": "C2", "path_patched": "C1"}
    fig, axes = plt.subplots(len(receivers), len(variants), figsize=(4.6 * len(variants), 3.0 * len(receivers)),
                             squeeze=False, sharex=True)
    for i, r in enumerate(receivers):
        for j, v in enumerate(variants):
            ax = axes[i][j]
            sub = table[(table["receiver"] == r) & (table["variant"] == v)]
            for cond, color in colors.items():
                d = sub[sub["condition"] == cond].sort_values("step")
                ax.plot(d["step"].clip(lower=1), d["loss_close"], color=color, marker="o", markersize=2.5,
                        linewidth=1.3, label=cond.replace("_", " "))
            log_steps(ax)
            if stages is not None and len(stages):
                stage_bands(ax, stages, label=i == 0)
            ax.set_title(f"receiver {r}, {v} brackets", fontsize=9, pad=12)
            ax.set_ylabel("loss at closing brackets")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig


def test_loss_pair(log: pd.DataFrame, models: Sequence[str] = ("L1", "L2"),
                   stages: pd.DataFrame | None = None) -> plt.Figure:
    """The test losses of two models over training and their difference (L1 − L2)."""
    test = log[(log["split"] == "test") & log["model"].isin(models)]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for m in models:
        d = test[test["model"] == m].sort_values("step")
        axes[0].plot(d["step"].clip(lower=1), d["loss"], label=m, linewidth=1.3)
    wide = test.pivot_table(index="step", columns="model", values="loss").dropna()
    if set(models) <= set(wide.columns):
        axes[1].plot(wide.index.to_numpy().clip(1), wide[models[0]] - wide[models[1]], color="k", linewidth=1.3)
        axes[1].axhline(0, color="0.5", linewidth=0.8)
    for ax, ylabel in zip(axes, ("test loss", f"{models[0]} − {models[1]} test loss"), strict=True):
        log_steps(ax)
        if stages is not None and len(stages):
            stage_bands(ax, stages)
        ax.set_xlabel("training step")
        ax.set_ylabel(ylabel)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def _line_with_se(ax: plt.Axes, d: pd.DataFrame, color: object, **kw: object) -> None:
    """``d``'s value against step, ± its ``se`` shaded when it has one."""
    ax.plot(d["step"], d["value"], color=color, **kw)
    if "se" in d and d["se"].notna().any():
        ax.fill_between(d["step"], d["value"] - d["se"], d["value"] + d["se"], color=color, alpha=0.12)


def head_measure_grid(panels: dict[str, pd.DataFrame], types: pd.Series, stages: pd.DataFrame | None = None,
                      title: str = "", min_step: int = 1) -> plt.Figure:
    """Figures 14 and 17 analogue: one row per measure (``panels``: a label → rows step, component,
    value and optionally se), one column per layer, one line per head coloured by behavioural type
    (the line styles of ``head_llc_curves``), ± one standard error shaded, stage bands behind.
    Checkpoints before ``min_step`` (the initialisation) are left out, as in ``head_llc_curves``."""
    frames = {k: v[v["component"].str.contains(":") & (v["step"] >= min_step)] for k, v in panels.items()}
    layers = sorted({int(layer) for f in frames.values() for layer in layer_of(f["component"])})
    fig, axes = plt.subplots(len(frames), len(layers), figsize=(5.2 * len(layers), 2.9 * len(frames)),
                             sharex=True, squeeze=False)
    for row, (label, frame) in enumerate(frames.items()):
        lay = layer_of(frame["component"])
        for col, layer in enumerate(layers):
            ax = axes[row, col]
            sub = frame[lay == layer]
            comps = sorted(sub["component"].unique(), key=lambda c: int(c.split(":")[1]))
            ls = _type_linestyles(comps, types)
            for c in comps:
                d = sub[sub["component"] == c].sort_values("step")
                color = TYPE_COLORS.get(types.get(c, ht.MULTIGRAM), "0.4")
                _line_with_se(ax, d, color, linestyle=ls[c], linewidth=1.3, label=f"{c} {types.get(c, '')}")
            log_steps(ax)
            if len(sub):
                ax.set_xlim(float(sub["step"].min()) / 1.25, float(sub["step"].max()) * 1.25)
            if stages is not None and len(stages):
                stage_bands(ax, stages, label=row == 0)
            ax.set_ylabel(label if col == 0 else "")
            if row == 0:
                ax.set_title(f"layer {layer}", pad=14)
            if row == len(frames) - 1:
                ax.set_xlabel("training step")
                ax.legend(fontsize=6.5, ncol=3, loc="upper center", bbox_to_anchor=(0.5, -0.3), frameon=False)
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    return fig


def full_model_measures(panels: dict[str, pd.DataFrame], stages: pd.DataFrame | None = None,
                        title: str = "") -> plt.Figure:
    """Figures 14 (full model), 15 and 16 analogue: one panel per measure (``panels``: a label →
    rows step, series, value and optionally se), one line per series, ± one standard error shaded,
    stage bands behind."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.8 * len(panels), 3.6), squeeze=False)
    for ax, (label, frame) in zip(axes[0], panels.items(), strict=True):
        frame = frame[frame["step"] >= 1]
        for (series, d), color in zip(frame.groupby("series", sort=False), sns.color_palette("deep"), strict=False):
            _line_with_se(ax, d.sort_values("step"), color, marker=".", linewidth=1.3, label=series)
        log_steps(ax)
        if len(frame):
            ax.set_xlim(float(frame["step"].min()) / 1.25, float(frame["step"].max()) * 1.25)
        if stages is not None and len(stages):
            stage_bands(ax, stages)
        ax.set_title(label, pad=14)
        ax.set_xlabel("training step")
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.2), frameon=False)
    if title:
        fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig


def _boundaries(ax: plt.Axes, stages: pd.DataFrame | None, **kw: object) -> None:
    """Vertical lines at the inner stage boundaries (each stage's end but the last)."""
    if stages is None or len(stages) < 2:
        return
    for i, end in enumerate(stages["end"].iloc[:-1]):
        ax.axvline(max(int(end), 1), label=kw.get("label") if i == 0 else None,
                   **{k: v for k, v in kw.items() if k != "label"})


def stages_and_heads(curve: pd.DataFrame, robust: pd.DataFrame, slope: pd.DataFrame, test_loss: pd.DataFrame,
                     loss_stages: pd.DataFrame, behaviour: pd.DataFrame, settings: dict, warmup_steps: int = 0,
                     title: str = "") -> plt.Figure:
    """Three panels on one log-step axis: the full-model LLC (± SE) with the stage boundaries that
    stand out of its noise (solid) and those of the slope-sign rule (dotted); the test loss with its
    own boundaries; and the formation of the heads (each layer-0 head's previous-token score and
    each layer-1 head's induction score, from 00). The warm-up is shaded."""
    fig, axes = plt.subplots(3, 1, figsize=(7.5, 8.0), sharex=True)
    d = curve.sort_values("step")
    x = d["step"].clip(lower=1)
    ax = axes[0]
    ax.errorbar(x, d["llc_mean"], yerr=d["llc_sem"], marker="o", markersize=3, color="C0", capsize=2,
                linewidth=1, label="full-model LLC ± SE")
    _boundaries(ax, robust, color="k", linewidth=1.2, label="boundary (noise-tied rule)")
    _boundaries(ax, slope, color="C3", linestyle=":", linewidth=1.2, label="boundary (slope-sign rule)")
    ax.set_ylabel("estimated LLC")
    ax = axes[1]
    tl = test_loss.sort_values("step")
    ax.plot(tl["step"].clip(lower=1), tl["loss"], color="C1", marker=".", markersize=3, label="test loss")
    _boundaries(ax, loss_stages, color="k", linewidth=1.2, label="test-loss boundary (noise-tied rule)")
    ax.set_ylabel("test loss")
    ax = axes[2]
    heads = behaviour[behaviour["layer"] >= 0]
    for (score, layer), style_ in ((("previous_token", 0), "-"), (("induction", 1), "--")):
        sub = heads[(heads["score"] == score) & (heads["layer"] == layer)]
        for k, (_, g) in enumerate(sub.groupby("component")):
            g = g.sort_values("step")
            ax.plot(g["step"].clip(lower=1), g["value"], linestyle=style_, linewidth=0.9,
                    color=f"C{k % 10}", label=f"{score.replace('_', '-')} score, layer {layer}" if k == 0 else None)
    _boundaries(ax, robust, color="k", linewidth=1.2)
    ax.set_ylabel("head score")
    ax.set_xlabel("training step")
    for ax in axes:
        log_steps(ax)
        if warmup_steps > 0:
            ax.axvspan(1, warmup_steps, color="0.85", alpha=0.5, zorder=0,
                       label="learning-rate warm-up" if ax is axes[0] else None)
        ax.legend(fontsize=7, loc="best")
    axes[0].set_title(title, pad=14)
    fig.tight_layout()
    mark_sampler(fig, settings)
    return fig


def warmup_controls(curves: dict[int, pd.DataFrame], losses: dict[int, pd.DataFrame], settings: dict,
                    title: str = "") -> plt.Figure:
    """The early full-model LLC (± SE) and test loss of runs that differ only in their warm-up
    length (the keys), the end of each warm-up marked."""
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 3.6))
    for k, (w, c) in enumerate(sorted(curves.items())):
        c = c.sort_values("step")
        axes[0].errorbar(c["step"].clip(lower=1), c["llc_mean"], yerr=c["llc_sem"], marker="o", markersize=3,
                         capsize=2, linewidth=1, color=f"C{k}", label=f"warm-up {w}")
        lo = losses[w].sort_values("step")
        axes[1].plot(lo["step"].clip(lower=1), lo["loss"], color=f"C{k}", marker=".", markersize=3,
                     label=f"warm-up {w}")
        for ax in axes:
            if w > 0:
                ax.axvline(w, color=f"C{k}", linestyle=":", linewidth=1)
    axes[0].set_ylabel("full-model LLC")
    axes[1].set_ylabel("test loss")
    for ax in axes:
        log_steps(ax)
        ax.set_xlabel("training step")
        ax.legend(fontsize=7)
    axes[0].set_title(title, pad=14)
    fig.tight_layout()
    mark_sampler(fig, settings)
    return fig


# ---------------------------------------------------------------------------------------------
# Other seeds (notebook 06)


def seed_head_curves(estimates: dict[str, pd.DataFrame], types: dict[str, pd.Series], settings: dict,
                     ylabel: str = "wrLLC", min_step: int = 1, title: str = "") -> plt.Figure:
    """Figure 23 analogue: one row per seed, one panel per layer, each head's curve coloured by
    its own seed's behavioural type (± std across chains shaded); step 0 left out as in 02."""
    names = list(estimates)
    layers = sorted({int(c.split(":")[0]) for e in estimates.values() for c in e["component"] if ":" in c})
    fig, axes = plt.subplots(len(names), len(layers), figsize=(6.6 * len(layers), 2.9 * len(names)),
                             squeeze=False, sharex=True)
    for row, name in zip(axes, names, strict=True):
        est = estimates[name]
        heads = est[est["component"].str.contains(":") & (est["step"] >= min_step)]
        for ax, layer in zip(row, layers, strict=True):
            sub = heads[heads["component"].str.startswith(f"{layer}:")]
            comps = sorted(sub["component"].unique(), key=lambda c: int(c.split(":")[1]))
            ls = _type_linestyles(comps, types[name])
            for c in comps:
                d = sub[sub["component"] == c].sort_values("step")
                color = TYPE_COLORS.get(types[name].get(c, ht.MULTIGRAM), "0.4")
                ax.plot(d["step"], d["llc_mean"], color=color, linestyle=ls[c], linewidth=1.3, marker=".",
                        markersize=3, label=f"{c} {types[name].get(c, '')}")
                ax.fill_between(d["step"], d["llc_mean"] - d["llc_std"], d["llc_mean"] + d["llc_std"], color=color,
                                alpha=0.08)
            log_steps(ax)
            ax.set_title(f"{name}, layer {layer}", fontsize=9)
            ax.set_ylabel(ylabel)
            ax.legend(fontsize=6, ncol=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    if title:
        fig.suptitle(title, y=1.0)
    fig.tight_layout()
    mark_sampler(fig, settings)
    return fig


def transfer_scores(scores: pd.DataFrame, threshold: float | None = None, title: str = "") -> plt.Figure:
    """Figures 20–22 in one number each: per other seed and layer, the ARI of each algorithm's
    transferred clusters (k = the reference seed's number of types in the layer, ``n_ref_types``)
    against its own types, with the 95% quantile of the random-label null as a black tick and the
    claim's ``threshold`` dashed."""
    s = scores[scores["k"] == scores["n_ref_types"]].copy()
    s["where"] = s["run"] + " L" + s["layer"].astype(str)
    places = list(dict.fromkeys(s.sort_values(["run", "layer"])["where"]))
    algs = list(dict.fromkeys(s["algorithm"]))
    fig, ax = plt.subplots(figsize=(1.3 * max(len(places), 2) + 2, 3.6))
    width = 0.8 / max(len(algs), 1)
    for i, alg in enumerate(algs):
        d = s[s["algorithm"] == alg].set_index("where").reindex(places)
        x = np.arange(len(places)) + (i - (len(algs) - 1) / 2) * width
        ax.bar(x, d["ari"], width=width * 0.9, label=alg)
        ax.scatter(x, d["null_q95"], marker="_", s=200, color="k", zorder=5,
                   label="null 95% quantile" if i == 0 else None)
    ax.axhline(0, color="0.5", linewidth=0.8)
    if threshold is not None:
        ax.axhline(threshold, color="0.3", linestyle="--", linewidth=1.0, label=f"claim threshold {threshold:g}")
    ax.set_xticks(np.arange(len(places)), places, fontsize=8)
    ax.set_ylabel("ARI against the seed's own types")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
