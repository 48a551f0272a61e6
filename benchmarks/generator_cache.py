"""What caching a generator's predictions saves in drLLCs with a model as the data source (eq. 11).

Times one head's estimate at a profile's L2 shape (fresh weights; an L1-shaped generator) two ways:

  uncached  every SGLD step runs the generator and the full L2 forward (the loss before caching)
  cached    the generator's predictions once per distinct batch (``SoftTargets``), shared by every
            chain, and the head-only loss (frozen prefix) — what ``estimate_llc`` does now

and prints both wall times and their ratio. Asserts nothing; the machine is shared, so repeat.

    python benchmarks/generator_cache.py --profile cpu --component 0:1
"""

from __future__ import annotations

import argparse
import json
import time

import torch
import torch.nn.functional as F

from rllc.config import SamplerConfig, load_config
from rllc.estimate.llc import estimate_llc, sample_llc
from rllc.model.build import build_model
from rllc.model.components import component_masks
from rllc.model.fused import SoftTargets, model_logits


def uncached_loss(generator: torch.nn.Module):
    """The soft-target loss recomputing the generator on every call (no cache, full forward)."""
    def loss(model: torch.nn.Module, tokens: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            target = F.softmax(model_logits(generator, tokens)[:, :-1].float(), dim=-1)
        logp = F.log_softmax(model_logits(model, tokens)[:, :-1].float(), dim=-1)
        return -(target * logp).sum(-1).mean()
    return loss


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu")
    ap.add_argument("--component", default="0:1")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()

    cfg = load_config(args.profile)
    s = cfg.sampler
    vocab = cfg.tokenizer.vocab_size
    model = build_model(cfg, "L2", vocab).eval()
    generator = build_model(cfg, "L1", vocab).eval()
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, vocab, (max(256, 8 * s.batch_size), cfg.model.n_ctx), generator=g)
    settings = SamplerConfig(**s.__dict__)

    def uncached() -> float:
        start = time.perf_counter()
        sample_llc(model, data, component_masks(model, args.component), settings, uncached_loss(generator),
                   device="cpu", batched=False)
        return time.perf_counter() - start

    def cached() -> float:
        start = time.perf_counter()
        estimate_llc(model, args.component, data, settings, generator=SoftTargets(generator), device="cpu")
        return time.perf_counter() - start

    t_plain = min(uncached() for _ in range(args.repeats))
    t_cached = min(cached() for _ in range(args.repeats))
    out = {"profile": args.profile, "component": args.component, "chains": s.chains,
           "steps": s.burnin + s.draws * s.steps_between_draws, "batch": s.batch_size, "n_ctx": cfg.model.n_ctx,
           "threads": torch.get_num_threads(), "uncached_s": round(t_plain, 2), "cached_s": round(t_cached, 2),
           "speedup": round(t_plain / t_cached, 2)}
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
