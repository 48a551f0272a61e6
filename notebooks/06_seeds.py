# ---
# jupyter:
#   jupytext:
#     formats: py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 06 — Other seeds: do the heads, the curves and the clusters carry over?
#
# **Reproduces:** Wang et al. (2024), Appendix G (Figures 20–23) and the transfer test of
# Appendix F.5. The paper trains three more models that differ from the original only in their
# seed. Their heads specialise into the same kinds — one current-token head, one or two
# previous-token heads, one or two induction heads, the rest multigram heads — but **different
# heads** take each role. The claim (10): clusters of per-head rLLC curves fitted on the first
# run, applied to another run's heads, **recover that run's head types**, with few exceptions
# (the paper names two: a previous-token head of one seed lands in the current-token cluster, and
# one seed's current-token head is never separated).
#
# This notebook also turns the scorecard of `00`–`03` from one run's verdict into a statement
# about seeds: claims 1–5 are evaluated on every seed with one protocol, and the table says on
# how many seeds each holds.
#
# Method, in order: (1) train L2 at the other seeds, changing only the initialisation (the batch
# order is the run's, as in Hoogland et al.'s seed sweep; `train.data_seed` is the separate
# setting); (2) each seed's behavioural scores and head types; (3) per-head wrLLC and the
# full-model LLC of every seed at the per-head checkpoints (Figure 23), and code drLLC late in
# training; (4) claims 1–5 per seed; (5) cluster transfer (Figures 20–22, claim 10).
#
# Needs `00_train` to `03_drllc` (same profile and run directory): the run's own seed reuses their
# estimates and head types.

# %% tags=["parameters"]
profile: str = "cpu"  # profile name (ci, cpu, paper) or a path to a profile YAML file
config: dict = {}  # overrides merged over the profile's config, e.g. {"seeds": {"others": [2, 3, 4]}}
run_dir: str = ""  # where results go; "" means runs/<profile>/
progress: bool = True  # show progress bars

# %%
import pandas as pd
from IPython.display import Markdown, display

from rllc import train
from rllc.analysis import clustering, criteria, interventions, patterns, trajectory
from rllc.analysis import head_types as ht
from rllc.analysis.transfer import MIN_TRANSFER_STEPS, shared_complete_steps, transfer_to_runs
from rllc.data import tokens as tokens_mod
from rllc.data.tokenizer import token_decoder
from rllc.estimate import sweep
from rllc.notebook import setup
from rllc.report import claims, rules, seeds, tables
from rllc.report import figures as plot

nb = setup(profile, config, run_dir, progress)
cfg, run, settings = nb.cfg, nb.run, nb.settings
HEADS = nb.heads
NAMES = seeds.seed_names(cfg)
print(f"models: {', '.join(NAMES)} (seeds {', '.join(str(seeds.seed_of(n, cfg.seed)) for n in NAMES)})")

# %% [markdown]
# ## 1. Training the other seeds
#
# Each other seed k trains "L2-s<k>": the same architecture, data, batch order, optimiser and
# checkpoint schedule as L2, initialised with seed k, into a checkpoint store of its own
# (`models/L2-s<k>/`; resumable and deterministic like L2). `seeds.processes` models train at once,
# each process with an equal share of the cores (on 2 cores two one-thread processes get through
# 1.3× the steps of one two-thread process). Already trained models are loaded, not retrained.

# %%
trained = train.train_models(cfg, NAMES[1:], run, processes=cfg.seeds.processes, progress=progress)
training = pd.DataFrame([{"model": t.name, "seed": seeds.seed_of(t.name, cfg.seed), "steps": t.steps,
                          "seconds": t.seconds, "test_loss": t.test_loss, "threads": t.threads} for t in trained])
own = nb.read("training_log")
own = own[(own["model"] == "L2") & (own["split"] == "test")]
training = pd.concat([pd.DataFrame([{"model": "L2", "seed": cfg.seed, "steps": int(own["step"].max()),
                                     "seconds": float("nan"), "test_loss": float(own["loss"].iloc[-1]),
                                     "threads": float("nan")}]), training], ignore_index=True)
nb.write("seed_training", training)
display(training.assign(minutes=training["seconds"] / 60).drop(columns="seconds").round(3))
logs = pd.concat([pd.read_csv(nb.run.store(n).log_path).assign(model=n) for n in NAMES], ignore_index=True)
fig = plot.loss_curves(logs, {n: nb.run.steps(n) for n in NAMES})
nb.savefig(fig, "06_seed_loss")

# %% [markdown]
# ## 2. What each seed's heads do
#
# The head scores of `00` at every checkpoint of every seed (not the model's ICL score, which costs
# as much as all head scores together and no claim here reads), the score types at the last checkpoint
# (the rule of `rllc.analysis.head_types`, as in `00`), and for the remaining heads the
# tokens-in-context classification of `02` (multigram or Dyck multigram). The run's own seed
# reuses `02`'s head types.

# %%
decode = token_decoder(tokens_mod.prepare(cfg).tokenizer)
held_in = nb.held_in_windows()
behaviour, by_score, types, types_v1 = {}, {}, {}, {}
for name in NAMES:
    behaviour[name] = trajectory.behaviour_over_training(run, name, progress=progress, icl=name == "L2")
    by_score[name] = ht.score_table(behaviour[name])
    if name == "L2":
        types[name] = nb.head_types
        types_v1[name] = ht.final_types(behaviour[name], nb.read("head_types"), "v1")  # for claim 10 under rule v1
        continue
    score_types = by_score[name].set_index("component")["type"]
    tic = interventions.tokens_in_context(nb.run.load_model(name, "last"), held_in, HEADS, k=cfg.classify.tic_k,
                                          batch_size=cfg.classify.batch_size, progress=False)
    summary = pd.concat([patterns.classify_contexts(g, held_in.tolist(), decode)
                         for _, g in tic.groupby("component", sort=False)], ignore_index=True)
    types[name] = ht.head_types(score_types, patterns.pattern_summary(summary))
    types_v1[name] = ht.final_types(behaviour[name], patterns.pattern_summary(summary), "v1")

# %% [markdown]
# ## 3. Per-head rLLC curves of every seed (Figure 23 analogue)
#
# The wrLLC of every head and the full-model LLC at the per-head checkpoints of `02`, with its
# sampler (the run's own seed reuses `02`'s estimates), and the drLLC of every head on held-out
# code at the per-head checkpoints from `seeds.dr_from` of training on (the run's own seed reuses
# `03`'s). The full-model curve is thus coarser and noisier than `01`'s (the per-head checkpoints
# and sampler, where `01` uses a denser grid and more samples): 06's stage reading is a cheap
# check, `01`'s the measurement.

# %%
steps = sweep.strided_steps(run, "L2", cfg.llc.checkpoint_stride, cfg.llc.head_checkpoints)
wr = sweep.run_sweep(run, NAMES, steps, HEADS, ["train"], cfg.sampler, device=cfg.train.device,
                     workers=cfg.llc.workers, progress=progress)
full = sweep.run_sweep(run, NAMES, steps, ["full"], ["train"], cfg.sampler, device=cfg.train.device,
                       workers=cfg.llc.workers, progress=progress)
nb.write("wrllc_seeds", pd.concat([wr, full], ignore_index=True))
available = tokens_mod.available_distributions(cfg)
code = [d for d in cfg.llc.head_dr_data if d in available][:1]
late = [s for s in steps if s >= cfg.seeds.dr_from * steps[-1]]
dr = (sweep.run_sweep(run, NAMES, late, HEADS, code, cfg.sampler, device=cfg.train.device,
                      workers=cfg.llc.workers, progress=progress) if code else wr.iloc[:0])
nb.write("drllc_seeds", dr)
print(f"{len(steps)} checkpoints; {len(wr)} head wrLLCs, {len(full)} full-model LLCs, {len(dr)} code drLLCs "
      f"({', '.join(code) or 'no code corpus'}) at {late}")

# %%
by_model = {n: wr[wr["model"] == n] for n in NAMES}
fig = plot.seed_head_curves(by_model, types, settings, title=f"wrLLC per head and seed — profile {cfg.profile}")
nb.savefig(fig, "06_wrllc_seeds")
if len(dr):
    fig = plot.seed_head_curves({n: dr[dr["model"] == n] for n in NAMES}, types, settings, ylabel=f"drLLC ({code[0]})",
                                min_step=late[0], title=f"drLLC per head and seed on {code[0]}")
    nb.savefig(fig, "06_drllc_seeds")

# %%
final_wr = wr[wr["step"] == wr["step"].max()].set_index(["model", "component"])["llc_mean"]
head_rows = []
for name in NAMES:
    sc = by_score[name].set_index("component")
    for c in HEADS:
        head_rows.append({"model": name, "seed": seeds.seed_of(name, cfg.seed), "component": c,
                          "type": types[name][c], **{s: float(sc.at[c, s]) for s in ht.SCORE_TYPES},
                          "final_wrllc": float(final_wr.get((name, c), float("nan")))})
seed_types = pd.DataFrame(head_rows)
nb.write("seed_head_types", seed_types)
lines = []
for name, d in seed_types.groupby("model", sort=False):
    named = {t: d.loc[d["type"] == t, "component"].tolist() for t in ht.FINAL_TYPES[:3]}
    per_layer = d.assign(layer=clustering.layer_of(d["component"])).groupby("layer")["final_wrllc"]
    lines.append(f"- **{name}** (seed {int(d['seed'].iloc[0])}): "
                 + "; ".join(f"{t}: {', '.join(h) or 'none'}" for t, h in named.items())
                 + f"; {int(d['type'].isin(ht.MULTIGRAM_TYPES).sum())} multigram heads. Final wrLLC, mean per "
                 + "layer: " + ", ".join(f"L{k} {v:.3f}" for k, v in per_layer.mean().items())
                 + f"; highest {d.loc[d['final_wrllc'].idxmax(), 'component']} "
                 f"({d['final_wrllc'].max():.3f}, {d.loc[d['final_wrllc'].idxmax(), 'type']}).")
display(Markdown("\n".join(lines)))
display(seed_types.pivot_table(index="component", columns="model", values="final_wrllc").round(3))

# %% [markdown]
# ## 4. Claims 1–5 on every seed
#
# One protocol for every seed, the run's own included (`rllc.report.seeds.claim_tables`): claim 1
# from the stages of the full-model curve at the per-head checkpoints (`01` uses every checkpoint,
# so its verdict for the run's own seed may differ); claims 2a/2b from the score types; claim 3
# from the consensus clusters of the wrLLC curves; claim 4 from the late code drLLCs; claim 5 from
# the induction score alone (`03` also times the per-head ICL score and the drLLC). Each seed's
# tables go to `seeds/<model>/tables/`, and the scorecard's own checks read them there.

# %%
code_name = code[0] if code else ""
for name in NAMES:
    found = seeds.claim_tables(behaviour[name], types[name], wr[wr["model"] == name], full[full["model"] == name],
                               dr[dr["model"] == name], code_name, cfg.train.warmup_steps, cfg.llc.stage_sigma,
                               cfg.classify.max_k, cfg.seed, by_score=by_score[name])
    seeds.write_claim_tables(run, name, found)
per_seed = seeds.claims_per_seed(run, NAMES, cfg.seed)
nb.write("claims_per_seed", per_seed)
main_card = claims.write_scorecard(run)
by_seed = seeds.claims_by_seed(per_seed, main_card)
nb.write("claims_by_seed", by_seed)
display(per_seed.pivot_table(index="claim", columns="seed", values="status", aggfunc="first", sort=False))
display(by_seed)
with pd.option_context("display.max_colwidth", 120):
    display(per_seed[["claim", "seed", "status", "value"]])

# %% [markdown]
# ## 5. Do clusters fitted on one seed carry over? (Figures 20–22, claim 10)
#
# Per layer, shape-based k-means (k-shape on z-normalised curves; tslearn's `predict` assigns a new
# curve to the nearest centroid by the shape-based distance), Euclidean k-means and Ward are fitted
# on the run's own seed's wrLLC curves (initialisation left out), for k = 2 … `classify.max_k`, and
# each other seed's heads are assigned to the fitted clusters. The ARI against that seed's own types
# is shown beside the 95% quantile of the random-label null (the same clusters with their labels
# shuffled over the heads); an *exception* is a head whose type differs from the majority type of
# the seed-1 heads in its cluster. Types are the paper's four (Dyck heads count as multigram heads).
# Claim 10 reads k-shape at k = the run's own seed's number of types in the layer: Appendix G fits
# the clusters on seed 1 and applies them (`rllc.analysis.criteria.transfer_verdict`).

# %%
reference = wr[wr["model"] == "L2"]
others = {}
for n in NAMES[1:]:
    shared = shared_complete_steps(reference, wr[wr["model"] == n])
    if len(shared) >= MIN_TRANSFER_STEPS:
        others[n] = (wr[wr["model"] == n], criteria.four_types(types[n]))
    else:  # estimates whose every chain was flagged have no value and leave their checkpoint incomplete
        print(f"{n}: shares {len(shared)} checkpoints after step 0 at which every head of both runs has an "
              f"estimate; the transfer needs {MIN_TRANSFER_STEPS}: left out")
assigned, transfer = transfer_to_runs(reference, criteria.four_types(types["L2"]), others,
                                                 range(2, cfg.classify.max_k + 1), seed=cfg.seed)
if len(transfer):
    nb.write("cluster_transfer", transfer)
    nb.write("cluster_transfer_heads", assigned)
    fig = plot.transfer_scores(transfer, threshold=claims.MIN_ARI,
                               title="seed-1 clusters assigned to other seeds: ARI (k = seed 1's types)")
    nb.savefig(fig, "06_transfer")
    display(claims.transfer_scores(transfer).round(3))
else:
    print("no other seed, or no layer with two or more types: nothing to transfer")

# %%
lines = []
if len(transfer):
    at = transfer[transfer["k"] == transfer["n_ref_types"]]
    for (name, layer), d in at.groupby(["run", "layer"]):
        ks = d[d["algorithm"] == claims.TRANSFER_ALGORITHM]
        row = ks.iloc[0] if len(ks) else d.iloc[0]
        off = assigned[(assigned["run"] == name) & (assigned["layer"] == layer) & (assigned["k"] == row["k"])
                       & (assigned["algorithm"] == row["algorithm"]) & assigned["exception"]]
        lines.append(f"- **{name}, layer {layer}** (k = {int(row['k'])}): {row['algorithm']} ARI {row['ari']:.2f} "
                     f"(null 95% {row['null_q95']:.2f}); best algorithm {d.loc[d['ari'].idxmax(), 'algorithm']} "
                     f"({d['ari'].max():.2f}). Exceptions: "
                     + (", ".join(f"{r.component} ({r.type}) in a {r.cluster_type} cluster" for r in off.itertuples())
                        or "none"))
own_fit = tables.read(seeds.seed_view(run, "L2"), "clusters_protocol")
lines.append("- For comparison, the run's own seed's clusters against its own types (claim 3's protocol on its "
             "wrLLC curves): " + ("; ".join(f"layer {int(r.layer)} ARI {r.ari:.2f} (k = {int(r.k)})"
                                           for r in own_fit.itertuples()) or "undefined") + ".")
display(Markdown("\n".join(lines)))

# %% [markdown]
# The same transfer scored against the types of rule v1 (`rllc.analysis.head_types`: raw
# random-token attention above 0.2), from the same curves: what the change of type rule did to
# claim 10.

# %%
_, transfer_v1 = transfer_to_runs(reference, criteria.four_types(types_v1["L2"]),
                                             {n: (curves, criteria.four_types(types_v1[n]))
                                              for n, (curves, _) in others.items()},
                                             range(2, cfg.classify.max_k + 1), seed=cfg.seed)
if len(transfer):
    rules.compare_under_rule(run, "10", {}, recompute=lambda: {"cluster_transfer": transfer_v1})
rule_rows = tables.read_optional(run, "claims_by_type_rule")
if rule_rows is not None:  # every type-dependent claim of the run under both rules (02, 03, 04 and here)
    with pd.option_context("display.max_colwidth", 160):
        display(rule_rows.pivot_table(index="claim", columns="rule", values="status", aggfunc="first"))
        display(rule_rows)

# %% [markdown]
# ## 6. The scorecard
#
# Claim 10 joins the scorecard of the run (`claims.csv`); the by-seed table above says on how many
# seeds each of claims 1–5 holds.

# %%
card = claims.write_scorecard(run)
display(card)
c10 = card[card["claim"].str.startswith("10.")].iloc[0]
display(Markdown(f"**Claim 10: {c10['status']}** — {c10['value']} (threshold: {c10['threshold']})."))

# %% [markdown]
# The invariants below are compared by nbval on re-execution (they do not depend on timing).

# %%
# NBVAL_CHECK_OUTPUT
print("models:", len(NAMES), "| checkpoints:", len(steps), "| head wrLLCs:", len(wr), "| claims per seed:",
      per_seed.groupby("model").size().iloc[0], "| claims:", len(card))

# %%
assert len(wr) == len(NAMES) * len(steps) * len(HEADS)
assert len(full) == len(NAMES) * len(steps)
assert set(per_seed["model"]) == set(NAMES)
assert set(seed_types["type"]) <= set(ht.FINAL_TYPES)
if cfg.expect_phenomena:
    assert wr["n_ok"].gt(0).mean() >= 0.9, "most estimates need at least one healthy chain"
