"""The paper profile's batched path, checked on a CPU at the paper's shape.

Usage:  python benchmarks/paper_shape_check.py [--profile paper] [--counts 1x2x1 2x2x1 2x2x2]

A researcher with a GPU runs the paper profile's sweeps as batched passes (chains x components
stacked with ``torch.func.vmap``). Two things about that path can be checked without a GPU:

1. **The first-step gradient against autograd.** ``run_components_batched`` compares the vmapped
   gradient of its first component with plain autograd at w* and refuses the path when they
   differ. Here it runs on the profile's L2 (fresh weights, random tokens of ``n_ctx``) for a layer-0
   head, a layer-1 head and the full model; the script records the largest relative difference the
   check returns, so the margin under its tolerance (1e-3) is printed, not just "no error".
2. **The memory estimate.** ``rllc.estimate.passes.plan_passes`` sizes a pass from
   ``passes.sequence_bytes`` (the logits and the attention maps of one sequence) times the
   sequences of a pass (components x chains x batch). Each count
   ``KxCxB`` (components x chains x SGLD batch) runs one batched SGLD step in a fresh process, and
   the process's peak resident memory over that step (``ru_maxrss`` minus the resident memory just
   before it) is set beside the estimate. Run with the Makefile's allocator setting
   (MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=...), so that freed memory is not handed back and
   re-counted.

Prints one JSON object. On a GPU (``--device cuda``) the peak is ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import multiprocessing as mp
import resource
import time
import warnings
from typing import Any

import torch

warnings.filterwarnings("ignore")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize()


def _setup(profile: str, device: str, chains: int, batch: int) -> tuple[Any, Any, torch.Tensor, Any]:
    from rllc.config import load_config
    from rllc.model.build import build_model, resolve_device

    torch.manual_seed(0)
    cfg = load_config(profile)
    dev = resolve_device(device)
    s = dataclasses.replace(cfg.sampler, chains=chains, batch_size=batch, draws=1, burnin=0,
                            reference="init", init_loss_batches=1)
    model = build_model(cfg, "L2", cfg.tokenizer.vocab_size, device=dev)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, cfg.tokenizer.vocab_size, (4 * batch, cfg.model.n_ctx), generator=g).to(dev)
    return cfg, s, data, model


def gradient_check(profile: str, device: str, components: list[str]) -> dict[str, Any]:
    """Run the batched path once; return the largest relative difference its first-step check saw."""
    from rllc.estimate import batched
    from rllc.estimate.llc import estimate_components

    cfg, s, data, model = _setup(profile, device, chains=2, batch=1)
    seen: dict[str, float] = {}
    original = batched.check_first_gradients

    def recording(*args, **kwargs):  # type: ignore[no-untyped-def]
        seen["relative_difference"] = original(*args, **kwargs)  # the check itself: raises on a mismatch

    batched.check_first_gradients = recording
    out: dict[str, Any] = {}
    try:
        for comp in components:  # each first in its pass: the check reads the first component
            seen.clear()
            start = time.perf_counter()
            res = estimate_components(model, [comp], data, s)
            out[comp] = {**seen, "passed": True, "seconds": round(time.perf_counter() - start, 1),
                         "llc_finite": bool(all(math.isfinite(r.mean) for r in res))}
    finally:
        batched.check_first_gradients = original
    return {"shape": {"d_model": cfg.model.d_model, "n_heads": cfg.model.n_heads, "d_head": cfg.model.d_head,
                      "n_ctx": cfg.model.n_ctx, "d_vocab": cfg.tokenizer.vocab_size}, "components": out}


def _one_pass(profile: str, device: str, k: int, chains: int, batch: int, queue: mp.Queue) -> None:
    from rllc.estimate.llc import estimate_components
    from rllc.estimate.passes import plan_passes, sequence_bytes
    from rllc.model.components import head_names

    cfg, s, data, model = _setup(profile, device, chains, batch)
    comps = (head_names(2, cfg.model.n_heads) + ["full"])[:k]
    cuda = data.device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        before = _rss_bytes()
    estimate_components(model, comps, data, s)
    peak = (torch.cuda.max_memory_allocated() if cuda
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    shape = (2, cfg.model.n_heads, cfg.model.n_ctx, cfg.tokenizer.vocab_size)
    estimate = k * chains * batch * sequence_bytes(*shape)
    # the pass plan_passes would choose with exactly the measured peak free, at fraction 1
    plan = plan_passes(*shape, s, peak - before, fraction=1.0)
    queue.put({"count": f"{k}x{chains}x{batch}", "components": comps, "estimate_bytes": estimate,
               "measured_peak_bytes": peak - before, "measured_over_estimate": (peak - before) / estimate,
               "plan_at_measured": [plan.components, plan.chains],
               "peak_from": "cuda" if cuda else "ru_maxrss - rss before"})


def memory_check(profile: str, device: str, counts: list[str]) -> list[dict[str, Any]]:
    rows = []
    ctx = mp.get_context("spawn")
    for count in counts:
        k, chains, batch = (int(x) for x in count.split("x"))
        q: mp.Queue = ctx.Queue()
        p = ctx.Process(target=_one_pass, args=(profile, device, k, chains, batch, q))
        p.start()
        rows.append(q.get())
        p.join()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--profile", default="paper")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--components", nargs="+", default=["0:0", "1:7", "full"])
    ap.add_argument("--counts", nargs="+", default=["1x2x1", "2x2x1", "2x2x2"],
                    help="components x chains x SGLD batch of each measured pass")
    args = ap.parse_args()
    out = {"profile": args.profile, "device": args.device, "torch": torch.__version__,
           "threads": torch.get_num_threads(),
           "gradient_check": gradient_check(args.profile, args.device, args.components),
           "memory": memory_check(args.profile, args.device, args.counts)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
