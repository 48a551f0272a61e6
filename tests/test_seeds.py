"""Notebook 06's engine: the per-seed claim tables, their views, the by-seed summary."""

import numpy as np
import pandas as pd
import pytest

from rllc import config
from rllc.analysis import head_types as ht
from rllc.report import claims, seeds

HEADS = ["0:0", "0:1", "0:2", "1:0", "1:1", "1:2"]


def _behaviour(final: dict[str, dict[str, float]], steps=(0, 100, 200, 400, 800, 1600, 3200)) -> pd.DataFrame:
    """Scores rising linearly in log step to the ``final`` values; the ICL score as 02 writes it."""
    rows = []
    for i, s in enumerate(steps):
        frac = i / (len(steps) - 1)
        for c in HEADS:
            layer, head = map(int, c.split(":"))
            for score in (*ht.SCORE_TYPES, "previous_token_text", "current_token_text"):  # text as random tokens
                base = score.removesuffix("_text")
                rows.append({"model": "L2", "step": s, "layer": layer, "head": head, "component": c, "score": score,
                             "value": 0.02 + frac * final.get(c, {}).get(base, 0.0)})
            for score in ("first_position", "first_position_text"):
                rows.append({"model": "L2", "step": s, "layer": layer, "head": head, "component": c, "score": score,
                             "value": 0.0})
        rows.append({"model": "L2", "step": s, "layer": -1, "head": -1, "component": "model", "score": "icl",
                     "value": -frac})
    return pd.DataFrame(rows)


def _estimates(values: dict[str, list[float]], steps, data="train") -> pd.DataFrame:
    return pd.DataFrame([{"model": "L2", "step": s, "component": c, "data": data, "llc_mean": v, "llc_std": 0.01,
                          "llc_sem": 0.005, "n_ok": 3, "n_chains": 3}
                         for c, vals in values.items() for s, v in zip(steps, vals, strict=True)])


def test_seed_names_and_views(tmp_path):
    cfg = config.load_config("ci", {"seeds": {"others": [3, 2]}})
    assert seeds.seed_names(cfg) == ["L2", "L2-s3", "L2-s2"]
    assert [seeds.seed_of(n, cfg.seed) for n in seeds.seed_names(cfg)] == [1, 3, 2]
    with pytest.raises(ValueError, match="exclude the run's own seed"):
        seeds.seed_names(config.load_config("ci", {"seeds": {"others": [1]}}))
    assert (seeds.seed_view(tmp_path, "L2-s3") / "tables").is_dir()


def test_one_seeds_claim_tables_feed_the_scorecards_own_checks(tmp_path):
    steps = [0, 100, 200, 400, 800, 1600, 3200]
    behaviour = _behaviour({"0:1": {"previous_token": 0.6}, "1:0": {"induction": 0.5}, "1:1": {"induction": 0.4}})
    types = pd.Series({"0:0": ht.MULTIGRAM, "0:1": ht.PREVIOUS_TOKEN, "0:2": ht.MULTIGRAM, "1:0": ht.INDUCTION,
                       "1:1": ht.INDUCTION, "1:2": ht.MULTIGRAM})
    rng = np.random.default_rng(0)
    wr = _estimates({c: list(0.2 + 0.05 * rng.standard_normal(len(steps))) for c in HEADS}, steps)
    full = _estimates({"full": [1, 2, 3, 4, 5, 6, 7]}, steps)
    # late code drLLCs: induction heads' ratio above the multigram head's
    late = steps[-3:]
    dr = _estimates({"0:0": [0.1] * 3, "0:1": [0.2] * 3, "0:2": [0.1] * 3, "1:0": [0.4] * 3, "1:1": [0.4] * 3,
                     "1:2": [0.1] * 3}, late, "python_tests")
    found = seeds.claim_tables(behaviour, types, wr, full, dr, "python_tests", warmup_steps=100, sigma=1.0,
                               max_k=2, seed=0)
    assert set(found) == {"stages_L2", "head_types_by_score", "clusters_ari_wr", "clusters_protocol",
                          "dr_ratio_by_type", "induction_timing"}
    assert found["head_types_by_score"].set_index("component")["type"].to_dict() == types.to_dict()
    # the last third of the whole curve (0..3200) starts at 2133: only step 3200 of the late ones
    ratio = found["dr_ratio_by_type"].pivot_table(index="window", columns="group", values="mean_ratio")
    expected = (0.4 / wr[(wr["component"].isin(["1:0", "1:1"])) & (wr["step"] == 3200)]["llc_mean"]).mean()
    assert ratio.at["last third", ht.INDUCTION] == pytest.approx(expected)
    assert set(found["induction_timing"]["component"]) == {"1:0", "1:1"}
    assert (found["induction_timing"]["from_step"] >= 100).all()  # after the warm-up
    seeds.write_claim_tables(tmp_path, "L2-s2", found)
    per_seed = seeds.claims_per_seed(tmp_path, ["L2-s2"], run_seed=1)
    status = per_seed.set_index("claim")["status"]
    assert len(per_seed) == len(seeds.PER_SEED_CLAIMS) and (per_seed["seed"] == 2).all()
    assert status["2a. Layer 0 has a previous-token head"] == claims.PASS
    assert status["2b. Layer 1 has an induction head"] == claims.PASS
    # 7 checkpoints: too few to find the paper's boundaries on the authors' curve
    assert status["1. Full-model LLC critical points split training into stages"] == claims.UNDEFINED
    assert status["4. Code drLLC raises induction heads' rLLC relative to multigram heads'"] == claims.PASS


def test_claims_by_seed_counts_only_decided_seeds():
    per_seed = pd.DataFrame([{"model": m, "seed": s, "claim": c, "status": st, "value": "", "threshold": ""}
                             for c, sts in (("A", ["pass", "fail", "pass"]), ("B", ["undefined", "pass", "fail"]),
                                            ("C", ["not computed", "undefined", "undefined"]))
                             for (m, s), st in zip((("L2", 1), ("L2-s2", 2), ("L2-s3", 3)), sts, strict=True)])
    card = pd.DataFrame({"claim": ["A", "B"], "status": ["fail", "undefined"]})
    out = seeds.claims_by_seed(per_seed, card).set_index("claim")
    assert out.at["A", "holds"] == "2 of 3" and out.at["A", "pass_seeds"] == "1 3" and out.at["A", "fail_seeds"] == "2"
    assert out.at["B", "holds"] == "1 of 2" and out.at["B", "undefined_seeds"] == "1"
    assert out.at["C", "holds"] == "undecided" and out.at["C", "n_decided"] == 0
    assert out.at["A", "main_scorecard"] == "fail" and out.at["C", "main_scorecard"] == ""
