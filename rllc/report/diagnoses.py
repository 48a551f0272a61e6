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

import pandas as pd

from . import tables

RESOLVED_SHARE = 0.5  # a curve is resolved when at least half its neighbouring differences exceed 2 SE
RESOLVED_RATIO = 2.0  # heads of a layer are resolved when their spread is at least 2 typical SEs
SIGNIFICANT = 0.05  # a variant or feature separates types when its (Bonferroni) p-value is below this
RISING_Z = 2.0  # a score still rises at the end when its last-window change exceeds this many SEs

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
            inner = robust.iloc[:-1]
            dips = inner[(inner["ends_at"] == "minimum") & (inner["end"] > int(control["peak_step"].iloc[0]))]
            after = int(dips["end"].iloc[0]) if len(dips) else int(control["peak_step"].iloc[0])
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


def diagnose(run_dir: str | Path, min_stages: int) -> pd.DataFrame:
    """The diagnoses the run's tables allow, one row per claim (claim, diagnosis, evidence)."""
    run = Path(run_dir)
    found = [d for d in (stages(run, min_stages), clusters(run), timing(run)) if d is not None]
    return pd.DataFrame([d.__dict__ for d in found], columns=COLUMNS)
