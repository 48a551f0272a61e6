"""Choosing SGLD settings: sweep the step size and nbeta, look at the traces and the estimates.

devinterp's calibration guide asks for a grid over epsilon and nbeta and the loss traces of each:
good settings give traces that rise quickly from L(w*) and then stay flat (no runaway, no drift
below the start), and estimates that do not change much between neighbouring settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import SamplerConfig
from ..model.components import component_masks
from ..model.fused import next_token_loss
from .llc import sample_llc
from .sgld import LossFn


def calibration_grid(model: nn.Module, data: torch.Tensor, component: str = "full",
                     epsilons: Sequence[float] = (3e-4, 1e-3, 3e-3), nbetas: Sequence[float] = (10.0, 30.0, 100.0),
                     base: SamplerConfig = SamplerConfig(), loss_fn: LossFn = next_token_loss,
                     progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Estimates and traces for every (epsilon, nbeta) pair.

    Returns (estimates: one row per setting with mean, sem, flags and a flatness measure;
    traces: long table epsilon, nbeta, chain, sgld_step, loss, llc_running).
    """
    masks = component_masks(model, component)
    rows, traces = [], []
    pairs = [(e, b) for e in epsilons for b in nbetas]
    for eps, nbeta in tqdm(pairs, desc=f"calibrating {component}", disable=not progress):
        s = dataclasses.replace(base, epsilon=eps, nbeta=nbeta)
        r = sample_llc(model, data, masks, s, loss_fn, component=component)
        draws = r.excess_draws
        half = draws.shape[1] // 2
        # flatness: the last half's mean rise over L(w*) relative to the first half's (1 = flat)
        late, early = draws[:, half:].mean(), draws[:, :half].mean()
        rows.append({"epsilon": eps, "nbeta": nbeta, "llc_mean": r.mean, "llc_sem": r.sem, "n_ok": r.n_ok,
                     "n_chains": len(r.flags), "flags": ";".join(",".join(f) for f in r.flags),
                     "late_over_early": float(late / early) if early > 0 else np.nan, "init_loss": r.init_loss})
        for c, (trace, rise) in enumerate(zip(r.traces, r.excess, strict=True)):
            traces.append(pd.DataFrame({"epsilon": eps, "nbeta": nbeta, "chain": c, "sgld_step": np.arange(len(trace)),
                                        "loss": trace, "rise": rise}))
    return pd.DataFrame(rows), pd.concat(traces, ignore_index=True)
