"""Per chain-step wall time of the rllc SGLD sampler vs. a training step and vs. devinterp 2.0.1.

Usage:  python benchmarks/sgld_speed.py [--profile cpu] [--component 0:1] [--draws 30] [--repeats 3]

The training step is rllc's own (the fused forward of rllc.model.fused, AdamW); the step through
TransformerLens' forward is printed beside it. Same model (the profile's L2 shape, fresh weights), component,
batch, chains and draws for every
contender; each is timed ``--repeats`` times and the minimum is kept (the machine is shared).
Prints ms per step and the ratios:
  (a) rllc chain-step / training step: the plain fused loss, reference included (the target <= 1.3)
  (b) devinterp chain-step / rllc (target >= 1.3)
  (c) what one estimate pays per chain-step, over a training step (the targets: <= 0.6 for a
      layer-1 head, <= 1.0 for the full model), two ways:
      - alone: ``estimate_llc`` computing its own paired reference (the `rllc llc` command);
      - in a sweep: as ``run_sweep`` runs it, with the paired reference computed once per
        (checkpoint, distribution) group and shared by its components (its time divided among the
        group's heads + full model) and a layer's inputs shared by its heads (``LayerInputs``,
        filled by another head of the layer first).
Run it with the allocator setting the Makefile exports (MALLOC_MMAP_MAX_=0 ...).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch

from rllc.config import SamplerConfig, load_config
from rllc.estimate.llc import estimate_llc, head_list, paired_baselines, sample_llc
from rllc.estimate.sgld import chain_feeds, n_steps
from rllc.model.build import build_model
from rllc.model.components import component_masks
from rllc.model.fused import LayerInputs, next_token_loss

warnings.filterwarnings("ignore")


def time_training(model, data, batch, steps, fused=True):
    """One AdamW step as rllc.train takes it (fused forward), or through TransformerLens' forward."""
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    start = time.perf_counter()
    for i in range(steps):
        tokens = data[(i * batch) % (len(data) - batch):][:batch]
        loss = next_token_loss(model, tokens) if fused else model(tokens, return_type="loss")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return (time.perf_counter() - start) / steps


def time_rllc(model, data, masks, s):
    r = sample_llc(model, data, masks, s, next_token_loss)  # the plain fused loss, whatever the component
    steps = s.chains * (s.burnin + s.draws)
    return r.seconds / steps, r


def time_rllc_estimate(model, data, component, s):
    """What sweeps run: estimate_llc, which for heads computes the frozen prefix once per batch (HeadLoss)."""
    r = estimate_llc(model, component, data, s, device="cpu")
    steps = s.chains * (s.burnin + s.draws)
    return r.seconds / steps, r


def time_sweep_share(model, data, component, s):
    """Per chain-step cost of one estimate inside a sweep group (see the module docstring)."""
    feeds = chain_feeds(data, s)
    start = time.perf_counter()
    base = paired_baselines(model, feeds, next_token_loss, n_steps(s), torch.device("cpu"))
    base_s = time.perf_counter() - start
    group = model.cfg.n_layers * model.cfg.n_heads + 1
    inputs = LayerInputs()
    heads = head_list(component)
    if heads is not None:  # another head of the layer fills the shared inputs first, as in a sweep
        layer = heads[0][0]
        other = next(h for h in range(model.cfg.n_heads) if (layer, h) not in heads)
        estimate_llc(model, f"{layer}:{other}", data, s, device="cpu", baseline=base, layer_inputs=inputs)
    r = estimate_llc(model, component, data, s, device="cpu", baseline=base, layer_inputs=inputs)
    steps = s.chains * (s.burnin + s.draws)
    return (r.seconds + base_s / group) / steps


def time_devinterp(model, data, masks, s):
    import datasets
    from devinterp.slt.llc import llc

    ds = datasets.Dataset.from_dict({"input_ids": data.numpy()}).with_format("torch")
    start = time.perf_counter()
    llc(model, ds, {}, lr=s.epsilon, n_beta=s.nbeta, localization=s.gamma, param_masks=masks, num_chains=s.chains,
        num_draws=s.draws, batch_size=s.batch_size, num_init_loss_batches=s.init_loss_batches, init_seed=s.seed,
        device="cpu")
    steps = s.chains * s.draws
    return (time.perf_counter() - start) / steps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--component", default="0:1")
    ap.add_argument("--draws", type=int, default=30)
    ap.add_argument("--chains", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    cfg = load_config(args.profile)
    s = SamplerConfig(**{**cfg.sampler.__dict__, "draws": args.draws, "chains": args.chains, "burnin": 0,
                         "init_loss_batches": 4})
    model = build_model(cfg, "L2", cfg.tokenizer.vocab_size)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, cfg.tokenizer.vocab_size, (max(256, 8 * s.batch_size), cfg.model.n_ctx), generator=g)
    masks = component_masks(model, args.component)

    train_ms = min(time_training(build_model(cfg, "L2", cfg.tokenizer.vocab_size), data, s.batch_size, args.draws)
                   for _ in range(args.repeats)) * 1e3
    train_tl_ms = min(time_training(build_model(cfg, "L2", cfg.tokenizer.vocab_size), data, s.batch_size, args.draws,
                                    fused=False) for _ in range(args.repeats)) * 1e3
    rllc_ms = min(time_rllc(model, data, masks, s)[0] for _ in range(args.repeats)) * 1e3
    est_ms = min(time_rllc_estimate(model, data, args.component, s)[0] for _ in range(args.repeats)) * 1e3
    sweep_ms = min(time_sweep_share(model, data, args.component, s) for _ in range(args.repeats)) * 1e3
    dev_ms = min(time_devinterp(model, data, masks, s) for _ in range(args.repeats)) * 1e3
    out = {
        "profile": args.profile, "component": args.component, "batch": s.batch_size, "n_ctx": cfg.model.n_ctx,
        "d_model": cfg.model.d_model, "chains": s.chains, "draws": s.draws, "threads": torch.get_num_threads(),
        "train_step_ms": round(train_ms, 2), "train_step_transformer_lens_forward_ms": round(train_tl_ms, 2),
        "rllc_chain_step_ms": round(rllc_ms, 2),
        "rllc_estimate_llc_chain_step_ms": round(est_ms, 2), "head_path": head_list(args.component) is not None,
        "rllc_in_sweep_chain_step_ms": round(sweep_ms, 2),
        "devinterp_chain_step_ms": round(dev_ms, 2),
        "ratio_a_rllc_over_train": round(rllc_ms / train_ms, 3),
        "ratio_b_devinterp_over_rllc": round(dev_ms / rllc_ms, 3),
        "ratio_c_estimate_alone_over_train": round(est_ms / train_ms, 3),
        "ratio_c_estimate_in_sweep_over_train": round(sweep_ms / train_ms, 3),
    }
    print(json.dumps(out, indent=2))
    print(f"(a) rllc / training step = {out['ratio_a_rllc_over_train']:.2f} (target <= 1.3)")
    print(f"(b) devinterp / rllc     = {out['ratio_b_devinterp_over_rllc']:.2f} (target >= 1.3)")
    target = 1.0 if args.component == "full" else 0.6 if args.component.startswith("1:") else None
    goal = f" (target <= {target})" if target is not None else ""
    print(f"(c) {args.component} estimate / training step: alone {out['ratio_c_estimate_alone_over_train']:.2f}, "
          f"in a sweep {out['ratio_c_estimate_in_sweep_over_train']:.2f}{goal}")


if __name__ == "__main__":
    main()
