"""Sequential vs batched components, and what the paper-profile grid would cost.

Usage:  python benchmarks/sweep_batched.py [--profile cpu] [--components 16] [--steps 4] [--gpus 1 8 32]

For the profile's L2 shape (fresh weights, random tokens; the time of a step does not depend on
the weights), times ``--steps`` SGLD steps of every chain of ``--components`` head estimates
(all heads of L2 when 16) one component after another (``estimate_llc``, what a sweep runs per
job: on CPU the fused head loss, on a GPU the chains of one component vmapped) and all at once
(``estimate_components``: chains x components in one vmapped pass). Prints seconds per estimate
(per SGLD step of all its chains), the throughput ratio batched/sequential, and, from the faster
of the two, the projected cost of the paper profile's grid at its full sampler settings:
17 components (16 heads + the full model) x 107 checkpoints x ``--distributions`` distributions,
in device-hours and in wall time on each of ``--gpus`` devices. ``--max-components`` caps how many
components share a pass (memory: the logits of every chain and component are live at once).
Run it with the allocator setting the Makefile exports (MALLOC_MMAP_MAX_=0 ...) on CPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
import warnings

import torch

from rllc.config import load_config
from rllc.estimate.llc import estimate_components, estimate_llc
from rllc.estimate.sgld import n_steps
from rllc.model.build import build_model, resolve_device
from rllc.model.components import head_names

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--components", type=int, default=16, help="head estimates (at most the model's heads)")
    ap.add_argument("--max-components", type=int, default=16, help="components per batched pass")
    ap.add_argument("--steps", type=int, default=4, help="SGLD steps per chain to time")
    ap.add_argument("--chains", type=int, default=None, help="default: the profile's sampler")
    ap.add_argument("--distributions", type=int, default=4,
                    help="distributions per checkpoint in the projection (train, two code sets, model:L1)")
    ap.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 32])
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()

    cfg = load_config(args.profile)
    dev = resolve_device(args.device)
    s = dataclasses.replace(cfg.sampler, draws=args.steps, burnin=0, chains=args.chains or cfg.sampler.chains,
                            reference="init", init_loss_batches=1)
    model = build_model(cfg, "L2", cfg.tokenizer.vocab_size, device=dev)
    heads = head_names(2, cfg.model.n_heads)[: args.components]
    g = torch.Generator().manual_seed(0)
    n = max(s.batch_size * (args.steps + 1), 2 * s.batch_size)
    data = torch.randint(0, cfg.tokenizer.vocab_size, (n, cfg.model.n_ctx), generator=g).to(dev)

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    estimate_llc(model, heads[0], data, dataclasses.replace(s, draws=1), device=dev)  # warm-up
    sync()
    start = time.perf_counter()
    for h in heads:
        estimate_llc(model, h, data, s, device=dev)
    sync()
    sequential = (time.perf_counter() - start) / len(heads)

    estimate_components(model, heads[:2], data, dataclasses.replace(s, draws=1), device=dev)  # warm-up
    sync()
    start = time.perf_counter()
    for i in range(0, len(heads), args.max_components):
        estimate_components(model, heads[i:i + args.max_components], data, s, device=dev)
    sync()
    batched = (time.perf_counter() - start) / len(heads)
    peak = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None

    paper = load_config("paper")
    # seconds per SGLD step of one chain (the faster way), then per estimate at the paper's chains
    per_chain_step = min(sequential, batched) / args.steps / s.chains
    paper_steps = n_steps(paper.sampler)
    estimates = 17 * len(paper.checkpoint_steps("L2")) * args.distributions
    hours = estimates * per_chain_step * paper.sampler.chains * paper_steps / 3600
    out = {
        "profile": args.profile, "device": str(dev),
        "gpu": torch.cuda.get_device_name() if dev.type == "cuda" else None,
        "shape": {"d_model": cfg.model.d_model, "n_heads": cfg.model.n_heads, "n_ctx": cfg.model.n_ctx,
                  "vocab": cfg.tokenizer.vocab_size, "sgld_batch": s.batch_size, "chains": s.chains},
        "components": len(heads), "per_pass": min(args.max_components, len(heads)), "steps_timed": args.steps,
        "seconds_per_estimate_step": {"sequential": sequential / args.steps, "batched": batched / args.steps},
        "throughput_ratio_batched_over_sequential": sequential / batched,
        "peak_gpu_gib": peak,
        "projection": {
            "valid_for": f"the paper profile's grid on this device ({dev.type}) at the {args.profile} shape"
                         + ("" if args.profile == "paper" else ": not the paper's shape, so not its cost"),
            "estimates": estimates, "chains_per_estimate": paper.sampler.chains, "sgld_steps_per_chain": paper_steps,
            "device_hours": hours, "wall_hours_on": {str(k): hours / k for k in args.gpus},
        },
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
