"""Curvature over training (rLLC paper, Appendix D): Hessian traces per head and for the full model,
the Fisher information trace on the model's own samples, and the Hessian rank by Chebyshev
counting (fixed range and threshold, and a range rescaled per checkpoint from the top eigenvalue).

Each table is cached in the run, keyed by the model's identity, the settings that change its
numbers (``rllc.config.CurvatureConfig``), the data and ``CURVATURE_VERSION``, and filled
checkpoint by checkpoint (a killed computation keeps what it finished). Every estimate carries its
standard error over probes (and, for the gradient form of the Fisher trace, over samples).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence

import pandas as pd
import torch

from ..config import Config, CurvatureConfig, config_hash
from ..data import tokens as tokens_mod
from ..data.tokenizer import bos_id
from ..estimate import hessian as cv
from ..model.components import component_masks
from ..run import Run, identity
from .ablation import windows_digest
from .trajectory import cached_by_step

COLUMNS = ["step", "measure", "data", "component", "value", "se", "n_probes", "products", "seconds"]


def _key(cfg: Config, name: str, **parts: object) -> str:
    return config_hash({"identity": identity(cfg, name), "version": cv.CURVATURE_VERSION, **parts})


def _windows_key(windows: Mapping[str, torch.Tensor]) -> dict[str, str]:
    return {k: windows_digest(w) for k, w in windows.items()}


def curvature_windows(cfg: Config, data: Sequence[str], n: int, seed: int) -> dict[str, torch.Tensor]:
    """``n`` windows of each named distribution, drawn without replacement under ``seed``."""
    return {d: tokens_mod.sample_windows(cfg, d, n, seed) for d in data}


def hessian_traces(run: Run, windows: Mapping[str, torch.Tensor], steps: Sequence[int],
                   components: Sequence[str], c: CurvatureConfig, name: str = "L2",
                   progress: bool = True) -> pd.DataFrame:
    """Hutchinson traces (``c.trace_probes`` probes) of the loss Hessian restricted to each
    component, on each distribution's windows, at each checkpoint."""
    cfg = run.cfg
    key = _key(cfg, name, windows=_windows_key(windows), components=list(components), probes=c.trace_probes,
               batch=c.batch_size, seed=c.seed)
    path = run.tables / f"hessian_trace_{name}_{key}.parquet"

    def compute(step: int) -> pd.DataFrame:
        model = run.load_model(name, step)
        rows = []
        for data, w in windows.items():
            for comp in components:
                t0 = time.perf_counter()
                op = cv.ComponentHessian(model, component_masks(model, comp), w, c.batch_size)
                est = cv.hutchinson(op, op.d, c.trace_probes, c.seed)
                rows.append({"step": step, "measure": "hessian_trace", "data": data, "component": comp,
                             "value": est.value, "se": est.se, "n_probes": est.n_probes, "products": op.products,
                             "seconds": time.perf_counter() - t0})
        return pd.DataFrame(rows, columns=COLUMNS)

    return cached_by_step(path, list(steps), compute, f"Hessian traces {name}", progress).reset_index(drop=True)


def fisher_traces(run: Run, steps: Sequence[int], c: CurvatureConfig, name: str = "L2",
                  progress: bool = True) -> pd.DataFrame:
    """The Fisher information trace of the full model per predicted token, on ``c.fim_samples``
    sequences sampled afresh from the model at each checkpoint: by Hutchinson probes of the Hessian
    on those samples (``fim_trace``, the paper's D.2) and by the gradient identity
    E‖∇ log p(x)‖² (``fim_trace_grad``)."""
    cfg = run.cfg
    bos = bos_id(tokens_mod.prepare(cfg).tokenizer)
    key = _key(cfg, name, samples=c.fim_samples, probes=c.fim_probes, temperature=c.fim_temperature,
               batch=c.batch_size, seed=c.seed, bos=bos, sampling=cv.SAMPLING_VERSION)
    path = run.tables / f"fisher_trace_{name}_{key}.parquet"

    def compute(step: int) -> pd.DataFrame:
        model = run.load_model(name, step)
        masks = component_masks(model, "full")
        t0 = time.perf_counter()
        samples = cv.sample_sequences(model, c.fim_samples, cfg.model.n_ctx, bos, seed=c.seed + step,
                                      temperature=c.fim_temperature)
        t_sample = time.perf_counter() - t0
        t0 = time.perf_counter()
        op = cv.ComponentHessian(model, masks, samples, c.batch_size)
        est = cv.hutchinson(op, op.d, c.fim_probes, c.seed)
        t_hutch = time.perf_counter() - t0
        t0 = time.perf_counter()
        grad = cv.fisher_trace_by_gradients(model, masks, samples)
        rows = [
            {"step": step, "measure": "fim_trace", "data": "model samples", "component": "full", "value": est.value,
             "se": est.se, "n_probes": est.n_probes, "products": op.products, "seconds": t_sample + t_hutch},
            {"step": step, "measure": "fim_trace_grad", "data": "model samples", "component": "full",
             "value": grad.value, "se": grad.se, "n_probes": grad.n_probes, "products": 0,
             "seconds": time.perf_counter() - t0},
        ]
        return pd.DataFrame(rows, columns=COLUMNS)

    return cached_by_step(path, list(steps), compute, f"Fisher traces {name}", progress).reset_index(drop=True)


def hessian_ranks(run: Run, windows: torch.Tensor, steps: Sequence[int], c: CurvatureConfig,
                  name: str = "L2", progress: bool = True) -> pd.DataFrame:
    """The full model's Hessian rank (eigenvalues above a threshold) at each checkpoint, two ways:
    ``rank_fixed`` with the interval and threshold of ``c`` at every checkpoint, and
    ``rank_adaptive`` with the interval ±(1 + margin)·|λ|max and the threshold
    ``c.rank_fraction``·|λ|max, |λ|max from Lanczos. Both ends of the spectrum are reported
    (``min_eigenvalue``, ``max_eigenvalue``); a fixed interval that misses either is flagged
    (``covers`` False): the count is then meaningless."""
    cfg = run.cfg
    # lanczos_vectors enters the key only off its default of 20, the count used before it was a
    # setting: tables made then keep their keys
    vectors = {"vectors": c.lanczos_vectors} if c.lanczos_vectors != 20 else {}
    key = _key(cfg, name, windows=_windows_key({"w": windows}), degree=c.rank_degree, probes=c.rank_probes,
               interval=list(c.rank_interval), threshold=c.rank_threshold, fraction=c.rank_fraction,
               margin=c.rank_margin, tol=c.lanczos_tol, batch=c.batch_size, seed=c.seed, **vectors)
    path = run.tables / f"hessian_rank_{name}_{key}.parquet"

    def compute(step: int) -> pd.DataFrame:
        model = run.load_model(name, step)
        op = cv.ComponentHessian(model, component_masks(model, "full"), windows, c.batch_size)
        t0 = time.perf_counter()
        lo, hi, used = cv.spectrum_ends(op, op.d, seed=c.seed, tol=c.lanczos_tol, vectors=c.lanczos_vectors)
        top = max(abs(lo), abs(hi))
        seconds = time.perf_counter() - t0
        row = {"step": step, "data": "train", "component": "full", "se": float("nan"), "n_probes": 0}
        rows = [{**row, "measure": "min_eigenvalue", "value": lo, "products": used, "seconds": seconds},
                {**row, "measure": "max_eigenvalue", "value": hi, "products": 0, "seconds": 0.0}]  # one search
        bound = (1 + c.rank_margin) * top
        settings = {"rank_fixed": (c.rank_interval, c.rank_threshold),
                    "rank_adaptive": ((-bound, bound), c.rank_fraction * top)}
        for measure, (interval, threshold) in settings.items():
            before = op.products
            t0 = time.perf_counter()
            est = cv.eigencount(op, op.d, threshold, tuple(interval), c.rank_degree, c.rank_probes, c.seed)
            rows.append({"step": step, "measure": measure, "data": "train", "component": "full", "value": est.value,
                         "se": est.se, "n_probes": est.n_probes, "products": op.products - before,
                         "seconds": time.perf_counter() - t0})
        out = pd.DataFrame(rows, columns=COLUMNS)
        # does the interval contain the whole spectrum? (outside it the count is meaningless)
        a, b = c.rank_interval
        out["covers"] = out["measure"].ne("rank_fixed") | bool(a <= lo and hi <= b)
        return out

    return cached_by_step(path, list(steps), compute, f"Hessian rank {name}", progress).reset_index(drop=True)
