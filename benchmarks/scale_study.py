"""Which scale brings the paper's phenomena onto 2 CPU cores? A resumable, cached scale study.

For each candidate setting (the cpu profile with one factor changed) L2 is trained to 36k steps at
the cpu-long checkpoint schedule; the learning rate is constant after its warm-up, so the first 12k
and 24k steps of that run *are* the 12k and 24k runs. At each length the study measures, with one
protocol (06's per-seed protocol, ``rllc.report.seeds.claim_tables``, on the checkpoints up to
that length):

* stages: critical points of the full-model LLC curve that stand out of its noise (01's rule);
* head types per layer at that checkpoint (scores, then tokens in context for the rest, as 06):
  is there a layer-0 multigram head?
* the induction heads' formation steps (steepest rise of the induction score) with 90% intervals,
  and whether the two are resolved;
* the wrLLC curves' clusters against the head types: consensus ARI per layer beside the
  random-label null's 95% quantile;
* the cost: seconds per training step and of the study's estimates.

Everything is cached: the run directory of a setting (``--study-dir``, default
``runs/scale-study``) holds its checkpoints, scores and LLC records, so a killed study resumes;
each finished (setting, length) is one row of ``docs/scale-study.csv`` (committed: the study's
result), keyed by the setting's resolved configuration, the estimator version and ``STUDY_VERSION``,
so a row made by other code or settings is measured again, never reused.

Usage:
    python benchmarks/scale_study.py --list
    python benchmarks/scale_study.py --settings base vocab1024 --lengths 12000 24000 36000
    python benchmarks/scale_study.py --settings vocab1024 --lengths 12000 --train-only   # train to 12k only
    python benchmarks/scale_study.py --table                               # the rows measured so far

Run it with the allocator setting the Makefile exports (``make`` does; or export
MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=100000000000) and nothing else heavy on the cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

from rllc import paths
from rllc.analysis.clustering import CLUSTER_VERSION
from rllc.analysis.criteria import CRITERIA_VERSION
from rllc.analysis.head_types import RULE_VERSION
from rllc.config import Config, config_hash, deep_merge, load_config
from rllc.estimate.sgld import ESTIMATOR_VERSION
from rllc.model_name import seeded_name
from rllc.report.study import STUDY_ROWS, STUDY_VERSION  # bump it when the protocol below changes a row

LENGTHS = (12_000, 24_000, 36_000)
RESULTS = STUDY_ROWS  # the rows the scorecard's diagnoses read (rllc.report.study)
HEAD_ROWS = STUDY_ROWS.with_name("scale-study-heads.csv")  # per head: scores and the type under each rule

# The cpu-long schedule: L2 to 36k, a checkpoint every 500 steps after 6k. Only L2 is trained.
LONG: dict[str, Any] = {"train": {"steps": {"L2": 36_000}, "checkpoints": [
    {"start": 0, "stop": 500, "every": 50}, {"start": 600, "stop": 2000, "every": 100},
    {"start": 2250, "stop": 6000, "every": 250}, {"start": 6500, "stop": 36_000, "every": 500}]}}

# name -> (what changes, overrides of the cpu profile). One factor at a time against "base".
SETTINGS: dict[str, tuple[str, dict[str, Any]]] = {
    "base": ("the cpu profile (vocab 320, 8 heads x 16, d_model 128, 62% code)", {}),
    "vocab1024": ("a 1,024-token BPE instead of 320", {"tokenizer": {"vocab_size": 1024}}),
    "heads4x32": ("4 heads x 32 at d_model 128 instead of 8 x 16", {"model": {"n_heads": 4, "d_head": 32}}),
    "d256": ("d_model 256, 8 heads x 32 (the paper's head width)", {"model": {"d_model": 256, "d_head": 32}}),
    "prose": ("a prose-heavy mixture: 4 MB of each code source (~25% code) instead of 12 + 20 MB",
              {"corpus": {"source_max_bytes": {"python_stdlib": 4_000_000, "go_stdlib": 4_000_000}}}),
}

# What the study estimates at each length (06's protocol, with the sampler pinned below)
# The sampler every committed row was measured with: 3 chains x 50 draws, the cpu profile's until
# 2026-12-07 (the profile now takes 25 draws per chain). Pinned so that the rows keep their keys.
STUDY_SAMPLER: dict[str, Any] = {"sampler": {"draws": 50}}
HEAD_CHECKPOINTS = 12  # per-head wrLLC checkpoints spread over each length
CURVE_STRIDE = 2  # the full-model curve: every 2nd checkpoint up to each length


def study_config(name: str, until: int | None = None) -> Config:
    """The cpu profile with the setting's overrides and the 36k schedule (trained only to ``until``)."""
    if name not in SETTINGS:
        raise SystemExit(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
    over = deep_merge(deep_merge(LONG, STUDY_SAMPLER), SETTINGS[name][1])
    return load_config("cpu", over if until is None else deep_merge(over, {"train": {"steps": {"L2": until}}}))


def model_name(cfg: Config, seed: int | None) -> str:
    """The trained model of a row: "L2" for the run's own seed, "L2-s<k>" for initialisation seed k
    (06's convention: the batch order stays the run's, only the initialisation changes)."""
    return seeded_name("L2", cfg.seed if seed is None else seed, cfg.seed)


def row_key(cfg: Config, name: str, length: int, seed: int | None = None) -> str:
    """What a row's numbers depend on: the resolved settings, the length, the initialisation seed
    (another seed than the run's only: rows of the run's seed keep their keys) and the code versions."""
    parts: dict[str, Any] = {"config": cfg, "setting": name, "length": length, "estimator": ESTIMATOR_VERSION,
                             "study": STUDY_VERSION, "types": RULE_VERSION,
                             "clusters": CLUSTER_VERSION, "criteria": CRITERIA_VERSION}
    if seed is not None and seed != cfg.seed:
        parts["init_seed"] = seed
    return config_hash(parts)


def read_rows(path: Path = RESULTS) -> pd.DataFrame:
    return pd.read_csv(path) if path.exists() else pd.DataFrame()


def _same(rows: pd.DataFrame, name: str, length: int, seed: int) -> pd.Series:
    return (rows["setting"] == name) & (rows["length"] == length) & (rows["seed"] == seed)


def write_row(row: dict[str, Any], path: Path = RESULTS) -> pd.DataFrame:
    """Add (or replace) one (setting, length, seed) row, atomically."""
    from rllc.io import atomic_write

    rows = read_rows(path)
    if len(rows):
        rows = rows[~_same(rows, row["setting"], row["length"], row["seed"])]
    rows = pd.concat([rows, pd.DataFrame([row])], ignore_index=True).sort_values(["setting", "length", "seed"])
    atomic_write(path, lambda tmp: rows.to_csv(tmp, index=False))
    return rows


def write_head_rows(heads: pd.DataFrame, path: Path = HEAD_ROWS) -> pd.DataFrame:
    """Add (or replace) the per-head rows of one (setting, length, seed), atomically."""
    from rllc.io import atomic_write

    rows = pd.read_csv(path) if path.exists() else pd.DataFrame()
    first = heads.iloc[0]
    if len(rows):
        rows = rows[~_same(rows, first["setting"], first["length"], first["seed"])]
    cols = ["setting", "length", "seed", *[c for c in heads.columns if c not in ("setting", "length", "seed")]]
    rows = pd.concat([rows, heads[cols]], ignore_index=True).sort_values(["setting", "length", "seed", "component"])
    atomic_write(path, lambda tmp: rows.to_csv(tmp, index=False, float_format="%.4f"))
    return rows


def done(cfg: Config, name: str, length: int, seed: int | None = None, path: Path = RESULTS) -> bool:
    rows = read_rows(path)
    seed = cfg.seed if seed is None else seed
    return bool(len(rows)) and bool((_same(rows, name, length, seed)
                                     & (rows["key"] == row_key(cfg, name, length, seed))).any())


def train(name: str, run: Path, until: int, progress: bool, model: str = "L2") -> None:
    """Train (or resume) the setting's ``model`` (L2 or another seed's L2) up to step ``until`` (its
    weights do not depend on the length: the 36k run's first ``until`` steps); the wall time per
    step is logged in the run."""
    from rllc.data.tokens import prepare
    from rllc.io import read_json, write_json
    from rllc.model.checkpoints import CheckpointStore
    from rllc.train import train_models

    cfg = study_config(name, until)
    prepare(cfg)
    store = CheckpointStore.for_model(run, model)
    before = max(store.steps(), default=0) if store.root.exists() else 0
    start = time.perf_counter()
    train_models(cfg, [model], run, processes=1, progress=progress)
    after = max(store.steps(), default=0)
    if after > before:
        path = _times_path(run, model)
        times = read_json(path) if path.exists() else []
        times.append({"from": before, "to": after, "seconds": time.perf_counter() - start})
        write_json(path, times)


def _times_path(run: Path, model: str) -> Path:
    return run / "study" / ("train_times.json" if model == "L2" else f"train_times_{model}.json")


def seconds_per_step(run: Path, model: str = "L2") -> float:
    """Training wall seconds per step, over the study's training calls on this setting's ``model``."""
    from rllc.io import read_json

    path = _times_path(run, model)
    times = read_json(path) if path.exists() else []
    steps = sum(t["to"] - t["from"] for t in times)
    return sum(t["seconds"] for t in times) / steps if steps else float("nan")


def measure(cfg: Config, name: str, run: Path, length: int, progress: bool, seed: int | None = None) -> dict[str, Any]:
    """One row of the study: the setting at ``length`` steps, initialisation ``seed`` (default: the
    run's), see the module docstring."""
    from rllc.analysis import clustering, interventions, patterns, trajectory
    from rllc.analysis import head_types as ht
    from rllc.data import tokens as tokens_mod
    from rllc.data.tokenizer import token_decoder
    from rllc.estimate import sweep
    from rllc.model.build import head_names
    from rllc.model.checkpoints import CheckpointStore
    from rllc.report import claims, tables
    from rllc.report import seeds as seeds_mod
    from rllc.run import Run, open_run

    model = model_name(cfg, seed)
    seed = cfg.seed if seed is None else seed
    store = CheckpointStore.for_model(run, model)
    have = [s for s in store.steps() if s <= length]
    if not have or have[-1] != length:
        raise SystemExit(f"{name}: no checkpoint of {model} at step {length} in {run}; train first")
    opened = Run(open_run(run).path, cfg)  # the run, measured with the study's settings
    final = opened.load_model(model, length)
    heads = head_names(final)
    t0 = time.perf_counter()
    behaviour = trajectory.behaviour_over_training(opened, model, steps=have, progress=progress, icl=False)
    upto = behaviour[behaviour["step"] <= length]
    by_score = ht.score_table(upto)
    held_in = tokens_mod.held_in_windows(cfg)
    decode = token_decoder(tokens_mod.prepare(cfg).tokenizer)
    tic = interventions.tokens_in_context(final, held_in, heads, k=cfg.classify.tic_k,
                                          batch_size=cfg.classify.batch_size, progress=False)
    summary = pd.concat([patterns.classify_contexts(g, held_in.tolist(), decode)
                         for _, g in tic.groupby("component", sort=False)], ignore_index=True)
    types = ht.head_types(by_score.set_index("component")["type"], patterns.pattern_summary(summary))
    by_score_v1 = ht.score_table(upto, "v1")
    types_v1 = ht.head_types(by_score_v1.set_index("component")["type"], patterns.pattern_summary(summary))
    last = upto[(upto["step"] == length) & (upto["layer"] >= 0)]
    sensitivity = ht.rule_sensitivity(last).assign(type=types.reindex(heads).to_numpy(),
                                                   type_v1_final=types_v1.reindex(heads).to_numpy())
    t_scores = time.perf_counter() - t0

    t0 = time.perf_counter()
    head_steps = sweep.spread(have, HEAD_CHECKPOINTS)
    curve_steps = sorted(set(have[::CURVE_STRIDE]) | {have[-1]})
    wr = sweep.run_sweep(run, [model], head_steps, heads, ["train"], cfg.sampler, device="cpu",
                         workers=cfg.llc.workers, progress=progress)
    full = sweep.run_sweep(run, [model], curve_steps, ["full"], ["train"], cfg.sampler, device="cpu",
                           workers=cfg.llc.workers, progress=progress)
    t_llc = time.perf_counter() - t0

    def verdicts_of(rule_types: pd.Series, rule_scores: pd.DataFrame, suffix: str) -> tuple[dict, dict]:
        """The per-seed claims but 4 (code drLLC: not part of a row) with one rule's types."""
        found = seeds_mod.claim_tables(upto, rule_types, wr, full, pd.DataFrame(), "", cfg.train.warmup_steps,
                                       cfg.llc.stage_sigma, cfg.classify.max_k, cfg.seed, by_score=rule_scores)
        view = run / "study" / f"{model}@{length}{suffix}"
        (view / "tables").mkdir(parents=True, exist_ok=True)
        for table, df in found.items():
            tables.write(view, table, df)
        out = {}
        for c in claims.CLAIMS:
            number = claims.claim_number(c.name)
            if number in seeds_mod.PER_SEED_CLAIMS and number != "4" and c.check is not None:
                status, value, _ = c.check(view)
                out[number] = (status, value)
        return found, out

    found, verdicts = verdicts_of(types, by_score, "")
    found_v1, verdicts_v1 = verdicts_of(types_v1, by_score_v1, "-v1")
    write_head_rows(sensitivity.assign(setting=name, length=length, seed=seed))

    layer = {h: int(h.split(":")[0]) for h in heads}
    l0_multigram = [h for h in heads if layer[h] == 0 and types[h] in ht.MULTIGRAM_TYPES]
    timing = found["induction_timing"]
    # the consensus clustering at k = the layer's number of types, beside its random-label null (02's table)
    variants = clustering.ari_variants(wr[wr["component"] != "full"], types, "wr", cfg.classify.max_k,
                                       seed=cfg.seed, min_step=1)
    best = variants[(variants["algorithm"] == "consensus") & ~variants["standardised"]]
    per_step = seconds_per_step(run, model)
    return {
        "setting": name, "length": length, "seed": seed, "key": row_key(cfg, name, length, seed),
        "what": SETTINGS[name][0],
        "d_model": cfg.model.d_model, "heads": f"{cfg.model.n_heads}x{cfg.model.d_head}",
        "vocab": cfg.tokenizer.vocab_size,
        "stages": len(found["stages_L2"]), "claim1": verdicts["1"][0],
        "types_L0": _type_counts(types, layer, 0), "types_L1": _type_counts(types, layer, 1),
        "L0_multigram_heads": " ".join(l0_multigram), "n_L0_multigram": len(l0_multigram),
        "induction_heads": " ".join(timing["component"].astype(str)) if len(timing) else "",
        "induction_steepest": " ".join(str(int(s)) for s in timing.get("steepest_step", [])),
        "induction_intervals": " ".join(f"{int(lo)}-{int(hi)}" for lo, hi in zip(timing.get("lo", []),
                                                                                 timing.get("hi", []), strict=False)),
        "claim5": verdicts["5"][0], "claim5_value": verdicts["5"][1],
        "ari_L0": _at(best, 0, "ari"), "null95_L0": _at(best, 0, "null_q95"), "p_L0": _at(best, 0, "p_value"),
        "ari_L1": _at(best, 1, "ari"), "null95_L1": _at(best, 1, "null_q95"), "p_L1": _at(best, 1, "p_value"),
        "best_variant_ari_L0": _best(variants, 0), "best_variant_ari_L1": _best(variants, 1),
        "claim3": verdicts["3"][0], "claim2a": verdicts["2a"][0], "claim2b": verdicts["2b"][0],
        "claims_passed": sum(v[0] == claims.PASS for v in verdicts.values()),
        # the same row under type rule v1 (raw random-token attention > 0.2), from the same estimates
        "types_L0_v1": _type_counts(types_v1, layer, 0), "types_L1_v1": _type_counts(types_v1, layer, 1),
        "L0_multigram_heads_v1": " ".join(h for h in heads if layer[h] == 0 and types_v1[h] in ht.MULTIGRAM_TYPES),
        "induction_heads_v1": " ".join(found_v1["induction_timing"]["component"].astype(str)),
        **{f"claim{n}_v1": verdicts_v1[n][0] for n in ("2a", "2b", "3", "5")},
        "claim3_value_v1": verdicts_v1["3"][1], "claim5_value_v1": verdicts_v1["5"][1],
        "claims_passed_v1": sum(v[0] == claims.PASS for v in verdicts_v1.values()),
        "train_s_per_step": per_step, "train_min_to_length": per_step * length / 60,
        "llc_estimates": len(wr) + len(full), "llc_min": t_llc / 60, "scores_min": t_scores / 60,
        "estimator_version": ESTIMATOR_VERSION, "study_version": STUDY_VERSION, "cluster_version": CLUSTER_VERSION,
        "criteria_version": CRITERIA_VERSION,
    }


def _at(best: pd.DataFrame, layer: int, col: str) -> float:
    d = best[best["layer"] == layer]
    return float(d[col].iloc[0]) if len(d) else float("nan")


def _best(variants: pd.DataFrame, layer: int) -> float:
    d = variants[variants["layer"] == layer]
    return float(d["ari"].max()) if len(d) else float("nan")


def _type_counts(types: pd.Series, layer: dict[str, int], which: int) -> str:
    counts = types[[h for h in types.index if layer.get(h) == which]].value_counts()
    return "; ".join(f"{t} {n}" for t, n in counts.items())


def markdown(rows: pd.DataFrame) -> str:
    """The study's summary table (setting -> stages, layer-0 multigram heads, induction timing, ARI
    vs null, cost), written from the rows."""
    head = ("| setting | seed | steps | stages | layer-0 types | L0 multigram"
            " | induction heads: steepest rise (90% interval) | claim 5 | ARI L0 / null q95 | ARI L1 / null q95"
            " | train s/step | train min | study min |")
    out = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows.sort_values(["setting", "length", "seed"]).itertuples():
        timing = ", ".join(f"{h} {s} ({i})" for h, s, i in zip(str(r.induction_heads).split(),
                                                                str(r.induction_steepest).split(),
                                                                str(r.induction_intervals).split(), strict=False))
        out.append(f"| {r.setting} | {int(r.seed)} | {int(r.length):,} | {int(r.stages)} | {r.types_L0} | "
                   f"{r.L0_multigram_heads if isinstance(r.L0_multigram_heads, str) else 'none'} | {timing or '—'} | "
                   f"{r.claim5} | {r.ari_L0:.2f} / {r.null95_L0:.2f} | {r.ari_L1:.2f} / {r.null95_L1:.2f} | "
                   f"{r.train_s_per_step:.3f} | {r.train_min_to_length:.1f} | {r.llc_min + r.scores_min:.1f} |")
    return "\n".join(out)


def types_markdown(heads: pd.DataFrame, rows: pd.DataFrame) -> str:
    """Per head of each (setting, length, seed): the raw attention to itself and to the previous
    token on random tokens / text, the rule's shares, the type under rule 1 and under the rule
    (tokens in context included); then claims 2a, 2b, 3 and 5 under both rules, from the rows."""
    out = []
    for (setting, length, seed), d in heads.groupby(["setting", "length", "seed"], sort=True):
        out += [f"**{setting}, seed {int(seed)}, step {int(length):,}**", "",
                "| head | current, rand | current, text | previous, rand | previous, text | first, rand / text"
                " | current share | previous share | induction | type, rule 1 | type, rule 2 |",
                "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in d.itertuples():
            changed = "**" if r.type_v1_final != r.type else ""
            out.append(f"| {r.component} | {r.current_token_random:.2f} | {r.current_token_text:.2f} | "
                       f"{r.previous_token_random:.2f} | {r.previous_token_text:.2f} | "
                       f"{r.first_position_random:.2f} / {r.first_position_text:.2f} | {r.current_token_share:.2f} | "
                       f"{r.previous_token_share:.2f} | {r.induction:.2f} | {r.type_v1_final} | "
                       f"{changed}{r.type}{changed} |")
        out.append("")
    if len(rows):
        out += ["| setting | seed | steps | claim | rule 1 | rule 2 |", "|---|---|---|---|---|---|"]
        for r in rows.sort_values(["setting", "length", "seed"]).to_dict("records"):
            for n in ("2a", "2b", "3", "5"):
                out.append(f"| {r['setting']} | {int(r['seed'])} | {int(r['length']):,} | {n} | "
                           f"{r[f'claim{n}_v1']} | {r[f'claim{n}']} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), metavar="NAME")
    ap.add_argument("--lengths", nargs="+", type=int, default=list(LENGTHS), metavar="STEPS")
    ap.add_argument("--seeds", nargs="+", type=int, default=None, metavar="K",
                    help="initialisation seeds of L2 (06's convention: the run's batch order kept); "
                         "default: the run's own seed")
    ap.add_argument("--study-dir", default="runs/scale-study",
                    help="where the settings' runs go (default: %(default)s)")
    ap.add_argument("--train-only", action="store_true", help="train (or resume) and stop")
    ap.add_argument("--list", action="store_true", help="the grid and which rows are measured")
    ap.add_argument("--table", action="store_true", help="print the rows measured so far")
    ap.add_argument("--markdown", action="store_true", help="with --table: the summary as a Markdown table")
    ap.add_argument("--types", action="store_true",
                    help="per head: scores and the type under rule 1 and the rule, and the claims under both")
    ap.add_argument("--quiet", action="store_true", help="no progress bars")
    args = ap.parse_args(argv)
    for name in args.settings:
        if name not in SETTINGS:
            ap.error(f"unknown setting {name!r}; choose from {', '.join(SETTINGS)}")
    for n in args.lengths:
        if n not in LENGTHS:
            ap.error(f"length {n} is not one of the study's {', '.join(map(str, LENGTHS))}")
    if args.seeds is not None and (len(set(args.seeds)) != len(args.seeds) or min(args.seeds) < 0):
        ap.error(f"--seeds {' '.join(map(str, args.seeds))}: give distinct non-negative seeds")
    if args.list:
        rows = read_rows()
        for name, (what, _) in SETTINGS.items():
            cfg = study_config(name)
            seeds = sorted(set(rows[rows["setting"] == name]["seed"]) | {cfg.seed}) if len(rows) else [cfg.seed]
            have = [f"{n} (seed {k})" for k in seeds for n in LENGTHS if done(cfg, name, n, k)]
            print(f"{name:10s} {what}; measured at {', '.join(have) or 'no length yet'}")
        return 0
    if args.types:
        heads = pd.read_csv(HEAD_ROWS) if HEAD_ROWS.exists() else pd.DataFrame()
        print(types_markdown(heads, read_rows()) if len(heads) else f"no rows yet in {HEAD_ROWS}")
        return 0
    if args.table:
        rows = read_rows()
        if not len(rows):
            print(f"no rows yet in {RESULTS}")
        else:
            print(markdown(rows) if args.markdown else rows.to_string(index=False))
        return 0
    study = paths.REPO_ROOT / args.study_dir if not Path(args.study_dir).is_absolute() else Path(args.study_dir)
    progress = not args.quiet
    for name in args.settings:
        cfg = study_config(name)
        run = study / name
        for seed in args.seeds or [cfg.seed]:
            todo = [n for n in sorted(args.lengths) if not done(cfg, name, n, seed)]
            if not todo and not args.train_only:
                print(f"{name}, seed {seed}: every requested length is measured")
                continue
            train(name, run, max(args.lengths), progress, model_name(cfg, seed))
            if args.train_only:
                continue
            for length in todo:
                row = measure(cfg, name, run, length, progress, seed)
                write_row(row)
                print(pd.Series(row).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
