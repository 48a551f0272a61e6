"""Q-, K- and V-composition scores between heads of successive layers (Elhage et al. 2021).

For an earlier head A and a later head B, with TransformerLens' row-vector matrices
OV = W_V W_O and QK = W_Q W_Kᵀ (d_model × d_model each),

    score = ‖OV_A · M_B‖_F / (‖OV_A‖_F ‖M_B‖_F),   M_B = QK_B (Q), QK_Bᵀ (K), OV_B (V),

which TransformerLens computes as ``HookedTransformer.all_composition_scores`` (used here). The
``raw`` variant reads the weights as stored (as Hoogland et al. did; LayerNorm gains ignored); the
``ln_folded`` variant folds each layer's LayerNorm weights into the matrices first
(``process_weights_(fold_ln=True)`` on a copy). Two random matrices of this shape score about
1/√d_model: :func:`random_baseline` draws that distribution for a model's shape.
"""

from __future__ import annotations

import copy
import warnings

import numpy as np
import pandas as pd
import torch
from transformer_lens import HookedTransformer

from ..config import config_hash
from ..run import Run, identity
from .stages import smooth, stage_of
from .trajectory import cached_by_step

MODES = ("Q", "K", "V")
VARIANTS = ("raw", "ln_folded")
# part of the cache key of composition tables: bump it when a change here alters the numbers
COMPOSITION_VERSION = 1


def folded_copy(model: HookedTransformer) -> HookedTransformer:
    """A copy with every LayerNorm's weight and bias folded into the next matrices (only that:
    no centring of writing weights or of the unembedding)."""
    other = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        other.process_weights_(fold_ln=True, center_writing_weights=False, center_unembed=False)
    return other


@torch.no_grad()
def composition_scores(model: HookedTransformer, variant: str = "raw") -> pd.DataFrame:
    """Tidy rows (variant, mode, src, dst, score) for every head pair with src in an earlier layer."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; valid: {VARIANTS}")
    m = folded_copy(model) if variant == "ln_folded" else model
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    rows = []
    for mode in MODES:
        scores = m.all_composition_scores(mode).float().cpu().numpy()
        for la in range(n_layers):
            for lb in range(la + 1, n_layers):
                for a in range(n_heads):
                    for b in range(n_heads):
                        rows.append({"variant": variant, "mode": mode, "src": f"{la}:{a}", "dst": f"{lb}:{b}",
                                     "score": float(scores[la, a, lb, b])})
    return pd.DataFrame(rows, columns=["variant", "mode", "src", "dst", "score"])


def random_baseline(d_model: int, d_head: int, n: int = 2000, seed: int = 0) -> np.ndarray:
    """Scores ‖A·B‖_F/(‖A‖_F‖B‖_F) of ``n`` pairs of random rank-``d_head`` products
    (A = X Y with X [d_model, d_head], Y [d_head, d_model] standard normal; B likewise): the
    null distribution of a composition score for this shape. Its mean is ≈ 1/√d_model."""
    g = torch.Generator().manual_seed(seed)

    def product() -> torch.Tensor:
        return (torch.randn(n, d_model, d_head, generator=g, dtype=torch.float64)
                @ torch.randn(n, d_head, d_model, generator=g, dtype=torch.float64))

    a, b = product(), product()
    num = torch.linalg.matrix_norm(a @ b)
    return (num / (torch.linalg.matrix_norm(a) * torch.linalg.matrix_norm(b))).numpy()


def composition_over_training(run: Run, name: str = "L2", steps: list[int] | None = None,
                              variants: tuple[str, ...] = VARIANTS, progress: bool = True) -> pd.DataFrame:
    """Composition scores at every checkpoint (or ``steps``): tidy rows (step, variant, mode, src,
    dst, score), cached in the run by the model's identity and ``COMPOSITION_VERSION`` and filled
    checkpoint by checkpoint (a killed computation keeps what it finished)."""
    key = config_hash({"identity": identity(run.cfg, name), "variants": list(variants),
                       "version": COMPOSITION_VERSION})
    path = run.tables / f"composition_{name}_{key}.parquet"

    def compute(step: int) -> pd.DataFrame:
        model = run.load_model(name, step)
        return pd.concat([composition_scores(model, v) for v in variants], ignore_index=True).assign(step=step)

    out = cached_by_step(path, steps or run.steps(name), compute, f"composition {name}", progress)
    return out.sort_values(["variant", "mode", "src", "dst", "step"]).reset_index(drop=True)

def turnaround(curves: pd.DataFrame, min_step: int = 1, sigma: float = 1.0,
               recovery_fraction: float = 0.2) -> pd.DataFrame:
    """Per (src, dst) pair of one mode and variant (rows step, src, dst, score): where the
    smoothed curve is lowest from ``min_step`` on, how far it fell to there from its value at
    ``min_step`` and how far it recovered by the end. A pair *turns around* when its minimum is
    interior (neither the first nor the last checkpoint considered), it fell, and it recovered at
    least ``recovery_fraction`` of the fall."""
    rows = []
    for (src, dst), d in curves.groupby(["src", "dst"], sort=True):
        d = d.sort_values("step")
        y = smooth(d["score"].to_numpy(), sigma)
        steps = d["step"].to_numpy()
        keep = steps >= min_step
        if keep.sum() < 3:
            continue
        ys, ss = y[keep], steps[keep]
        i = int(ys.argmin())
        fall, recovery = float(ys[0] - ys[i]), float(ys[-1] - ys[i])
        rows.append({"src": src, "dst": dst, "start": float(ys[0]), "min_step": int(ss[i]), "min_value": float(ys[i]),
                     "end": float(ys[-1]), "fall": fall, "recovery": recovery,
                     "turns": bool(0 < i < len(ys) - 1 and fall > 0 and recovery >= recovery_fraction * fall)})
    return pd.DataFrame(rows)


def coupling(curves: pd.DataFrame, from_step: int) -> dict[str, float]:
    """How much a sender's composition depends on the receiver, late in training (rows step, src,
    dst, score, steps >= ``from_step``): the spread (std) across receivers for a fixed sender, and
    across senders for a fixed receiver, each averaged over steps and over the fixed heads; and
    their ratio (well below 1: a sender composes about equally with every receiver)."""
    late = curves[curves["step"] >= from_step]
    if late.empty:
        raise ValueError(f"no composition scores from step {from_step} on")
    across_receivers = float(late.groupby(["step", "src"])["score"].std(ddof=0).mean())
    across_senders = float(late.groupby(["step", "dst"])["score"].std(ddof=0).mean())
    return {"from_step": int(from_step), "across_receivers": across_receivers, "across_senders": across_senders,
            "ratio": across_receivers / across_senders if across_senders > 0 else float("nan")}


TURNAROUND_COLUMNS = ["src", "dst", "min_step", "min_value", "fall", "recovery", "turns", "stage", "candidates"]


def multigram_turnaround(k_curves: pd.DataFrame, senders: list[str], receivers: list[str], min_step: int,
                         sigma: float, recovery_fraction: float, stages: pd.DataFrame | None,
                         candidates: bool = False) -> pd.DataFrame:
    """Claim 7's turnaround table: ``turnaround`` of each (sender, receiver) pair's K-composition
    (``k_curves``: one mode and variant), with the stage of its minimum and the ``candidates`` flag
    (the senders are stand-ins); the declared columns even when no pair qualifies."""
    pairs = k_curves[k_curves["src"].isin(senders) & k_curves["dst"].isin(receivers)]
    turn = turnaround(pairs, min_step=min_step, sigma=sigma, recovery_fraction=recovery_fraction)
    if turn.empty:
        return pd.DataFrame(columns=TURNAROUND_COLUMNS)
    turn["stage"] = [stage_of(stages, s) if stages is not None else None for s in turn["min_step"]]
    return turn.assign(candidates=candidates)


def multigram_coupling(k_curves: pd.DataFrame, senders: list[str], receivers: list[str], from_step: int,
                       candidates: bool = False) -> pd.DataFrame:
    """Claim 7's coupling as a one-row table (NaN spreads when no pair qualifies)."""
    pairs = k_curves[k_curves["src"].isin(senders) & k_curves["dst"].isin(receivers)]
    row = (coupling(pairs, from_step) if len(pairs) else
           {"from_step": 0, "across_receivers": np.nan, "across_senders": np.nan, "ratio": np.nan})
    return pd.DataFrame([row]).assign(candidates=candidates)


def sender_turnaround(k_curves: pd.DataFrame, receivers: list[str], min_step: int, sigma: float,
                      recovery_fraction: float) -> pd.DataFrame:
    """Per layer-0 head: its minimum (median step, mean value over receivers) and the share of its
    pairs with ``receivers`` that turn around; empty without receivers."""
    if not receivers:
        return pd.DataFrame()
    senders = k_curves[k_curves["src"].str.startswith("0:") & k_curves["dst"].isin(receivers)]
    return (turnaround(senders, min_step=min_step, sigma=sigma, recovery_fraction=recovery_fraction)
            .groupby("src").agg(min_step=("min_step", "median"), min_value=("min_value", "mean"),
                                turns=("turns", "mean")))
