"""Ablation scores of attention heads over training (rLLC paper, Appendix E, Figure 17).

A head's score under an ablation is the increase of the mean next-token loss when that head alone
is ablated: its output before W_O (``hook_z``) set to zero, replaced by its mean over the same
windows (position by position), or resampled — replaced by its own output on another window of the
evaluation batch at the same position (window i takes window i − 1's, cyclically within a batch).
Each score carries a standard error over windows (the per-window loss increase varies from window
to window; the windows are the same at every checkpoint, so curves share that noise).

The table over checkpoints is cached in the run, keyed by the model's identity, the windows and
``ABLATION_VERSION`` (bump it when a change here alters the numbers), and filled checkpoint by
checkpoint.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Sequence

import pandas as pd
import torch
from transformer_lens import HookedTransformer

from ..config import config_hash
from ..run import Run, identity
from .interventions import ABLATIONS, ablation_edit, mean_z, token_losses
from .trajectory import cached_by_step

ABLATION_VERSION = 1


def ablation_scores(model: HookedTransformer, windows: torch.Tensor, heads: Sequence[str],
                    kinds: Sequence[str] = ABLATIONS, batch_size: int = 16) -> pd.DataFrame:
    """Rows (component, kind, clean, ablated, score, se): the loss increase of each head alone
    under each kind of ablation, on ``windows``, with its standard error over windows."""
    unknown = sorted(set(kinds) - set(ABLATIONS))
    if unknown:
        raise ValueError(f"unknown ablation kinds {unknown}; valid: {list(ABLATIONS)}")
    if "resample" in kinds and min(batch_size, len(windows)) < 2:
        raise ValueError("resample ablation needs at least two windows per batch (batch_size >= 2)")
    means = mean_z(model, windows, batch_size) if "mean" in kinds else None
    clean = token_losses(model, windows, batch_size).mean(1)  # per window
    rows = []
    for head in heads:
        for kind in kinds:
            ablated = token_losses(model, windows, batch_size, edit=ablation_edit(kind, [head], means)).mean(1)
            delta = (ablated - clean).double()
            se = float(delta.std() / math.sqrt(len(delta))) if len(delta) > 1 else float("nan")
            rows.append({"component": head, "kind": kind, "clean": float(clean.mean()),
                         "ablated": float(ablated.mean()), "score": float(delta.mean()), "se": se})
    return pd.DataFrame(rows)


def windows_digest(windows: torch.Tensor) -> str:
    """A short digest of a tensor of token windows (part of the cache keys here and in ``curvature``)."""
    return hashlib.blake2b(windows.numpy().tobytes(), digest_size=8).hexdigest()


def windows_key(windows: torch.Tensor) -> str:
    return windows_digest(windows) + f"x{tuple(windows.shape)}"


def ablations_over_training(run: Run, windows: torch.Tensor, steps: Sequence[int], heads: Sequence[str],
                            name: str = "L2", batch_size: int = 16, progress: bool = True) -> pd.DataFrame:
    """``ablation_scores`` at each checkpoint of ``steps``: rows (step, component, kind, clean,
    ablated, score, se), cached in the run and filled checkpoint by checkpoint."""
    key = config_hash({"identity": identity(run.cfg, name), "windows": windows_key(windows), "heads": list(heads),
                       "batch": batch_size, "version": ABLATION_VERSION})
    path = run.tables / f"ablation_{name}_{key}.parquet"

    def compute(step: int) -> pd.DataFrame:
        return ablation_scores(run.load_model(name, step), windows, heads, batch_size=batch_size).assign(step=step)

    out = cached_by_step(path, list(steps), compute, f"ablations {name}", progress)
    return out.sort_values(["kind", "component", "step"]).reset_index(drop=True)
