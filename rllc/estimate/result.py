"""One LLC estimate as a value: ``LLCResult``, the per-chain diagnostics, and the summary.

``make_result`` turns loss traces (and their references) into per-chain estimates, flags and a
summary; ``rllc.estimate.llc`` samples the traces, ``rllc.estimate.records`` stores results and
cuts shorter estimates from longer ones with the same ``make_result``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..config import SamplerConfig

# How an estimate's chains were run (in its record as "pass"). The key of a record does not say:
# the three give the same numbers up to floating-point summation order (tests compare them), and
# on a GPU which components share a pass depends on the free memory, not on the estimate.
PASS_SEQUENTIAL = "chains one after another"
PASS_VMAPPED = "chains vmapped"
PASS_COMPONENTS = "components x chains vmapped"

FLAG_DIVERGED = "diverged"
FLAG_BELOW_INIT = "below_init"


@dataclass
class LLCResult:
    """One estimate: summary over healthy chains, per-chain values and flags, traces, settings."""

    mean: float  # over chains that were not flagged (nan if none)
    std: float  # across those chains (ddof 1)
    sem: float  # std / sqrt(number of those chains)
    per_chain: list[float]
    flags: list[list[str]]  # per chain: [] or any of "diverged", "below_init"
    init_loss: float
    traces: np.ndarray  # [chains, steps] batch loss before each update (burn-in included)
    settings: dict[str, Any]
    component: str = "full"
    n_weights: int = 0
    data: str = ""
    seconds: float = 0.0
    baseline: np.ndarray | None = None  # [chains, steps] loss at w* on each step's batch (reference "paired")
    chain_init_loss: np.ndarray | None = None  # [chains] each chain's L(w*) (reference "init"; equal if shared)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_ok(self) -> int:
        return sum(not f for f in self.flags)

    @property
    def excess(self) -> np.ndarray:
        """Each step's loss above the reference L(w*): [chains, steps]."""
        l0 = self.chain_init_loss if self.chain_init_loss is not None else self.init_loss
        return excess_loss(self.traces, l0, self.baseline)

    @property
    def excess_draws(self) -> np.ndarray:
        """The excess losses the estimate averages (times nbeta): [chains, draws]."""
        s = self.settings
        return select_draws(self.excess, s["burnin"], s["steps_between_draws"], s["draws"])

    def to_dict(self, traces: bool = False) -> dict[str, Any]:
        out = {
            "mean": self.mean, "std": self.std, "sem": self.sem, "se_kind": se_kind(self.settings), "n_ok": self.n_ok,
            "per_chain": self.per_chain, "flags": self.flags, "init_loss": self.init_loss,
            "component": self.component, "n_weights": self.n_weights, "data": self.data,
            "seconds": self.seconds, "settings": self.settings, **self.meta,
        }
        if traces:
            out["traces"] = self.traces.tolist()
            if self.baseline is not None:
                out["baseline"] = self.baseline.tolist()
            if self.chain_init_loss is not None:
                out["chain_init_loss"] = self.chain_init_loss.tolist()
        return out


def se_kind(settings: SamplerConfig | dict[str, Any]) -> str:
    """What an estimate's standard error covers, from its sampler settings."""
    order = settings["batch_order"] if isinstance(settings, dict) else settings.batch_order
    if order == "per_chain":
        return "chains with their own batch orders (chain noise and batch order)"
    return "chains on one shared batch order (chain noise only)"


def excess_loss(traces: np.ndarray, l0: float | np.ndarray, baseline: np.ndarray | None = None) -> np.ndarray:
    """Loss above the reference: the loss at w* on the same batch (``baseline``: [steps] shared by
    every chain, or [chains, steps]), else ``l0`` (one value, or one per chain)."""
    if baseline is not None:
        b = np.asarray(baseline, dtype=float)
        return traces - (b[None, :] if b.ndim == 1 else b)
    return traces - np.asarray(l0, dtype=float).reshape(-1, 1)


def select_draws(traces: np.ndarray, burnin: int, every: int, draws: int) -> np.ndarray:
    """The steps a chain's estimate averages: after the burn-in, every ``every``-th, ``draws`` of them."""
    return traces[:, burnin::every][:, :draws]


def summarize(per_chain: list[float], flags: list[list[str]]) -> tuple[float, float, float]:
    """Mean, std and standard error over the chains that carry no flag."""
    ok = np.array([v for v, f in zip(per_chain, flags, strict=True) if not f], dtype=float)
    if len(ok) == 0:
        return math.nan, math.nan, math.nan
    std = float(ok.std(ddof=1)) if len(ok) > 1 else math.nan
    return float(ok.mean()), std, std / math.sqrt(len(ok)) if len(ok) > 1 else math.nan


def chain_flags(trace: np.ndarray, draws: np.ndarray, init_loss: float, nbeta: float, n_weights: int,
                diverge_margin: float | None = None) -> list[str]:
    """Diagnose one chain from its full trace and its draws.

    * ``diverged``: a non-finite loss, or the mean of the last quarter of the draws more than
      ``diverge_margin`` nats above L(w*) (default: the rise at which the chain's LLC would
      exceed d, twice the value of a regular model with all d weights: no LLC exceeds d/2, and
      the factor two leaves room for sampling noise);
    * ``below_init``: the mean of the second half of the draws is more than two of its standard
      errors below L(w*): the sampler found lower loss, so w* is not a local minimum (or the
      step size is too small to leave a transient).
    """
    if not np.all(np.isfinite(trace)):
        return [FLAG_DIVERGED]
    flags = []
    margin = diverge_margin if diverge_margin is not None else n_weights / nbeta
    late = draws[-max(1, len(draws) // 4):]
    if late.mean() - init_loss > margin:
        flags.append(FLAG_DIVERGED)
    half = draws[len(draws) // 2:]
    se = half.std(ddof=1) / math.sqrt(len(half)) if len(half) > 1 else 0.0
    if half.mean() + 2 * se < init_loss:
        flags.append(FLAG_BELOW_INIT)
    return flags


def make_result(traces: np.ndarray, l0: float | np.ndarray, settings: SamplerConfig, n_weights: int,
                component: str = "", data: str = "", seconds: float = 0.0,
                baseline: np.ndarray | None = None) -> LLCResult:
    """Per-chain estimates, flags and the summary from loss traces.

    With a ``baseline`` (the loss at w* on each step's batch, [steps] or [chains, steps]) every
    draw is compared with the baseline of its own batch; otherwise with ``l0`` (one L(w*), or one
    per chain).
    """
    s = settings
    excess = excess_loss(traces, l0, baseline)
    chain_l0 = np.asarray(l0, dtype=float).reshape(-1) if baseline is None and np.ndim(l0) else None
    l0 = float(np.mean(l0))
    draws = select_draws(excess, s.burnin, s.steps_between_draws, s.draws)
    per_chain = [float(s.nbeta * d.mean()) for d in draws]
    flags = [chain_flags(t, d, 0.0, s.nbeta, n_weights, s.diverge_margin) for t, d in zip(excess, draws, strict=True)]
    mean, std, sem = summarize(per_chain, flags)
    return LLCResult(mean=mean, std=std, sem=sem, per_chain=per_chain, flags=flags, init_loss=l0,
                     traces=traces, settings=asdict(s), component=component, n_weights=n_weights, data=data,
                     seconds=seconds, baseline=baseline, chain_init_loss=chain_l0)
