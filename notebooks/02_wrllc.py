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
# # 02 — Weight-refined LLCs: attention heads differentiate
#
# **Reproduces:** Wang et al. (2024), Section 4.1 (Figures 1, 2), Appendix B (Figures 9, 11,
# Table 1) and Appendix F.5 (Figures 18, 19). The claim: if we estimate the LLC of each attention
# head alone — SGLD moves only that head's weights, the rest of the network stays at the
# checkpoint (the *weight-refined* LLC, wrLLC) — the curves over training **differentiate** the
# heads, and the grouping they suggest **matches what the heads do**: previous-token, current-token
# and induction heads end low, heads that memorise many multigrams end high, and clustering the
# curves recovers the behavioural types.
#
# Method, in order: (1) the wrLLC of every head at checkpoints across training; (2) each head's
# behavioural type, from scores and from the tokens in context it matters most for; (3) clusters
# of the curves and their agreement with the types; (4) the claims scorecard.
#
# Needs `00_train` and `01_llc_theory` (same profile and run directory).

# %% tags=["parameters"]
profile: str = "cpu"  # profile name (ci, cpu, paper) or a path to a profile YAML file
config: dict = {}  # overrides merged over the profile's config, e.g. {"llc": {"head_checkpoints": 8}}
run_dir: str = ""  # where results go; "" means runs/<profile>/
progress: bool = True  # show progress bars

# %%
import pandas as pd
from IPython.display import Markdown, display

from rllc.analysis import clustering, interventions, noise, patterns, scores
from rllc.analysis import head_types as ht
from rllc.analysis.separation import curve_features, type_separation
from rllc.data import tokens as tokens_mod
from rllc.data.tokenizer import token_decoder
from rllc.estimate import sweep
from rllc.notebook import setup
from rllc.report import claims, diagnoses, prose, rules, viewer
from rllc.report import figures as plot

nb = setup(profile, config, run_dir, progress)
cfg, run, settings = nb.cfg, nb.run, nb.settings
final_model, HEADS = nb.final_model, nb.heads
print(f"{len(HEADS)} heads")

# %% [markdown]
# ## 1. The wrLLC of every head across training
#
# For each head $h$ and checkpoint $w^*_t$ we run SGLD on the head's weights only (its slices of
# $W_Q, W_K, W_V, W_O$ and biases) with the same sampler settings as the full-model curve of `01`,
# on the training distribution, and estimate
# $\hat\lambda_h(w^*_t) = n\beta\,(\mathbb{E}[L(w)] - L(w^*_t))$. The full-model LLC is estimated
# at the same checkpoints for reference. Estimates are cached per (checkpoint, head, settings):
# an interrupted run resumes where it stopped.

# %%
steps = sweep.strided_steps(run, "L2", cfg.llc.checkpoint_stride, cfg.llc.head_checkpoints)
print(f"{len(steps)} checkpoints: {steps}")
wr = sweep.run_sweep(run, ["L2"], steps, [*HEADS, "full"], ["train"], cfg.sampler, device=cfg.train.device,
                     workers=cfg.llc.workers,
                     progress=progress)
wr = wr.sort_values(["component", "step"]).reset_index(drop=True)
nb.write("wrllc_L2", wr)
head_wr = wr[wr["component"] != "full"]
flag_rows = head_wr[head_wr["n_ok"] < head_wr["n_chains"]]
print(f"{len(wr)} estimates; {len(flag_rows)} with flagged chains; "
      f"median chain std {head_wr['llc_std'].median():.3f}")

# %% [markdown]
# ## 2. What each head does
#
# ### 2.1 Behavioural scores
#
# The scores of `00` at the last checkpoint decide the first three types, by the rule of
# `rllc.analysis.head_types` (its sources are there): a previous-token (current-token) head gives the
# *majority* of its content attention to that position, on random tokens *and* on held-out text
# (the paper's "strongly and systematically", Section 4.1); an induction head scores above 0.2 on
# a repeated random sequence. The table below sets each measure beside its chance level, the
# largest value, and whether the threshold falls in the widest gap between the sorted values (then
# any threshold in that gap would give the same types).

# %%
behaviour = nb.read("behaviour_L2")
last = behaviour[(behaviour["step"] == behaviour["step"].max()) & (behaviour["layer"] >= 0)]
measures = ht.rule_measures(last[["component", "score", "value"]])
report = scores.threshold_report(measures, cfg.scores)
nb.write("score_thresholds", report)
display(report.round(3))
fig = plot.score_distribution(measures, report)
nb.savefig(fig, "02_score_distribution")
score_types = ht.classify(last)

# %% [markdown]
# **How the rule changes the types.** Per head: the raw attention to the previous token, to itself
# and to the first position, on random tokens and on text; the rule's two shares; and the score
# type under the rule and under each alternative (`rllc.analysis.head_types.RULES`): `v1` is the
# rule this project used until 2026-12-05 (raw random-token attention above 0.2, widest margin
# wins), `raw shares` counts the attention parked on the first position, `random tokens only` and
# `text only` drop one of the data, `almost entirely` asks a current-token head for a share ≥ 0.8.

# %%
sensitivity = ht.rule_sensitivity(last)
nb.write("type_rule_sensitivity", sensitivity)
display(sensitivity.round(2))
display(Markdown(prose.rule_sensitivity_text(sensitivity)))

# %% [markdown]
# **How settled each type is.** A measure moves a little from checkpoint to checkpoint even late in
# training, and a retrain on another machine or another seed moves it by about as much (one head
# of the default run went from 0.62 to 0.64 between two machines and changed type). Its spread
# over the last five checkpoints is its noise here; a head whose measure lies within two spreads
# of a threshold has a *fragile* type, and the claims its type feeds could change with it
# (`rllc.analysis.head_types.fragile_heads`, `rllc.report.rules.fragility_line`).

# %%
fragile = ht.fragile_heads(behaviour)
nb.write("type_fragility", fragile)
display(fragile[fragile["value"] > 0.1].round(3))
display(Markdown(rules.fragility_line(fragile, score_types)))

# %% [markdown]
# ### 2.2 Tokens in context
#
# Following Appendix B.1, we mean-ablate each head in turn on held-in windows of the training
# distribution and keep the tokens in context (sample, position) whose next-token loss rises
# most, with the head's attention from there. Each is classified serially (`rllc.analysis.patterns`):
# **induction** (an in-context bigram completed via the current token or the earlier
# continuation), **Dyck** (the next token closes a bracket, quote, markdown mark or split
# construction with valid nesting), **skip n-gram** (a preset list), **n-gram** (the attended
# span plus the next token recurs among the head's tokens in context), else *unexplained*.

# %%
decode = token_decoder(tokens_mod.prepare(cfg).tokenizer)
held_in = nb.held_in_windows()  # the same windows in 03
tic = interventions.tokens_in_context(final_model, held_in, HEADS, k=cfg.classify.tic_k,
                                 batch_size=cfg.classify.batch_size, progress=progress)
seqs = held_in.tolist()
classified = pd.concat([patterns.classify_contexts(gr, seqs, decode) for _, gr in tic.groupby("component", sort=False)],
                       ignore_index=True)
nb.write("tokens_in_context", classified.drop(columns=["attention"]))
summary = patterns.pattern_summary(classified)
types = ht.head_types(score_types, summary)
types_v1 = ht.head_types(ht.classify(last, "v1"), summary)  # the earlier rule, for section 4d

# %% [markdown]
# ### 2.3 Head types (Table 1 analogue)
#
# A head keeps its score type if it has one; otherwise it is a multigram head, and a *Dyck
# multigram* head if Dyck patterns explain more of its tokens in context than any other pattern.

# %%
final_wr = head_wr[head_wr["step"] == head_wr["step"].max()].set_index("component")["llc_mean"]
head_table = (summary.set_index("component")
              .join(last.pivot_table(index="component", columns="score", values="value"))
              .join(types).join(final_wr.rename("final_wrllc")).reset_index())
cols = ["component", "type", "final_wrllc", "previous_token", "current_token", "induction",
        *[f"frac_{p}" for p in patterns.PATTERNS], "n_multigrams", "top_pattern"]
head_table = head_table[cols]
nb.write("head_types", head_table)
display(head_table.round(3))
index = viewer.write_viewer(run, classified, types, seqs, decode, n=cfg.classify.viewer_examples)
display(Markdown(f"Per-head samples (attention highlighted): [`{index.relative_to(run.path)}`]({index})"))

# %%
fig = plot.pattern_fractions(summary, types)
nb.savefig(fig, "02_pattern_fractions")

# %% [markdown]
# A few of the top tokens in context per head (the viewer shows them with attention):

# %%
shown = [c for t in ht.FINAL_TYPES for c in types[types == t].index[:2]]  # two heads of each type
examples = viewer.examples_table(classified, seqs, decode, shown, n=2)
nb.write("head_examples", examples)
with pd.option_context("display.max_colwidth", 60):
    display(examples)

# %% [markdown]
# ## 3. The wrLLC curves, coloured by type (Figure 2 analogue)

# %%
stage_table = nb.stages
fig = plot.head_llc_curves(head_wr, types, settings, stage_table, title=f"wrLLC per head — profile {cfg.profile}")
nb.savefig(fig, "02_wrllc_heads")

# %%
display(Markdown(prose.wrllc_layer_lines(head_wr, types)))

# %% [markdown]
# In layer 1 the paper finds that heads with higher final wrLLC memorise more multigrams
# (Figure 11). Here, the number of distinct multigrams (n-grams, skip n-grams, Dyck pairs) among
# each head's tokens in context against its final wrLLC:

# %%
fig = plot.multigrams_vs_llc(summary, final_wr, types, settings)
nb.savefig(fig, "02_multigrams_vs_wrllc")
rho = {}
for layer in range(final_model.cfg.n_layers):
    sub = head_table[head_table["component"].str.startswith(f"{layer}:")]
    rho[layer] = float(sub["final_wrllc"].corr(sub["n_multigrams"], method="spearman"))
print("Spearman ρ(final wrLLC, distinct multigrams) per layer:", {k: round(v, 2) for k, v in rho.items()})

# %% [markdown]
# ## 4. Clustering the curves (Figures 18, 19 analogue)
#
# Per layer, each head's wrLLC curve is a point; we cluster with Euclidean k-means, Ward
# agglomerative clustering and shape-based k-means (k-shape on z-normalised curves), for
# k = 2…6, and combine them by a vote in which shape-based clustering counts double. The split
# diagrams show how clusters divide as k grows. The adjusted Rand index (ARI) compares each
# clustering with the behavioural types; the scorecard uses the consensus at k = the number of
# types present in the layer. The initialisation (step 0) is left out, as in the figure above: it
# is no local minimum, the chains sink below $L(w^*)$ there, and the scatter of those estimates
# would outweigh every later difference between heads.

# %%
labels_wr, ari_wr, dropped = clustering.cluster_layers(head_wr, types, cfg.classify.max_k, seed=cfg.seed, min_step=1)
for layer, steps_out in dropped.items():
    if steps_out:
        print(f"layer {layer}: checkpoints {steps_out} left out (initialisation, or a head there has no healthy chain)")
for layer, lab in labels_wr.groupby("layer"):
    fig = plot.cluster_splits(lab, types, title=f"layer {layer}: clusters of wrLLC curves as k grows")
    nb.savefig(fig, f"02_cluster_splits_L{layer}")
nb.write("clusters_wr", labels_wr)
nb.write("clusters_ari_wr", ari_wr)
display(ari_wr.pivot_table(index=["layer", "k"], columns="algorithm", values="ari").round(2))
display(Markdown(prose.consensus_line(ari_wr)))

# %% [markdown]
# ### 4a. Is an ARI distinguishable from chance here?
#
# With eight heads and two to four types, chance alone reaches sizeable ARIs. Each variant the
# paper uses — k-means, Ward, shape-based and the consensus; raw curves and curves standardised
# per checkpoint across the layer's heads — at k = the number of types, beside the ARI of the
# same clustering with its labels shuffled over the heads (5,000 times: the null keeps the
# cluster sizes and knows nothing of the types). `p` is the share of shuffles at or above the
# observed ARI.

# %%
variants = clustering.ari_variants(head_wr, types, "wr", cfg.classify.max_k, seed=cfg.seed, min_step=1,
                                   clustered=(labels_wr, ari_wr))
nb.write("clusters_ari_variants", variants)
display(variants.round(3))

# %% [markdown]
# ### 4b. Can the estimates tell the heads of a layer apart?
#
# At each checkpoint, the spread (sd) of a layer's wrLLCs against the typical standard error of one
# head's estimate: a ratio near 1 means the heads' differences are mostly noise, and no clustering
# of the curves can recover types from them.

# %%
between = noise.between_heads(head_wr.rename(columns={"llc_mean": "value", "llc_sem": "se"}))
between = between[between["step"] > 0]
budget_heads = noise.budget("3", noise.summary(between=between), seconds=float(head_wr["seconds"].sum()))
nb.write("noise_budget_heads", budget_heads)
display(budget_heads.round(3))

# %% [markdown]
# ### 4c. What separates the types when whole curves do not?
#
# Simple features of each head's wrLLC curve (final level, mean level, the log step of its peak,
# its rise from its lowest point, its change over the first and second halves of training), and
# for each the share of its variance that lies between the layer's types (η²) against a
# permutation null (types shuffled over the heads). `p_bonferroni` corrects for the number of
# features tried.

# %%
features = curve_features(head_wr, min_step=1)
separation = type_separation(features, types, seed=cfg.seed)
nb.write("type_separation", separation)
display(separation.round(3))

# %%
diag = diagnoses.diagnose(run, claims.MIN_STAGES)
display(Markdown(prose.variants_lines(variants, diag[diag["claim"] == "3"])))

# %% [markdown]
# ### 4d. The clusterings under the earlier type rule
#
# The same curves and clusterings, scored against the types of rule `v1` (raw random-token
# attention above 0.2) instead of the rule's. Claim 3 itself is decided in `03`, by the paper's
# protocol on the wrLLC and code drLLC curves together, where it is also shown under rule `v1`.

# %%
_, ari_v1, _ = clustering.cluster_layers(head_wr, types_v1, cfg.classify.max_k, seed=cfg.seed, min_step=1)
display(Markdown(prose.consensus_under_rule_line(ari_v1, rules.type_changes(types, types_v1, HEADS))))

# %% [markdown]
# ## 5. The scorecard
#
# Each checkable claim of the paper, computed from this run's tables (`rllc.report.claims`); claims
# whose notebooks have not run are `not computed`. Written to `claims.csv` at the top of the run.

# %%
card = claims.write_scorecard(run)
display(card)

# %% [markdown]
# The invariants below are compared by nbval on re-execution (they do not depend on timing).

# %%
# NBVAL_CHECK_OUTPUT
print("heads:", len(HEADS), "| checkpoints:", len(steps), "| estimates:", len(wr),
      "| tokens in context per head:", cfg.classify.tic_k, "| claims:", len(card))

# %%
assert len(wr) == len(steps) * (len(HEADS) + 1)
if cfg.expect_phenomena:
    assert wr["n_ok"].gt(0).mean() >= 0.9, "most estimates need at least one healthy chain"
assert set(types) <= set(ht.FINAL_TYPES)
assert classified.groupby("component").size().eq(cfg.classify.tic_k).all()
