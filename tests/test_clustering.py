"""Clustering on synthetic curves with known groups."""

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import adjusted_rand_score

from rllc.analysis import clustering as C
from rllc.analysis import separation as S
from rllc.analysis import transfer as T

STEPS = np.arange(0, 2000, 100)


def synthetic(seed: int = 0, noise: float = 0.03) -> tuple[pd.DataFrame, pd.Series]:
    """Three groups of 4 curves: rise, fall (lower), and rise-then-fall. (A late rise would not
    do: shape-based distance is shift-invariant, so it equals an early rise.)"""
    rng = np.random.default_rng(seed)
    t = STEPS / STEPS.max()
    shapes = {
        "high": lambda: 10 * (1 - np.exp(-4 * t)),
        "low": lambda: 3 * np.exp(-4 * t),
        "hump": lambda: 8 * np.exp(-((t - 0.4) ** 2) / 0.02),
    }
    rows, types = [], {}
    for g, f in shapes.items():
        for i in range(4):
            name = f"{g}{i}"
            types[name] = g
            scale = rng.uniform(0.9, 1.1)
            y = scale * f() + noise * 10 * rng.standard_normal(len(t))
            rows += [{"component": name, "refinement": "wr", "step": s, "llc_mean": v}
                     for s, v in zip(STEPS, y, strict=True)]
    return pd.DataFrame(rows), pd.Series(types)


@pytest.mark.parametrize("algorithm", C.ALGORITHMS)
def test_each_algorithm_recovers_groups(algorithm):
    table, types = synthetic()
    wide = C.curves_matrix(table)
    labels = C.cluster(wide.to_numpy(), 3, algorithm)
    assert adjusted_rand_score(types.reindex(wide.index), labels) == pytest.approx(1.0)


def test_shape_based_ignores_level():
    """Same shape at two levels: k-means splits by level, shape-based k-means does not."""
    table, types = synthetic()
    table = table[table.component.str.startswith(("high", "hump"))]
    low = table[table.component.str.startswith("high")].assign(
        component=lambda d: d.component.str.replace("high", "low"), llc_mean=lambda d: d.llc_mean / 4)
    wide = C.curves_matrix(pd.concat([table, low]))
    shape = pd.Series({c: "hump" if c.startswith("hump") else "rise" for c in wide.index})
    level = pd.Series({c: c.rstrip("0123456789") for c in wide.index})
    assert adjusted_rand_score(shape, C.cluster(wide.to_numpy(), 2, "kshape")) == pytest.approx(1.0)
    assert adjusted_rand_score(level, C.cluster(wide.to_numpy(), 3, "kmeans")) == pytest.approx(1.0)


def test_cluster_all_consensus_and_ari():
    table, types = synthetic(seed=1)
    labels = C.cluster_all(C.curves_matrix(table), ks=[3, 4])
    assert set(labels["algorithm"]) == {*C.ALGORITHMS, "consensus"}
    assert len(labels) == 2 * 4 * 12
    ari = C.ari_table(labels, types).set_index(["k", "algorithm"])["ari"]
    assert ari[(3, "consensus")] == pytest.approx(1.0)
    assert ari[(3, "kmeans")] == pytest.approx(1.0)
    assert ari[(4, "kmeans")] < 1.0  # one group must split


def test_ari_fails_for_random_labels():
    _, types = synthetic()
    rng = np.random.default_rng(0)
    labels = pd.DataFrame({"component": types.index, "k": 3, "algorithm": "random",
                           "cluster": rng.integers(0, 3, len(types))})
    assert C.ari_table(labels, types)["ari"].iloc[0] < 0.5


def test_consensus_weights_shape_based_double():
    a = np.array([0, 0, 1, 1])
    b = np.array([0, 1, 0, 1])
    # kshape (weight 2) against kmeans (weight 1): the vote follows kshape
    out = C.consensus({"kmeans": b, "kshape": a}, 2)
    assert adjusted_rand_score(a, out) == 1.0


def test_aligned_labels_keep_unsplit_clusters():
    labels = pd.DataFrame({
        "component": list("abcd") * 2,
        "k": [2] * 4 + [3] * 4,
        "cluster": [0, 0, 1, 1, 2, 2, 0, 1],  # at k=3, {a,b} is renamed 2 and {c,d} splits
    })
    out = C.aligned_labels(labels)
    k3 = out[out.k == 3].set_index("component")["cluster"]
    assert k3["a"] == k3["b"] == 0  # matched back to its k=2 label
    assert k3["c"] != k3["d"] and {k3["c"], k3["d"]} & {1}


def test_aligned_labels_keep_a_new_cluster_of_several_heads_together():
    # at k=3 the k=2 cluster {a,b,c,d} splits into {a,b} and a new cluster {c,d}; {e,f} keeps its
    # cluster. Before the fix, c and d each got a label of its own (four clusters at k=3)
    labels = pd.DataFrame({
        "component": list("abcdef") * 2,
        "k": [2] * 6 + [3] * 6,
        "cluster": [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 0, 0],
    })
    out = C.aligned_labels(labels)
    for k, g in out.groupby("k"):
        before = labels[labels.k == k].sort_values("component")["cluster"]
        after = g.sort_values("component")["cluster"]
        assert adjusted_rand_score(before, after) == 1.0  # the same partition, only renamed
        assert after.nunique() == k
    k3 = out[out.k == 3].set_index("component")["cluster"]
    assert k3["c"] == k3["d"] and k3["c"] not in (k3["a"], k3["e"])


def test_curves_must_align_and_k_in_range():
    table, _ = synthetic()
    with pytest.raises(ValueError, match="share checkpoints"):
        C.curves_matrix(table[~((table.component == "high0") & (table.step == 500))])
    with pytest.raises(ValueError, match="k="):
        C.cluster(np.zeros((3, 5)), 4, "kmeans")
    with pytest.raises(ValueError, match="unknown algorithm"):
        C.cluster(np.zeros((5, 5)), 2, "dbscan")


def test_concatenated_refinements_are_scaled_per_block():
    table, _ = synthetic()
    dr = table.assign(refinement="dr", llc_mean=table["llc_mean"] * 100)
    wide = C.curves_matrix(pd.concat([table, dr]))
    assert np.std(wide["wr"].to_numpy()) == pytest.approx(1.0)
    assert np.std(wide["dr"].to_numpy()) == pytest.approx(1.0)


def test_align_curves_drops_steps_with_a_missing_value():
    table, _ = synthetic()
    table.loc[(table.component == "hump1") & (table.step == 300), "llc_mean"] = np.nan
    kept, dropped = C.align_curves(table)
    assert dropped == [300]
    assert 300 not in set(kept["step"]) and kept["llc_mean"].notna().all()
    assert C.curves_matrix(kept).shape == (12, len(STEPS) - 1)
    kept, dropped = C.align_curves(table, min_step=STEPS[1])
    assert dropped == [STEPS[0], 300] and kept["step"].min() == STEPS[1]


def test_cluster_layers_scores_each_layer_against_its_types():
    """Two layers of the synthetic curves (named "L:H", several distributions): every layer's
    consensus at k = the number of types recovers them; step 0 is left out; labels carry the layer."""
    table, types = synthetic()
    names = {c: f"{i // 6}:{i % 6}" for i, c in enumerate(sorted(types.index))}
    heads = table.assign(component=table["component"].map(names))
    both = pd.concat([heads.assign(data="train"), heads.assign(data="python_tests",
                                                               llc_mean=heads["llc_mean"] * 2)])
    head_types = types.rename(index=names)
    labels, ari, dropped = C.cluster_layers(both, head_types, max_k=4, seed=0, min_step=1)
    assert set(labels["layer"]) == {0, 1} and dropped == {0: [0], 1: [0]}
    at_types = ari[(ari["algorithm"] == "consensus") & ari["matches_types"]]
    assert set(at_types["layer"]) == {0, 1}
    assert at_types["ari"].tolist() == pytest.approx([1.0, 1.0])
    assert (at_types["k"] == at_types["n_types"]).all()


def test_ari_null_has_mean_zero_by_exhaustive_enumeration():
    """Oracle: every relabelling of a small clustering, enumerated; the ARI's expectation under
    permutation is exactly 0, and the sampled null matches the enumerated distribution."""
    import itertools

    from sklearn.metrics import adjusted_rand_score

    from rllc.analysis.clustering import ari_against_null, ari_null

    types = ["a", "a", "a", "b", "b", "c"]
    clusters = [0, 0, 1, 1, 2, 2]
    exact = [adjusted_rand_score(types, [clusters[i] for i in perm]) for perm in itertools.permutations(range(6))]
    assert np.mean(exact) == pytest.approx(0.0, abs=1e-12)
    sampled = ari_null(types, clusters, n=4000, seed=1)
    assert sampled.mean() == pytest.approx(0.0, abs=0.03)
    assert np.quantile(sampled, 0.95) == pytest.approx(np.quantile(exact, 0.95), abs=0.05)
    out = ari_against_null(types, [0, 0, 0, 1, 1, 2], n=2000)
    assert out["ari"] == 1.0 and out["p_value"] < 0.05 and out["null_q95"] < 1.0
    with pytest.raises(ValueError, match="cluster labels"):
        ari_null(types, [0, 1])


def _curves(levels: dict[str, float], shapes: dict[str, float], noise_sd: float, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    steps = [100, 300, 1000, 3000, 10000]
    return pd.DataFrame([{"component": c, "data": "train", "step": s,
                          "llc_mean": levels[c] + shapes[c] * np.log10(s) + rng.normal(0, noise_sd)}
                         for c in levels for s in steps])


def test_ari_variants_find_well_separated_types_and_not_random_ones():
    heads = [f"0:{h}" for h in range(8)]
    types = pd.Series(["a"] * 4 + ["b"] * 4, index=heads)
    sep = _curves({h: (0.0 if types[h] == "a" else 5.0) for h in heads}, {h: 1.0 for h in heads}, 0.05)
    out = C.ari_variants(sep, types, "wr", max_k=3, n_null=500)
    assert set(out["standardised"]) == {False, True} and set(out["algorithm"]) >= {"kmeans", "ward", "consensus"}
    raw = out[(~out["standardised"]) & (out["algorithm"].isin(["kmeans", "ward", "consensus"]))]
    assert (raw["ari"] == 1.0).all() and (raw["p_value"] < 0.05).all() and (raw["ari"] > raw["null_q95"]).all()
    assert (out["p_family"] >= out["p_value"]).all()
    mixed = _curves({h: float(i % 2) * 5.0 for i, h in enumerate(heads)}, {h: 1.0 for h in heads}, 0.05)
    out2 = C.ari_variants(mixed, types, "wr", max_k=3, n_null=500)
    assert (out2["ari"] < out2["null_q95"] + 1e-9).all() or (out2["p_value"] > 0.05).all()


def test_ari_many_equals_scikit_learn_bit_for_bit():
    """Oracle: scikit-learn's adjusted_rand_score, one pair at a time, on random labellings
    (integer and string labels, from 2 to 16 items, one-cluster and identical labellings)."""
    rng = np.random.default_rng(3)
    for n in (2, 3, 6, 8, 16):
        truth = rng.integers(0, 4, size=(400, n))
        labels = rng.integers(0, 3, size=(400, n))
        labels[:5] = 0  # a single cluster
        labels[5:10] = truth[5:10]  # full agreement
        got = C.ari_many(truth, labels)
        want = np.array([adjusted_rand_score(t, lab) for t, lab in zip(truth, labels, strict=True)])
        assert np.array_equal(got, want)
    types = np.array(["prev", "prev", "ind", "cur", "cur", "ind", "prev", "cur"])
    many = rng.integers(0, 3, size=(50, 8))
    got = C.ari_many(types, many)  # one row shared by every labelling
    assert np.array_equal(got, [adjusted_rand_score(types, lab) for lab in many])
    assert C.ari_many(types, many[0]).shape == (1,)
    with pytest.raises(ValueError, match="pair up"):
        C.ari_many(many[:3], many[:4])


def test_ari_variants_reuse_a_clustering_already_made():
    heads = [f"0:{h}" for h in range(6)]
    types = pd.Series(["a"] * 3 + ["b"] * 3, index=heads)
    curves = _curves({h: (0.0 if types[h] == "a" else 2.0) for h in heads}, {h: 1.0 for h in heads}, 0.5, seed=2)
    labels, ari, _ = C.cluster_layers(curves, types, 3, seed=1)
    fresh = C.ari_variants(curves, types, "wr", max_k=3, seed=1, n_null=300)
    reused = C.ari_variants(curves, types, "wr", max_k=3, seed=1, n_null=300, clustered=(labels, ari))
    pd.testing.assert_frame_equal(fresh, reused)


def test_eta2_matches_the_one_way_anova():
    from scipy.stats import f_oneway
    rng = np.random.default_rng(2)
    y = rng.normal(size=9) + np.repeat([0.0, 1.0, 3.0], 3)
    codes = np.repeat([0, 1, 2], 3)
    f = f_oneway(y[:3], y[3:6], y[6:]).statistic
    k, n = 3, 9
    assert S._eta2(y, codes[None, :])[0] == pytest.approx(f * (k - 1) / (f * (k - 1) + (n - k)))


def test_type_separation_names_the_feature_that_separates():
    heads = [f"1:{h}" for h in range(8)]
    types = pd.Series(["a"] * 4 + ["b"] * 4, index=heads)
    rng = np.random.default_rng(0)
    features = pd.DataFrame({"final": [0.0] * 4 + [10.0] * 4 + rng.normal(0, 0.1, 8),
                             **{f"f{i}": rng.normal(0, 1, 8) for i in range(5)}}, index=heads)
    t = S.type_separation(features, types, n_perm=2000).set_index("feature")
    assert t.at["final", "eta2"] > 0.99
    assert t.at["final", "p_value"] == pytest.approx(2 / 70, abs=0.015)  # 2 of the C(8,4) = 70 splits are as good
    assert t.at["final", "p_min"] == pytest.approx(2 / 70) and t.at["final", "p_bonferroni"] > 0.05
    assert (t.drop(index="final")["eta2"] < 0.99).all()


def test_smallest_p_counts_the_distinct_partitions():
    assert S.smallest_p(["a"] * 4 + ["b"] * 4) == pytest.approx(2 / 70)
    assert S.smallest_p(["a"] * 2 + ["b"] * 3 + ["c"] * 3) == pytest.approx(2 / 560)
    assert S.smallest_p(["a", "b", "b", "b"]) == pytest.approx(1 / 4)


def test_curve_features_read_the_curves():
    t = pd.DataFrame({"component": ["0:0"] * 4, "step": [0, 10, 100, 1000], "llc_mean": [9.0, 1.0, 3.0, 2.0]})
    f = S.curve_features(t).iloc[0]
    assert f["final"] == 2.0 and f["mean"] == 2.0 and f["peak_step"] == 2.0  # step 0 left out
    assert f["rise_from_low"] == 1.0 and f["late_rise"] == -1.0 and f["early_change"] == 2.0


def test_standardising_changes_the_features_not_the_heads():
    heads = [f"0:{h}" for h in range(6)]
    types = pd.Series(["a"] * 3 + ["b"] * 3, index=heads)
    est = _curves({h: float(i) for i, h in enumerate(heads)}, {h: 1.0 for h in heads}, 0.01)
    lab, ari, _ = C.cluster_layers(est, types, 3, standardise=True)
    assert set(lab["component"]) == set(heads) and ari["ari"].between(-1, 1).all()


def _group_curves(groups: dict[str, str], noise_sd: float, seed: int, shift: float = 0.0) -> pd.DataFrame:
    """Per-head curves whose shape is set by the head's group: 'rise' climbs late, 'fall' drops
    early, 'flat' stays; ``shift`` moves every curve up (another run's level)."""
    rng = np.random.default_rng(seed)
    steps = [100, 300, 1000, 2000, 4000, 8000, 12000]
    x = np.log10(steps)
    shape = {"rise": 1 / (1 + np.exp(-(x - 3.3) * 6)), "fall": 1 - 1 / (1 + np.exp(-(x - 2.5) * 6)),
             "flat": np.full(len(x), 0.5)}
    return pd.DataFrame([{"component": c, "step": s, "llc_mean": shift + shape[g][i] + rng.normal(0, noise_sd)}
                         for c, g in groups.items() for i, s in enumerate(steps)])


def test_transfer_carries_known_groups_to_another_run_and_names_the_exceptions():
    ref_groups = {"1:0": "rise", "1:1": "rise", "1:2": "fall", "1:3": "fall", "1:4": "flat", "1:5": "flat"}
    # the other run assigns the groups to other heads (its own head types), one head off its type
    oth_groups = {"1:0": "fall", "1:1": "rise", "1:2": "flat", "1:3": "rise", "1:4": "fall", "1:5": "flat"}
    ref_types = pd.Series({c: f"type-{g}" for c, g in ref_groups.items()})
    oth_types = pd.Series({c: f"type-{g}" for c, g in oth_groups.items()})
    ref, oth = _group_curves(ref_groups, 0.02, 0), _group_curves(oth_groups, 0.02, 1)
    assign, scores = T.transfer(ref, oth, ref_types, oth_types, algorithms=("kmeans", "ward"), n_null=500)
    assert set(scores["algorithm"]) == {"kmeans", "ward"} and (scores["k"] == 3).all()
    assert (scores["ari"] == 1.0).all() and (scores["n_exceptions"] == 0).all()
    # six heads in three pairs: a random labelling recovers the pairs with probability 48/720
    assert scores["p_value"].to_numpy() == pytest.approx(48 / 720, abs=0.03)
    assert (assign["cluster_type"] == assign["type"]).all()
    wrong = oth_types.copy()
    wrong["1:5"] = "type-rise"  # its curve is flat: it lands in the flat heads' cluster, an exception
    assign2, scores2 = T.transfer(ref, oth, ref_types, wrong, algorithms=("kmeans",), n_null=200)
    assert assign2.set_index("component").at["1:5", "exception"] and scores2["n_exceptions"].iloc[0] == 1


def test_kshape_transfer_ignores_the_level_of_the_other_run():
    groups = {"0:0": "rise", "0:1": "rise", "0:2": "fall", "0:3": "fall"}
    types = pd.Series({c: g for c, g in groups.items()})
    ref, oth = _group_curves(groups, 0.01, 0), _group_curves(groups, 0.01, 1, shift=5.0)
    _, scores = T.transfer(ref, oth, types, types, algorithms=("kshape",), n_null=200)
    assert scores["ari"].iloc[0] == 1.0


def test_transfer_needs_shared_checkpoints():
    groups = {"0:0": "rise", "0:1": "fall", "0:2": "flat"}
    types = pd.Series(groups)
    ref = _group_curves(groups, 0.0, 0)
    oth = ref.assign(step=ref["step"] + 1)
    with pytest.raises(ValueError, match="share 0 complete checkpoints"):
        T.transfer(ref, oth, types, types)


def test_shared_complete_steps_drop_a_checkpoint_where_one_head_has_no_estimate():
    groups = {"0:0": "rise", "0:1": "fall", "0:2": "flat"}
    ref = _group_curves(groups, 0.0, 0)
    steps = sorted(int(s) for s in ref["step"].unique() if s >= 1)
    oth = ref.copy()
    gap = steps[2]
    oth.loc[(oth["component"] == "0:1") & (oth["step"] == gap), "llc_mean"] = np.nan  # every chain flagged
    assert T.shared_complete_steps(ref, ref) == steps
    assert T.shared_complete_steps(ref, oth) == [s for s in steps if s != gap]
    assert T.shared_complete_steps(ref, oth, min_step=steps[-1]) == [steps[-1]]


def test_transfer_to_runs_marks_the_k_of_each_runs_types():
    ref_groups = {"1:0": "rise", "1:1": "rise", "1:2": "fall", "1:3": "fall", "1:4": "flat", "1:5": "flat"}
    ref_types = pd.Series({c: f"type-{g}" for c, g in ref_groups.items()})
    two = {"1:0": "rise", "1:1": "rise", "1:2": "rise", "1:3": "fall", "1:4": "fall", "1:5": "fall"}
    others = {"A": (_group_curves(ref_groups, 0.02, 1), ref_types),
              "B": (_group_curves(two, 0.02, 2), pd.Series({c: f"type-{g}" for c, g in two.items()}))}
    assign, scores = T.transfer_to_runs(_group_curves(ref_groups, 0.02, 0), ref_types, others, [2, 3],
                                        algorithms=("kmeans",), n_null=200)
    assert list(scores.columns[:4]) == ["run", "layer", "algorithm", "k"] and set(scores["run"]) == {"A", "B"}
    at = scores[scores["matches_types"]].set_index("run")
    assert at.at["A", "k"] == 3 and at.at["B", "k"] == 2  # each run's own number of types
    assert at.at["A", "ari"] == 1.0  # same groups on the same heads
    # two clusters cannot hold A's three groups; B's two groups land in two of the three clusters
    by = scores.set_index(["run", "k"])
    assert by.at[("A", 2), "ari"] < 1.0 and not by.at[("A", 2), "matches_types"]
    assert by.at[("B", 3), "ari"] == 1.0 and not by.at[("B", 3), "matches_types"]
    assert len(assign) == 2 * 2 * 6 and set(assign["run"]) == {"A", "B"}
