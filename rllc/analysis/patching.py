"""Path patching on brackets over training (rLLC paper, Appendix E.2, Figure 6), cached by checkpoint.

At each checkpoint, for each receiver head (the bracket heads) and each bracket variant: the loss
at closing-bracket positions (and over every position) of the clean model, with the receiver
mean-ablated, and with the senders mean-ablated only on their path into the receiver
(``interventions.path_patch_losses``; the means are over the same windows, per checkpoint).

Cached in the run like composition scores and ablations: keyed by the model's identity, the
windows of each variant (tokens and closing positions), the heads, the batch size and
``PATCHING_VERSION`` (bump it when a change here alters the numbers), and filled checkpoint by
checkpoint, so a computation killed midway keeps what it finished.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd
from transformer_lens import HookedTransformer

from ..config import config_hash
from ..data.brackets import BracketSet
from ..run import Run, identity
from .ablation import windows_digest, windows_key
from .interventions import mean_z, path_patch_losses
from .trajectory import cached_by_step

PATCHING_VERSION = 1
COLUMNS = ["step", "receiver", "variant", "condition", "loss_close", "loss_all"]


def path_patching_at(model: HookedTransformer, sets: Mapping[str, BracketSet], senders: Sequence[str],
                     receivers: Sequence[str], batch_size: int = 64) -> pd.DataFrame:
    """Rows (receiver, variant, condition, loss_close, loss_all) of one checkpoint: conditions
    clean, receiver_ablated and path_patched, per receiver and bracket variant."""
    rows = []
    for variant, bs in sets.items():
        means = mean_z(model, bs.tokens, batch_size=batch_size)
        for receiver in receivers:
            losses = path_patch_losses(model, bs.tokens, senders, receiver, means, batch_size=batch_size)
            for condition, loss in losses.items():
                rows.append({"receiver": receiver, "variant": variant, "condition": condition,
                             "loss_close": float(loss[bs.closing].mean()), "loss_all": float(loss.mean())})
    return pd.DataFrame(rows, columns=COLUMNS[1:])


def path_patching_over_training(run: Run, sets: Mapping[str, BracketSet], senders: Sequence[str],
                                receivers: Sequence[str], steps: Sequence[int], batch_size: int = 64,
                                name: str = "L2", progress: bool = True) -> pd.DataFrame:
    """``path_patching_at`` at each checkpoint of ``steps``: rows (step, receiver, variant, condition,
    loss_close, loss_all) in step order, cached in the run and filled checkpoint by checkpoint."""
    windows = {v: [windows_key(bs.tokens), windows_digest(bs.closing)] for v, bs in sets.items()}
    key = config_hash({"identity": identity(run.cfg, name), "windows": windows, "senders": list(senders),
                       "receivers": list(receivers), "batch": batch_size, "version": PATCHING_VERSION})
    path = run.tables / f"path_patching_{name}_{key}.parquet"

    def compute(step: int) -> pd.DataFrame:
        part = path_patching_at(run.load_model(name, step), sets, senders, receivers, batch_size)
        part.insert(0, "step", step)
        return part

    out = cached_by_step(path, list(steps), compute, f"path patching {name}", progress)
    return out.sort_values("step", kind="stable").reset_index(drop=True)[COLUMNS]
