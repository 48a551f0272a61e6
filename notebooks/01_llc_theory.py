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
# # 01 — The local learning coefficient and how to estimate it
#
# **Reproduces:** the estimator of Wang et al. (2024), Section 2 and Appendix A (what the LLC
# measures), Appendix F.2 (SGLD and its settings), and the full-model LLC curve of the L2 model
# with its developmental stages LM1…LMk found at critical points of the curve (Figure 13, after
# Hoogland et al. 2024). Before the estimator is trusted on a transformer, it is checked on
# models whose learning coefficient is known in closed form.
#
# Needs the trained models of `00_train` (same profile and run directory).

# %% tags=["parameters"]
profile: str = "cpu"  # profile name (ci, cpu, paper) or a path to a profile YAML file
config: dict = {}  # overrides merged over the profile's config, e.g. {"sampler": {"draws": 100}}
run_dir: str = ""  # where results go; "" means runs/<profile>/
progress: bool = True  # show progress bars

# %%
import dataclasses

import numpy as np
import pandas as pd
from IPython.display import Markdown, display

from rllc import train as train_mod
from rllc.analysis import noise, stages
from rllc.data import tokens as tokens_mod
from rllc.estimate import calibrate, known, reruns, sweep
from rllc.model.build import resolve_device
from rllc.notebook import setup
from rllc.report import claims, diagnoses
from rllc.report import figures as plot

nb = setup(profile, config, run_dir, progress)
cfg, run, settings = nb.cfg, nb.run, nb.settings

# %% [markdown]
# ## 1. What the LLC measures
#
# Let $L(w)$ be the population loss of a model with weights $w \in \mathbb{R}^d$ and $w^*$ a local
# minimum. The **local learning coefficient** $\lambda(w^*)$ is the exponent of the volume of
# nearly-as-good weights near $w^*$: for a small neighbourhood $B(w^*)$,
#
# $$V(\epsilon) = \operatorname{vol}\{w \in B(w^*) : L(w) - L(w^*) < \epsilon\}
#   = c\, \epsilon^{\lambda}\,(-\log \epsilon)^{m-1} + o(\cdot)
# \quad (\epsilon \to 0).$$
#
# A regular model (non-degenerate Hessian) has $\lambda = d/2$; degenerate directions make it
# smaller. In information terms (Appendix A): halving the loss gap $\epsilon$ shrinks the volume
# by a factor $2^{\lambda}$, so pinning the weights down to a loss gap half as large costs
# $\lambda$ more bits. The LLC is thus an effective number of parameters — lower means simpler.
#
# ## 2. The estimator
#
# With $n\beta$ an inverse temperature, the localized tempered posterior around $w^*$ is
#
# $$p_\gamma(w) \propto \exp\Big(-n\beta\, L_n(w) - \tfrac{\gamma}{2}\,\lVert w - w^*\rVert^2\Big),$$
#
# and the estimator of the LLC is the posterior mean rise of the loss, in units of $1/(n\beta)$:
#
# $$\hat\lambda(w^*) = n\beta\,\Big(\mathbb{E}_{w \sim p_\gamma}\big[L_n(w)\big] - L_n(w^*)\Big).$$
#
# The expectation is taken with **SGLD**, whose update with step size $\epsilon$ on a batch
# $B_t$ of mean per-token loss $\bar L_{B_t}$ is
#
# $$w_{t+1} = w_t - \frac{\epsilon}{2}\Big(n\beta\,\nabla \bar L_{B_t}(w_t) + \gamma\,(w_t - w^*)\Big)
#   + \sqrt{\epsilon}\;\eta_t,
# \qquad \eta_t \sim \mathcal N(0, I),$$
#
# and $\hat\lambda = n\beta\,(\overline{\bar L_{B_t}(w_t)} - L(w^*))$ averages the batch losses over draws
# and chains. **Refinements** change what moves and what is measured: restricting the update to a
# component's weights (a head's slices of $W_Q, W_K, W_V, W_O, b_Q, b_K, b_V$) gives the
# *weight-refined* LLC; measuring the loss on another distribution — or as the cross-entropy to a
# generator model's predictions (eq. 11) — gives the *data-refined* LLC.
#
# The settings: $\epsilon$ (too large: chains run away; too small: they do not leave $w^*$),
# $\gamma$ (keeps chains local; too large biases $\hat\lambda$ down), $n\beta$ (the temperature;
# the estimate is asymptotic in it), chains and draws (precision), burn-in (draws before the
# trace has risen bias the estimate low). Every estimate in this series reports its per-chain
# values and flags chains that diverge or sink below $L(w^*)$ instead of averaging them.

# %% [markdown]
# ## 3. Known answers
#
# The estimator (`rllc.estimate.llc.sample_llc`, the same function used on transformers) on models whose
# $\lambda$ is known: a regular linear regression ($d/2$), normal-crossing potentials
# $K(w)=\prod_i w_i^{2k_i}$ ($1/(2\max_i k_i)$), reduced-rank regression at a point of its minimal
# stratum (Aoyagi and Watanabe's closed form), and the same regression with one factor frozen
# (a weight-refined estimate; the reduced model is regular in $rN$ weights). The unit tests assert
# the same cases with the same settings (10% tolerance, 15% for reduced-rank regression).

# %%
scale = cfg.llc.validation_scale
validation = known.run_validation(scale=scale, progress=progress)
nb.write("llc_known", validation)
display(validation[["family", "case", "truth", "estimate", "sem", "rel_error", "tolerance", "n_weights", "epsilon",
                    "nbeta", "draws", "seconds"]].round(4))
fig = plot.known_vs_truth(validation)
nb.savefig(fig, "01_known_lambda")

# %%
validation["within_tolerance"] = validation["rel_error"].abs() <= validation["tolerance"]
if scale >= 1:
    assert validation["within_tolerance"].all(), validation
    print("every known-λ case is within tolerance")
else:
    print(f"validation ran at {scale:.0%} of its draws (profile {cfg.profile}); tolerances are asserted only "
          f"at full length: {int(validation['within_tolerance'].sum())} of {len(validation)} within tolerance")

# %% [markdown]
# ## 4. Calibrating SGLD for this profile
#
# Following devinterp's calibration guide, we sweep the step size $\epsilon$ and $n\beta$ at the
# last checkpoint of L2 (full model, training distribution) and look at the loss traces. Good
# settings give traces that rise within the burn-in and then stay flat: no runaway (divergence),
# no drift back below $L(w^*)$, and an estimate that moves little between neighbouring settings.
# The profile's chosen settings are printed below the figure.

# %%
tokens = tokens_mod.load_tokens(cfg, "train")
device = resolve_device(cfg.train.device)  # a GPU when present
final = nb.run.load_model("L2", "last", device=device)
base = dataclasses.replace(cfg.sampler, draws=cfg.llc.calibration_draws)
cal_est, cal_traces = calibrate.calibration_grid(final, tokens, "full", cfg.llc.calibration_epsilons,
                                                 cfg.llc.calibration_nbetas, base, progress=progress)
nb.write("llc_calibration", cal_est)
display(cal_est.round(4))
fig = plot.calibration_traces(cal_traces, cal_est, base)
nb.savefig(fig, "01_calibration")
print("chosen for this profile:", plot.sampler_stamp(settings))

# %% [markdown]
# ## 4b. Do the standard errors cover a rerun?
#
# An estimate's standard error is the spread of its chains. It describes what changes between
# reruns only if the chains differ in everything a rerun changes. With devinterp's convention
# (`batch_order: shared`) every chain sees the same batches in the same order; under its `init`
# reference every draw is then compared with one L(w*) from the first batches, so an offset between
# those batches and the draws' batches is common to all chains and missing from the error. Here one
# estimate (component `llc.rerun_component` at the last checkpoint, the profile's sampler) is rerun
# with `llc.rerun_seeds` seeds that share no chain, for both references and both batch orders. If
# the errors are honest, the seed-to-seed variance of the means equals the mean reported variance:
# their **ratio** should fall inside the χ² interval for that many reruns, and pairwise z-scores
# should have a standard deviation near 1. This reproduction's default is `per_chain` (each chain
# its own batch order and reference), for every profile including `paper`: the paper profile's
# estimates therefore differ from the paper's convention in how their errors are formed.

# %%
last = nb.run.steps("L2")[-1]
comp = cfg.llc.rerun_component
spread_rows = []
for reference in ("init", "paired"):
    for order in ("shared", "per_chain"):
        means, sems, flagged = [], [], 0
        for seed in reruns.rerun_seeds(cfg.sampler.seed, cfg.llc.rerun_seeds):
            s = dataclasses.replace(cfg.sampler, reference=reference, batch_order=order, seed=seed)
            est = sweep.run_sweep(run, ["L2"], [last], [comp], ["train"], s, device=cfg.train.device, progress=False)
            means.append(float(est["llc_mean"].iloc[0]))
            sems.append(float(est["llc_sem"].iloc[0]))
            flagged += int(est["n_chains"].iloc[0] - est["n_ok"].iloc[0])
        spread_rows.append({"component": comp, "step": last, "reference": reference, "batch_order": order,
                            **reruns.seed_spread(means, sems), "reruns": len(means), "flagged_chains": flagged})
rerun_spread = pd.DataFrame(spread_rows)
nb.write("llc_rerun_spread", rerun_spread)
display(rerun_spread.drop(columns=["component", "step"]).round(4))
lines = []
for r in rerun_spread.itertuples():
    if r.n < 2:  # every chain of all but one rerun flagged (tiny counts): nothing to compare
        lines.append(f"- {r.reference}, {r.batch_order.replace('_', '-')} batches: {r.n} of {r.reruns} reruns "
                     f"had a healthy chain ({r.flagged_chains} of {r.reruns * cfg.sampler.chains} chains flagged): "
                     "no spread to measure.")
        continue
    lines.append(f"- {r.reference}, {r.batch_order.replace('_', '-')} batches: seed-to-seed sd {r.sd_means:.4f} "
                 f"against a reported error of {r.rms_se:.4f} (variance ratio {r.variance_ratio:.2f}; honest "
                 f"errors give {r.ratio_lo:.2f}–{r.ratio_hi:.2f} for {r.n} reruns"
                 + (f" of {r.reruns}; the others had every chain flagged" if r.n < r.reruns else "")
                 + f"; {r.flagged_chains} of {r.reruns * cfg.sampler.chains} chains flagged): "
                 + ("consistent." if r.calibrated else "**the reported error does not cover reruns.**"))
display(Markdown("\n".join(lines)))

# %% [markdown]
# ## 5. The full-model LLC over training, and its stages
#
# The LLC of L2 at the checkpoints of the profile (every `llc.curve_stride`-th; the cpu profile:
# all 54, with `llc.curve_chains` × `llc.curve_draws` per estimate, chosen from the noise budget
# in 5a), beside the test loss. Hoogland et al. place stage boundaries at critical points of the
# LLC against log step: local maxima and minima, and the onsets of plateaus. A noisy curve has
# many spurious turns, so a critical point here must **stand out of the estimates' noise**
# (`rllc.analysis.stages.robust_critical_points`): curves of pure noise with the estimates' own
# standard errors, sampled at the same steps and smoothed the same way, are simulated, and an
# extremum counts only if its prominence (`scipy.signal.find_peaks`) exceeds what 95% of those
# noise curves reach anywhere; a plateau only if a rise larger than that threshold stops for
# 0.2 decades. The earlier rule (sign changes of the smoothed slope, no noise model) is kept
# beside it for comparison. In the paper (at its scale) the curve rises steeply in LM1, keeps
# rising through LM2, dips in LM3 as previous-token heads form, and rises again through LM4
# before converging. Estimates are cached: a rerun computes only what is missing.

# %%
stride = cfg.llc.curve_stride or cfg.llc.checkpoint_stride
steps = sweep.strided_steps(run, "L2", stride)
curve_sampler = dataclasses.replace(cfg.sampler, chains=cfg.llc.curve_chains or cfg.sampler.chains,
                                    draws=cfg.llc.curve_draws or cfg.sampler.draws)
curve = sweep.run_sweep(run, ["L2"], steps, ["full"], ["train"], curve_sampler, device=cfg.train.device,
                        workers=cfg.llc.workers, progress=progress)
print(f"{len(steps)} checkpoints, {curve_sampler.chains} chains x {curve_sampler.draws} draws per estimate")
curve = curve.sort_values("step").reset_index(drop=True)
nb.write("llc_full_L2", curve)
sigma = cfg.llc.stage_sigma
valued, tested, rule_note = stages.rule_inputs(curve)
if len(tested) < len(curve):
    print(rule_note)
found = stages.stages(tested["step"], tested["llc_mean"], se=tested["llc_sem"].clip(lower=1e-6), sigma=sigma)
slope_rule = stages.stages(valued["step"], valued["llc_mean"], sigma=sigma)
points = stages.robust_critical_points(tested["step"], tested["llc_mean"], tested["llc_sem"].clip(lower=1e-6),
                                       sigma=sigma)
nb.write("stages_L2", found)
nb.write("stages_L2_slope", slope_rule)
display(curve[["step", "llc_mean", "llc_std", "llc_sem", "n_ok", "n_chains", "init_loss"]].round(3))
display(Markdown("**Critical points that stand out of the noise** (prominence in units of the noise threshold):"))
display(points.round(2))

# %% [markdown]
# The same rule on the **test loss** (logged at every checkpoint on fixed held-out batches; its
# noise is estimated from the curve's second differences, `rllc.analysis.noise.difference_sd`,
# since a logged loss carries no standard error):

# %%
log = pd.read_csv(nb.run.store("L2").log_path)
test_loss = log[log["split"] == "test"].sort_values("step").reset_index(drop=True)
loss_sd = noise.difference_sd(test_loss["loss"])
loss_stages = stages.stages(test_loss["step"], test_loss["loss"], se=max(loss_sd, 1e-9), sigma=sigma)
nb.write("test_loss_stages", loss_stages)
print(f"test-loss noise (sd from second differences): {loss_sd:.4f} nats")
display(loss_stages.round(3))

# %% [markdown]
# ### 5a. The noise budget of claim 1
#
# A stage boundary is a change of the curve's direction, so the claim rests on the differences
# between neighbouring checkpoints. Their median size against their standard error
# (√(se_a² + se_b²)), the share of them more than 2 SE wide, and how many times the samples
# (chains × draws) each estimate would need for the median difference to be 2 SE wide:

# %%
along = noise.along_curve(tested.rename(columns={"llc_mean": "value", "llc_sem": "se"}))
budget_rows = noise.summary(along=along)
late = along[along["step_a"] >= cfg.train.warmup_steps]
if len(late) and cfg.train.warmup_steps > 0:
    late_row = noise.summary(along=late).assign(difference=f"neighbouring checkpoints after the warm-up "
                                                           f"({cfg.train.warmup_steps})")
    budget_rows = pd.concat([budget_rows, late_row], ignore_index=True)
budget_stages = noise.budget("1", budget_rows, seconds=float(curve["seconds"].sum()))
nb.write("noise_budget_stages", budget_stages)
display(budget_stages.round(3))

# %% [markdown]
# **Precision against time.** One estimate (the last checkpoint) at several chains × draws
# settings: its standard error, what 1/√(chains × draws) predicts from the cheapest setting, and
# its cost. If the measured error falls as predicted, the table above converts directly into
# compute; if it falls slower (correlated draws), more chains are the better buy. Chain c's
# batches and noise depend only on the seed and c, so on a CPU the longest setting is sampled and
# the others are cut from it (`records.derive_records`: its first chains, to their first draws — the
# numbers a run of their own gives, bit for bit); their times are its time per chain-step, scaled.

# %%
if cfg.llc.precision_chains and cfg.llc.precision_draws:
    last_step = nb.run.steps("L2")[-1]
    grid = sweep.precision_grid(run, "L2", last_step, cfg.llc.precision_components, cfg.llc.precision_chains,
                                cfg.llc.precision_draws, cfg.sampler, device=cfg.train.device,
                                workers=cfg.llc.workers, progress=progress)
    precision = noise.precision_table(grid)
    nb.write("precision_tradeoff", precision)
    display(precision[["component", "chains", "draws", "llc_mean", "llc_sem", "se_predicted", "se_ratio",
                       "time_ratio", "seconds", "se2_x_seconds"]].round(4))
    need = float(budget_stages["samples_needed"].iloc[-1])
    per_ckpt = float(curve["seconds"].median())
    display(Markdown(
        f"For the median difference after the warm-up to be 2 SE wide, each estimate needs {need:.1f}× the "
        f"samples: about {need * per_ckpt * len(curve) / 60:.0f} min of estimation for the {len(curve)} checkpoints "
        f"(now {per_ckpt * len(curve) / 60:.0f} min at {per_ckpt:.0f} s per estimate, before dividing by "
        f"{cfg.llc.workers} workers)."))
else:
    print("no precision grid in this profile (llc.precision_chains / llc.precision_draws)")

# %% [markdown]
# ### 5b. Is the early peak a stage or the learning-rate warm-up?
#
# The cpu profile warms the learning rate up linearly over `train.warmup_steps` (the paper does
# not), and the LLC peaks early, inside the warm-up. A peak that belongs to the schedule moves
# with it; one that belongs to what the model learns comes at the same test loss. L2 is retrained
# for `llc.warmup_control_steps` steps with other warm-up lengths (same seed, data order and
# checkpoints) and its LLC estimated with the profile's sampler (as the original run's here, cut
# from the curve's longer estimates: the peak stands far out of that sampler's noise). Rule
# (`stages.warmup_verdict`): the peak is a **stage** if it stays within one checkpoint spacing; a
# stage **delayed by the warm-up** if it moves with the warm-up but always comes at the same test
# loss (within the loss change of one checkpoint at the original peak); a **warm-up artefact** if
# it moves and comes at different losses.

# %%
until = cfg.llc.warmup_control_steps
if cfg.llc.warmup_controls and until > 0:
    w0 = cfg.train.warmup_steps
    main_early = sweep.run_sweep(run, ["L2"], [s for s in steps if s <= until], ["full"], ["train"], cfg.sampler,
                                 device=cfg.train.device, workers=cfg.llc.workers, progress=progress)
    ctrl_curves = {w0: main_early}
    ctrl_losses = {w0: test_loss[test_loss["step"] <= until]}
    readings = [{"warmup_steps": w0, **stages.peak_reading(main_early, test_loss, w0, until)}]
    for w in cfg.llc.warmup_controls:
        sub = train_mod.warmup_control(cfg, run, w, until, progress=progress)
        c = sweep.run_sweep(sub, ["L2"], sweep.strided_steps(sub, "L2"), ["full"], ["train"], cfg.sampler,
                            device=cfg.train.device, workers=cfg.llc.workers, progress=progress)
        clog = pd.read_csv(sub.store("L2").log_path)
        ctrl_curves[w], ctrl_losses[w] = c, clog[clog["split"] == "test"]
        readings.append({"warmup_steps": w, **stages.peak_reading(c, ctrl_losses[w], w, until)})
    readings = pd.DataFrame(readings)
    early = sorted(s for s in main_early["step"])
    spacing = int(np.diff(early).max())
    peak = int(readings["peak_step"].iloc[0])
    after_peak = min((s for s in test_loss["step"] if s > peak), default=peak)
    tol = abs(float(test_loss.set_index("step")["loss"].get(after_peak, np.nan))
              - float(readings["test_loss_at_peak"].iloc[0]))
    verdict, reason = stages.warmup_verdict(readings, spacing, tol)
    control = readings.assign(verdict=verdict, reason=reason)
    nb.write("warmup_control", control)
    display(control.drop(columns=["verdict", "reason"]).round(3))
    display(Markdown(f"**{verdict}**: {reason}."))
    fig = plot.warmup_controls(ctrl_curves, ctrl_losses, settings,
                               title=f"early LLC with other warm-up lengths — profile {cfg.profile}")
    nb.savefig(fig, "01_warmup_controls")
else:
    print("no warm-up controls in this profile (llc.warmup_controls)")

# %% [markdown]
# ### 5c. The stages beside the formation of the heads
#
# The LLC with both rules' boundaries, the test loss with its own, and the heads' scores from
# `00` (each layer-0 head's previous-token score, each layer-1 head's induction score). Does the
# run end inside a development? The change of the induction scores and of the LLC over the last
# 0.15 decades of training, against its noise:

# %%
behaviour = nb.read("behaviour_L2")
trend_rows = [{"measure": "full-model LLC",
               **stages.end_trend(tested["step"], tested["llc_mean"], tested["llc_sem"])}]
heads_b = behaviour[(behaviour["layer"] == 1) & (behaviour["score"] == "induction")]
top = heads_b[heads_b["step"] == heads_b["step"].max()].nlargest(2, "value")["component"]
for comp in top:
    g = heads_b[heads_b["component"] == comp].sort_values("step")
    trend_rows.append({"measure": f"induction score of {comp}",
                       **stages.end_trend(g["step"], g["value"], noise.difference_sd(g["value"]))})
end_trend = pd.DataFrame(trend_rows)
nb.write("run_end_trend", end_trend)
display(end_trend.round(4))
fig = plot.stages_and_heads(curve, found, slope_rule, test_loss, loss_stages, behaviour, curve_sampler,
                            warmup_steps=cfg.train.warmup_steps,
                            title=f"L2: LLC stages, test loss and head formation — profile {cfg.profile}")
nb.savefig(fig, "01_llc_stages")

# %%
flagged = curve[curve["n_ok"] < curve["n_chains"]]
summary = {
    "checkpoints estimated": len(curve),
    "LLC at first checkpoint": round(float(curve["llc_mean"].iloc[0]), 3),
    "LLC at last checkpoint": round(float(curve["llc_mean"].iloc[-1]), 3),
    "LLC range": f"{curve['llc_mean'].min():.3f} … {curve['llc_mean'].max():.3f}",
    "median standard error": round(float(curve["llc_sem"].median()), 3),
    "checkpoints with flagged chains": len(flagged),
    "stage boundaries, noise-tied rule (steps)": ", ".join(
        f"{r.step} ({r.kind})" for r in points.itertuples()) or "none",
    "stage boundaries, slope-sign rule (steps)": ", ".join(str(s) for s in slope_rule["end"].iloc[:-1]) or "none",
    "test-loss boundaries (steps)": ", ".join(str(s) for s in loss_stages["end"].iloc[:-1]) or "none",
}
display(Markdown("\n".join(f"- **{k}:** {v}" for k, v in summary.items())))
if cfg.expect_phenomena:
    assert curve["n_ok"].gt(0).all(), "every checkpoint needs at least one healthy chain"
    assert curve["llc_mean"].iloc[-1] > curve["llc_mean"].iloc[0], "the LLC should grow over training"

# %% [markdown]
# ### 5d. Why claim 1 holds or fails here
#
# *The criterion* (`rllc.analysis.criteria.stages_verdict`, calibrated in `docs/claims.md`): at
# least two critical points that stand out of the noise, none of them a warm-up artefact (5c), on
# a curve of at least 37 checkpoints. On the authors' own full-model LLC the same rule finds
# exactly two, the maximum at 6,400 and the minimum at 8,600 (Hoogland et al.'s LM2/LM3 and
# LM3/LM4 boundaries), on the paper's grid and on ours stretched to 50k; a smooth trend with the
# same noise gives fewer; and below 37 log-spaced checkpoints the rule no longer finds those two
# boundaries on the authors' curve, so a sparser curve leaves the claim undefined.
#
# The diagnosis (`rllc.report.diagnoses.stages`) reads the tables above: **noise** when fewer
# than half the neighbouring checkpoints differ by 2 SE; otherwise **scale**, and *training
# length* when the induction scores still rise at the end (z > 2 over the last window). The
# scorecard carries it in its `diagnosis` column.

# %%
diag = diagnoses.diagnose(run, claims.MIN_STAGES)
d1 = diag[diag["claim"] == "1"]
if len(d1):
    status = claims.check_stages(run)
    display(Markdown(f"**Claim 1 — {status[0]}**: {status[1]}; needs {status[2]}. Diagnosis: "
                     f"**{d1['diagnosis'].iloc[0]}** — {d1['evidence'].iloc[0]}."))

# %% [markdown]
# The invariants below are compared by nbval on re-execution (they do not depend on timing).

# %%
# NBVAL_CHECK_OUTPUT
print("known-λ cases:", len(validation), "| checkpoints estimated:", len(curve),
      "| chains per estimate:", cfg.sampler.chains)
