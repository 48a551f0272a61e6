"""What sharing each layer's inputs between the head estimates of a checkpoint saves.

Estimates the wrLLC of every head of a profile's L2 shape (fresh weights, or a run's checkpoint
with ``--run``) at the profile's sampler settings two ways, one thread, one after another:

  alone    each head estimate computes the residual stream entering its layer itself, at every
           SGLD step (the estimator before ``LayerInputs``)
  shared   the heads of a layer take those inputs from one ``LayerInputs`` per checkpoint and data,
           as ``rllc.estimate.sweep`` now does

(the paired reference computed once beforehand with the plain loss, as a sweep does) and prints
the wall time of each per layer, their ratio, and whether the traces are bit-identical.
Asserts nothing; the machine may be shared, so repeat.

    python benchmarks/layer_inputs.py --profile cpu --heads 3
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import numpy as np
import torch

from rllc.config import load_config
from rllc.data import tokens as tokens_mod
from rllc.estimate.llc import estimate_llc, paired_baselines
from rllc.estimate.sgld import chain_feeds, n_steps
from rllc.model.build import build_model
from rllc.model.fused import LayerInputs, next_token_loss
from rllc.run import load_model


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--run", default="", help="a run directory: use its last L2 checkpoint (default: fresh weights)")
    ap.add_argument("--heads", type=int, default=3, help="heads per layer to estimate")
    ap.add_argument("--draws", type=int, default=0, help="draws per chain (0: the profile's)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = load_config(args.profile)
    settings = dataclasses.replace(cfg.sampler, draws=args.draws) if args.draws else cfg.sampler
    prepared = tokens_mod.prepare(cfg)
    model = load_model(args.run, "L2") if args.run else build_model(cfg, "L2", prepared.vocab_size)
    tokens = tokens_mod.load_tokens(cfg, "train")
    # as in a sweep: the paired reference once per checkpoint, with the plain loss, for every head
    baseline = paired_baselines(model, chain_feeds(tokens, settings), next_token_loss, n_steps(settings),
                                torch.device("cpu"))
    out = {"profile": args.profile, "chains": settings.chains, "draws": settings.draws, "layers": {}}
    for layer in range(model.cfg.n_layers):
        heads = [f"{layer}:{h}" for h in range(min(args.heads, model.cfg.n_heads))]
        times, traces = {}, {}
        for how in ("alone", "shared"):
            shared = LayerInputs() if how == "shared" else None
            start = time.perf_counter()
            traces[how] = [estimate_llc(model, h, tokens, settings, device="cpu", baseline=baseline,
                                        layer_inputs=shared).traces for h in heads]
            times[how] = time.perf_counter() - start
        out["layers"][layer] = {
            "heads": len(heads), "alone_s": round(times["alone"], 2), "shared_s": round(times["shared"], 2),
            "speedup": round(times["alone"] / times["shared"], 2),
            "bit_identical": all(np.array_equal(a, b) for a, b in zip(traces["alone"], traces["shared"], strict=True)),
        }
    total_alone = sum(v["alone_s"] for v in out["layers"].values())
    total_shared = sum(v["shared_s"] for v in out["layers"].values())
    out["speedup_all_heads"] = round(total_alone / total_shared, 2)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
