"""Curvature of the loss: Hessian-vector products, Hutchinson traces, Chebyshev eigenvalue counts,
the top eigenvalue, and the Fisher information trace (rLLC paper, Appendix D).

Nothing here forms a Hessian. Everything is built on one product, H v, of the Hessian of the mean
next-token loss over a set of token windows with a vector v, restricted to a component's weights
(``rllc.model.components``: the same weights an rLLC estimate moves). Restricting to a block B
means differentiating only in B with the rest frozen, so the operator is H_BB, the principal
block; v and H v are zero outside B.

H v is computed by double back-propagation (the gradient of g·v, with g = ∇L built with
``create_graph``). PyTorch's fused CPU attention kernel has no double backward, so every loss is
evaluated under the ``MATH`` attention backend (the same function, composed of differentiable
ops; a test checks the products against a dense ``torch.func.hessian`` of TransformerLens'
forward). A product costs about one forward and two backward passes per window chunk.

The estimators are generic over a matrix-vector product (``MatVec``) on flat vectors, so the tests
check them on matrices with known spectra:

* ``hutchinson``: tr(A) ≈ mean_l v_lᵀ A v_l over Rademacher probes (Avron & Toledo), with its
  standard error over probes;
* ``eigencount``: #{eigenvalues > θ} ≈ tr φ(A), φ a Jackson-damped Chebyshev expansion of the
  step at θ on an interval [a, b] that must contain the spectrum (Ubaru & Saad; Di Napoli,
  Polizzi & Saad), one product per degree and probe;
* ``top_eigenvalue``: the largest-magnitude eigenvalue by Lanczos iteration (scipy's ``eigsh``),
  the power iteration the paper names, converged in fewer products;
* ``fisher_trace_by_gradients``: tr F = E_x ‖∇ log p(x)‖² on sequences x sampled from the model
  (no second derivatives), the cross-check of the Hutchinson trace on the same samples.

``CURVATURE_VERSION`` is part of every cached curvature table's key: bump it when a change alters
the numbers for the same settings (probe order, the loss, the coefficients).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

from ..model import fused
from ..model.components import ParamMasks

CURVATURE_VERSION = 1
# the windows sample_sequences draws: 2 since they decode with a KV cache, whose float rounding
# differs from the full forward's and can, rarely, flip a draw (tables of sampled windows key on it)
SAMPLING_VERSION = 2

MatVec = Callable[[torch.Tensor], torch.Tensor]  # flat vector [d] -> flat vector [d]


@contextmanager
def double_backward_ok() -> Iterator[None]:
    """Attention through the ``MATH`` backend, whose ops all have second derivatives."""
    with sdpa_kernel(SDPBackend.MATH):
        yield


@dataclass(frozen=True)
class TraceEstimate:
    """A stochastic estimate of a trace-like quantity: mean over probes and its standard error."""

    value: float
    se: float
    n_probes: int
    samples: tuple[float, ...]


def _summary(samples: list[float]) -> TraceEstimate:
    a = np.asarray(samples, dtype=float)
    se = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else float("nan")
    return TraceEstimate(float(a.mean()), se, len(a), tuple(float(x) for x in a))


def rademacher(d: int, generator: torch.Generator, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """A vector of d independent ±1 entries."""
    return torch.randint(0, 2, (d,), generator=generator).to(dtype).mul_(2).sub_(1)


def hutchinson(matvec: MatVec, d: int, n_probes: int, seed: int) -> TraceEstimate:
    """tr(A) from ``n_probes`` Rademacher probes: mean of vᵀAv, with the standard error over probes."""
    if n_probes < 1:
        raise ValueError("n_probes must be at least 1")
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_probes):
        v = rademacher(d, g)
        out.append(float(torch.dot(v.double(), matvec(v).double())))
    return _summary(out)


def jackson_damping(degree: int) -> np.ndarray:
    """Jackson coefficients g_0..g_m that damp the Gibbs oscillations of a truncated Chebyshev series."""
    m = degree
    j = np.arange(m + 1)
    alpha = math.pi / (m + 2)
    return ((1 - j / (m + 2)) * math.sin(alpha) * np.cos(j * alpha)
            + (1 / (m + 2)) * math.cos(alpha) * np.sin(j * alpha)) / math.sin(alpha)


def step_coefficients(degree: int, a: float, b: float, threshold: float, damping: bool = True) -> np.ndarray:
    """Chebyshev coefficients c_0..c_m of the indicator of (threshold, b] on [a, b], in the
    variable t = (2x − a − b)/(b − a) ∈ [−1, 1] (optionally Jackson-damped)."""
    if not a < threshold < b:
        raise ValueError(f"the threshold {threshold} must lie inside the interval ({a}, {b})")
    t = (2 * threshold - a - b) / (b - a)
    theta = math.acos(t)
    j = np.arange(1, degree + 1)
    c = np.concatenate([[theta / math.pi], 2 * np.sin(j * theta) / (j * math.pi)])
    return c * jackson_damping(degree) if damping else c


def step_approximation(x: float | np.ndarray, degree: int, a: float, b: float, threshold: float,
                       damping: bool = True) -> np.ndarray:
    """φ(x): the polynomial ``eigencount`` sums over eigenvalues, evaluated at ``x``. φ(0)·d is the
    count that d eigenvalues at zero would contribute: the floor a bulk of near-zero eigenvalues
    leaks into the count when the step's transition is wider than its distance from the threshold."""
    t = (2 * np.asarray(x, dtype=float) - a - b) / (b - a)
    return np.polynomial.chebyshev.chebval(t, step_coefficients(degree, a, b, threshold, damping))


def eigencount(matvec: MatVec, d: int, threshold: float, interval: tuple[float, float], degree: int,
               n_probes: int, seed: int, damping: bool = True) -> TraceEstimate:
    """The number of eigenvalues of A above ``threshold`` (a soft count at the edge), by Hutchinson
    probes of a degree-``degree`` Chebyshev approximation of the step. ``interval`` must contain
    every eigenvalue: outside it the polynomials grow without bound and the count is meaningless."""
    a, b = interval
    c = step_coefficients(degree, a, b, threshold, damping)
    half, mid = (b - a) / 2, (a + b) / 2

    def scaled(v: torch.Tensor) -> torch.Tensor:  # (A − mid·I)/half
        return (matvec(v) - mid * v) / half

    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n_probes):
        v = rademacher(d, g).double()
        t_prev, t_cur = v, scaled(v.float()).double()
        total = c[0] * torch.dot(v, t_prev) + (c[1] * torch.dot(v, t_cur) if degree >= 1 else 0.0)
        for j in range(2, degree + 1):
            t_prev, t_cur = t_cur, 2 * scaled(t_cur.float()).double() - t_prev
            total = total + c[j] * torch.dot(v, t_cur)
        out.append(float(total))
    return _summary(out)


def top_eigenvalue(matvec: MatVec, d: int, seed: int, tol: float = 1e-3, max_products: int = 200,
                   vectors: int = 20) -> tuple[float, int]:
    """(the largest-magnitude eigenvalue of the symmetric A, products used), by Lanczos iteration
    with ``vectors`` Lanczos vectors (ARPACK's ncv; scipy's default for one eigenvalue is 20). It
    takes at least ``vectors`` + 1 products, more when restarts are needed to reach ``tol``."""
    from scipy.sparse.linalg import ArpackNoConvergence, LinearOperator, eigsh

    count = [0]

    def mv(x: np.ndarray) -> np.ndarray:
        count[0] += 1
        return matvec(torch.from_numpy(np.asarray(x, dtype=np.float32).ravel())).double().numpy()

    v0 = rademacher(d, torch.Generator().manual_seed(seed), torch.float64).numpy()
    op = LinearOperator((d, d), matvec=mv, dtype=np.float64)
    try:
        vals = eigsh(op, k=1, which="LM", v0=v0, tol=tol, maxiter=max_products, ncv=min(vectors, d),
                     return_eigenvectors=False)
    except ArpackNoConvergence as e:  # keep the best Ritz value rather than fail a long sweep
        if len(e.eigenvalues) == 0:
            raise
        vals = e.eigenvalues
    return float(vals[0]), count[0]


def spectrum_ends(matvec: MatVec, d: int, seed: int, tol: float = 1e-3,
                  max_products: int = 200, vectors: int = 20) -> tuple[float, float, int]:
    """(smallest, largest eigenvalue, products used) of the symmetric A: the largest-magnitude
    eigenvalue λ₁ first, then the largest-magnitude eigenvalue of A − λ₁I, which sits at the other
    end of the spectrum."""
    lam1, n1 = top_eigenvalue(matvec, d, seed, tol, max_products, vectors)
    shifted, n2 = top_eigenvalue(lambda v: matvec(v) - lam1 * v, d, seed + 1, tol, max_products, vectors)
    lam2 = shifted + lam1
    return min(lam1, lam2), max(lam1, lam2), n1 + n2


# ---------------------------------------------------------------------------------------------
# Products with the Hessian of a model's loss, restricted to a component


class ComponentHessian:
    """The Hessian of the mean next-token loss over ``windows``, restricted to the weights of
    ``masks``, as a product on flat vectors (the masked weights in ``named_parameters`` order).

    ``loss`` maps (model, tokens [batch, n_ctx]) to a mean per-token loss; the default is
    next-token cross-entropy through the fused forward. All windows have the same length, so the
    mean over windows is the chunk-size-weighted mean of chunk losses, and H v is accumulated
    chunk by chunk (memory stays that of one chunk)."""

    def __init__(self, model: nn.Module, masks: ParamMasks, windows: torch.Tensor, batch_size: int = 8,
                 loss: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None) -> None:
        params = dict(model.named_parameters())
        unknown = sorted(set(masks) - set(params))
        if unknown:
            raise ValueError(f"the masks name parameters the model does not have: {unknown}")
        if len(windows) == 0:
            raise ValueError("no windows to take the Hessian on")
        self.model = model
        self.names = [n for n in params if n in masks]
        self.params = [params[n] for n in self.names]
        self.masks = [masks[n] for n in self.names]
        self.sizes = [p.numel() if m is None else int(m.sum()) for p, m in zip(self.params, self.masks, strict=True)]
        self.d = sum(self.sizes)
        self.windows = windows
        self.batch_size = batch_size
        self.loss = loss or fused.next_token_loss
        self.products = 0

    def _unflatten(self, v: torch.Tensor) -> list[torch.Tensor]:
        out, i = [], 0
        for p, m, n in zip(self.params, self.masks, self.sizes, strict=True):
            part = v[i:i + n].to(p.device, p.dtype)
            if m is None:
                out.append(part.view_as(p))
            else:
                full = torch.zeros_like(p)
                full[m] = part
                out.append(full)
            i += n
        return out

    def _flatten(self, tensors: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat([(t if m is None else t[m]).reshape(-1).float().cpu()
                          for t, m in zip(tensors, self.masks, strict=True)])

    def gradient(self) -> torch.Tensor:
        """∇L restricted to the block, flat."""
        total = [torch.zeros_like(p) for p in self.params]
        n = len(self.windows)
        for i in range(0, n, self.batch_size):
            batch = self.windows[i:i + self.batch_size].to(self.params[0].device)
            with double_backward_ok():
                grads = torch.autograd.grad(self.loss(self.model, batch), self.params, allow_unused=True)
            for t, g in zip(total, grads, strict=True):
                if g is not None:
                    t.add_(g, alpha=len(batch) / n)
        return self._flatten(total)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """H v (flat in, flat out)."""
        vs = self._unflatten(v)
        total = [torch.zeros_like(p) for p in self.params]
        n = len(self.windows)
        for i in range(0, n, self.batch_size):
            batch = self.windows[i:i + self.batch_size].to(self.params[0].device)
            with double_backward_ok():
                grads = torch.autograd.grad(self.loss(self.model, batch), self.params, create_graph=True,
                                            allow_unused=True)
                dot = sum((g * u).sum() for g, u in zip(grads, vs, strict=True) if g is not None)
                hv = torch.autograd.grad(dot, self.params, allow_unused=True)
            for t, h in zip(total, hv, strict=True):
                if h is not None:
                    t.add_(h, alpha=len(batch) / n)
        self.products += 1
        return self._flatten(total)


def hessian_trace(model: nn.Module, masks: ParamMasks, windows: torch.Tensor, n_probes: int, seed: int,
                  batch_size: int = 8) -> TraceEstimate:
    """tr of the loss Hessian restricted to a component (Hutchinson over ``n_probes`` probes)."""
    op = ComponentHessian(model, masks, windows, batch_size)
    return hutchinson(op, op.d, n_probes, seed)


# ---------------------------------------------------------------------------------------------
# Sequences from the model itself, and the Fisher information


@torch.no_grad()
def sample_sequences(model: nn.Module, n: int, length: int, prompt: int, seed: int, temperature: float = 1.0,
                     batch_size: int = 32) -> torch.Tensor:
    """``n`` token windows [n, length] sampled from the model: the ``prompt`` token, then
    ``length − 1`` tokens drawn one at a time from its next-token distribution at ``temperature``.
    Models of the fused path decode with a KV cache (``fused.Decoder``: linear in ``length``);
    others rerun the whole window for each token."""
    if temperature <= 0:
        raise ValueError("temperature must be positive")
    dev = next(model.parameters()).device
    g = torch.Generator(device="cpu").manual_seed(seed)
    out = []
    with torch.no_grad():
        for i in range(0, n, batch_size):
            m = min(batch_size, n - i)
            x = torch.full((m, 1), prompt, dtype=torch.long, device=dev)
            decoder = fused.Decoder(model) if fused.supports(model) else None
            for _ in range(length - 1):
                logits = decoder.step(x[:, -1]) if decoder else fused.model_logits(model, x)[:, -1]
                nxt = torch.multinomial(torch.softmax(logits.float() / temperature, -1).cpu(), 1, generator=g).to(dev)
                x = torch.cat([x, nxt], dim=1)
            out.append(x.cpu())
    return torch.cat(out)


def sequence_log_prob(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
    """log p(x) of each window under the model, given its first token: [batch]."""
    logp = F.log_softmax(fused.model_logits(model, tokens)[:, :-1].float(), dim=-1)
    return logp.gather(-1, tokens[:, 1:, None])[..., 0].sum(-1)


def fisher_trace_by_gradients(model: nn.Module, masks: ParamMasks, samples: torch.Tensor,
                              log_prob: Callable[[nn.Module, torch.Tensor], torch.Tensor] | None = None
                              ) -> TraceEstimate:
    """tr F per predicted token, as the mean over ``samples`` of ‖∇ log p(x)‖² / (length − 1): the
    identity tr F = E_x ‖∇ log p(x)‖² for x drawn from the model. In the units of the Hessian
    trace of the mean per-token loss on the same samples (whose expectation is F / (length − 1)).
    ``log_prob`` maps (model, windows [batch, length]) to log p of each window (default: the
    language model's ``sequence_log_prob``)."""
    log_prob = log_prob or sequence_log_prob
    op = ComponentHessian(model, masks, samples[:1])
    per_token = samples.shape[1] - 1
    out = []
    for x in samples:
        grads = torch.autograd.grad(log_prob(model, x[None].to(op.params[0].device)).sum(), op.params,
                                    allow_unused=True)
        flat = op._flatten([torch.zeros_like(p) if g is None else g for g, p in zip(grads, op.params, strict=True)])
        out.append(float(flat.double().pow(2).sum()) / per_token)
    return _summary(out)
