"""Other seeds (notebook 06; rLLC paper, Appendix G): one protocol for every seed of L2, each
seed's claim tables in a view directory of its own, and the by-seed summary of the scorecard.

The run's own model is "L2" (seed ``cfg.seed``); another initialisation seed k is "L2-s<k>"
(``rllc.model_name.seeded_name``: the run's batch order is kept, only the initialisation changes).
Each seed is measured the same way — behavioural scores at every checkpoint, wrLLC of every head
and the full-model LLC at the per-head checkpoints, code drLLC at the late ones — and the tables
claims 1–5 read are computed from those measurements and written, under their registry names, to
``<run>/seeds/<model>/tables/``: the claim checks of ``rllc.report.claims`` then run on each view
unchanged. The run's own seed is evaluated with the same protocol (for a like-for-like
comparison); its main scorecard (``claims.csv``, richer measurements) is shown beside.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from ..analysis import clustering, criteria, noise, refinement, stages
from ..analysis import head_types as ht
from ..analysis.focus import induction_focus
from ..config import Config
from ..model_name import name_seed, seeded_name
from ..run import Run, folder
from . import claims, tables

SEEDS_DIR = "seeds"
# claims whose tables the per-seed protocol produces (numbers as in ``claims.CLAIMS``)
PER_SEED_CLAIMS = ("1", "2a", "2b", "3", "4", "5")


def seed_names(cfg: Config) -> list[str]:
    """The models of notebook 06: "L2" (the run's seed) then "L2-s<k>" for each other seed."""
    others = list(cfg.seeds.others)
    if cfg.seed in others or len(set(others)) != len(others):
        raise ValueError(f"seeds.others {others} must be distinct and exclude the run's own seed {cfg.seed}")
    return ["L2", *[seeded_name("L2", k, cfg.seed) for k in others]]


def seed_of(name: str, run_seed: int) -> int:
    """The initialisation seed of a model name ("L2" → the run's seed, "L2-s3" → 3)."""
    k = name_seed(name)
    return run_seed if k is None else k


def seed_view(run: Run | Path, name: str) -> Path:
    """``<run>/seeds/<name>``: where one seed's claim tables go (created if missing)."""
    out = folder(run) / SEEDS_DIR / name
    (out / "tables").mkdir(parents=True, exist_ok=True)
    return out


def claim_tables(behaviour: pd.DataFrame, types: pd.Series, wr: pd.DataFrame, full: pd.DataFrame,
                 dr: pd.DataFrame, dr_data: str, warmup_steps: int, sigma: float, max_k: int,
                 seed: int, by_score: pd.DataFrame | None = None) -> dict[str, pd.DataFrame]:
    """The tables claims 1–5 read, for one seed.

    ``behaviour``: ``trajectory.behaviour_over_training`` rows; ``types``: final head types;
    ``wr``: per-head wrLLC estimates (the sweep table); ``full``: the full-model LLC at the same
    checkpoints; ``dr``: per-head drLLC on ``dr_data`` at some of them (may be empty);
    ``by_score``: ``head_types.score_table(behaviour)`` if already made.

    * claim 1: stages of ``full`` (critical points that stand out of its noise, as 01);
    * claims 2a, 2b: score types at the last checkpoint (as 00);
    * claim 3: Euclidean k-means of the wrLLC curves against the four types (the paper's protocol,
      on the wrLLC alone: a seed's code drLLC is estimated only over the last third), and the
      consensus clusters of 02 beside it;
    * claim 4: induction − multigram drLLC/wrLLC at the end and over the last third of the curve;
    * claim 5: the induction heads' onset of the induction score's rise after the warm-up, with
      90% intervals under its noise (03 also times the per-head ICL score and the drLLC).
    """
    out: dict[str, pd.DataFrame] = {}
    curve = full.sort_values("step")
    out["stages_L2"] = stages.stages(curve["step"], curve["llc_mean"], se=curve["llc_sem"].clip(lower=1e-6),
                                     sigma=sigma)
    by_score = by_score if by_score is not None else ht.score_table(behaviour)
    out["head_types_by_score"] = by_score
    heads_wr = wr[wr["component"] != "full"]
    _, ari, _ = clustering.cluster_layers(heads_wr, types, max_k, seed=seed, min_step=1)
    out["clusters_ari_wr"] = ari
    # claim 3 by the paper's protocol on the wrLLC alone: a seed's code drLLC covers only the last third
    out["clusters_protocol"] = criteria.protocol_clusters(heads_wr, types, ["train"], seed=seed)
    focus = induction_focus(types, by_score)
    induction, multigram, candidates = focus.induction, focus.multigram, focus.candidates
    if len(dr):
        ratios = refinement.ratio_table(pd.concat([heads_wr, dr], ignore_index=True), dr_data)
        by_type = refinement.ratio_by_type(ratios, {ht.INDUCTION: induction, ht.MULTIGRAM: multigram},
                                           first_step=int(heads_wr["step"].min()))
        out["dr_ratio_by_type"] = by_type.assign(candidates=candidates)
    rows = (behaviour["score"] == "induction") & behaviour["component"].isin(induction)
    curves = noise.with_difference_se(behaviour[rows][["component", "step", "value"]], warmup_steps)
    timing = refinement.timing(curves, "induction_score", "up", min_step=warmup_steps, seed=seed,
                               half_width=refinement.TIMING_HALF_WIDTH)
    out["induction_timing"] = timing.assign(candidates=candidates)
    return out


def write_claim_tables(run: Run | Path, name: str, found: dict[str, pd.DataFrame]) -> Path:
    """Write one seed's claim tables into its view; returns the view."""
    view = seed_view(run, name)
    for table, df in found.items():
        tables.write(view, table, df)
    return view


def claims_per_seed(run: Run | Path, names: list[str], run_seed: int) -> pd.DataFrame:
    """Claims 1–5 on each seed's view: rows (model, seed, claim, status, value, threshold)."""
    rows = []
    for name in names:
        view = folder(run) / SEEDS_DIR / name
        for c in claims.CLAIMS:
            if claims.claim_number(c.name) not in PER_SEED_CLAIMS or c.check is None:
                continue
            try:
                status, value, threshold = c.check(view)
            except tables.MissingTable as missing:
                status, value, threshold = claims.NOT_COMPUTED, "", f"needs tables/{missing.file}"
            rows.append({"model": name, "seed": seed_of(name, run_seed), "claim": c.name, "status": status,
                         "value": value, "threshold": threshold})
    return pd.DataFrame(rows)


def claims_by_seed(per_seed: pd.DataFrame, scorecard: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per claim: on how many seeds it holds ("k of n", over the seeds where it is decided: pass or
    fail), the seeds where it passes, fails or is undefined, and, from the run's main scorecard,
    its status there (seed 1, the fuller measurements of notebooks 00–05)."""
    rows = []
    main = scorecard.set_index("claim")["status"] if scorecard is not None and len(scorecard) else pd.Series(dtype=str)
    for claim, d in per_seed.groupby("claim", sort=False):
        by = {s: d.loc[d["status"] == s, "seed"].astype(int).tolist() for s in
              (claims.PASS, claims.FAIL, claims.UNDEFINED, claims.NOT_COMPUTED)}
        decided = len(by[claims.PASS]) + len(by[claims.FAIL])
        rows.append({"claim": claim, "n_seeds": len(d), "n_pass": len(by[claims.PASS]), "n_decided": decided,
                     "holds": f"{len(by[claims.PASS])} of {decided}" if decided else "undecided",
                     "pass_seeds": " ".join(map(str, by[claims.PASS])),
                     "fail_seeds": " ".join(map(str, by[claims.FAIL])),
                     "undefined_seeds": " ".join(map(str, by[claims.UNDEFINED] + by[claims.NOT_COMPUTED])),
                     "main_scorecard": main.get(claim, "")})
    return pd.DataFrame(rows)
