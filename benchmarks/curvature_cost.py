"""What a Hessian-vector product costs against one SGLD step (notebook 05's budget).

Usage:  python benchmarks/curvature_cost.py [--profile cpu] [--component 0:1] [--repeats 3]

Same model (the profile's L2 shape, fresh weights), component and batch (the sampler's batch size)
for both: one SGLD chain step as ``estimate_llc`` runs it (per step of a chain, so heads take the
frozen-prefix fast path), and one product H v of the loss Hessian restricted to the component
(``rllc.estimate.hessian.ComponentHessian``: double backward under the MATH attention backend).
Each is timed ``--repeats`` times and the minimum is kept (the machine is shared). Prints ms per
operation and the ratio HVP / SGLD step (expected about 2-3: one forward and two backward passes
against one of each, plus the MATH kernel being slower than the fused one).
Run it with the allocator setting the Makefile exports (MALLOC_MMAP_MAX_=0 ...).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch

from rllc.config import SamplerConfig, load_config
from rllc.estimate.hessian import ComponentHessian
from rllc.estimate.llc import estimate_llc
from rllc.model.build import build_model
from rllc.model.components import component_masks

warnings.filterwarnings("ignore")


def time_sgld(model, data, component, s) -> float:
    r = estimate_llc(model, component, data, s, device="cpu")
    return r.seconds / (s.chains * (s.burnin + s.draws))


def time_hvp(model, data, component, batch, n) -> float:
    op = ComponentHessian(model, component_masks(model, component), data[:batch], batch_size=batch)
    v = torch.randn(op.d, generator=torch.Generator().manual_seed(0))
    op(v)  # warm-up
    start = time.perf_counter()
    for _ in range(n):
        op(v)
    return (time.perf_counter() - start) / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--component", default="0:1")
    ap.add_argument("--draws", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()

    cfg = load_config(args.profile)
    s = SamplerConfig(**{**cfg.sampler.__dict__, "draws": args.draws, "chains": 1, "burnin": 0,
                         "init_loss_batches": 4})
    model = build_model(cfg, "L2", cfg.tokenizer.vocab_size)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, cfg.tokenizer.vocab_size, (max(64, 8 * s.batch_size), cfg.model.n_ctx), generator=g)
    sgld_ms = min(time_sgld(model, data, args.component, s) for _ in range(args.repeats)) * 1e3
    hvp_ms = min(time_hvp(model, data, args.component, s.batch_size, args.draws // 2)
                 for _ in range(args.repeats)) * 1e3
    out = {"profile": args.profile, "component": args.component, "batch": s.batch_size, "n_ctx": cfg.model.n_ctx,
           "d_model": cfg.model.d_model, "threads": torch.get_num_threads(),
           "sgld_step_ms": round(sgld_ms, 2), "hvp_ms": round(hvp_ms, 2),
           "ratio_hvp_over_sgld_step": round(hvp_ms / sgld_ms, 2)}
    print(json.dumps(out, indent=2))
    print(f"HVP / SGLD step = {out['ratio_hvp_over_sgld_step']:.2f} ({args.component}, batch {s.batch_size})")


if __name__ == "__main__":
    main()
