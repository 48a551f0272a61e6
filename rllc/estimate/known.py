"""Models whose learning coefficient is known in closed form: the estimator's ground truth.

* ``LinearRegression``: a regular model with d weights, lambda = d / 2.
* ``NormalCrossing``: K(w) = prod_i w_i^(2 k_i); at the origin lambda = 1 / (2 max_i k_i)
  (with multiplicity 1 when the maximum is attained once).
* ``ReducedRankRegression``: x -> B A x with A: H x N, B: M x H and a true map of rank r;
  Aoyagi & Watanabe (2005) give lambda in closed form (``aoyagi_rrr``). At a point of the
  minimal stratum (the H - r spare hidden units dead in both A and B) the local coefficient is
  that global value.

Each is an ``nn.Module`` whose forward pass returns its loss on a batch; ``known_loss`` is the
sampler's ``(model, batch) -> loss`` for them. Potentials ignore the batch (their loss is the
population loss itself), so the sampler can be checked without gradient noise; linear
regression uses real minibatches.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import torch
from torch import nn

from ..config import SamplerConfig
from .llc import sample_llc


def aoyagi_rrr(M: int, N: int, H: int, r: int) -> float:
    """Learning coefficient of reduced-rank regression (Aoyagi & Watanabe 2005, Theorem 1).

    M outputs, N inputs, H hidden units, true rank r (0 <= r <= H).
    """
    if not 0 <= r <= H:
        raise ValueError(f"true rank r={r} must lie in [0, H={H}]")
    if M + r <= N + H and N + r <= M + H and H + r <= M + N:
        twice = 2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2
        if (M + N + H + r) % 2 == 1:
            twice += 1
        return twice / 8
    if N + H < M + r:
        return (H * N - H * r + M * r) / 2
    if M + H < N + r:
        return (H * M - H * r + N * r) / 2
    return M * N / 2  # M + N < H + r


def normal_crossing_lambda(k: tuple[int, ...]) -> float:
    """lambda of K(w) = prod w_i^(2 k_i) at the origin."""
    return 1.0 / (2 * max(k))


class LinearRegression(nn.Module):
    """y = x . w + noise, Gaussian likelihood with unit variance; weights start at the truth."""

    def __init__(self, d: int, n: int = 4096, noise: float = 1.0, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, d, generator=g)
        w0 = torch.randn(d, generator=g)
        self.y = self.x @ w0 + noise * torch.randn(n, generator=g)
        # start at the least-squares minimum of this dataset (a true local minimum)
        w_hat = torch.linalg.lstsq(self.x, self.y[:, None]).solution[:, 0]
        self.w = nn.Parameter(w_hat.clone())
        self.noise = noise

    @property
    def truth(self) -> float:
        return self.w.numel() / 2

    def indices(self) -> torch.Tensor:
        """The dataset for the sampler: row indices of (x, y)."""
        return torch.arange(len(self.x))[:, None]

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        idx = batch[:, 0]
        resid = self.y[idx] - self.x[idx] @ self.w
        return 0.5 * (resid / self.noise).pow(2).mean()


class NormalCrossing(nn.Module):
    """K(w) = prod_i w_i^(2 k_i), at the origin."""

    def __init__(self, k: tuple[int, ...]) -> None:
        super().__init__()
        self.k = tuple(int(v) for v in k)
        self.w = nn.Parameter(torch.zeros(len(self.k), dtype=torch.float64))

    @property
    def truth(self) -> float:
        return normal_crossing_lambda(self.k)

    def forward(self, batch: torch.Tensor) -> torch.Tensor:  # a potential ignores the data
        powers = torch.tensor([2 * v for v in self.k], dtype=self.w.dtype)
        return torch.prod(self.w ** powers)


@dataclass(frozen=True)
class RRRShape:
    M: int
    N: int
    H: int
    r: int

    @property
    def truth(self) -> float:
        return aoyagi_rrr(self.M, self.N, self.H, self.r)


class ReducedRankRegression(nn.Module):
    """Population loss K(A, B) = 1/2 ||B A - W0||_F^2 (x ~ N(0, I), unit noise) at a minimal-stratum point."""

    def __init__(self, shape: RRRShape, seed: int = 0) -> None:
        super().__init__()
        M, N, H, r = shape.M, shape.N, shape.H, shape.r
        g = torch.Generator().manual_seed(seed)
        a0 = torch.zeros(H, N, dtype=torch.float64)
        b0 = torch.zeros(M, H, dtype=torch.float64)
        if r:
            a0[:r] = torch.randn(r, N, generator=g, dtype=torch.float64)
            b0[:, :r] = torch.randn(M, r, generator=g, dtype=torch.float64)
        self.register_buffer("W0", b0 @ a0)
        self.A = nn.Parameter(a0)
        self.B = nn.Parameter(b0)
        self.shape = shape

    @property
    def truth(self) -> float:
        return self.shape.truth

    def forward(self, batch: torch.Tensor) -> torch.Tensor:
        return 0.5 * (self.B @ self.A - self.W0).pow(2).sum()


def known_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The sampler's loss interface for the models above."""
    return model(batch)


def dummy_data(n: int = 1024) -> torch.Tensor:
    """A dataset for potentials, which ignore their batches."""
    return torch.arange(n)[:, None]


# ---------------------------------------------------------------------------------------------
# The validation suite (the same cases and settings as tests/test_llc_validation.py)


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    build: object  # () -> nn.Module
    settings: dict
    data: str = "dummy"  # "dummy" or "indices" (the model's own rows)
    batched: bool = False
    masks: tuple[str, ...] | None = None  # parameter names that move (None: all)
    truth_override: float | None = None


def validation_cases() -> list[Case]:
    base = {"batch_size": 1, "init_loss_batches": 1, "seed": 0}
    # two-factor crossings: at nbeta 1e6, gamma 3 the exact tempered value (by quadrature) is within
    # 5% of lambda; the flat direction w1 relaxes in 1/(eps gamma) ~ 3,300 steps, hence the long
    # burn-in. One factor: w^4 is stiff at nbeta 1e6 (eps * curvature ~ 1 biases high), so it
    # runs at nbeta 1e4 with a smaller step.
    nc = {**base, "epsilon": 1e-4, "gamma": 3.0, "nbeta": 1e6, "chains": 8, "draws": 20_000, "burnin": 10_000}
    nc1 = {**base, "epsilon": 5e-5, "gamma": 1.0, "nbeta": 1e4, "chains": 8, "draws": 20_000, "burnin": 2_000}
    rrr = {**base, "epsilon": 2e-5, "gamma": 1.0, "nbeta": 1000, "chains": 4, "draws": 5000, "burnin": 1000}
    return [
        Case("regular", "linear regression d=10", lambda: LinearRegression(d=10, n=4096, seed=0),
             {"epsilon": 5e-5, "gamma": 1.0, "nbeta": 1000, "chains": 4, "draws": 4000, "burnin": 200,
              "batch_size": 1024, "init_loss_batches": 4, "seed": 0}, data="indices"),
        Case("normal crossing", "k=(2,)", lambda: NormalCrossing((2,)), nc1, batched=True),
        *[Case("normal crossing", f"k={k}", (lambda k=k: NormalCrossing(k)), nc, batched=True)
          for k in [(1, 2), (1, 3)]],
        *[Case("reduced-rank regression", f"M={s.M} N={s.N} H={s.H} r={s.r}",
               (lambda s=s: ReducedRankRegression(s, seed=0)), rrr)
          for s in [RRRShape(3, 3, 3, 1), RRRShape(5, 3, 4, 2)]],
        Case("restricted (A only) RRR", "M=4 N=3 H=3 r=1, B frozen",
             lambda: ReducedRankRegression(RRRShape(4, 3, 3, 1), seed=1), {**rrr, "draws": 3000, "burnin": 500},
             masks=("A",), truth_override=1 * 3 / 2),
    ]


TOLERANCE = {"reduced-rank regression": 0.15}  # relative; 0.10 for every other family


def tolerance(case: Case) -> float:
    return TOLERANCE.get(case.family, 0.10)


def run_validation(scale: float = 1.0, progress: bool = False) -> pd.DataFrame:
    """Estimate every case; ``scale`` shrinks burn-in and draws (below 1 the tolerances do not apply)."""
    return pd.DataFrame([run_case(case, scale, progress) for case in validation_cases()])


def run_case(case: Case, scale: float = 1.0, progress: bool = False) -> dict:
    """One known-answer estimate as a table row (truth, estimate, s.e., relative error, settings)."""
    model = case.build()
    s = dict(case.settings)
    s["draws"] = max(10, int(s["draws"] * scale))
    s["burnin"] = int(s["burnin"] * scale)
    data = model.indices() if case.data == "indices" else dummy_data()
    masks = {n: None for n in case.masks} if case.masks else None
    r = sample_llc(model, data, masks, SamplerConfig(**s), known_loss, batched=case.batched, progress=progress)
    truth = case.truth_override if case.truth_override is not None else model.truth
    return {"family": case.family, "case": case.name, "truth": truth, "estimate": r.mean, "sem": r.sem,
            "rel_error": (r.mean - truth) / truth, "tolerance": tolerance(case), "n_ok": r.n_ok,
            "chains": s["chains"], "n_weights": r.n_weights, "seconds": r.seconds,
            **{k: s[k] for k in ("epsilon", "gamma", "nbeta", "draws", "burnin", "batch_size")}}
