"""SGLD estimates of the local learning coefficient (LLC), refined by weights and by data.

For a model at w* and a loss L (mean per-token loss of a batch), each chain runs

    w <- w - (eps/2) * mask * (nbeta * grad L_batch(w) + gamma * (w - w*)) + sqrt(eps) * mask * N(0, I)

from w*, and the estimate is  lambda_hat = nbeta * (mean over draws and chains of L_batch(w) - L(w*)).

* **Weight refinement**: ``mask`` selects a component (``rllc.components``); all other weights
  stay at w* bit for bit.
* **Data refinement**: the loss is measured on any token dataset, or, for a generator model,
  it is the cross-entropy from the generator's next-token distribution to the model's on the
  same contexts (the paper's eq. 11).

Conventions match devinterp 2.0.1 (``devinterp.slt.sampling.sample`` with ``sgmcmc_sgld``) under
``batch_order="shared"``: the loss is recorded before each update; every chain sees the same
batches, in the order of ``randperm(n, generator=seed)`` cycled; chain c draws its noise from a
generator seeded with ``seed + c``, one ``N(0, 1)`` tensor of each parameter's full shape, in mask
order; L(w*) is the mean over the first ``init_loss_batches`` batches. With equal settings and
seeds the two give the same loss traces (a test checks it). The default, ``batch_order=
"per_chain"``, gives chain c its own order (seed + c) and its own reference, so the chains are
independent replicates and their spread covers the batch order too.
"""

from __future__ import annotations

import copy
import math
import time

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import SamplerConfig
from ..model.components import ParamMasks, component_masks, component_size, parse_head
from ..model.fused import HeadLoss, LayerInputs, SoftTargets, model_logits, next_token_loss, soft_ce, supports
from .batched import run_chains_batched, run_components_batched
from .result import PASS_COMPONENTS, PASS_SEQUENTIAL, PASS_VMAPPED, LLCResult, make_result, select_draws
from .sgld import BATCH_ORDERS, ESTIMATOR_VERSION, BatchFeed, LossFn, chain_feeds, n_steps, sgld_update

__all__ = ["ESTIMATOR_VERSION", "BatchFeed", "LLCResult", "LossFn", "estimate_components", "estimate_llc",
           "generator_loss", "n_steps", "sample_llc"]

REFERENCES = ("init", "paired")


# ---------------------------------------------------------------------------------------------
# Losses (the data refinement)


def generator_loss(generator: nn.Module | SoftTargets) -> LossFn:
    """Cross-entropy from ``generator``'s next-token distribution to the model's (paper eq. 11).

    The generator's predictions are computed on the same contexts, without gradients, once per
    distinct batch (``SoftTargets``); its entropy is a constant, so this differs from the KL
    divergence only by that constant, and the LLC estimate (a difference of losses) is the same
    for both.
    """
    targets = SoftTargets.of(generator)

    def loss(model: nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        return soft_ce(model_logits(model, tokens), targets(tokens))

    return loss


# ---------------------------------------------------------------------------------------------
# Sampling


def _check_settings(s: SamplerConfig) -> None:
    problems = []
    for name in ("epsilon", "nbeta"):
        if not getattr(s, name) > 0:
            problems.append(f"{name} must be > 0 (got {getattr(s, name)})")
    if s.gamma < 0:
        problems.append(f"gamma must be >= 0 (got {s.gamma})")
    for name in ("chains", "draws", "batch_size", "init_loss_batches", "steps_between_draws"):
        if getattr(s, name) < 1:
            problems.append(f"{name} must be >= 1 (got {getattr(s, name)})")
    if s.burnin < 0:
        problems.append(f"burnin must be >= 0 (got {s.burnin})")
    if s.reference not in REFERENCES:
        problems.append(f"reference must be one of {REFERENCES} (got {s.reference!r})")
    if s.batch_order not in BATCH_ORDERS:
        problems.append(f"batch_order must be one of {BATCH_ORDERS} (got {s.batch_order!r})")
    if problems:
        raise ValueError("bad sampler settings: " + "; ".join(problems))


def _is_hooked(model: nn.Module) -> bool:
    return hasattr(model, "cfg") and hasattr(model.cfg, "n_heads")


@torch.no_grad()
def batch_losses(model: nn.Module, feed: BatchFeed, loss_fn: LossFn, n_batches: int,
                 device: torch.device) -> np.ndarray:
    """The loss at the model's current weights on each of the feed's first ``n_batches`` batches.

    At w* these are the paired reference of every SGLD step (every chain sees the same batches).
    """
    return np.array([float(loss_fn(model, feed[i].to(device))) for i in range(n_batches)])


def init_loss(model: nn.Module, feed: BatchFeed, loss_fn: LossFn, n_batches: int, device: torch.device) -> float:
    """L(w*): the mean loss over the first ``n_batches`` batches of the feed."""
    return float(batch_losses(model, feed, loss_fn, n_batches, device).mean())


def _chain_params(named: dict[str, nn.Parameter], masks: ParamMasks,
                  device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]]:
    """(parameter, its value at w*, its mask on the device) for every parameter a chain moves."""
    return [(named[n], named[n].detach().clone(), None if m is None else m.to(device)) for n, m in masks.items()]


def sgld_chain(model: nn.Module, masks: ParamMasks, feed: BatchFeed, loss_fn: LossFn, s: SamplerConfig,
               chain: int = 0, device: torch.device | None = None, bar: tqdm | None = None) -> np.ndarray:
    """Run one chain in place from the model's current weights (w*); return its loss trace.

    Only the weights selected by ``masks`` move; every other weight keeps its exact bits.
    """
    named = dict(model.named_parameters())
    dev = device if device is not None else next(model.parameters()).device
    params = _chain_params(named, masks, dev)
    before = {n: p.requires_grad for n, p in named.items()}
    for n, p in named.items():
        p.requires_grad_(n in masks)
    try:
        return _run_chain(model, params, feed, loss_fn, s, chain, dev, bar)
    finally:
        for n, p in named.items():
            p.requires_grad_(before[n])


def paired_baselines(model: nn.Module, feeds: list[BatchFeed], loss_fn: LossFn, steps: int,
                     device: torch.device) -> np.ndarray:
    """The paired reference of every chain: [chains, steps] losses at w* on each chain's batches
    (computed once per distinct feed: once in all with a shared batch order)."""
    done: dict[int, np.ndarray] = {}
    for f in feeds:
        if id(f) not in done:
            done[id(f)] = batch_losses(model, f, loss_fn, steps, device)
    return np.stack([done[id(f)] for f in feeds])


def reference_losses(model: nn.Module, feeds: list[BatchFeed], loss_fn: LossFn, settings: SamplerConfig,
                     device: torch.device, baseline: np.ndarray | None = None,
                     ) -> tuple[np.ndarray | None, np.ndarray | None, float]:
    """What an estimate's draws are compared with: (the paired baseline [chains, steps] or None,
    each chain's L(w*) under the "init" reference or None, the L(w*) the result reports).

    ``baseline``: the paired losses when the caller has them ([steps] is accepted with a shared
    batch order); otherwise they are computed here."""
    if settings.reference == "paired":
        shape = (settings.chains, n_steps(settings))
        if baseline is None:
            baseline = paired_baselines(model, feeds, loss_fn, n_steps(settings), device)
        baseline = np.asarray(baseline, dtype=float)
        if baseline.shape == shape[1:] and settings.batch_order == "shared":
            baseline = np.broadcast_to(baseline, shape).copy()
        if baseline.shape != shape:
            raise ValueError(f"baseline has shape {baseline.shape}; the sampler needs {shape} (chains, steps)")
        return baseline, None, float(select_draws(baseline, settings.burnin, settings.steps_between_draws,
                                                  settings.draws).mean())
    firsts: dict[int, float] = {}
    for f in feeds:
        if id(f) not in firsts:
            firsts[id(f)] = init_loss(model, f, loss_fn, settings.init_loss_batches, device)
    chain_l0 = np.array([firsts[id(f)] for f in feeds])
    return None, chain_l0, float(chain_l0.mean())


@torch.no_grad()
def _loss_at_anchor(model: nn.Module, params: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
                    loss_fn: LossFn, tokens: torch.Tensor) -> float:
    """The loss at w* on a batch while a chain is away from it: the moving tensors' storage is
    swapped for their values at w* (no copy), the loss computed, and the chain's weights put back."""
    current = [p.data for p, _, _ in params]
    try:
        for p, anchor, _ in params:
            p.data = anchor
        return float(loss_fn(model, tokens))
    finally:
        for (p, _, _), data in zip(params, current, strict=True):
            p.data = data


def _run_chain(model: nn.Module, params: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]],
               feed: BatchFeed, loss_fn: LossFn, s: SamplerConfig, chain: int, device: torch.device,
               bar: tqdm | None, reference: np.ndarray | None = None) -> np.ndarray:
    """One chain from w*; its loss trace. ``reference``: a row to fill with the loss at w* on each
    step's batch (the paired reference), computed just before the step's own loss on the same batch
    so that a loss keeping the batch's frozen part (``HeadLoss``) computes that part once for both."""
    for p, anchor, _ in params:  # start every chain at w*
        p.data.copy_(anchor)
    noise_gen = torch.Generator(device=device).manual_seed(s.seed + chain)
    trace = np.empty(n_steps(s))
    for step in range(n_steps(s)):
        tokens = feed[step].to(device)
        if reference is not None:
            reference[step] = _loss_at_anchor(model, params, loss_fn, tokens)
        loss = loss_fn(model, tokens)
        for p, _, _ in params:
            p.grad = None
        loss.backward()
        value = float(loss.detach())
        trace[step] = value
        if not math.isfinite(value):
            trace[step:] = math.nan
            if reference is not None:  # the reference stays defined for the steps the chain skips
                for rest in range(step + 1, n_steps(s)):
                    reference[rest] = _loss_at_anchor(model, params, loss_fn, feed[rest].to(device))
            if bar is not None:
                bar.update(n_steps(s) - step)
            break
        with torch.no_grad():
            for p, anchor, mask in params:
                noise = torch.normal(0.0, 1.0, size=p.shape, generator=noise_gen, device=device, dtype=p.dtype)
                sgld_update(p.data, p.grad, anchor, mask, noise, s)
        if bar is not None:
            bar.update(1)
    for p, _, _ in params:
        p.grad = None
    return trace


def sample_llc(
    model: nn.Module,
    data: torch.Tensor,
    masks: ParamMasks | None = None,
    settings: SamplerConfig = SamplerConfig(),
    loss_fn: LossFn = next_token_loss,
    device: str | torch.device | None = None,
    progress: bool = False,
    batched: bool | None = None,
    component: str = "",
    data_name: str = "",
    bar: tqdm | None = None,
    baseline: np.ndarray | None = None,
    chains_per_pass: int | None = None,
) -> LLCResult:
    """Estimate the LLC of ``model`` at its current weights.

    ``data`` is a [n, n_ctx] token tensor (or any tensor ``loss_fn`` takes batches of); ``masks``
    selects the weights that move (``None``: all). The model itself is not changed: chains run
    on a copy. ``batched`` runs all chains at once with ``torch.func`` (default: on a GPU only).
    ``bar``: an outer progress bar to advance (one unit per chain-step) instead of a new one.
    ``baseline``: with the paired reference, the loss at w* on each chain's batch at each step
    ([chains, steps]; [steps] is accepted with a shared batch order) when the caller already has
    it (it depends on the model, data and sampler settings, not on the component: sweeps compute
    it once per checkpoint and distribution); otherwise it is computed here.
    ``chains_per_pass``: on the batched path, run the chains in groups of at most this many (the
    same traces up to floating-point reassociation; for a device that cannot hold all at once).
    """
    _check_settings(settings)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    work = copy.deepcopy(model)
    work = work.to(dev, print_details=False) if _is_hooked(work) else work.to(dev)
    work.train()
    named = dict(work.named_parameters())
    masks = masks if masks is not None else {n: None for n in named}
    unknown = [n for n in masks if n not in named]
    if unknown:
        raise KeyError(f"masks name parameters the model lacks: {unknown}")
    for n, p in named.items():
        p.requires_grad_(n in masks)
    params = _chain_params(named, masks, dev)
    n_weights = component_size(work, masks)

    feeds = chain_feeds(data, settings)
    start = time.perf_counter()
    use_batched = batched if batched is not None else dev.type == "cuda"
    # a head loss with per-chain orders computes each batch's frozen part once for both the paired
    # reference and the chain's step (the same numbers as a separate reference pass, bit for bit)
    inline = (baseline is None and settings.reference == "paired" and not use_batched
              and isinstance(loss_fn, HeadLoss) and settings.batch_order == "per_chain")
    if inline:
        rows = np.empty((settings.chains, n_steps(settings)))
    else:
        baseline, chain_l0, l0 = reference_losses(work, feeds, loss_fn, settings, dev, baseline)
    total = settings.chains * n_steps(settings)
    own_bar = bar is None
    if own_bar:
        bar = tqdm(total=total, desc=f"SGLD {component or 'model'}", disable=not progress, mininterval=1.0)
    try:
        if use_batched:
            traces = run_chains_batched(work, masks, feeds, loss_fn, settings, dev, bar, chains_per_pass)
        else:
            traces = np.stack([_run_chain(work, params, feeds[c], loss_fn, settings, c, dev, bar,
                                          reference=rows[c] if inline else None)
                               for c in range(settings.chains)])
    finally:
        if own_bar:
            bar.close()
    if inline:
        baseline, chain_l0, l0 = reference_losses(work, feeds, loss_fn, settings, dev, rows)
    seconds = time.perf_counter() - start
    result = make_result(traces, chain_l0 if chain_l0 is not None else l0, settings, n_weights, component=component,
                         data=data_name, seconds=seconds, baseline=baseline)
    result.meta["pass"] = PASS_VMAPPED if use_batched else PASS_SEQUENTIAL
    return result


def head_list(component: str) -> list[tuple[int, int]] | None:
    """[(layer, head), …] when a component name is one head or a union of heads, else None."""
    try:
        return [parse_head(part) for part in component.split("+")]
    except ValueError:
        return None


def estimate_llc(
    model: nn.Module,
    component: str,
    data: torch.Tensor,
    settings: SamplerConfig = SamplerConfig(),
    generator: nn.Module | None = None,
    data_name: str = "",
    device: str | torch.device | None = None,
    progress: bool = False,
    bar: tqdm | None = None,
    baseline: np.ndarray | None = None,
    layer_inputs: LayerInputs | None = None,
    chains_per_pass: int | None = None,
) -> LLCResult:
    """The (weight- and data-refined) LLC of a named component of a language model.

    ``generator``: measure the loss as the cross-entropy from this model's predictions
    (eq. 11) on the contexts in ``data``, instead of the next-token loss on ``data`` (a model, or
    a ``SoftTargets`` of one to share its cached predictions between estimates).
    ``baseline``: the paired reference losses, if already computed (see ``sample_llc``).
    ``layer_inputs``: for a head (or heads) on CPU, the inputs of its layer on each batch, shared
    with the other heads' estimates at the same checkpoint and data (``rllc.model.fused.LayerInputs``;
    the estimate is bit-identical with or without it, only faster).
    ``chains_per_pass``: see ``sample_llc``.
    """
    masks = component_masks(model, component)
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    heads = head_list(component)
    # heads alone, sampled chain after chain (the batched GPU path substitutes parameters
    # functionally and uses the plain loss): compute the frozen part once per batch
    fast = heads is not None and dev.type != "cuda" and supports(model)
    targets = SoftTargets.of(generator) if generator is not None else None
    if fast:
        # with a shared order every chain revisits the same batches: keep their frozen prefixes;
        # with per-chain orders a batch comes back only for the step right after its paired reference
        keep = n_steps(settings) if settings.batch_order == "shared" else 1
        loss_fn = HeadLoss(heads, targets=targets, max_batches=keep, inputs=layer_inputs)
    else:
        loss_fn = generator_loss(targets) if targets is not None else next_token_loss
    return sample_llc(model, data, masks, settings, loss_fn, device=device, progress=progress,
                      component=component, data_name=data_name, bar=bar, baseline=baseline,
                      chains_per_pass=chains_per_pass)


def estimate_components(
    model: nn.Module,
    components: list[str],
    data: torch.Tensor,
    settings: SamplerConfig = SamplerConfig(),
    data_name: str = "",
    device: str | torch.device | None = None,
    bar: tqdm | None = None,
    baseline: np.ndarray | None = None,
    chains_per_pass: int | None = None,
) -> list[LLCResult]:
    """Several components of one model on one distribution in one batched pass (chains ×
    components stacked with ``torch.func.vmap``: the way to fill a GPU with small estimates).

    Each component's chains draw the noise and see the batches they would in its own
    ``estimate_llc``, so the results equal those up to floating-point reassociation (a test
    checks the traces). The paired reference (``baseline``) is the same for every component:
    computed once here if not given. Token data only: a generator's predictions (eq. 11) are
    estimated one component at a time (``estimate_llc``). ``chains_per_pass``: run the chains
    in groups of at most this many, one group after another (see ``run_components_batched``)."""
    _check_settings(settings)
    if not components:
        raise ValueError("no components to estimate")
    dev = torch.device(device) if device is not None else next(model.parameters()).device
    work = copy.deepcopy(model)
    work = work.to(dev, print_details=False) if _is_hooked(work) else work.to(dev)
    work.train()
    for p in work.parameters():
        p.requires_grad_(False)
    masks_list = [component_masks(work, c) for c in components]
    feeds = chain_feeds(data, settings)
    start = time.perf_counter()
    baseline, chain_l0, l0 = reference_losses(work, feeds, next_token_loss, settings, dev, baseline)
    traces = run_components_batched(work, masks_list, feeds, next_token_loss, settings, dev, bar,
                                    chains_per_pass=chains_per_pass)
    seconds = (time.perf_counter() - start) / len(components)  # the pass's time, shared out
    results = [make_result(traces[k], chain_l0 if chain_l0 is not None else l0, settings,
                           component_size(work, masks_list[k]), component=c, data=data_name, seconds=seconds,
                           baseline=baseline) for k, c in enumerate(components)]
    for r in results:
        r.meta["pass"] = f"{PASS_COMPONENTS} ({len(components)} components)"
    return results
