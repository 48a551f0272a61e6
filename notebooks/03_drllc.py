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
# # 03 — Data-refined LLCs: heads specialise to data
#
# **Reproduces:** Wang et al. (2024), Section 4.2 (Figures 3, 4), Figure 10, Figure 12 and
# Appendix C.1. The LLC can be measured on a distribution other than the one the model was
# trained on: SGLD then explores the weights that keep the loss *on that distribution* low (the
# *data-refined* LLC, drLLC). In the paper's words, paraphrased:
#
# - **Claim 4.** Measured on code, the induction heads' rLLC goes *up* relative to their wrLLC,
#   while the multigram heads' goes *down*: the induction heads are more specialised to code,
#   where repeated spans are common.
# - **Claim 5.** The two induction heads do not form at the same time: the per-head ICL score
#   (each induction head with the other mean-ablated) and the heads' code drLLCs change at
#   different steps.
# - Held-out domains move the full-model LLC curve: some shift it up or down, others change its
#   shape (Figure 12).
#
# Needs `00_train`, `01_llc_theory` and `02_wrllc` (same profile and run directory).

# %% tags=["parameters"]
profile: str = "cpu"  # profile name (ci, cpu, paper) or a path to a profile YAML file
config: dict = {}  # overrides merged over the profile's config, e.g. {"llc": {"head_checkpoints": 8}}
run_dir: str = ""  # where results go; "" means runs/<profile>/
progress: bool = True  # show progress bars

# %%
import dataclasses

import pandas as pd
from IPython.display import Markdown, display

import rllc
from rllc import ablation, claims, clustering, data, plot, refinement, sweep, viewer
from rllc.components import head_names
from rllc.io import write_table
from rllc.tokenizer import token_decoder
from rllc.train import load_model

plot.style()
cfg = rllc.load_config(profile, config)
run = rllc.resolve_run_dir(cfg, run_dir or None)
tables = run / "tables"
settings = dataclasses.asdict(cfg.sampler)
final_model = load_model(run, "L2", "last")
HEADS = head_names(final_model.cfg.n_layers, final_model.cfg.n_heads)
head_table = pd.read_csv(tables / "head_types.csv")
types = head_table.set_index("component")["type"]
stage_table = pd.read_csv(tables / "stages_L2.csv") if (tables / "stages_L2.csv").exists() else None
print(f"profile {cfg.profile}; run directory {run}")
print(plot.sampler_stamp(settings))

# %% [markdown]
# ## 1. Which heads are the induction heads?
#
# From `02`: heads whose induction score clears the threshold. If the run has none, we follow
# the strongest *candidates* instead — the layer-1 heads with the highest induction score — and
# say so, so that the measurements below can still be read (but the claims are then `undefined`).

# %%
induction = types[types == "induction"].index.tolist()
candidates = False
if not induction:
    layer1 = head_table[head_table["component"].str.startswith("1:")].sort_values("induction", ascending=False)
    induction = layer1["component"].head(2).tolist()
    candidates = True
multigram = types[types.isin(["multigram", "Dyck multigram"])].index.tolist()
multigram = [h for h in multigram if h not in induction]
display(Markdown(f"**Induction heads{' (candidates: none clears the threshold)' if candidates else ''}:** "
                 f"{', '.join(induction)}; **multigram heads:** {', '.join(multigram)}"))

# %% [markdown]
# ## 2. Per-head drLLC on held-out code (Figure 3 analogue)
#
# For every head and checkpoint (the same checkpoints as the wrLLC of `02`, whose estimates are
# reused from the cache) we estimate the drLLC on Python's test suite and on Rust's standard
# library (a language the model never saw), and the ratio drLLC / wrLLC.

# %%
available = data.available_distributions(cfg)
code = [d for d in cfg.llc.head_dr_data if d in available]
steps = sweep.strided_steps(run, "L2", cfg.llc.checkpoint_stride, cfg.llc.head_checkpoints)
est = sweep.run_sweep(run, ["L2"], steps, HEADS, ["train", *code], cfg.sampler, device=cfg.train.device,
                      workers=cfg.llc.workers,
                      progress=progress)
ratios = pd.concat([refinement.ratio_table(est, d) for d in code], ignore_index=True)
write_table(ratios, tables / "dr_ratio_heads.csv")
print(f"{len(est)} estimates on {['train', *code]}; "
      f"{int((est['n_ok'] < est['n_chains']).sum())} with flagged chains")

# %%
for d in code:
    fig = plot.head_llc_curves(est[est["data"] == d], types, settings, stage_table, ylabel=f"drLLC ({d})",
                               title=f"drLLC per head on {d} — profile {cfg.profile}")
    plot.savefig(fig, run, f"03_drllc_heads_{d}")
fig = plot.head_llc_curves(ratios[ratios["data"] == code[0]].assign(llc_mean=lambda t: t["ratio"]), types, settings,
                           stage_table, ylabel=f"drLLC / wrLLC ({code[0]})", title="ratio of refinements per head")
plot.savefig(fig, run, "03_dr_wr_ratio")

# %%
by_type = refinement.ratio_by_type(ratios, {"induction": induction, "multigram": multigram})
write_table(by_type.assign(candidates=candidates), tables / "dr_ratio_by_type.csv")
display(by_type.pivot_table(index=["data", "window"], columns="group", values="mean_ratio").round(3))

# %% [markdown]
# ## 3. The full model on each domain (Figure 12 analogue)
#
# The full-model LLC on the training distribution (wrLLC) and on every held-out domain (drLLC)
# at the same checkpoints. A domain *shifts* the curve when its z-scored shape correlates with
# the training curve (≥ 0.9) and *changes its shape* otherwise.

# %%
domains = ["train", *[d for d in available if d not in ("train", "test")]]
full = sweep.run_sweep(run, ["L2"], steps, ["full"], domains, cfg.sampler, device=cfg.train.device,
                       workers=cfg.llc.workers, progress=progress)
write_table(full, tables / "drllc_full_domains.csv")
domain_table = refinement.domain_summary(full)
write_table(domain_table, tables / "drllc_domain_summary.csv")
display(domain_table.round(3))
fig = plot.domain_curves(full, settings, stage_table, title=f"full-model LLC per distribution — profile {cfg.profile}")
plot.savefig(fig, run, "03_domains")

# %% [markdown]
# ## 4. When do the induction heads form? (Figure 10 analogue)
#
# At every checkpoint: the ICL score of the model, and for each induction head the ICL score
# with the *other* induction heads mean-ablated (what the head contributes on its own). Beside
# it, each induction head's code drLLC and that of all of them together. For each curve we mark
# the step where it changes fastest (per log-step, after light smoothing). The search starts after
# the learning-rate warm-up (`train.warmup_steps`; the paper uses none): during the warm-up every
# curve moves at once (the full-model LLC peaks there, see `01`), which says nothing about when a
# particular head forms.

# %%
test_tokens = data.load_tokens(cfg, "test")
icl_rows = []
for s in steps:
    m = load_model(run, "L2", s)
    t = ablation.per_head_icl(m, test_tokens, cfg.scores, induction)
    icl_rows.append(t.assign(step=s))
icl = pd.concat(icl_rows, ignore_index=True)
write_table(icl, tables / "icl_per_head.csv")
icl_only = icl[icl["variant"].isin(["only", "none"])][["component", "step", "value"]]

together = "+".join(induction)
dr_ind = sweep.run_sweep(run, ["L2"], steps, [*induction, together] if len(induction) > 1 else induction,
                         [code[0]], cfg.sampler, device=cfg.train.device, workers=cfg.llc.workers,
                         progress=progress)
dr_curves = dr_ind.assign(component=dr_ind["component"].replace({together: "together"}),
                          value=dr_ind["llc_mean"])[["component", "step", "value"]]
after = cfg.train.warmup_steps  # search for formation times after the warm-up
timing = pd.concat([refinement.timing(icl_only[icl_only["component"] != "model"], "icl_only", "down", min_step=after),
                    refinement.timing(dr_curves[dr_curves["component"] != "together"], "drllc", "up", min_step=after)],
                   ignore_index=True)
write_table(timing.assign(candidates=candidates), tables / "induction_timing.csv")
display(timing)
fig = plot.induction_timing(icl_only, dr_curves.dropna(), timing, settings, stage_table)
plot.savefig(fig, run, "03_induction_timing")

# %% [markdown]
# ## 5. What the heads attend to (Figure 4 analogue)
#
# The top tokens in context of the induction heads and of the Dyck heads, from `02`'s
# classification (the viewer at `viewer/index.html` shows them with the attention pattern).

# %%
decode = token_decoder(data.prepare(cfg).tokenizer)
held_in = data.sample_windows(cfg, "train", cfg.classify.tic_samples)  # the windows 02 searched
classified = pd.read_parquet(tables / "tokens_in_context.parquet")
dyck = types[types == "Dyck multigram"].index.tolist()
examples = viewer.examples_table(classified, held_in.tolist(), decode, [*induction, *dyck], n=4)
write_table(examples, tables / "examples_induction_dyck.csv")
with pd.option_context("display.max_colwidth", 60):
    display(examples)

# %% [markdown]
# ## 6. Clustering with refinements
#
# The clustering of `02`, now on the code drLLC curves alone and on the wrLLC and drLLC curves
# concatenated (each block scaled by its spread), with the ARI against the behavioural types
# (from step 1 on, as in `02`).

# %%
ari_rows = []
for name, datas in (("dr", [code[0]]), ("wr+dr", ["train", code[0]])):
    for layer in range(final_model.cfg.n_layers):
        sub = est[est["component"].str.startswith(f"{layer}:") & est["data"].isin(datas)]
        sub = sub.assign(refinement=sub["data"])
        sub, dropped = clustering.align_curves(sub.assign(component=sub["component"] + "|" + sub["data"]), min_step=1)
        sub = sub.assign(component=sub["component"].str.split("|").str[0])
        wide = clustering.curves_matrix(sub)
        ks = range(2, min(cfg.classify.max_k, len(wide) - 1) + 1)
        lab = clustering.cluster_all(wide, ks, seed=cfg.seed)
        ari = clustering.ari_table(lab, types)
        n_types = types.reindex(wide.index).nunique()
        ari_rows.append(ari.assign(curves=name, layer=layer, n_types=n_types,
                                   matches_types=(ari["k"] == n_types) if n_types >= 2 else False))
ari_refined = pd.concat(ari_rows, ignore_index=True)
write_table(ari_refined, tables / "clusters_ari_refined.csv")
display(ari_refined[ari_refined["algorithm"] == "consensus"]
        .pivot_table(index=["layer", "k"], columns="curves", values="ari").round(2))

# %% [markdown]
# ## 7. The scorecard

# %%
card = claims.write_scorecard(run)
display(card)

# %%
# NBVAL_CHECK_OUTPUT
print("code distributions:", len(code), "| checkpoints:", len(steps), "| induction heads followed:", len(induction),
      "| domains:", len(domains))

# %%
assert len(est) == len(steps) * len(HEADS) * (1 + len(code))
assert set(domain_table["data"]) == set(domains)
