"""The scorecard's criteria as instruments: each passes the authors' own run of the paper's model
(the positive control, on their published curves in data/reference, at the paper's checkpoint grid
and at ours stretched to 50k) and fails data without the phenomenon (the negative control).
docs/claims.md tabulates what these tests pin."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from rllc.analysis import clustering, composition, criteria, noise, refinement
from rllc.analysis import head_types as ht
from rllc.analysis import reference as R
from rllc.analysis.stages import stage_of, stages
from rllc.config import load_config
from rllc.estimate.sweep import spread

CPU = load_config("cpu")
CPU_STEPS = CPU.train.steps["L2"]
CPU_GRID = R.scaled_grid(CPU.checkpoint_steps("L2"), CPU_STEPS)  # 01's checkpoints, on the paper's run
SEED_GRID = spread(CPU.checkpoint_steps("L2")[:: CPU.llc.checkpoint_stride] + [CPU_STEPS], CPU.llc.head_checkpoints)
GRIDS = {"paper": R.PAPER_GRID, "ours": CPU_GRID}
T = R.paper_types()


@pytest.fixture(scope="module")
def llc() -> pd.DataFrame:
    return R.llc_curve()


def test_the_reference_files_hold_what_their_readme_says(llc):
    assert len(llc) == 500 and llc["step"].min() == 0 and llc["step"].max() == 49_900
    # the numbers PAPER-FACTS quotes from the same run
    at = llc.set_index("step")["llc_mean"]
    assert at[0] == pytest.approx(123.56, abs=0.01) and at[6_500] == pytest.approx(172.4, abs=0.1)
    assert R.losses().set_index("step")["test_loss"][50_000] == pytest.approx(3.215, abs=1e-3)
    assert len(R.PAPER_GRID) == 107 and len(CPU_GRID) == 78
    k = R.k_composition()
    assert k[["src", "dst"]].drop_duplicates().shape[0] == 64 and k["step"].nunique() == 501


# --- claim 1 -------------------------------------------------------------------------------------

def _stages_on(curve: pd.DataFrame, grid, se: float) -> pd.DataFrame:
    g = R.on_grid(curve, grid)
    return stages(g["step"], g["llc_mean"], np.full(len(g), se)), len(g)


@pytest.mark.parametrize("grid", sorted(GRIDS))
@pytest.mark.parametrize("noise_factor", [0.5, 1.0, 2.0])
def test_claim1_passes_the_authors_curve_and_finds_their_lm3_boundaries(llc, grid, noise_factor):
    se = noise.difference_sd(llc["llc_mean"]) * noise_factor  # the curve's own noise, halved and doubled
    found, n = _stages_on(llc, GRIDS[grid], se)
    assert criteria.stages_verdict(found, n).status == criteria.PASS
    assert None not in criteria.matched_boundaries(found, (6_500, 8_500))  # LM2/LM3 and LM3/LM4


def test_claim1_first_version_failed_the_authors_run(llc):
    # ">= 4 stages" failed the paper's own curve on its own grid: the reason the criterion changed
    found, _ = _stages_on(llc, R.PAPER_GRID, noise.difference_sd(llc["llc_mean"]))
    assert len(found) == 3 < 4


def test_claim1_resolution_is_measured_and_sparser_grids_are_undefined(llc):
    se = noise.difference_sd(llc["llc_mean"])
    table, fewest = criteria.stage_resolution(llc, se, (6_500, 8_500), range(8, 121))
    assert fewest == criteria.MIN_STAGE_CHECKPOINTS  # the constant is the measurement
    assert not table[table["n_checkpoints"] < fewest]["found"].iloc[-1]  # the next sparser grid misses them
    found, n = _stages_on(llc, R.scaled_grid(SEED_GRID, CPU_STEPS), se)  # 06's per-seed curve: 12 checkpoints
    verdict = criteria.stages_verdict(found, n)
    assert n == 12 and verdict.status == criteria.UNDEFINED and "resolution" in verdict.value


@pytest.mark.parametrize("shape", ["saturating", "log-linear"])
@pytest.mark.parametrize("seed", range(5))
def test_claim1_fails_a_smooth_trend_with_noise(llc, shape, seed):
    steps = np.array(sorted({int(s) for s in R.on_grid(llc, R.PAPER_GRID)["step"]}))
    x = np.log10(steps + 100.0)
    trend = 180 - 60 * np.exp(-steps / 3_000) if shape == "saturating" else 120 + 20 * (x - x[0])
    se = noise.difference_sd(llc["llc_mean"])
    y = trend + np.random.default_rng(seed).normal(0, se, len(steps))
    found = stages(steps, y, np.full(len(steps), se))
    assert criteria.stages_verdict(found, len(steps)).status == criteria.FAIL


def test_claim1_does_not_count_a_warm_up_artefact():
    st = pd.DataFrame({"stage": ["LM1", "LM2", "LM3", "LM4"], "start": [0, 150, 800, 16_000],
                       "end": [150, 800, 16_000, 24_000], "ends_at": ["maximum", "minimum", "maximum", "end"]})
    control = pd.DataFrame({"verdict": ["warm-up artefact"], "peak_step": [100]})
    after = criteria.artefact_end(st, control)
    assert after == 800
    assert criteria.stages_verdict(st, 78).status == criteria.PASS
    assert criteria.stages_verdict(st, 78, after_step=after).status == criteria.FAIL
    assert criteria.artefact_end(st, control.assign(verdict="stage")) == 0


# --- claims 2a, 2b --------------------------------------------------------------------------------

def test_claims_2a_2b_pass_table_1_and_the_published_scores_single_out_its_heads():
    assert criteria.type_count_verdict(T, 0, ht.PREVIOUS_TOKEN).status == criteria.PASS
    assert criteria.type_count_verdict(T, 1, ht.INDUCTION).status == criteria.PASS
    s = R.head_scores()
    end, start = s[s["step"] == 50_000], s[s["step"] == 0]
    for score, layer, heads in (("previous_token", "0:", {"0:1", "0:4"}), ("induction", "1:", {"1:6", "1:7"})):
        late = end[(end["score"] == score) & end["component"].str.startswith(layer)].set_index("component")["value"]
        assert set(late.nlargest(2).index) == heads and late.nlargest(2).min() > 3 * late.median()
        early = start[(start["score"] == score) & start["component"].str.startswith(layer)]["value"]
        assert early.max() < 1.5 * early.median()  # at initialisation no head stands out


def test_claims_2a_2b_fail_without_such_heads():
    only_multigram = pd.Series(ht.MULTIGRAM, index=T.index)
    assert criteria.type_count_verdict(only_multigram, 0, ht.PREVIOUS_TOKEN).status == criteria.FAIL
    assert criteria.type_count_verdict(only_multigram, 1, ht.INDUCTION).status == criteria.FAIL
    # a previous-token head in the wrong layer does not count
    assert criteria.type_count_verdict(T.replace({ht.INDUCTION: ht.PREVIOUS_TOKEN}).where(
        ~T.index.str.startswith("0:"), ht.MULTIGRAM), 0, ht.PREVIOUS_TOKEN).status == criteria.FAIL


# --- claim 3 --------------------------------------------------------------------------------------

# F.5.3's partitions of the paper's model: layer 0 at k = 3 (0:5 or 0:0 splits off the cluster of
# the current-token, previous-token heads and 0:0, depending on the algorithm), layer 1 at k = 2
F53_L0 = [{"0:5": 0, "0:1": 1, "0:4": 1, "0:0": 1, "0:2": 2, "0:3": 2, "0:6": 2, "0:7": 2},
          {"0:0": 0, "0:5": 1, "0:1": 1, "0:4": 1, "0:2": 2, "0:3": 2, "0:6": 2, "0:7": 2}]
F53_L1 = {"1:6": 0, "1:7": 0, **{f"1:{h}": 1 for h in (0, 1, 2, 3, 4, 5)}}


def _per_layer(l0: dict, l1: dict, types: pd.Series = T) -> pd.DataFrame:
    rows = []
    for layer, (k, partition) in enumerate(((3, l0), (2, l1))):
        heads = sorted(partition)
        null = clustering.ari_against_null(criteria.four_types(types)[heads].to_numpy(),
                                           [partition[h] for h in heads], n=2000, seed=0)
        rows.append({"layer": layer, "k": k, "ari": criteria.partition_ari(partition, types),
                     "null_q95": null["null_q95"]})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("l0", F53_L0)
def test_claim3_passes_the_papers_own_partitions(l0):
    table = _per_layer(l0, F53_L1)
    assert table["ari"].round(3).tolist() == [0.536, 1.0] and (table["ari"] > table["null_q95"]).all()
    assert criteria.clusters_verdict(table).status == criteria.PASS


def test_claim3_first_version_counting_dyck_as_a_type_failed_the_papers_partition():
    with_dyck = T.copy()
    with_dyck[list(R.DYCK_HEADS)] = ht.DYCK
    l0 = sorted(F53_L0[0])
    from sklearn.metrics import adjusted_rand_score
    assert adjusted_rand_score(with_dyck[l0], [F53_L0[0][h] for h in l0]) == pytest.approx(0.304, abs=1e-3)
    assert criteria.four_types(with_dyck).equals(T)


def test_claim3_fails_shuffled_head_labels():
    # the same cluster sizes, heads dealt across the types
    l0 = {"0:1": 0, "0:0": 1, "0:2": 1, "0:4": 2, "0:3": 2, "0:5": 2, "0:6": 1, "0:7": 2}
    l1 = {"1:6": 0, "1:0": 0, **{f"1:{h}": 1 for h in (1, 2, 3, 4, 5, 7)}}
    assert criteria.clusters_verdict(_per_layer(l0, l1)).status == criteria.FAIL


def _curves(types: pd.Series, structured: bool, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steps = np.arange(0, 2_001, 100)
    level = {t: i for i, t in enumerate(sorted(set(types)))}
    rows = []
    for c, t in types.items():
        for data, scale in (("train", 1.0), ("code", 0.5)):
            base = 10 * (1 - np.exp(-steps / 500.0))
            shift = 3.0 * level[t] * scale if structured else 0.0
            values = base * (1 + 0.1 * shift) + shift + rng.normal(0, 0.3, len(steps))
            rows += [{"component": c, "data": data, "step": int(s), "llc_mean": float(v)}
                     for s, v in zip(steps, values, strict=True)]
    return pd.DataFrame(rows)


def test_claim3_protocol_recovers_types_in_curves_that_carry_them_and_not_in_curves_that_do_not():
    good = criteria.protocol_clusters(_curves(T, True, 0), T, ["train", "code"], n_null=200)
    assert good["ari"].tolist() == [1.0, 1.0] and good["k"].tolist() == [3, 2]
    assert criteria.clusters_verdict(good).status == criteria.PASS
    for seed in range(3):
        null = criteria.protocol_clusters(_curves(T, False, seed), T, ["train", "code"], n_null=200)
        assert criteria.clusters_verdict(null).status == criteria.FAIL
        assert criteria.clusters_verdict(null[null["layer"] == 1]).status == criteria.FAIL  # each layer alone


# --- claim 5 --------------------------------------------------------------------------------------

def _induction_timing(grid) -> pd.DataFrame:
    s = R.head_scores()
    ind = s[(s["score"] == "induction") & s["component"].isin(["1:6", "1:7"])][["component", "step", "value"]]
    curves = noise.with_difference_se(R.on_grid(ind, grid), 100)  # as 03 and 06 give scores their noise
    return refinement.timing(curves, "induction_score", "up", min_step=100, half_width=refinement.TIMING_HALF_WIDTH)


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_claim5_passes_the_authors_induction_heads_with_17_first(grid):
    t = _induction_timing(GRIDS[grid]).set_index("component")
    assert criteria.timing_verdict(t.reset_index()).status == criteria.PASS
    assert t.loc["1:7", "onset_hi"] < t.loc["1:6", "onset_lo"]  # 1:7 precedes 1:6, as the paper says


def test_claim5_first_version_steepest_change_failed_the_authors_run_on_our_grid():
    t = _induction_timing(CPU_GRID).set_index("component")
    assert t.loc["1:6", "steepest_step"] == t.loc["1:7", "steepest_step"]
    assert criteria.timing_verdict(t.reset_index(), "steepest").status == criteria.FAIL


def test_claim5_onset_of_a_falling_curve_mirrors_a_rising_one():
    steps = np.arange(0, 10_001, 250)
    rise = 1 / (1 + np.exp(-(steps - 5_000) / 400.0))
    up = refinement.onset_step(steps, rise, direction="up")
    assert up == refinement.onset_step(steps, -rise, direction="down")
    assert 3_500 <= up < 5_000


@pytest.mark.parametrize("seed", range(6))
def test_claim5_fails_two_heads_that_form_together(seed):
    rng = np.random.default_rng(seed)
    steps = np.array(R.PAPER_GRID[1:])
    rise = 0.08 / (1 + np.exp(-(steps - 12_000) / 1_500.0))
    curves = pd.DataFrame([{"component": c, "step": int(s), "value": float(v + rng.normal(0, 0.002)), "se": 0.002}
                           for c in ("1:6", "1:7") for s, v in zip(steps, rise, strict=True)])
    t = refinement.timing(curves, "induction_score", "up", min_step=100, half_width=refinement.TIMING_HALF_WIDTH)
    assert criteria.timing_verdict(t).status == criteria.FAIL


# --- claim 7 --------------------------------------------------------------------------------------

def _turn(k: pd.DataFrame, grid) -> tuple[pd.DataFrame, float]:
    l0 = [h for h, t in T.items() if h.startswith("0:") and t == ht.MULTIGRAM]
    l1 = [h for h, t in T.items() if h.startswith("1:") and t == ht.MULTIGRAM]
    pairs = k[k["src"].isin(l0) & k["dst"].isin(l1) & k["step"].isin(R.on_grid(k, grid)["step"])]
    turn = composition.turnaround(pairs, min_step=100)
    turn["stage"] = [stage_of(R.stage_table(), s) for s in turn["min_step"]]
    return turn, composition.coupling(pairs, R.LM_BOUNDARIES[-1])["ratio"]


@pytest.mark.parametrize("grid", sorted(GRIDS))
def test_claim7_passes_the_authors_k_composition(grid):
    turn, ratio = _turn(R.k_composition(), GRIDS[grid])
    verdict = criteria.turnaround_verdict(turn, ratio)
    assert verdict.status == criteria.PASS, verdict.value
    assert len(turn) == 30 and turn["turns"].all() and ratio < 0.1
    assert criteria.adjacent_share(turn["stage"])[1] == "LM3/LM4"


def test_claim7_first_version_failed_the_authors_run():
    turn, _ = _turn(R.k_composition(), R.PAPER_GRID)  # minima in LM2, LM3 and LM4: not within one stage
    numbers = sorted({int(s[2:]) for s in turn["stage"]})
    assert numbers[-1] - numbers[0] > 1


def _synthetic_k(kind: str, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steps = np.array(R.PAPER_GRID)
    x = np.log10(steps + 100.0)
    rows = []
    srcs, dsts = ["0:0", "0:2", "0:3"], ["1:0", "1:1", "1:2"]
    for i, src in enumerate(srcs):
        for j, dst in enumerate(dsts):
            if kind == "falling":
                y = 0.06 - 0.01 * (x - x[0])
            else:  # a turnaround, but each pair at its own stage
                centre = np.log10([500, 3_000, 7_500, 12_000, 30_000, 45_000, 2_000, 20_000, 40_000][3 * i + j])
                y = 0.02 + 0.03 * (x - centre) ** 2
            level = 0.01 * (i + 3 * j) if kind == "uncoupled" else 0.01 * i
            rows += [{"step": int(s), "src": src, "dst": dst, "score": float(v + level + rng.normal(0, 2e-4))}
                     for s, v in zip(steps, y, strict=True)]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("kind", ["falling", "scattered", "uncoupled"])
def test_claim7_fails_without_a_shared_turnaround_or_coupling(kind):
    k = _synthetic_k("scattered" if kind == "uncoupled" else kind, 0)
    if kind == "uncoupled":  # the authors' own turnarounds, with receivers that no longer share a sender's level
        k = R.k_composition()
        k = k.assign(score=k["score"] + 0.01 * k["dst"].str[2:].astype(int))
    turn = composition.turnaround(k, min_step=100)
    turn["stage"] = [stage_of(R.stage_table(), s) for s in turn["min_step"]]
    ratio = composition.coupling(k, R.LM_BOUNDARIES[-1])["ratio"]
    verdict = criteria.turnaround_verdict(turn, ratio)
    assert verdict.status == criteria.FAIL
    if kind == "falling":  # no pair turns: the value says so, not a share of an empty set
        assert "0/9 pairs turn" in verdict.value and "no pair turns" in verdict.value
        assert "of the turning pairs'" not in verdict.value


# --- claim 10 -------------------------------------------------------------------------------------

# Appendix G's other runs (caption order; which is seed 2 or 3 is not recoverable): their types, and
# the clusters the paper reports their heads were assigned to, its two named exceptions included
RUNS = {"A": {"0:6": ht.CURRENT_TOKEN, "0:1": ht.PREVIOUS_TOKEN, "1:0": ht.INDUCTION},
        "B": {"0:2": ht.CURRENT_TOKEN, "0:4": ht.PREVIOUS_TOKEN, "1:6": ht.INDUCTION},
        "C": {"0:6": ht.CURRENT_TOKEN, "0:0": ht.PREVIOUS_TOKEN, "0:3": ht.PREVIOUS_TOKEN, "1:1": ht.INDUCTION,
              "1:3": ht.INDUCTION}}
EXCEPTIONS = {"C": {"0:3": ht.CURRENT_TOKEN},  # a previous-token head in the current-token cluster
              "A": {"0:6": ht.MULTIGRAM}}  # the current-token head not told from the others


def _reported_transfer(shuffle: bool = False) -> pd.DataFrame:
    from sklearn.metrics import adjusted_rand_score
    rows = []
    for run, named in RUNS.items():
        types = pd.Series({h: named.get(h, ht.MULTIGRAM) for h in T.index})
        assigned = types.copy()
        for h, t in EXCEPTIONS.get(run, {}).items():
            assigned[h] = t
        if shuffle:
            assigned = pd.Series(np.roll(assigned.to_numpy(), 3), index=assigned.index)
        for layer in (0, 1):
            heads = [h for h in T.index if h.startswith(f"{layer}:")]
            rows.append({"run": run, "layer": layer, "ari": adjusted_rand_score(types[heads], assigned[heads])})
    return pd.DataFrame(rows)


def test_claim10_passes_the_transfer_appendix_g_reports_and_fails_shuffled_assignments():
    reported = _reported_transfer()
    assert criteria.transfer_verdict(reported).status == criteria.PASS
    assert (reported["ari"] < 1).sum() == 2  # the two exceptions cost something
    assert criteria.transfer_verdict(_reported_transfer(shuffle=True)).status == criteria.FAIL
