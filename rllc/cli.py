"""The ``rllc`` command line: data, train, notebooks, describe."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

# glibc maps and page-faults every large tensor afresh unless told otherwise; this setting
# nearly halves training and SGLD step times on CPU (see README). It must be in the
# environment before the process starts, so the command re-executes itself once.
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


def _ensure_allocator_env() -> None:
    if os.environ.get("RLLC_NO_REEXEC") or all(os.environ.get(k) == v for k, v in ALLOCATOR_ENV.items()):
        return
    env = {**os.environ, **ALLOCATOR_ENV, "RLLC_NO_REEXEC": "1"}
    os.execve(sys.executable, [sys.executable, "-m", "rllc.cli", *sys.argv[1:]], env)


def _run_dir(args: argparse.Namespace, cfg) -> Path:  # noqa: ANN001
    from .train import resolve_run_dir

    return resolve_run_dir(cfg, args.run_dir)


def cmd_data(args: argparse.Namespace) -> None:
    from .config import load_config
    from .corpus import corpus_summary
    from .data import prepare

    cfg = load_config(args.profile)
    prepared = prepare(cfg, force=args.force)
    print(corpus_summary()[["source", "status", "registry", "version", "n_documents", "n_bytes"]].to_string(index=False))
    print()
    print(prepared.summary.to_string(index=False))
    print(f"\ntokenizer: {prepared.tokenizer_path} (vocab {prepared.vocab_size})")
    print(f"token datasets: {prepared.tokens_dir}")


def cmd_train(args: argparse.Namespace) -> None:
    from .config import load_config
    from .train import train_model

    cfg = load_config(args.profile)
    run = _run_dir(args, cfg)
    for name in args.models:
        result = train_model(cfg, name, run, progress=not args.quiet)
        last = result.log[result.log["split"] == "test"].iloc[-1]
        print(f"{name}: {result.steps} steps, {result.seconds / 60:.1f} min of training, "
              f"test loss {last['loss']:.3f}; checkpoints in {result.store.ckpt_dir}")


def cmd_notebooks(args: argparse.Namespace) -> None:
    from .config import load_config
    from .runner import NotebooksFailed, execute_all

    cfg = load_config(args.profile)
    run = _run_dir(args, cfg)
    start = time.perf_counter()
    try:
        times = execute_all(args.profile, run, only=args.only, progress=not args.quiet)
    except NotebooksFailed as err:
        print(f"rllc: {err}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"run_dir": str(run), "seconds": times, "total_seconds": time.perf_counter() - start}, indent=2))


def cmd_llc(args: argparse.Namespace) -> None:
    from .sweep import estimate_one

    overrides = {f.name: getattr(args, f.name) for f in _sampler_fields() if getattr(args, f.name) is not None}
    result = estimate_one(args.run_dir or args.profile, model=args.model, step=args.step,
                          component=args.component, data=args.data, overrides=overrides,
                          device=args.device, progress=not args.quiet)
    out = result.to_dict(traces=args.traces)
    print(json.dumps(out, indent=2, default=float))


def _sampler_fields():  # noqa: ANN202
    import dataclasses

    from .config import SamplerConfig

    return dataclasses.fields(SamplerConfig)


def cmd_describe(args: argparse.Namespace) -> None:
    from .config import MODEL_NAMES, load_config
    from .model import build_model, n_params

    cfg = load_config(args.profile)
    counts = {name: n_params(build_model(cfg, name)) for name in MODEL_NAMES}
    print(json.dumps({"config": cfg.to_dict(), "parameters": counts,
                      "checkpoints": {n: len(cfg.checkpoint_steps(n)) for n in MODEL_NAMES}}, indent=2))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rllc", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, run_dir: bool = True) -> None:
        sp.add_argument("--profile", default="cpu", help="ci, cpu (default), paper, or a YAML path")
        if run_dir:
            sp.add_argument("--run-dir", default=None, help="default: runs/<profile>")
        sp.add_argument("--quiet", action="store_true", help="no progress bars")

    sp = sub.add_parser("data", help="fetch corpora, train the tokenizer, build token datasets")
    common(sp, run_dir=False)
    sp.add_argument("--force", action="store_true", help="re-extract and rebuild everything")
    sp.set_defaults(func=cmd_data)

    sp = sub.add_parser("train", help="train (or resume) the L0, L1 and L2 models of a profile")
    common(sp)
    sp.add_argument("--models", nargs="+", default=["L0", "L1", "L2"], choices=["L0", "L1", "L2"])
    sp.set_defaults(func=cmd_train)

    sp = sub.add_parser("notebooks", help="execute every notebook with a profile into the run directory")
    common(sp)
    sp.add_argument("--only", nargs="+", default=None, help="notebook name prefixes, e.g. 00 01")
    sp.set_defaults(func=cmd_notebooks)

    sp = sub.add_parser("llc", help="one LLC estimate (weight- and/or data-refined) printed as JSON")
    common(sp)
    sp.add_argument("--model", default="L2", choices=["L0", "L1", "L2"])
    sp.add_argument("--step", default="last", help="a checkpoint step, or 'last'")
    sp.add_argument("--component", default="full",
                    help="full, L:H (a head, e.g. 0:1), 'layer L', embed, pos_embed, unembed, ln_final; "
                         "join with + (e.g. 1:6+1:7)")
    sp.add_argument("--data", default="train",
                    help="a distribution of the run (train, test, a held-out domain) or model:L1[@step]")
    sp.add_argument("--device", default="auto")
    sp.add_argument("--traces", action="store_true", help="include the loss traces in the JSON")
    for f in _sampler_fields():
        kind = {"float": float, "float | None": float, "str": str}.get(f.type, int)
        sp.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, type=kind, default=None,
                        help=f"sampler setting (default: the profile's, else {f.default})")
    sp.set_defaults(func=cmd_llc)

    sp = sub.add_parser("describe", help="print the resolved configuration and parameter counts as JSON")
    common(sp, run_dir=False)
    sp.set_defaults(func=cmd_describe)
    return p


def main(argv: list[str] | None = None) -> None:
    if argv is None:
        _ensure_allocator_env()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except (KeyError, ValueError, FileNotFoundError) as err:  # bad names or settings: say what is valid
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        parser.exit(2, f"rllc: error: {message}\n")


if __name__ == "__main__":
    main()
