"""Clusters fitted on one run's per-head curves, carried to other runs' heads (Appendix G; notebook 06).

Clusters are fitted on the reference run's curves (k-shape, k-means or Ward) and each other run's
heads are assigned to the nearest fitted cluster on the checkpoints both runs estimated
(``shared_complete_steps``); the assignment is scored against the other run's types by ARI beside
a random-label null (``clustering.ari_against_null``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.metrics import adjusted_rand_score

# tslearn's classes through clustering, which imports them quietly and caches k-shape's kernels
from .clustering import KSHAPE_RESTARTS, KShape, TimeSeriesScalerMeanVariance, ari_against_null, layer_of

TRANSFER_ALGORITHMS = ("kshape", "kmeans", "ward")


def _fit_predict(ref: np.ndarray, others: np.ndarray, k: int, algorithm: str, seed: int) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Fit ``algorithm`` with ``k`` clusters on the rows of ``ref`` and assign the rows of
    ``others`` to its clusters: k-shape and k-means by their own ``predict`` (nearest centroid in
    their metric), Ward by the nearest of its clusters' means (Ward has no centroids of its own)."""
    if algorithm == "kshape":
        scale = TimeSeriesScalerMeanVariance()
        model = KShape(n_clusters=k, n_init=KSHAPE_RESTARTS, random_state=seed, max_iter=100)
        labels = model.fit_predict(scale.fit_transform(ref[:, :, None]))
        return labels, model.predict(scale.fit_transform(others[:, :, None]))
    if algorithm == "kmeans":
        model = KMeans(n_clusters=k, n_init=20, random_state=seed).fit(ref)
        return model.labels_, model.predict(others)
    if algorithm == "ward":
        labels = AgglomerativeClustering(n_clusters=k, linkage="ward").fit_predict(ref)
        centres = np.stack([ref[labels == c].mean(axis=0) for c in range(k)])
        return labels, ((others[:, None, :] - centres[None]) ** 2).sum(axis=2).argmin(axis=1)
    raise ValueError(f"unknown algorithm {algorithm!r}; valid: {TRANSFER_ALGORITHMS}")


MIN_TRANSFER_STEPS = 3  # fewer shared checkpoints leave no curve shape to cluster


def _head_curves(t: pd.DataFrame, value: str, min_step: int) -> pd.DataFrame:
    heads = t[t["component"].str.fullmatch(r"\d+:\d+") & (t["step"] >= min_step)]
    return heads.pivot_table(index="component", columns="step", values=value)


def shared_complete_steps(reference: pd.DataFrame, other: pd.DataFrame, value: str = "llc_mean",
                          min_step: int = 1) -> list[int]:
    """The checkpoints from ``min_step`` on at which both runs (tidy rows component "L:H", step,
    ``value``) have a value for every head: the steps :func:`transfer` clusters on. An estimate
    whose every chain was flagged has no value, and removes its checkpoint."""
    ref_w, oth_w = _head_curves(reference, value, min_step), _head_curves(other, value, min_step)
    return [int(s) for s in ref_w.columns
            if s in oth_w.columns and ref_w[s].notna().all() and oth_w[s].notna().all()]


def transfer(reference: pd.DataFrame, other: pd.DataFrame, ref_types: pd.Series, other_types: pd.Series,
             k: int | None = None, algorithms: Sequence[str] = TRANSFER_ALGORITHMS, value: str = "llc_mean",
             min_step: int = 1, seed: int = 0, n_null: int = 5000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clusters fitted on one run's per-head curves, carried to another run's heads (rLLC paper,
    Appendix G): per layer, each algorithm is fitted on ``reference`` (tidy rows component "L:H",
    step, ``value`` of one distribution) and ``other``'s heads are assigned to its clusters, the
    features scaled by the reference's spread (as ``curves_matrix`` scales them). Only the
    checkpoints both runs share from ``min_step`` on are used. ``k`` defaults to the number of
    reference types in the layer.

    Returns (assignments: layer, algorithm, k, component, cluster, type, cluster_type — the
    majority reference type of the cluster — and exception, True where the head's own type is not
    its cluster's; scores: layer, algorithm, k, n_heads, ari of the assignment against
    ``other_types`` with the random-label null of ``ari_against_null`` — NaN with ``n_null`` 0 —,
    n_exceptions)."""
    ref_w, oth_w = _head_curves(reference, value, min_step), _head_curves(other, value, min_step)
    shared = shared_complete_steps(reference, other, value, min_step)
    if len(shared) < MIN_TRANSFER_STEPS:
        raise ValueError(f"the runs share {len(shared)} complete checkpoints from step {min_step}; "
                         f"need at least {MIN_TRANSFER_STEPS}")
    ref_w, oth_w = ref_w[shared], oth_w[shared]
    rows, scores = [], []
    for layer in sorted(layer_of(ref_w.index.to_series()).unique()):
        r = ref_w[ref_w.index.str.startswith(f"{layer}:")]
        o = oth_w[oth_w.index.str.startswith(f"{layer}:")]
        if o.empty:
            continue
        scale = float(np.std(r.to_numpy())) or 1.0
        kk = k or int(ref_types.reindex(r.index).nunique())
        if kk < 2 or kk >= len(r):
            continue
        for alg in algorithms:
            ref_lab, oth_lab = _fit_predict(r.to_numpy() / scale, o.to_numpy() / scale, kk, alg, seed)
            majority = pd.Series(ref_types.reindex(r.index).to_numpy()).groupby(ref_lab).agg(
                lambda s: s.value_counts().index[0])
            own = other_types.reindex(o.index).to_numpy()
            cluster_type = majority.reindex(oth_lab).to_numpy()
            rows += [{"layer": int(layer), "algorithm": alg, "k": kk, "component": c, "cluster": int(lab), "type": t,
                      "cluster_type": ct, "exception": bool(t != ct)}
                     for c, lab, t, ct in zip(o.index, oth_lab, own, cluster_type, strict=True)]
            nan = float("nan")
            if len(set(own)) < 2:
                stats = {"ari": nan, "null_q95": nan, "null_q99": nan, "p_value": nan}
            elif n_null:
                stats = ari_against_null(own, oth_lab, n=n_null, seed=seed)
            else:  # no null asked for
                stats = {"ari": float(adjusted_rand_score(own, oth_lab)), "null_q95": nan, "null_q99": nan,
                         "p_value": nan}
            scores.append({"layer": int(layer), "algorithm": alg, "k": kk, "n_heads": len(o), **stats,
                           "n_exceptions": int(sum(t != ct for t, ct in zip(own, cluster_type, strict=True)))})
    return pd.DataFrame(rows), pd.DataFrame(scores)


def transfer_to_runs(reference: pd.DataFrame, ref_types: pd.Series,
                     others: dict[str, tuple[pd.DataFrame, pd.Series]], ks: Sequence[int],
                     algorithms: Sequence[str] = TRANSFER_ALGORITHMS, value: str = "llc_mean", min_step: int = 1,
                     seed: int = 0, n_null: int = 5000) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`transfer` from one reference run to each of ``others`` (name → (curves, types)), for
    every k in ``ks`` that a layer allows. Both tables gain a ``run`` column; the scores gain
    ``n_types`` (the other run's types in the layer), ``matches_types`` (k equals it) and
    ``n_ref_types`` (the reference run's types in the layer: Appendix G's k). The random-label null
    is drawn only for a k that equals some layer's number of types, in either run."""
    assigned, scored = [], []
    ref_layer_types = ref_types.groupby(layer_of(ref_types.index.to_series())).nunique()
    for name, (curves, types) in others.items():
        layer_types = types.groupby(layer_of(types.index.to_series())).nunique()
        for k in ks:
            scored_k = int(k) in set(layer_types) | set(ref_layer_types)
            a, s = transfer(reference, curves, ref_types, types, k=int(k), algorithms=algorithms, value=value,
                            min_step=min_step, seed=seed, n_null=n_null if scored_k else 0)
            if s.empty:
                continue
            s = s.assign(n_types=s["layer"].map(layer_types).astype(int),
                         n_ref_types=s["layer"].map(ref_layer_types).astype(int))
            assigned.append(a.assign(run=name))
            scored.append(s.assign(run=name, matches_types=s["k"] == s["n_types"]))
    if not scored:
        return pd.DataFrame(), pd.DataFrame()
    first = ["run", "layer", "algorithm", "k"]
    a, s = pd.concat(assigned, ignore_index=True), pd.concat(scored, ignore_index=True)
    return a[first + [c for c in a.columns if c not in first]], s[first + [c for c in s.columns if c not in first]]
