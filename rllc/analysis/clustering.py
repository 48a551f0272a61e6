"""Clustering of per-head curves over training (rLLC paper, Section 4.1 and Appendix F.5).

Input: a wide table, one row per head and one column per feature (checkpoint steps of one
refinement, or the concatenation of several refinements: see :func:`curves_matrix`). Three
algorithms for each k:

* ``kmeans``: Euclidean k-means (scikit-learn) on the curves, each refinement block scaled by
  its overall standard deviation so no refinement dominates;
* ``ward``: Ward agglomerative clustering on the same features;
* ``kshape``: shape-based k-means (tslearn ``KShape``) on per-curve z-normalised series, which
  groups curves by shape regardless of their level.

A consensus (:func:`consensus`) combines them by a weighted vote on the co-assignment of every
pair of heads, shape-based clustering counting double as the paper recommends, followed by
average-linkage clustering of the vote matrix. :func:`aligned_labels` relabels the clusterings
for k = 2…6 so that a cluster keeps its label when it does not split, which is what the
split-diagram figure draws.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import adjusted_rand_score

with warnings.catch_warnings():  # tslearn warns on import that h5py (which nothing here needs) is absent
    warnings.filterwarnings("ignore", message=".*h5py.*")
    from tslearn.clustering import KShape
    from tslearn.metrics import cycc
    from tslearn.preprocessing import TimeSeriesScalerMeanVariance


def _cache_kshape_kernels() -> None:
    """tslearn compiles k-shape's cross-correlation kernels with numba at their first call in every
    process, without numba's on-disk cache. Each notebook kernel, test worker and nbval run paid that
    compilation again. Turning the cache on (before the first call) compiles them once per
    environment; the compiled code is the same, so no label changes."""
    for name in ("normalized_cc", "cdist_normalized_cc", "y_shifted_sbd_vec"):
        kernel = getattr(cycc, name, None)
        if kernel is not None and hasattr(kernel, "enable_caching") and not kernel.signatures:
            try:
                kernel.enable_caching()
            except RuntimeError:  # numba found no writable cache folder: compile per process, as before
                return


_cache_kshape_kernels()

# Part of the key of every cached table made from cluster labels (the scale study's rows): bump it when
# a change alters a label. 2: aligned_labels keeps a new cluster of several heads together (version 1
# gave each head of a new cluster its own label, so the scored partitions could have more than k clusters).
CLUSTER_VERSION = 2

ALGORITHMS = ("kmeans", "ward", "kshape")
VOTE_WEIGHTS = {"kmeans": 1.0, "ward": 1.0, "kshape": 2.0}
KSHAPE_RESTARTS = 5  # k-shape is sensitive to its start: keep the tightest of this many


def align_curves(table: pd.DataFrame, value: str = "llc_mean", index: str = "component",
                 step: str = "step", min_step: int = 0) -> tuple[pd.DataFrame, list]:
    """Keep the checkpoints at which every curve has a value (an estimate whose chains were all
    flagged has none), from ``min_step`` on; returns the kept rows and the dropped steps.

    ``min_step=1`` leaves out the initialisation: w* there is no local minimum, chains descend
    below L(w*), and the estimates' scatter can outweigh every later difference between heads."""
    dropped_early = sorted(table.loc[table[step] < min_step, step].unique().tolist())
    table = table[table[step] >= min_step]
    ok = table[value].notna()
    n = table[index].nunique()
    full = ok.groupby(table[step]).sum() == n
    dropped = sorted(dropped_early + full[~full].index.tolist())
    return table[table[step].isin(full[full].index)], dropped


def curves_matrix(table: pd.DataFrame, value: str = "llc_mean", refinement: str | None = "refinement",
                  index: str = "component", step: str = "step") -> pd.DataFrame:
    """Tidy rows → one row per head, columns (refinement, step), each refinement block divided
    by its overall standard deviation. Rows with a missing step raise (curves must align)."""
    keys = [refinement, step] if refinement and refinement in table else [step]
    wide = table.pivot_table(index=index, columns=keys, values=value)
    if wide.isna().any().any():
        missing = wide.columns[wide.isna().any()].tolist()[:5]
        raise ValueError(f"curves do not share checkpoints (missing at e.g. {missing}); align them first")
    if len(keys) == 2:
        for block in wide.columns.get_level_values(0).unique():
            scale = float(np.std(wide[block].to_numpy())) or 1.0
            wide[block] = wide[block] / scale
    else:
        scale = float(np.std(wide.to_numpy())) or 1.0
        wide = wide / scale
    return wide


def cluster(x: np.ndarray, k: int, algorithm: str, seed: int = 0) -> np.ndarray:
    """Labels 0..k-1 of the rows of ``x`` under one algorithm."""
    if not 2 <= k <= len(x):
        raise ValueError(f"k={k} must be between 2 and the number of curves ({len(x)})")
    if algorithm == "kmeans":
        return KMeans(n_clusters=k, n_init=20, random_state=seed).fit_predict(x)
    if algorithm == "ward":
        return AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(x)
    if algorithm == "kshape":
        z = TimeSeriesScalerMeanVariance().fit_transform(x[:, :, None])  # per-curve z-normalisation
        return KShape(n_clusters=k, n_init=KSHAPE_RESTARTS, random_state=seed, max_iter=100).fit_predict(z)
    raise ValueError(f"unknown algorithm {algorithm!r}; valid: {ALGORITHMS}")


def consensus(labelings: dict[str, np.ndarray], k: int, weights: dict[str, float] | None = None) -> np.ndarray:
    """Weighted co-assignment vote of several clusterings, cut into ``k`` clusters."""
    weights = weights or VOTE_WEIGHTS
    n = len(next(iter(labelings.values())))
    vote = np.zeros((n, n))
    total = 0.0
    for alg, labels in labelings.items():
        w = weights.get(alg, 1.0)
        vote += w * (labels[:, None] == labels[None, :])
        total += w
    distance = 1.0 - vote / total
    return AgglomerativeClustering(n_clusters=k, metric="precomputed", linkage="average").fit_predict(distance)


def cluster_all(wide: pd.DataFrame, ks: Sequence[int] = range(2, 7), seed: int = 0,
                algorithms: Sequence[str] = ALGORITHMS) -> pd.DataFrame:
    """Tidy labels: (component, k, algorithm, cluster) for each algorithm and the consensus."""
    x = wide.to_numpy(dtype=float)
    rows = []
    for k in ks:
        if k > len(x):
            continue
        labelings = {alg: cluster(x, k, alg, seed) for alg in algorithms}
        labelings["consensus"] = consensus(labelings, k)
        for alg, labels in labelings.items():
            rows += [{"component": c, "k": k, "algorithm": alg, "cluster": int(lab)}
                     for c, lab in zip(wide.index, labels, strict=True)]
    return pd.DataFrame(rows)


def aligned_labels(labels: pd.DataFrame) -> pd.DataFrame:
    """Relabel one algorithm's clusterings (columns component, k, cluster) so that for each k
    the clusters match those at k-1 as far as possible (Hungarian matching on overlaps). Relabelling
    never changes a partition: the heads that share a cluster share its new label."""
    out = []
    prev: pd.Series | None = None
    for k, g in labels.sort_values("k").groupby("k"):
        cur = g.set_index("component")["cluster"]
        if prev is not None:
            overlap = pd.crosstab(cur, prev.reindex(cur.index))
            rows, cols = linear_sum_assignment(-overlap.to_numpy())
            mapping = {overlap.index[r]: overlap.columns[c] for r, c in zip(rows, cols, strict=True)}
            # a cluster with no match gets one new label, shared by all its heads (one label per cluster,
            # not per head: drawing a fresh label inside the per-head loop split new clusters apart)
            fresh = iter(range(int(prev.max()) + 1, int(prev.max()) + 1 + k))
            mapping |= {c: next(fresh) for c in sorted(set(cur) - set(mapping))}
            cur = pd.Series([mapping[c] for c in cur], index=cur.index)
        g = g.copy()
        g["cluster"] = cur.reindex(g["component"]).to_numpy()
        out.append(g)
        prev = cur
    return pd.concat(out, ignore_index=True)


def ari_table(labels: pd.DataFrame, types: pd.Series) -> pd.DataFrame:
    """Adjusted Rand index of every (k, algorithm) clustering against behavioural ``types``
    (a Series indexed by component)."""
    rows = []
    for (k, alg), g in labels.groupby(["k", "algorithm"]):
        truth = types.reindex(g["component"])
        if truth.isna().any():
            raise ValueError(f"no type for {truth[truth.isna()].index.tolist()}")
        rows.append({"k": k, "algorithm": alg, "ari": float(adjusted_rand_score(truth, g["cluster"]))})
    return pd.DataFrame(rows)


def _codes(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels (any values) of each row of ``labels`` [m, n] → integer codes [m, n], and their count."""
    uniq, inv = np.unique(labels, return_inverse=True)
    return inv.reshape(labels.shape), len(uniq)


def ari_many(truth: Sequence | np.ndarray, labels: Sequence | np.ndarray) -> np.ndarray:
    """The adjusted Rand index of many labellings at once: row i of ``truth`` against row i of
    ``labels`` ([m, n] each, or [n] for one labelling shared by every row), as floats [m].

    The same pair counts and the same final formula as scikit-learn's ``adjusted_rand_score``
    (integer counts, then 2 (tp·tn − fn·fp) / ((tp+fn)(fn+tn) + (tp+fp)(fp+tn)) in float64), so
    each value equals it bit for bit (a test checks it); thousands of null labellings cost
    milliseconds instead of a millisecond each."""
    t, lab = np.asarray(truth), np.asarray(labels)
    if t.ndim == 1 and lab.ndim == 1:
        t, lab = t[None], lab[None]
    m = len(t) if t.ndim == 2 else len(lab) if lab.ndim == 2 else 1
    t = np.broadcast_to(t, (m, t.shape[-1])) if t.ndim == 1 else t
    lab = np.broadcast_to(lab, (m, lab.shape[-1])) if lab.ndim == 1 else lab
    if t.shape != lab.shape:
        raise ValueError(f"truth {t.shape} and labels {lab.shape} do not pair up")
    n = t.shape[1]
    tc, a = _codes(t)
    lc, b = _codes(lab)
    cont = np.zeros((m, a * b), dtype=np.int64)  # contingency table of each row, flattened
    np.add.at(cont, (np.repeat(np.arange(m), n), (tc * b + lc).ravel()), 1)
    cont = cont.reshape(m, a, b)
    n_c, n_k = cont.sum(axis=2), cont.sum(axis=1)
    sum_squares = (cont ** 2).sum(axis=(1, 2))
    tp = sum_squares - n
    fp = (cont * n_k[:, None, :]).sum(axis=(1, 2)) - sum_squares
    fn = (cont * n_c[:, :, None]).sum(axis=(1, 2)) - sum_squares
    tn = n * n - fp - fn - sum_squares
    num = (tp * tn - fn * fp).astype(np.float64)
    den = ((tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)).astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = 2.0 * num / den
    return np.where((fn == 0) & (fp == 0), 1.0, out)


def ari_null(types: Sequence, clusters: Sequence, n: int = 5000, seed: int = 0) -> np.ndarray:
    """The ARI of ``clusters`` against ``types`` when the cluster labels are shuffled over the
    heads (``n`` draws): the null of a clustering with the same cluster sizes that knows nothing
    of the types. Its mean is 0 by construction of the ARI; its spread says how large an ARI
    chance reaches with so few heads."""
    truth, labels = np.asarray(types), np.asarray(clusters)
    if len(truth) != len(labels):
        raise ValueError(f"{len(truth)} types but {len(labels)} cluster labels")
    rng = np.random.default_rng(seed)
    return ari_many(truth, np.array([rng.permutation(labels) for _ in range(n)]).reshape(n, len(labels)))


def ari_against_null(types: Sequence, clusters: Sequence, n: int = 5000, seed: int = 0) -> dict[str, float]:
    """The observed ARI, the null's 95% and 99% quantiles, and the p-value (the share of null
    draws at or above the observed ARI)."""
    observed = float(adjusted_rand_score(np.asarray(types), np.asarray(clusters)))
    null = ari_null(types, clusters, n, seed)
    return {"ari": observed, "null_q95": float(np.quantile(null, 0.95)), "null_q99": float(np.quantile(null, 0.99)),
            "p_value": float((null >= observed - 1e-12).mean())}


def layer_of(components: pd.Series) -> pd.Series:
    """The layer of head components named "L:H"."""
    return components.str.split(":").str[0].astype(int)


def cluster_layers(estimates: pd.DataFrame, types: pd.Series, max_k: int, seed: int = 0, min_step: int = 1,
                   value: str = "llc_mean", standardise: bool = False,
                   ) -> tuple[pd.DataFrame, pd.DataFrame, dict[int, list]]:
    """Cluster the per-head curves of each layer and score the clusterings against ``types``.

    ``estimates``: tidy rows (component "L:H", data, step, ``value``) of one or several
    distributions; several are concatenated per head (each block scaled by its spread). Steps
    before ``min_step`` and steps where some curve has no value are left out (:func:`align_curves`).
    Returns (labels: component, k, algorithm, cluster, layer — aligned across k for the split
    diagrams; ari: k, algorithm, ari, layer, n_types, matches_types — True at k = the number of
    types in the layer when it has two or more; dropped steps per layer). With ``standardise``
    every feature (checkpoint) is z-scored across the layer's heads first, so that the checkpoints
    where all heads move together weigh no more than the others."""
    heads = estimates[estimates["component"].str.fullmatch(r"\d+:\d+")]
    labels_all, ari_all, dropped_by_layer = [], [], {}
    for layer, sub in heads.groupby(layer_of(heads["component"])):
        keyed = sub.assign(refinement=sub["data"], component=sub["component"] + "|" + sub["data"])
        keyed, dropped = align_curves(keyed, value=value, min_step=min_step)
        keyed = keyed.assign(component=keyed["component"].str.split("|").str[0])
        wide = curves_matrix(keyed, value=value)
        if standardise:
            sd = wide.std(ddof=0).replace(0.0, 1.0)
            wide = (wide - wide.mean()) / sd
        ks = range(2, min(max_k, len(wide) - 1) + 1)
        lab = cluster_all(wide, ks, seed=seed)
        if lab.empty:  # too few heads in the layer for two clusters and a spare
            continue
        lab = pd.concat([aligned_labels(g) for _, g in lab.groupby("algorithm", sort=False)], ignore_index=True)
        ari = ari_table(lab, types)
        n_types = int(types.reindex(wide.index).nunique())
        ari["layer"], ari["n_types"] = int(layer), n_types
        ari["matches_types"] = (ari["k"] == n_types) if n_types >= 2 else False
        labels_all.append(lab.assign(layer=int(layer)))
        ari_all.append(ari)
        dropped_by_layer[int(layer)] = dropped
    if not labels_all:
        raise ValueError("no layer has enough heads to cluster (at least 3)")
    return pd.concat(labels_all, ignore_index=True), pd.concat(ari_all, ignore_index=True), dropped_by_layer


def ari_variants(estimates: pd.DataFrame, types: pd.Series, curves: str, max_k: int, seed: int = 0,
                 min_step: int = 1, n_null: int = 5000,
                 clustered: tuple[pd.DataFrame, pd.DataFrame] | None = None) -> pd.DataFrame:
    """The paper's clustering variants at k = the number of types of each layer, each beside its
    null: for the curves in ``estimates`` (named ``curves``, e.g. "wr" or "wr+dr"), raw and
    standardised, every algorithm and the consensus.

    The null shuffles the types over the layer's heads (``n_null`` times; it keeps the cluster
    and type sizes and knows nothing of the curves). ``p_value`` is the share of shuffles whose
    ARI reaches the variant's; ``p_family`` the share whose *best* ARI over all the layer's
    variants reaches it (a max-statistic correction for having tried several variants).
    Rows (layer, curves, standardised, algorithm, k, n_heads, ari, null_q95, null_q99, p_value,
    p_family). A layer with a single type has no row: an ARI against one type is undefined.
    ``clustered``: the (labels, ari) that ``cluster_layers`` returned for the same estimates,
    types, max_k, seed and min_step without standardising, when the caller already has them
    (they are not computed again)."""
    found: dict[int, list[tuple[dict, np.ndarray]]] = {}
    for standardise in (False, True):
        if clustered is not None and not standardise:
            labels, ari = clustered
        else:
            labels, ari, _ = cluster_layers(estimates, types, max_k, seed=seed, min_step=min_step,
                                            standardise=standardise)
        for r in ari[ari["matches_types"]].itertuples():
            lab = labels[(labels["layer"] == r.layer) & (labels["k"] == r.k) & (labels["algorithm"] == r.algorithm)]
            lab = lab.sort_values("component")
            found.setdefault(int(r.layer), []).append((
                {"layer": int(r.layer), "curves": curves, "standardised": standardise, "algorithm": r.algorithm,
                 "k": int(r.k), "n_heads": len(lab), "components": tuple(lab["component"])},
                lab["cluster"].to_numpy()))
    rows = []
    rng = np.random.default_rng(seed)
    for _, items in sorted(found.items()):
        truth = types.reindex(list(items[0][0]["components"])).to_numpy()
        perms = [rng.permutation(truth) for _ in range(n_null)]
        obs = np.array([adjusted_rand_score(truth, lab) for _, lab in items])
        perms = np.array(perms).reshape(n_null, len(truth))
        null = np.stack([ari_many(perms, lab) for _, lab in items], axis=1)  # [n_null, variants]
        best = null.max(axis=1)
        for j, (meta, _) in enumerate(items):
            meta = {k: v for k, v in meta.items() if k != "components"}
            rows.append({**meta, "ari": float(obs[j]), "null_q95": float(np.quantile(null[:, j], 0.95)),
                         "null_q99": float(np.quantile(null[:, j], 0.99)),
                         "p_value": float((null[:, j] >= obs[j] - 1e-12).mean()),
                         "p_family": float((best >= obs[j] - 1e-12).mean())})
    return pd.DataFrame(rows, columns=["layer", "curves", "standardised", "algorithm", "k", "n_heads", "ari",
                                       "null_q95", "null_q99", "p_value", "p_family"])
