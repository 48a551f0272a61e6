"""Every figure in one house style (seaborn), saved atomically under the run directory."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


import matplotlib.pyplot as plt
from matplotlib import ticker
import pandas as pd
import seaborn as sns

from .io import atomic_write

SCORE_LABELS = {"previous_token": "previous-token score", "current_token": "current-token score",
                "induction": "induction score", "icl": "ICL score (late − early loss)"}


def style() -> None:
    sns.set_theme(context="notebook", style="whitegrid", palette="deep")
    plt.rcParams.update({"figure.dpi": 100, "savefig.dpi": 130, "axes.titlesize": 11})


def savefig(fig: plt.Figure, run_dir: str | Path, name: str) -> Path:
    path = Path(run_dir) / "figures" / f"{name}.png"
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
    for ax, name in zip(axes[0], models):
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
