"""Curvature estimators against independent oracles: matrices with known spectra, a dense
``torch.func.hessian`` through TransformerLens' own forward, and a softmax regression whose Fisher
information is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from rllc.estimate import hessian as cv
from rllc.model.components import component_masks
from tests._models import markov_data, tiny_model


def sym_matrix(eigs: np.ndarray, seed: int = 0) -> torch.Tensor:
    """A dense symmetric matrix with eigenvalues ``eigs`` in a random orthonormal basis."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.standard_normal((len(eigs), len(eigs))))
    return torch.tensor(q @ np.diag(eigs) @ q.T, dtype=torch.float64)


def matvec_of(a: torch.Tensor):
    return lambda v: (a @ v.double()).float()


def test_rademacher_is_plus_minus_one_and_seeded():
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    v = cv.rademacher(1000, g1)
    assert set(v.unique().tolist()) == {-1.0, 1.0}
    assert torch.equal(v, cv.rademacher(1000, g2))
    assert abs(float(v.mean())) < 0.15


def test_hutchinson_on_a_quadratic_with_known_hessian():
    eigs = np.linspace(-2.0, 10.0, 60)
    a = sym_matrix(eigs)
    est = cv.hutchinson(matvec_of(a), 60, n_probes=400, seed=0)
    assert abs(est.value - eigs.sum()) < 4 * est.se
    # the Rademacher variance is 2 * sum of squared off-diagonal entries: the SE matches it
    off = (a ** 2).sum() - (torch.diagonal(a) ** 2).sum()
    assert est.se == pytest.approx(math.sqrt(2 * float(off) / 400), rel=0.25)


def test_hutchinson_is_exact_for_a_diagonal_matrix():
    a = torch.diag(torch.arange(1.0, 11.0, dtype=torch.float64))
    est = cv.hutchinson(matvec_of(a), 10, n_probes=3, seed=1)
    assert est.value == pytest.approx(55.0, abs=1e-4) and est.se == pytest.approx(0.0, abs=1e-4)


def test_step_coefficients_approximate_the_step():
    c = cv.step_coefficients(200, -1.0, 6.0, 0.5)
    x = np.linspace(-1, 6, 701)
    t = (2 * x - 5.0) / 7.0
    series = np.polynomial.chebyshev.chebval(t, c)
    far = np.abs(x - 0.5) > 0.3
    assert np.max(np.abs(series[far] - (x[far] > 0.5))) < 0.05
    np.testing.assert_allclose(cv.step_approximation(x, 200, -1.0, 6.0, 0.5), series)
    with pytest.raises(ValueError, match="inside the interval"):
        cv.step_coefficients(10, 0.0, 1.0, 2.0)


@pytest.mark.parametrize("near", [False, True])
def test_eigencount_counts_eigenvalues_above_the_threshold(near):
    rng = np.random.default_rng(1)
    eigs = np.concatenate([rng.uniform(-1.0, 0.3, 150), rng.uniform(0.7, 5.5, 50)])
    if near:  # eigenvalues just either side of the threshold are counted about half each
        eigs = np.concatenate([eigs, [0.49, 0.51]])
    a = sym_matrix(eigs, seed=2)
    est = cv.eigencount(matvec_of(a), len(eigs), threshold=0.5, interval=(-1.2, 6.0), degree=120,
                        n_probes=100, seed=0)
    truth = int((eigs > 0.5).sum())
    tol = 4 * est.se + (1.2 if near else 0.5)
    assert abs(est.value - truth) < tol, (est.value, truth, est.se)


def test_eigencount_is_meaningless_when_the_interval_misses_the_spectrum():
    """A spectrum outside [a, b] makes the Chebyshev polynomials blow up: the count is far off (or
    not even finite, once T_j overflows)."""
    eigs = np.concatenate([np.full(20, 0.1), np.full(5, 20.0)])
    est = cv.eigencount(matvec_of(sym_matrix(eigs)), 25, threshold=0.5, interval=(-1.0, 6.0), degree=60,
                        n_probes=20, seed=0)
    assert not abs(est.value - 5) <= 100


def test_top_eigenvalue_finds_the_largest_magnitude():
    eigs = np.concatenate([np.linspace(-7.5, 3.0, 79), [-9.0]])
    lam, products = cv.top_eigenvalue(matvec_of(sym_matrix(eigs, seed=4)), 80, seed=0, tol=1e-6)
    assert lam == pytest.approx(-9.0, rel=1e-3)
    assert 0 < products < 200
    # fewer Lanczos vectors: the same eigenvalue at a looser tolerance, from fewer products
    few, few_products = cv.top_eigenvalue(matvec_of(sym_matrix(eigs, seed=4)), 80, seed=0, tol=1e-2, vectors=6)
    assert few == pytest.approx(-9.0, rel=2e-2)
    assert 7 <= few_products < products
    lo, hi, _ = cv.spectrum_ends(matvec_of(sym_matrix(eigs, seed=4)), 80, seed=0, tol=1e-6, vectors=8)
    assert (lo, hi) == (pytest.approx(-9.0, rel=1e-3), pytest.approx(3.0, rel=1e-3))


# ---- the Hessian of a transformer's loss, restricted to a head ----------------------------------


def _dense_head_hessian(model, component: str, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(dense Hessian of TransformerLens' own loss in the head's weights, the gradient), through
    torch.func.hessian of a function of the head's flat weights (written from the definition of a
    head's weights: slice ``head`` of each per-head tensor of its layer)."""
    layer, head = (int(x) for x in component.split(":"))
    mine = {f"blocks.{layer}.attn.{p}" for p in ("W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V")}
    base = {n: p.detach().clone() for n, p in model.named_parameters()}
    names = [n for n in base if n in mine]  # ComponentHessian's layout: named_parameters order
    shapes = [base[n][head].shape for n in names]
    flat0 = torch.cat([base[n][head].reshape(-1) for n in names])

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        new, i = dict(base), 0
        for n, shape in zip(names, shapes, strict=True):
            size = int(np.prod(shape))
            part = flat[i:i + size].view(shape)
            new[n] = torch.cat([base[n][:head], part[None], base[n][head + 1:]])
            i += size
        return torch.func.functional_call(model, new, (tokens,), {"return_type": "loss"})

    return torch.func.hessian(loss_of)(flat0), torch.func.grad(loss_of)(flat0)


@pytest.fixture(scope="module")
def head_case():
    torch.manual_seed(0)
    model = tiny_model(seed=3)
    tokens = markov_data(12, seed=5)
    h, g = _dense_head_hessian(model, "1:0", tokens)
    return model, tokens, h, g


def test_component_hessian_products_match_a_dense_hessian(head_case):
    model, tokens, h, g = head_case
    op = cv.ComponentHessian(model, component_masks(model, "1:0"), tokens, batch_size=5)  # uneven chunks
    assert op.d == h.shape[0]
    torch.testing.assert_close(op.gradient(), g, rtol=1e-4, atol=1e-6)
    v = torch.randn(op.d, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(op(v), h @ v, rtol=1e-3, atol=1e-5)
    assert op.products == 1


def test_hessian_trace_of_a_head_matches_the_dense_trace(head_case):
    model, tokens, h, _ = head_case
    est = cv.hessian_trace(model, component_masks(model, "1:0"), tokens, n_probes=200, seed=0, batch_size=12)
    exact = float(torch.trace(h))
    assert abs(est.value - exact) < 4 * est.se, (est.value, exact, est.se)


def test_eigencount_of_a_head_hessian_matches_its_eigenvalues(head_case):
    model, tokens, h, _ = head_case
    eigs = torch.linalg.eigvalsh(h.double()).numpy()
    op = cv.ComponentHessian(model, component_masks(model, "1:0"), tokens, batch_size=12)
    lam, _ = cv.top_eigenvalue(op, op.d, seed=0, tol=1e-5)
    assert abs(lam) == pytest.approx(np.abs(eigs).max(), rel=1e-3)
    bound = 1.05 * abs(lam)
    theta = 0.1 * bound
    # the count runs on the dense matrix: the same spectrum (the products equal it, tested above),
    # at microseconds a product instead of a model's backward pass (4,800 products: 60 s)
    hd = h.float()
    est = cv.eigencount(lambda v: hd @ v, op.d, threshold=theta, interval=(-bound, bound), degree=80, n_probes=60,
                        seed=0)
    near = int((np.abs(eigs - theta) < 0.05 * bound).sum())  # the soft edge counts these about half
    truth = int((eigs > theta).sum())
    assert abs(est.value - truth) < 4 * est.se + 0.5 * near + 0.5, (est.value, truth, est.se, near)


def test_the_fused_cpu_attention_has_no_double_backward_and_the_math_backend_does():
    """Why every product runs under ``double_backward_ok``: a regression check on PyTorch."""
    q = torch.randn(1, 1, 6, 4, requires_grad=True)
    k, v = torch.randn(1, 1, 6, 4), torch.randn(1, 1, 6, 4)

    def second() -> torch.Tensor:
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
        (g,) = torch.autograd.grad((out ** 3).sum(), q, create_graph=True)
        return torch.autograd.grad(g.sum(), q)[0]

    with cv.double_backward_ok():
        assert torch.isfinite(second()).all()


# ---- Fisher information ---------------------------------------------------------------------------


class SoftmaxRegression(nn.Module):
    """p(y | x) = softmax(W x) for one fixed input x; y is the "next token" after a dummy first token."""

    def __init__(self, x: torch.Tensor, k: int, seed: int = 0) -> None:
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.x = x
        self.W = nn.Parameter(torch.randn(k, len(x), generator=g))

    def probs(self) -> torch.Tensor:
        return torch.softmax(self.W @ self.x, -1)


def softmax_loss(model: SoftmaxRegression, tokens: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(model.W @ model.x, -1)
    return -logp[tokens[:, 1]].mean()


def test_fisher_trace_of_softmax_regression_in_closed_form():
    """tr F = (1 − Σ p²) ‖x‖² for softmax regression; the Hessian of the NLL is F whatever the sample,
    so the Hutchinson trace on the model's own samples and the gradient identity both recover it."""
    x = torch.tensor([1.0, -0.5, 2.0])
    model = SoftmaxRegression(x, k=5)
    p = model.probs().detach()
    exact = float((1 - (p ** 2).sum()) * (x ** 2).sum())
    g = torch.Generator().manual_seed(0)
    ys = torch.multinomial(p, 4000, replacement=True, generator=g)
    samples = torch.stack([torch.zeros_like(ys), ys], 1)
    masks = {"W": None}
    op = cv.ComponentHessian(model, masks, samples[:50], batch_size=50, loss=softmax_loss)
    est = cv.hutchinson(op, op.d, n_probes=400, seed=1)
    assert abs(est.value - exact) < 4 * est.se

    by_grad = cv.fisher_trace_by_gradients(model, masks, samples[:1000],
                                           log_prob=lambda m, t: -softmax_loss(m, t) * len(t))
    assert abs(by_grad.value - exact) < 4 * by_grad.se


@pytest.mark.parametrize("positions, norm", [("shortformer", "LN"), ("standard", "LN"), ("standard", None)])
def test_decoding_with_a_kv_cache_gives_the_models_own_logits(positions, norm):
    """Oracle: TransformerLens' own forward on each prefix, for every position of a full window."""
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    from rllc.model import fused

    model = HookedTransformer(HookedTransformerConfig(
        n_layers=2, d_model=16, d_head=4, n_heads=3, n_ctx=12, d_vocab=16, attn_only=True, act_fn=None,
        normalization_type=norm, positional_embedding_type=positions, seed=4))
    tokens = markov_data(3, n_ctx=12, seed=2)
    decoder = fused.Decoder(model)
    with torch.no_grad():
        reference = model(tokens)  # [batch, pos, vocab]: position t's logits see tokens 0..t only
    for t in range(tokens.shape[1]):
        torch.testing.assert_close(decoder.step(tokens[:, t]), reference[:, t], rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="context holds 12 positions"):
        decoder.step(tokens[:, 0])


def test_sampling_with_a_kv_cache_draws_the_windows_a_full_forward_draws():
    """The windows of ``sample_sequences`` (KV-cached) equal those of a loop that reruns the model's
    own forward on the whole window for each token, under the same generator."""
    model = tiny_model(seed=6)
    g = torch.Generator().manual_seed(11)
    x = torch.full((5, 1), 3, dtype=torch.long)
    with torch.no_grad():
        for _ in range(15):
            p = torch.softmax(model(x)[:, -1].float() / 0.7, -1)
            x = torch.cat([x, torch.multinomial(p, 1, generator=g)], dim=1)
    torch.testing.assert_close(cv.sample_sequences(model, 5, 16, prompt=3, seed=11, temperature=0.7), x)


def test_sample_sequences_follow_the_model():
    """Samples from a model with a fixed next-token distribution have that distribution."""
    model = tiny_model(seed=1)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        model.unembed.b_U[:] = torch.log(torch.linspace(1.0, 4.0, 16))
    x = cv.sample_sequences(model, 64, 16, prompt=0, seed=0)
    assert x.shape == (64, 16) and (x[:, 0] == 0).all()
    freq = torch.bincount(x[:, 1:].reshape(-1), minlength=16).double() / x[:, 1:].numel()
    expected = torch.linspace(1.0, 4.0, 16).double() / torch.linspace(1.0, 4.0, 16).sum()
    assert float((freq - expected).abs().max()) < 0.02
    torch.testing.assert_close(x, cv.sample_sequences(model, 64, 16, prompt=0, seed=0))
