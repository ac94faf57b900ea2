"""Retrieval metrics computed from the relevance of the top-k results, vectorised with numpy.

Every function takes ``relevant``, a boolean matrix ``[Q, K]`` whose row ``q`` says which of the
first ``K`` results of query ``q`` (in rank order) are relevant, and, where needed, ``n_relevant``
``[Q]``: how many relevant items the whole gallery holds for that query (the query itself never
counts). Missing results (FAISS returns id ``-1`` when the gallery has fewer than ``K`` items) are
simply non-relevant columns. Each function returns one value per query (float64 ``[Q]``); average
them with :func:`summarize`. Definitions (also in ``docs/retrieval.md``):

* ``mAP@k`` - the fashion study's definition, identical to torchmetrics'
  ``RetrievalMAP(top_k=k)``: mean of precision@i over the ranks i <= k that hold a relevant item;
  0 when no relevant item is in the top k. A query with one hit at rank 1 scores 1.0 even if the
  gallery holds 100 more relevant items.
* ``mAP@k_norm`` - the same sum of precisions divided by ``min(k, n_relevant)`` instead of by the
  number of hits, so returning few hits is not rewarded.
* ``MAP@R`` - Musgrave et al., "A Metric Learning Reality Check" (2020): with ``R = n_relevant``,
  ``(1/R) * sum_{i<=R} precision@i * rel(i)``. When only ``K < R`` results were searched, ``R`` is
  truncated to ``K`` (the same rule as pytorch-metric-learning's ``AccuracyCalculator`` with k < R).
* ``recall@k`` - 1 if at least one relevant item is in the top k (the metric-learning benchmarks'
  Recall@K, also called hit rate), else 0.
* ``precision@k`` - relevant items in the top k divided by k.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

__all__ = [
    "map_at_k",
    "map_at_k_norm",
    "map_at_r",
    "per_class",
    "precision_at_k",
    "recall_at_k",
    "retrieval_scores",
    "summarize",
]


def _check(relevant: np.ndarray, k: int | None = None) -> np.ndarray:
    rel = np.asarray(relevant)
    if rel.ndim != 2:
        raise ValueError(f"relevant must be a 2-D [queries, results] matrix, got shape {rel.shape}")
    if k is not None and k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    return rel.astype(bool, copy=False)


def _top(rel: np.ndarray, k: int) -> np.ndarray:
    """The first k columns, padded with non-relevant columns when fewer than k were searched."""
    if rel.shape[1] >= k:
        return rel[:, :k]
    pad = np.zeros((rel.shape[0], k - rel.shape[1]), dtype=bool)
    return np.concatenate([rel, pad], axis=1)


def _precision_sum(rel_k: np.ndarray) -> np.ndarray:
    """Sum over relevant ranks i of precision@i, per query."""
    ranks = np.arange(1, rel_k.shape[1] + 1, dtype=np.float64)
    precision_at_i = np.cumsum(rel_k, axis=1, dtype=np.float64) / ranks
    return (precision_at_i * rel_k).sum(axis=1)


def map_at_k(relevant: np.ndarray, k: int) -> np.ndarray:
    """Average precision at k per query, torchmetrics ``RetrievalMAP(top_k=k)`` definition."""
    rel_k = _top(_check(relevant, k), k)
    hits = rel_k.sum(axis=1)
    out = np.zeros(rel_k.shape[0], dtype=np.float64)
    np.divide(_precision_sum(rel_k), hits, out=out, where=hits > 0)
    return out


def map_at_k_norm(relevant: np.ndarray, n_relevant: np.ndarray, k: int) -> np.ndarray:
    """Average precision at k divided by ``min(k, n_relevant)`` per query (0 when n_relevant is 0)."""
    rel_k = _top(_check(relevant, k), k)
    denom = np.minimum(k, np.asarray(n_relevant)).astype(np.float64)
    out = np.zeros(rel_k.shape[0], dtype=np.float64)
    np.divide(_precision_sum(rel_k), denom, out=out, where=denom > 0)
    return out


def map_at_r(relevant: np.ndarray, n_relevant: np.ndarray) -> np.ndarray:
    """MAP@R per query; ``R`` is truncated to the number of searched results (see module doc)."""
    rel = _check(relevant)
    r = np.minimum(np.asarray(n_relevant), rel.shape[1])
    ranks = np.arange(1, rel.shape[1] + 1)
    within_r = ranks[None, :] <= r[:, None]
    rel_r = rel & within_r
    precision_at_i = np.cumsum(rel_r, axis=1, dtype=np.float64) / ranks
    total = (precision_at_i * rel_r).sum(axis=1)
    out = np.zeros(rel.shape[0], dtype=np.float64)
    np.divide(total, r.astype(np.float64), out=out, where=r > 0)
    return out


def recall_at_k(relevant: np.ndarray, k: int) -> np.ndarray:
    """1.0 where a relevant item is in the top k, else 0.0."""
    return _top(_check(relevant, k), k).any(axis=1).astype(np.float64)


def precision_at_k(relevant: np.ndarray, k: int) -> np.ndarray:
    """Fraction of the top k that is relevant (missing results count as non-relevant)."""
    return _top(_check(relevant, k), k).sum(axis=1) / float(k)


def retrieval_scores(
    relevant: np.ndarray, n_relevant: np.ndarray, ks: Sequence[int] = (1, 5, 10)
) -> dict[str, np.ndarray]:
    """All metrics per query, keyed like the report: ``mAP@k``, ``mAP@k_norm``, ``recall@k``,
    ``precision@k`` for each k, and ``MAP@R`` (over all columns of ``relevant``)."""
    rel = _check(relevant)
    n_rel = np.asarray(n_relevant)
    if n_rel.shape != (rel.shape[0],):
        raise ValueError(f"n_relevant must have shape ({rel.shape[0]},), got {n_rel.shape}")
    out: dict[str, np.ndarray] = {}
    for k in ks:
        out[f"mAP@{k}"] = map_at_k(rel, k)
    for k in ks:
        out[f"mAP@{k}_norm"] = map_at_k_norm(rel, n_rel, k)
    out["MAP@R"] = map_at_r(rel, n_rel)
    for k in ks:
        out[f"recall@{k}"] = recall_at_k(rel, k)
    for k in ks:
        out[f"precision@{k}"] = precision_at_k(rel, k)
    return out


def summarize(scores: Mapping[str, np.ndarray]) -> dict[str, float]:
    """Mean of each per-query metric.

    Raises:
        ValueError: no queries - an empty evaluation is an error, not a score of 0.0.
    """
    out: dict[str, float] = {}
    for name, values in scores.items():
        values = np.asarray(values)
        if values.size == 0:
            raise ValueError(f"cannot average {name!r} over zero queries")
        out[name] = float(values.mean())
    return out


def per_class(scores: Mapping[str, np.ndarray], classes: Sequence[str] | np.ndarray) -> dict[str, dict]:
    """Mean of each metric per query class, plus ``queries`` (the count), classes sorted by name."""
    classes = np.asarray(classes, dtype=object)
    out: dict[str, dict] = {}
    for cls in sorted(set(classes.tolist())):
        mask = classes == cls
        entry: dict[str, float | int] = {"queries": int(mask.sum())}
        entry.update({name: float(np.asarray(v)[mask].mean()) for name, v in scores.items()})
        out[str(cls)] = entry
    return out
