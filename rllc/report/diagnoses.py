"""Why a claim fails (or passes) on a run: scale, noise or method, from the run's own measurements.

A reproduction at another scale must tell a model that behaves differently from estimates that
cannot see the difference. Each function below reads the tables its notebook writes and returns a
``Diagnosis``: a label and the measurement behind it.

* ``noise``: the differences the claim rests on are not resolved by the estimates' errors
  (fewer than half of them two standard errors wide, or a timing difference smaller than what the
  checkpoint grid and noise can resolve);
* ``method``: the measurements resolve what the claim needs but the claim's procedure misses it
  (e.g. clustering whole curves misses a feature that separates the types);
* ``scale``: the measurements are resolved and the model itself differs from the paper's (fewer
  critical points, heads whose curves do not separate by type), including a run that ends before
  a development the paper's run completes;
* ``none``: the claim holds and its differences are resolved.

The rules are stated in each function and are the same for every profile.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..analysis import agreement, criteria, noise
from ..config import CircuitConfig, Config
from ..run import Run, folder, run_config
from . import tables

RESOLVED_SHARE = 0.5  # a curve is resolved when at least half its neighbouring differences exceed 2 SE
RESOLVED_RATIO = 2.0  # heads of a layer are resolved when their spread is at least 2 typical SEs
SIGNIFICANT = 0.05  # a variant or feature separates types when its (Bonferroni) p-value is below this
RISING_Z = 2.0  # a score still rises at the end when its last-window change exceeds this many SEs
END_SHARE = 0.1  # a curve whose minimum lies in the last tenth of the steps considered still falls at the end

COLUMNS = ["claim", "diagnosis", "evidence"]


@dataclass(frozen=True)
class Diagnosis:
    claim: str  # the claim's number as in the scorecard ("1", "3", "5")
    diagnosis: str
    evidence: str


def _read(run: Path, name: str) -> pd.DataFrame | None:
    return tables.read_optional(run, name)


def stages(run: Path, min_stages: int) -> Diagnosis | None:
    """Claim 1. Reads stages_L2 (robust rule), stages_L2_slope (the earlier slope-sign rule),
    noise_budget_stages, run_end_trend and warmup_control. When the claim fails: ``noise`` when
    fewer than ``RESOLVED_SHARE`` of neighbouring checkpoints differ by 2 SE, ``scale (training
    length)`` when the induction scores still rise at the end (z > ``RISING_Z`` over the last
    window), both joined by "+" when both hold, else ``scale``. When it passes (its critical
    points stand out of the noise by construction): ``none``, or ``method`` if it passes only
    through boundaries of a warm-up artefact. A warm-up artefact (the controls) is named with the
    critical points left after it."""
    robust, slope, budget = _read(run, "stages_L2"), _read(run, "stages_L2_slope"), _read(run, "noise_budget_stages")
    if robust is None or budget is None or slope is None:
        return None
    b = budget[budget["difference"] == "neighbouring checkpoints"]
    if b.empty:
        return None
    share, ratio = float(b["share_above_2se"].iloc[0]), float(b["ratio"].iloc[0])
    parts = [f"{len(robust)} stages with noise-tied critical points, {len(slope)} with the slope-sign rule",
             f"{share:.0%} of neighbouring checkpoints differ by more than 2 SE (median |z| {ratio:.1f})"]
    trend = _read(run, "run_end_trend")
    rising = []
    if trend is not None and len(trend):
        rising = trend[(trend["z"] > RISING_Z) & (trend["change"] > 0)]
        parts += [f"{r.measure} still rises by {r.change:+.3f} (z {r.z:.1f}) over the last {r.decades:.2f} decades"
                  for r in rising.itertuples()]
    control = _read(run, "warmup_control")
    effective = len(robust)
    if control is not None and len(control) and "verdict" in control:
        parts.append(f"early peak: {control['verdict'].iloc[0]} ({control['reason'].iloc[0]})")
        if control["verdict"].iloc[0] == "warm-up artefact":
            after = criteria.artefact_end(robust, control)
            inner = robust.iloc[:-1]
            rest = inner[inner["end"] > after]
            effective = len(rest) + 1
            listed = ", ".join(f"{r.end:,} {r.ends_at}" for r in rest.itertuples())
            parts.append(f"after the peak and the descent from it (to step {after:,}): {len(rest)} critical point(s)"
                         + (f" ({listed})" if len(rest) else ""))
    if len(robust) >= min_stages:  # its critical points stand out of the noise by construction
        label = "method (the stages include a warm-up artefact)" if effective < min_stages else "none"
    else:
        labels = (["noise"] if share < RESOLVED_SHARE else []) + (["scale (training length)"] if len(rising) else [])
        label = " + ".join(labels) or "scale"
    return Diagnosis("1", label, "; ".join(parts))


def clusters(run: Path) -> Diagnosis | None:
    """Claim 3, per layer. Reads noise_budget_heads (between-head spread over SE per layer),
    clusters_ari_variants (and clusters_ari_variants_refined when 03 has run) and
    type_separation. ``noise`` when the heads' spread is below ``RESOLVED_RATIO`` SEs; ``method``
    when some clustering variant (max-statistic correction over the variants) or a curve feature
    (Bonferroni over the features) separates the types beyond chance; ``scale`` otherwise."""
    budget, variants = _read(run, "noise_budget_heads"), _read(run, "clusters_ari_variants")
    sep = _read(run, "type_separation")
    if budget is None or variants is None or sep is None:
        return None
    refined = _read(run, "clusters_ari_variants_refined")
    if refined is not None:
        variants = pd.concat([variants, refined], ignore_index=True)
    b = budget
    labels, parts = [], []
    for layer, v in variants.groupby("layer"):
        row = b[b["difference"] == f"heads of layer {layer}"]
        ratio = float(row["ratio"].iloc[0]) if len(row) else float("nan")
        best = v.loc[v["ari"].idxmax()]
        p_best = float(v.loc[v["ari"].idxmax(), "p_family"]) if "p_family" in v else min(1.0, best["p_value"] * len(v))
        s = sep[sep["layer"] == layer]
        feat = s.loc[s["p_bonferroni"].idxmin()] if len(s) else None
        text = (f"layer {layer}: head spread {ratio:.1f} SE; best variant {best['curves']}/{best['algorithm']}"
                f"{' (standardised)' if best['standardised'] else ''} ARI {best['ari']:.2f} (null 95% "
                f"{best['null_q95']:.2f}, p {p_best:.2f} corrected over {len(v)} variants)")
        if feat is not None:
            text += (f"; best feature {feat['feature']} η² {feat['eta2']:.2f} (p {feat['p_bonferroni']:.2f} "
                     f"corrected over {len(s)} features")
            floor = float(feat["p_min"]) * len(s) if "p_min" in feat else 0.0
            text += (f"; with these type sizes no feature can reach p < {SIGNIFICANT} after correction: smallest "
                     f"possible {min(1.0, floor):.2f})" if floor >= SIGNIFICANT else ")")
        parts.append(text)
        if not ratio >= RESOLVED_RATIO:
            labels.append(f"L{layer} noise")
        elif p_best < SIGNIFICANT or (feat is not None and feat["p_bonferroni"] < SIGNIFICANT):
            labels.append(f"L{layer} method")
        else:
            labels.append(f"L{layer} scale")
    if not labels:
        return None
    return Diagnosis("3", "; ".join(labels), "; ".join(parts))


def timing(run: Path) -> Diagnosis | None:
    """Claim 5. Reads timing_resolution: ``none`` when every measure resolves the heads' timing
    difference (their steepest-change intervals do not overlap), ``noise`` when one does not."""
    res = _read(run, "timing_resolution")
    if res is None or res.empty:
        return None
    parts = [f"{r.measure}: {r.last} {r.difference} steps after {r.first} "
             f"({'resolved' if r.resolved else 'not resolved'}; smallest resolvable {r.smallest_resolvable})"
             for r in res.itertuples()]
    label = "none" if bool(res["resolved"].all()) else "noise"
    if not res["resolved"].any():
        finest = res.loc[res["smallest_resolvable"].idxmin()]
        parts.append(f"the finest measure ({finest['measure']}) puts the two heads' formation within "
                     f"{max(int(finest['difference']), int(finest['smallest_resolvable'])):,} steps of each other")
    return Diagnosis("5", label, "; ".join(parts))


def _share(mask: pd.Series) -> float:
    return float(mask.mean()) if len(mask) else float("nan")


def composition(run: Path, min_turning: float, cfg: Config | None = None) -> Diagnosis | None:
    """Claim 7. Reads composition_turnaround, composition_coupling and composition_L2 (the raw
    K-composition of each pair over checkpoints). Composition scores carry no sampling error, only
    checkpoint-to-checkpoint jitter: a pair's noise is ``noise.difference_sd`` of its raw curve
    from the turnaround's first step on. Over the pairs that do not turn around: ``scale (training
    length)`` when at least half of them have their minimum in the last ``END_SHARE`` of the steps
    considered (the composition still falls when the run ends); ``noise`` when for at least half of
    them the recovery the rule asks for (``circuit.recovery_fraction`` of the fall) is within two
    noise SDs of zero, so that a turnaround could not be told from the jitter; ``scale`` otherwise
    (falls the jitter resolves, which do not come back). When enough pairs turn and the claim fails
    on the spread of their minima or on the coupling ratio: ``scale``, the evidence naming which."""
    turn, coup = _read(run, "composition_turnaround"), _read(run, "composition_coupling")
    comp = _read(run, "composition_L2")
    if turn is None or coup is None or comp is None or turn.empty:
        return None
    fraction = (cfg.circuit if cfg is not None else CircuitConfig()).recovery_fraction
    start = max(1, cfg.train.warmup_steps) if cfg is not None else 1  # as 04 (the end of the warm-up on)
    k = comp[(comp["mode"] == "K") & (comp["variant"] == "raw") & (comp["step"] >= start)]
    considered = np.sort(k["step"].unique())
    end_from = considered[0] + (1 - END_SHARE) * (considered[-1] - considered[0])
    sd = {}
    for (src, dst), d in k.groupby(["src", "dst"]):
        values = d.sort_values("step")["score"].to_numpy(float)
        sd[(src, dst)] = noise.difference_sd(values) if len(values) >= 5 else float("nan")
    turn = turn.assign(noise_sd=[sd.get((r.src, r.dst), float("nan")) for r in turn.itertuples()])
    stay = turn[~turn["turns"].astype(bool)]
    at_end = _share(stay["min_step"] >= end_from)
    known = stay[stay["noise_sd"].notna()]  # the jitter needs five checkpoints
    unresolved = _share(fraction * known["fall"] < 2 * known["noise_sd"])
    ratio = float(coup["ratio"].iloc[0])
    jitter = (f"{unresolved:.0%} of the {len(known)} with a measurable jitter need a recovery within 2 SD of it"
              if len(known) else "none has the five checkpoints its jitter needs")
    parts = [f"{int(turn['turns'].sum())} of {len(turn)} pairs turn (at least {min_turning:.0%} needed)",
             f"of the {len(stay)} that do not, {at_end:.0%} have their minimum in the last {END_SHARE:.0%} of the "
             f"steps (from {int(end_from):,}) and {jitter} (median jitter {float(turn['noise_sd'].median()):.4f}, "
             f"median fall {float(stay['fall'].median()):.4f}, "
             f"median recovery {float(stay['recovery'].median()):.4f} against {fraction:.0%} of the fall needed)",
             f"coupling ratio {ratio:.2f}"]
    if _share(turn["turns"].astype(bool)) >= min_turning:
        label = "scale"
        parts.append("enough pairs turn: the claim fails on the spread of their minima or on the coupling")
    elif at_end >= 0.5:
        label = "scale (training length)"
    elif unresolved >= 0.5:
        label = "noise"
    else:
        label = "scale"
    return Diagnosis("7", label, "; ".join(parts))


def _resolved_along(curves: pd.DataFrame, value: str, se: str) -> float:
    """The share of neighbouring-checkpoint differences more than 2 SE wide, pooled over curves."""
    along = [noise.along_curve(g, value, se) for _, g in curves.groupby("component") if len(g) > 1]
    return float(noise.summary(along=pd.concat(along))["share_above_2se"].iloc[0]) if along else float("nan")


def hessian_tracking(run: Path, min_rho: float) -> Diagnosis | None:
    """Claim 8. Reads measure_tracking, hessian_trace_L2 (training data) and wrllc_L2.
    ``noise`` when fewer than ``RESOLVED_SHARE`` of the neighbouring-checkpoint differences of the
    heads' trace curves, or of their wrLLC curves, exceed 2 SE (the shapes compared are not
    resolved); ``method`` when the heads' median Spearman ρ clears ``min_rho`` but not the median ρ
    with the other heads of their layer (the curves share one trend and the procedure cannot tell a
    head's own from it); ``scale`` otherwise. A pass is ``none``."""
    track, trace, wr = _read(run, "measure_tracking"), _read(run, "hessian_trace_L2"), _read(run, "wrllc_L2")
    if track is None or trace is None or wr is None:
        return None
    track = track[track["measure"] == agreement.HESSIAN_TRACE]
    if track.empty or track["rho"].isna().all():
        return None
    heads = trace[(trace["data"] == "train") & trace["component"].str.fullmatch(r"\d+:\d+")]
    wr_heads = wr[wr["component"].str.fullmatch(r"\d+:\d+")]
    trace_share = _resolved_along(heads, "value", "se")
    wr_share = _resolved_along(wr_heads, "llc_mean", "llc_sem")
    med, null = float(track["rho"].median()), float(track["null_median"].median())
    parts = [f"median ρ {med:.2f} with the own wrLLC, {null:.2f} with the other heads' curves",
             f"{trace_share:.0%} of the trace curves' and {wr_share:.0%} of the wrLLC curves' neighbouring "
             f"differences exceed 2 SE"]
    if med >= min_rho and med > null:
        label = "none"
    elif not (trace_share >= RESOLVED_SHARE and wr_share >= RESOLVED_SHARE):
        label = "noise"
    elif med >= min_rho:
        label = "method"
    else:
        label = "scale"
    return Diagnosis("8", label, "; ".join(parts))


def _spread(values: pd.Series, ses: pd.Series) -> float:
    med = float(ses.median())
    return float(values.std(ddof=1)) / med if med > 0 else float("inf")


def ablation_order(run: Path, min_rho: float) -> Diagnosis | None:
    """Claim 9. Reads measure_agreement (resample ablation), ablation_L2 and wrllc_L2 at their
    last checkpoints. ``noise`` when the heads' spread of final resample-ablation scores, or of
    final wrLLCs, is below ``RESOLVED_RATIO`` typical SEs (the orders compared are not resolved);
    ``method`` when ρ clears ``min_rho`` within every layer but not over all heads (the ordering
    holds inside the layers and the layers' offsets break it); ``scale`` otherwise. A pass is
    ``none``."""
    order, abl, wr = _read(run, "measure_agreement"), _read(run, "ablation_L2"), _read(run, "wrllc_L2")
    if order is None or abl is None or wr is None:
        return None
    order = order[order["measure"] == agreement.RESAMPLE].set_index("scope")
    if "all" not in order.index or np.isnan(order.loc["all", "rho"]):
        return None
    res = abl[(abl["kind"] == "resample") & (abl["step"] == abl["step"].max())]
    wr_heads = wr[wr["component"].str.fullmatch(r"\d+:\d+")]
    wr_last = wr_heads[wr_heads["step"] == wr_heads["step"].max()]
    abl_ratio, wr_ratio = _spread(res["score"], res["se"]), _spread(wr_last["llc_mean"], wr_last["llc_sem"])
    rho = float(order.loc["all", "rho"])
    within = order.drop(index="all")["rho"]
    parts = [f"ρ {rho:.2f} over all heads; within layers " + ", ".join(f"{s} {r:.2f}" for s, r in within.items()),
             f"the heads' final spread is {abl_ratio:.1f} SE (resample ablation) and {wr_ratio:.1f} SE (wrLLC)"]
    if rho >= min_rho:
        label = "none"
    elif not (abl_ratio >= RESOLVED_RATIO and wr_ratio >= RESOLVED_RATIO):
        label = "noise"
    elif len(within) and bool((within >= min_rho).all()):
        label = "method"
    else:
        label = "scale"
    return Diagnosis("9", label, "; ".join(parts))


def transfer(run: Path, min_ari: float, algorithm: str) -> Diagnosis | None:
    """Claim 10, per layer. Reads cluster_transfer (rows at k = seed 1's number of the four
    types) and clusters_protocol (seed 1's own clusters against its types, claim 3's protocol).
    Transfer cannot recover types that seed 1's own clusters do not: where seed 1's ARI is below
    ``min_ari`` the layer carries claim 3's diagnosis of that layer (``as claim 3: ...``); where
    seed 1's clusters recover its types and the other seeds' do not: ``scale`` (the seeds' heads
    differ), with the number of off-type heads."""
    t, own = _read(run, "cluster_transfer"), _read(run, "clusters_protocol")
    if t is None or own is None or t.empty or "n_ref_types" not in t:
        return None
    t = t[(t["algorithm"] == algorithm) & (t["k"] == t["n_ref_types"])].dropna(subset=["ari"])
    if t.empty:
        return None
    c3 = clusters(run)
    c3_labels = dict(lab.split(" ", 1) for lab in c3.diagnosis.split("; ")) if c3 is not None else {}
    labels, parts = [], []
    for layer, g in t.groupby("layer"):
        mine = own[own["layer"] == layer]
        ari1 = float(mine["ari"].iloc[0]) if len(mine) else float("nan")
        parts.append(f"layer {layer}: seed 1's own clusters ARI {ari1:.2f}; transfer "
                     + ", ".join(f"{r.run} {r.ari:.2f} ({int(r.n_exceptions)} of {int(r.n_heads)} heads off-type)"
                                 for r in g.itertuples()))
        if float(g["ari"].median()) >= min_ari:
            continue
        if np.isnan(ari1):
            labels.append(f"L{layer} scale (seed 1's layer has one type, the other seeds' more)")
        elif ari1 < min_ari:
            labels.append(f"L{layer} as claim 3 ({c3_labels.get(f'L{layer}', 'not diagnosed')})")
        else:
            labels.append(f"L{layer} scale")
    return Diagnosis("10", "; ".join(labels) or "none", "; ".join(parts))


def diagnose(run_dir: Run | Path, min_stages: int, *, min_turning: float = 2 / 3, min_tracking_rho: float = 0.5,
             min_order_rho: float = 0.6, min_ari: float = 0.5, transfer_algorithm: str = "kshape") -> pd.DataFrame:
    """The diagnoses the run's tables allow, one row per claim (claim, diagnosis, evidence). The
    thresholds are the scorecard's (``rllc.report.claims`` passes its own)."""
    run = folder(run_dir)
    # the settings 04 read the composition with: a Run's own, else the folder's config.yaml if it has one
    cfg = run_dir.cfg if isinstance(run_dir, Run) else run_config(run) if (run / "config.yaml").exists() else None
    found = [d for d in (stages(run, min_stages), clusters(run), timing(run), composition(run, min_turning, cfg),
                         hessian_tracking(run, min_tracking_rho), ablation_order(run, min_order_rho),
                         transfer(run, min_ari, transfer_algorithm)) if d is not None]
    return pd.DataFrame([d.__dict__ for d in found], columns=COLUMNS)
