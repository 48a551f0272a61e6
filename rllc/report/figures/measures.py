"""Figures of other measures and other seeds: Hessian, Fisher and ablation measures beside the
wrLLC (notebook 05), per-seed wrLLC curves and cluster transfer (notebook 06)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ...analysis import head_types as ht
from ...analysis.clustering import layer_of
from ...config import SamplerConfig
from .style import TYPE_COLORS, line_with_se, log_steps, mark_sampler, stage_bands, type_linestyles


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
            ls = type_linestyles(comps, types)
            for c in comps:
                d = sub[sub["component"] == c].sort_values("step")
                color = TYPE_COLORS.get(types.get(c, ht.MULTIGRAM), "0.4")
                line_with_se(ax, d, color, linestyle=ls[c], linewidth=1.3, label=f"{c} {types.get(c, '')}")
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
            line_with_se(ax, d.sort_values("step"), color, marker=".", linewidth=1.3, label=series)
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


def seed_head_curves(estimates: dict[str, pd.DataFrame], types: dict[str, pd.Series], settings: SamplerConfig,
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
            ls = type_linestyles(comps, types[name])
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
