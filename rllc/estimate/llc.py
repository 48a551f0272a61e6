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
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from ..config import SamplerConfig
from ..model.components import ParamMasks, component_masks, component_size, parse_head
from ..model.fused import HeadLoss, LayerInputs, SoftTargets, model_logits, next_token_loss, soft_ce, supports
from .batched import run_chains_batched, run_components_batched
from .sgld import BATCH_ORDERS, ESTIMATOR_VERSION, BatchFeed, LossFn, chain_feeds, n_steps, sgld_update

__all__ = ["ESTIMATOR_VERSION", "BatchFeed", "LLCResult", "LossFn", "estimate_components", "estimate_llc",
           "generator_loss", "n_steps", "prefix_result", "sample_llc"]

# How an estimate's chains were run (in its record as "pass"). The key of a record does not say:
# the three give the same numbers up to floating-point summation order (tests compare them), and
# on a GPU which components share a pass depends on the free memory, not on the estimate.
PASS_SEQUENTIAL = "chains one after another"
PASS_VMAPPED = "chains vmapped"
PASS_COMPONENTS = "components x chains vmapped"

FLAG_DIVERGED = "diverged"
FLAG_BELOW_INIT = "below_init"
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
# The result record


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


PREFIX_SETTINGS = ("chains", "draws")  # the settings a shorter estimate may differ in from the record it is cut from


def prefix_result(record: dict[str, Any], settings: SamplerConfig) -> LLCResult | None:
    """The estimate under ``settings`` cut from the record of a longer one: its first
    ``settings.chains`` chains, each to its first ``settings.draws`` draws.

    Chain c's batches and noise are seeded by the sampler's seed and c alone and each chain runs
    on its own, so the estimate with fewer chains or draws (all other settings equal) sees exactly
    the first chains and steps of the longer one: its per-chain values, flags and summary are
    recomputed here from those traces and references by ``make_result``, bit-identical to running
    it (a test checks it). None when the record cannot give it: fewer chains or draws, other
    settings, or (reference "init") no per-chain L(w*) stored. The time is the record's, scaled
    to the number of chain-steps."""
    src = record.get("settings", {})
    want = asdict(settings)
    if any(src.get(k) != v for k, v in want.items() if k not in PREFIX_SETTINGS):
        return None
    if src.get("chains", 0) < settings.chains or src.get("draws", 0) < settings.draws:
        return None
    chains, steps = settings.chains, n_steps(settings)
    traces = np.asarray(record["traces"], dtype=float)[:chains, :steps]
    baseline = None
    if settings.reference == "paired":
        if record.get("baseline") is None:
            return None
        baseline = np.asarray(record["baseline"], dtype=float)[:chains, :steps]
        l0: float | np.ndarray = float(select_draws(baseline, settings.burnin, settings.steps_between_draws,
                                                    settings.draws).mean())
    elif record.get("chain_init_loss") is not None:
        l0 = np.asarray(record["chain_init_loss"], dtype=float)[:chains]
    else:
        return None
    if traces.shape != (chains, steps):
        return None
    src_steps = src["burnin"] + src["draws"] * src["steps_between_draws"]
    seconds = float(record.get("seconds", 0.0)) * (chains * steps) / (src["chains"] * src_steps)
    result = make_result(traces, l0, settings, int(record["n_weights"]), component=record.get("component", ""),
                         data=record.get("data", ""), seconds=seconds, baseline=baseline)
    result.meta["pass"] = record.get("pass", PASS_SEQUENTIAL)
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
