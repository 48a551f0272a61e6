"""Sampling windows from a model (05's Fisher trace): KV-cached decoding against rerunning the window.

Usage:  python benchmarks/sampling.py [--profile paper] [--length 256] [--samples 1] [--repeats 2]

Same model (the profile's L2 shape, fresh weights), prompt and generator for both:
``rllc.estimate.hessian.sample_sequences``, which decodes with ``fused.Decoder`` (one position
per token), and the loop it replaced, which runs the fused forward on the whole window for every
token (``length`` positions per token, so O(length²)). Each is timed ``--repeats`` times and the
minimum is kept. Prints seconds for each, their ratio, and whether the two drew the same windows
(they should: the logits agree to float rounding). ``--length`` defaults to the profile's n_ctx;
the old loop's cost grows with its square, so a shorter window keeps the comparison quick.
Run it with the allocator setting the Makefile exports (MALLOC_MMAP_MAX_=0 ...).
"""

from __future__ import annotations

import argparse
import json
import time
import warnings

import torch

from rllc.config import load_config
from rllc.estimate.hessian import sample_sequences
from rllc.model import fused
from rllc.model.build import build_model

warnings.filterwarnings("ignore")


def full_window_loop(model: torch.nn.Module, n: int, length: int, prompt: int, seed: int) -> torch.Tensor:
    """The sampler before the KV cache: the whole window through the model for each new token."""
    g = torch.Generator().manual_seed(seed)
    x = torch.full((n, 1), prompt, dtype=torch.long)
    with torch.no_grad():
        for _ in range(length - 1):
            p = torch.softmax(fused.model_logits(model, x)[:, -1].float(), -1)
            x = torch.cat([x, torch.multinomial(p, 1, generator=g)], dim=1)
    return x


def best_of(repeats: int, fn) -> tuple[float, torch.Tensor]:
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return min(times), out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="paper")
    parser.add_argument("--length", type=int, default=0, help="window length (0: the profile's n_ctx)")
    parser.add_argument("--samples", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cfg = load_config(args.profile)
    length = args.length or cfg.model.n_ctx
    if not 2 <= length <= cfg.model.n_ctx:
        parser.error(f"--length must lie in 2..{cfg.model.n_ctx} (the profile's n_ctx)")
    model = build_model(cfg, "L2").eval()
    cached_s, cached = best_of(args.repeats, lambda: sample_sequences(model, args.samples, length, 0, seed=1))
    full_s, full = best_of(args.repeats, lambda: full_window_loop(model, args.samples, length, 0, seed=1))
    print(json.dumps({"profile": cfg.profile, "d_model": cfg.model.d_model, "n_ctx": cfg.model.n_ctx,
                      "length": length, "samples": args.samples, "threads": torch.get_num_threads(),
                      "kv_cache_s": round(cached_s, 3), "full_window_s": round(full_s, 3),
                      "speedup": round(full_s / cached_s, 1), "same_windows": bool(torch.equal(cached, full))}))


if __name__ == "__main__":
    main()
