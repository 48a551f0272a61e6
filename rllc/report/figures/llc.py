"""Figures of LLC curves: the full-model curve with its stages, the sampler's calibration, known
learning coefficients, curves per distribution, warm-up controls, and the training losses."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from ...config import SamplerConfig
from .style import boundary_lines, log_steps, mark_sampler, order_label, stage_bands


def llc_curve(estimates: pd.DataFrame, settings: SamplerConfig, stages: pd.DataFrame | None = None,
              loss: pd.DataFrame | None = None, title: str = "", log_x: bool = True) -> plt.Figure:
    """LLC (mean ± std over healthy chains) over training, with stage bands and the test loss."""
    d = estimates.sort_values("step")
    fig, ax = plt.subplots(figsize=(7.0, 3.6))
    x = d["step"].clip(lower=1)
    ax.plot(x, d["llc_mean"], marker="o", markersize=3, color="C0", label="LLC (healthy chains)")
    ax.fill_between(x, d["llc_mean"] - d["llc_std"], d["llc_mean"] + d["llc_std"], color="C0", alpha=0.2,
                    label=f"± std across chains ({order_label(settings)})")
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


def calibration_traces(traces: pd.DataFrame, estimates: pd.DataFrame, base: SamplerConfig) -> plt.Figure:
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
    mark_sampler(fig, dataclasses.replace(base, epsilon=float("nan"), nbeta=float("nan")))  # they vary by panel
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


def domain_curves(full: pd.DataFrame, settings: SamplerConfig, stages: pd.DataFrame | None = None,
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


def stages_and_heads(curve: pd.DataFrame, robust: pd.DataFrame, slope: pd.DataFrame, test_loss: pd.DataFrame,
                     loss_stages: pd.DataFrame, behaviour: pd.DataFrame, settings: SamplerConfig, warmup_steps: int = 0,
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
    boundary_lines(ax, robust, color="k", linewidth=1.2, label="boundary (noise-tied rule)")
    boundary_lines(ax, slope, color="C3", linestyle=":", linewidth=1.2, label="boundary (slope-sign rule)")
    ax.set_ylabel("estimated LLC")
    ax = axes[1]
    tl = test_loss.sort_values("step")
    ax.plot(tl["step"].clip(lower=1), tl["loss"], color="C1", marker=".", markersize=3, label="test loss")
    boundary_lines(ax, loss_stages, color="k", linewidth=1.2, label="test-loss boundary (noise-tied rule)")
    ax.set_ylabel("test loss")
    ax = axes[2]
    heads = behaviour[behaviour["layer"] >= 0]
    for (score, layer), style_ in ((("previous_token", 0), "-"), (("induction", 1), "--")):
        sub = heads[(heads["score"] == score) & (heads["layer"] == layer)]
        for k, (_, g) in enumerate(sub.groupby("component")):
            g = g.sort_values("step")
            ax.plot(g["step"].clip(lower=1), g["value"], linestyle=style_, linewidth=0.9,
                    color=f"C{k % 10}", label=f"{score.replace('_', '-')} score, layer {layer}" if k == 0 else None)
    boundary_lines(ax, robust, color="k", linewidth=1.2)
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


def warmup_controls(curves: dict[int, pd.DataFrame], losses: dict[int, pd.DataFrame], settings: SamplerConfig,
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
