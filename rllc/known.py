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

import torch
from torch import nn


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

    def forward(self, batch: torch.Tensor) -> torch.Tensor:  # noqa: ARG002 - a potential ignores data
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

    def forward(self, batch: torch.Tensor) -> torch.Tensor:  # noqa: ARG002
        return 0.5 * (self.B @ self.A - self.W0).pow(2).sum()


def known_loss(model: nn.Module, batch: torch.Tensor) -> torch.Tensor:
    """The sampler's loss interface for the models above."""
    return model(batch)


def dummy_data(n: int = 1024) -> torch.Tensor:
    """A dataset for potentials, which ignore their batches."""
    return torch.arange(n)[:, None]
