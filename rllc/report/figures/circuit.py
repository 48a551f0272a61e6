"""Figures of the multigram circuit (notebook 04): composition scores over training, path patching,
and the L1 and L2 models' test losses."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import pandas as pd

from ...analysis import head_types as ht
from .style import TYPE_COLORS, log_steps, stage_bands, type_linestyles


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
        ls = type_linestyles(receivers, types)
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
