"""The ``rllc`` command line: data, train, notebooks, llc, sweep, describe, compare, publish."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .config import Config
    from .run import Run

DEFAULT_PROFILE = "cpu"

# glibc maps and page-faults every large tensor afresh unless told otherwise; this setting
# nearly halves training and SGLD step times on CPU (see README). The numerics the weights depend
# on (rllc.numerics: torch's CPU capability, MKL's and oneDNN's ISA) are pinned the same way. Both
# must be in the environment before the process starts, so the command re-executes itself once.
ALLOCATOR_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": "100000000000"}


def _ensure_allocator_env() -> None:
    from .numerics import apply_env, pinned_env

    wanted = {**ALLOCATOR_ENV, **pinned_env()}
    if os.environ.get("RLLC_NO_REEXEC") or all(os.environ.get(k) == v for k, v in wanted.items()):
        return
    env = apply_env({**os.environ, **ALLOCATOR_ENV, "RLLC_NO_REEXEC": "1"})
    os.execve(sys.executable, [sys.executable, "-m", "rllc.cli", *sys.argv[1:]], env)


def _run_dir(args: argparse.Namespace, cfg: Config) -> Path:
    """The run directory of a command that writes one; a relative --run-dir is taken from the cwd."""
    from .run import create_run

    return create_run(cfg, Path(args.run_dir).resolve() if args.run_dir else None).path


def _profile(args: argparse.Namespace) -> str:
    return args.profile or DEFAULT_PROFILE


def cmd_data(args: argparse.Namespace) -> None:
    from .config import load_config
    from .data.corpus import corpus_summary
    from .data.tokens import prepare

    cfg = load_config(_profile(args))
    prepared = prepare(cfg, force=args.force)
    columns = ["source", "status", "registry", "version", "n_documents", "n_bytes"]
    print(corpus_summary()[columns].to_string(index=False))
    print()
    print(prepared.summary.to_string(index=False))
    print(f"\ntokenizer: {prepared.tokenizer_path} (vocab {prepared.vocab_size})")
    print(f"token datasets: {prepared.tokens_dir}")


def cmd_train(args: argparse.Namespace) -> None:
    from .config import load_config
    from .model_name import seeded_name
    from .train import start_from, train_model

    cfg = load_config(_profile(args))
    run = _run_dir(args, cfg)
    names = [seeded_name(m, s, cfg.seed) for s in (args.seeds or [cfg.seed]) for m in args.models]
    for name in names:
        if args.start_from:
            step = start_from(cfg, name, args.start_from, run)
            print(f"{name}: starting from {args.start_from} at step {step}")
        result = train_model(cfg, name, run, progress=not args.quiet)
        last = result.log[result.log["split"] == "test"].iloc[-1]
        print(f"{name}: {result.steps} steps, {result.seconds / 60:.1f} min of training, "
              f"test loss {last['loss']:.3f}; checkpoints in {result.store.ckpt_dir}")


def cmd_notebooks(args: argparse.Namespace) -> None:
    from .config import load_config
    from .runner import NotebooksFailed, execute_all

    cfg = load_config(_profile(args))
    run = _run_dir(args, cfg)
    start = time.perf_counter()
    try:
        times = execute_all(_profile(args), run, only=args.only, progress=not args.quiet)
    except NotebooksFailed as err:
        print(f"rllc: {err}", file=sys.stderr)
        sys.exit(1)
    print(json.dumps({"run_dir": str(run), "seconds": times, "total_seconds": time.perf_counter() - start}, indent=2))


def cmd_llc(args: argparse.Namespace) -> None:
    import dataclasses

    from .estimate.sweep import estimate_one

    run = _open_run(args)
    flags = {name: getattr(args, name) for name in _sampler_types() if getattr(args, name) is not None}
    overrides = {**dataclasses.asdict(run.cfg.sampler), **flags}  # the profile's sampler, then the flags
    result = estimate_one(run, model=args.model, step=args.step,
                          component=args.component, data=args.data, overrides=overrides,
                          device=args.device, progress=not args.quiet)
    out = result.to_dict(traces=args.traces)
    print(json.dumps(out, indent=2, default=float))


def _open_run(args: argparse.Namespace) -> Run:
    """An existing run, with the settings a command uses on it. --run-dir with --profile: the
    profile's, through the one rule of ``rllc.run.reconcile`` (a setting the weights or data
    depend on that differs is refused in one line; any other is used, one line on stderr each);
    --run-dir alone: the run's own; --profile alone: its default run directory."""
    from .config import load_config
    from .run import Run, open_run, reconcile

    if args.run_dir:
        run = open_run(Path(args.run_dir).resolve())
        if not args.profile:
            return run
        cfg = load_config(args.profile)
        for line in reconcile(run.path, cfg):
            print(line, file=sys.stderr, flush=True)
        return Run(run.path, cfg)
    return open_run(_profile(args))


# rllc sweep's SLURM flags (argparse dest) -> SlurmOptions field (None: not an option of the array)
SLURM_FLAGS = {"partition": "partition", "time": "time_min", "gpus_per_task": "gpus_per_task",
               "cpus_per_task": "cpus_per_task", "mem_gb": "mem_gb", "array_parallelism": "array_parallelism",
               "signal_delay": "signal_delay_s", "max_requeues": "max_requeues", "wait": None}


def cmd_sweep(args: argparse.Namespace) -> None:
    import dataclasses

    from .estimate import grid, records, sweep

    slurm_args = {name: getattr(args, name) for name in SLURM_FLAGS if getattr(args, name) is not None}
    if args.executor == "local" and slurm_args:
        flags = ", ".join(f"--{n.replace('_', '-')}" for n in slurm_args)
        raise ValueError(f"{flags}: for --executor slurm only (a local sweep runs here, to the end)")
    if args.executor == "slurm" and args.workers is not None:
        raise ValueError("--workers is for --executor local (a SLURM task runs one process: --cpus-per-task)")
    run = _open_run(args)
    cfg = run.cfg
    overrides = {name: getattr(args, name) for name in _sampler_types() if getattr(args, name) is not None}
    settings = dataclasses.replace(cfg.sampler, **overrides)
    steps = args.steps if args.steps not in (["all"], ["last"]) else args.steps[0]
    groups = grid.make_groups(run, args.models, steps, args.components, args.data, stride=args.stride)
    if args.collect:
        table = records.collect(run)
        print(f"{len(table)} estimates from every record of {run.path} -> {run.tables} "
              "(llc_estimates.parquet, llc_chains.parquet, llc_traces.parquet)")
        return
    if args.status:
        table = grid.status(run, groups, settings)
        if args.executor == "slurm":
            from .estimate import slurm

            queued = slurm.queued_groups(run)
            table["queued_in"] = [queued.get(g.name, "") for g in groups]
        print(table.to_string(index=False))
        n = table["estimates"].sum()
        states = table["state"].value_counts().to_dict()
        print(f"{len(table)} groups ({', '.join(f'{v} {k}' for k, v in sorted(states.items()))}); "
              f"{table['done'].sum()} of {n} estimates done, {table['failed'].sum()} failed, "
              f"{table['missing'].sum()} missing")
        return
    todo = grid.pending(run, groups, settings)
    n_est = sum(len(g.components) for g in groups)
    if not todo:
        print(f"nothing to do: all {n_est} estimates of the {len(groups)} groups are in {records.records_dir(run)}")
        return
    if args.executor == "local":
        workers = args.workers if args.workers is not None else cfg.llc.workers
        for model in dict.fromkeys(g.model for g in todo):
            mine = [g for g in todo if g.model == model]
            sweep.run_sweep(run, [model], sorted({g.step for g in mine}), list(mine[0].components),
                            list(dict.fromkeys(g.data for g in mine)), settings, device=args.device,
                            progress=not args.quiet, workers=workers)
        print(f"{len(todo)} groups computed locally; `rllc sweep ... --status` shows the grid")
        return
    from .estimate import slurm

    options = slurm.SlurmOptions(**{SLURM_FLAGS[n]: v for n, v in slurm_args.items() if SLURM_FLAGS[n]})
    array, submitted, busy = slurm.submit(run, todo, settings, options, device=args.device)
    if busy:
        print(f"{len(busy)} groups left out: still queued or running in array(s) {sorted(set(busy.values()))}")
    if array is None:
        print("nothing submitted")
        return
    print(f"submitted array {array}: {len(submitted)} tasks (one per model/checkpoint/distribution group); "
          f"logs in {slurm.slurm_dir(run) / array}_*")
    if args.wait:
        slurm.wait(run, array)
        table = grid.status(run, groups, settings)
        print(f"array {array} finished: {table['done'].sum()} of {table['estimates'].sum()} estimates done, "
              f"{table['failed'].sum()} failed, {table['missing'].sum()} missing")
    else:
        print("follow it with the same command and --status; collect the tables with --collect")


def _sampler_types() -> dict[str, type]:
    """Each sampler setting and the type its command-line flag parses to (from the annotations:
    ``float | None`` parses as float; a type this cannot parse is refused here, not guessed)."""
    import dataclasses
    import types
    import typing

    from .config import SamplerConfig

    hints = typing.get_type_hints(SamplerConfig)
    out: dict[str, type] = {}
    for f in dataclasses.fields(SamplerConfig):
        hint = hints[f.name]
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if hint not in (int, float, str):
            raise TypeError(f"SamplerConfig.{f.name}: no command-line parser for {hint!r}")
        out[f.name] = hint
    return out


def cmd_compare(args: argparse.Namespace) -> None:
    from .report.compare import compare_runs

    table = compare_runs(Path(args.run_a).resolve(), Path(args.run_b).resolve(), atol=args.atol, rtol=args.rtol)
    print(table.to_string(index=False))
    differ = table[~table["result"].isin(["equal", "missing"])]
    if len(differ):
        sys.exit(1)


def cmd_describe(args: argparse.Namespace) -> None:
    import yaml

    from .config import load_config
    from .model.build import build_model, n_params
    from .model_name import MODEL_NAMES
    from .numerics import describe, threads

    if args.run_dir:  # a run's settings (the profile's, by the one rule, when --profile is given too)
        run = _open_run(args)
        cfg = run.cfg
        recorded = (yaml.safe_load((run.path / "config.yaml").read_text()).get("provenance") or {}).get("numerics")
    else:
        cfg, recorded = load_config(_profile(args)), None
    counts = {name: n_params(build_model(cfg, name)) for name in MODEL_NAMES}
    print(json.dumps({"config": cfg.to_dict(), "parameters": counts,
                      "checkpoints": {n: len(cfg.checkpoint_steps(n)) for n in MODEL_NAMES},
                      "numerics": {"recorded by the run": recorded, "here": describe(threads(cfg))}},
                     indent=2, default=str))


def cmd_publish(args: argparse.Namespace) -> None:
    from .report.publish import publish

    if args.before and not args.readme:
        raise ValueError("--before is shown only in the README's results block; give --readme too")
    written = publish(Path(args.run_dir), Path(args.out))
    notebooks = [p for p in written if p.suffix == ".ipynb"]
    size = sum(p.stat().st_size for p in written) / 1e6
    print(f"{len(notebooks)} notebooks and {len(written) - len(notebooks)} other files ({size:.1f} MB) in {args.out}")
    if args.readme:
        from .report.publish import update_readme

        print(f"results written into {update_readme(args.readme, args.run_dir, args.before)}")


def _user_errors() -> tuple[type[Exception], ...]:
    from .model.checkpoints import CorruptCheckpoint, IdentityMismatch

    return (KeyError, ValueError, FileNotFoundError, FileExistsError, CorruptCheckpoint, IdentityMismatch)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rllc", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    def common(sp: argparse.ArgumentParser, run_dir: bool = True) -> None:
        sp.add_argument("--profile", default=None, help=f"ci, cpu (default: {DEFAULT_PROFILE}), paper, or a YAML path")
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
    sp.add_argument("--start-from", default=None, metavar="RUN_DIR",
                    help="begin each model with this run's checkpoints (same weights, e.g. cpu for cpu-long)")
    sp.add_argument("--seeds", nargs="+", type=int, default=None, metavar="SEED",
                    help="initialisation seeds (default: the profile's); another seed k trains e.g. L2-s<k> "
                         "with the run's batch order")
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
    for name, kind in _sampler_types().items():
        sp.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                        help=f"sampler setting ({kind.__name__}; default: the profile's)")
    sp.set_defaults(func=cmd_llc)

    sp = sub.add_parser("sweep", help="run a grid of LLC estimates (models x steps x components x distributions) "
                                      "locally or as a SLURM job array; --status, --collect")
    common(sp)
    sp.add_argument("--models", nargs="+", default=["L2"], metavar="MODEL", help="e.g. L2 L2-s2 (default: L2)")
    sp.add_argument("--steps", nargs="+", default=["all"], metavar="STEP",
                    help="checkpoint steps, 'all' (default) or 'last'")
    sp.add_argument("--stride", type=int, default=1, help="every k-th of those steps (first and last always)")
    sp.add_argument("--components", nargs="+", default=["full"], metavar="COMPONENT",
                    help="full, L:H, 'heads' (every head of the model), ... (default: full)")
    sp.add_argument("--data", nargs="+", default=["train"], metavar="DIST",
                    help="distributions: train, test, a held-out domain, model:L1[@step] (default: train)")
    sp.add_argument("--device", default="auto")
    sp.add_argument("--executor", choices=["local", "slurm"], default="local",
                    help="local: processes on this machine (default); slurm: one job-array task per "
                         "model/checkpoint/distribution group (needs the cluster extra)")
    sp.add_argument("--workers", type=int, default=None, help="local: estimate processes (default: the profile's)")
    sp.add_argument("--status", action="store_true", help="print done/failed/missing per group; run nothing")
    sp.add_argument("--collect", action="store_true", help="assemble the run's estimate tables from its records")
    sp.add_argument("--partition", default=None, help="slurm: partition")
    sp.add_argument("--time", type=int, default=None, help="slurm: minutes per task (requeued on timeout; default 60)")
    sp.add_argument("--gpus-per-task", type=int, default=None, help="slurm: GPUs per task (default 0)")
    sp.add_argument("--cpus-per-task", type=int, default=None, help="slurm: CPUs per task (default 1)")
    sp.add_argument("--mem-gb", type=float, default=None, help="slurm: memory per task in GB")
    sp.add_argument("--array-parallelism", type=int, default=None, help="slurm: tasks running at once (default 64)")
    sp.add_argument("--signal-delay", type=int, default=None,
                    help="slurm: seconds before the time limit SLURM signals a task to requeue itself (default 90)")
    sp.add_argument("--max-requeues", type=int, default=None,
                    help="slurm: requeues after a timeout before a task gives up (default 20; preemption: unlimited)")
    sp.add_argument("--wait", action="store_true", default=None, help="slurm: block until the array has finished")
    for name, kind in _sampler_types().items():
        sp.add_argument(f"--{name.replace('_', '-')}", dest=name, type=kind, default=None,
                        help=f"sampler setting ({kind.__name__}; default: the profile's)")
    sp.set_defaults(func=cmd_sweep)

    sp = sub.add_parser("compare", help="compare the registered tables of two runs (exit 1 if any differ)")
    sp.add_argument("run_a")
    sp.add_argument("run_b")
    sp.add_argument("--atol", type=float, default=1e-6)
    sp.add_argument("--rtol", type=float, default=1e-6)
    sp.set_defaults(func=cmd_compare)

    sp = sub.add_parser("publish", help="a run's executed notebooks for readers: outputs kept, volatile metadata "
                                        "stripped, a provenance cell first; with the book's landing tables")
    sp.add_argument("run_dir", help="a run directory whose notebooks `rllc notebooks` executed")
    sp.add_argument("--out", default="docs/notebooks", help="where they go (default: %(default)s)")
    sp.add_argument("--readme", default=None, help="also write the run's results (scorecard, claims by seed, "
                                                   "times) between the results markers of this README")
    sp.add_argument("--before", default=None, help="an earlier scorecard (CSV: claim, status, by_seed, "
                                                   "criteria_version) whose verdicts stand beside the run's in the "
                                                   "README, e.g. docs/scorecard-criteria-v1.csv")
    sp.set_defaults(func=cmd_publish)

    sp = sub.add_parser("describe", help="print the resolved configuration, parameter counts and numerics as JSON")
    common(sp)
    sp.set_defaults(func=cmd_describe)
    return p


def main(argv: list[str] | None = None) -> None:
    if argv is None:
        _ensure_allocator_env()
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        args.func(args)
    except BrokenPipeError:  # the reader stopped early (e.g. `rllc describe | head`): not an error
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        sys.exit(0)
    except Exception as err:
        if not isinstance(err, _user_errors()):
            raise
        # bad names, settings or files: one line saying what is valid or what to run
        message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        parser.exit(2, f"rllc: error: {message}\n")


if __name__ == "__main__":
    main()
