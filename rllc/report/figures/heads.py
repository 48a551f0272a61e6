"""Figures of heads and their types: behavioural scores over training, per-head rLLC curves by
type, score and pattern distributions, cluster splits, and the induction heads' timing."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ...analysis import head_types as ht
from ...analysis.clustering import layer_of
from ...analysis.patterns import PATTERNS
from ...config import SamplerConfig
from .style import (
    PATTERN_COLORS,
    SCORE_LABELS,
    TYPE_COLORS,
    head_palette,
    log_steps,
    mark_sampler,
    stage_bands,
    type_linestyles,
)


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


def head_llc_curves(estimates: pd.DataFrame, types: pd.Series, settings: SamplerConfig,
                    stages: pd.DataFrame | None = None, title: str = "", value: str = "llc_mean", ylabel: str = "wrLLC",
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
        ls = type_linestyles(comps, types)
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


def multigrams_vs_llc(summary: pd.DataFrame, final_llc: pd.Series, types: pd.Series,
                      settings: SamplerConfig) -> plt.Figure:
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


def induction_timing(panels: Sequence[tuple[pd.DataFrame, str, str, str]], timing: pd.DataFrame,
                     settings: SamplerConfig, stages: pd.DataFrame | None = None) -> plt.Figure:
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
