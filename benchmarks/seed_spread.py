"""Seed-to-seed spread of an LLC estimate against its reported standard error, and its cost, for a
shared batch order (devinterp's) and per-chain batch orders (the default), on a run's checkpoint.

Usage:  python benchmarks/seed_spread.py [--run runs/cpu] [--step last] [--components 0:1 1:0 full]
                                          [--seeds 8] [--reference paired]

The run's own sampler settings, with ``--seeds`` reruns that share no chain (``rllc.estimate.reruns``).
Prints, per component and batch order: the sd of the means, the root mean square of the reported
errors, their variance ratio with its 95% interval under honest errors, and seconds per estimate.
Estimates are not cached (nothing is written to the run). Run it with the allocator setting the
Makefile exports (MALLOC_MMAP_MAX_=0 ...).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import warnings

from rllc.data import tokens as tokens_mod
from rllc.estimate import reruns
from rllc.estimate.llc import estimate_llc
from rllc.run import load_model, run_config

warnings.filterwarnings("ignore")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--run", default="runs/cpu")
    ap.add_argument("--step", default="last")
    ap.add_argument("--components", nargs="+", default=["0:1", "1:0", "full"])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--reference", default=None, help="init or paired (default: the run's sampler)")
    args = ap.parse_args()

    cfg = run_config(args.run)
    model = load_model(args.run, "L2", args.step)
    tokens = tokens_mod.load_tokens(cfg, "train")
    base = cfg.sampler if args.reference is None else dataclasses.replace(cfg.sampler, reference=args.reference)
    rows = []
    for comp in args.components:
        for order in ("shared", "per_chain"):
            results = []
            for seed in reruns.rerun_seeds(base.seed, args.seeds):
                s = dataclasses.replace(base, batch_order=order, seed=seed)
                results.append(estimate_llc(model, comp, tokens, s, device="cpu"))
            out = reruns.seed_spread([r.mean for r in results], [r.sem for r in results])
            rows.append({"component": comp, "batch_order": order, "reference": base.reference,
                         **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in out.items()},
                         "seconds_per_estimate": round(sum(r.seconds for r in results) / len(results), 2)})
            r = rows[-1]
            print(f"{comp:>5} {order:>9}: sd of means {r['sd_means']:.4f}, reported {r['rms_se']:.4f}, variance "
                  f"ratio {r['variance_ratio']:.2f} (honest: {r['ratio_lo']:.2f}-{r['ratio_hi']:.2f}), "
                  f"{r['seconds_per_estimate']:.1f} s per estimate", flush=True)
    print(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
