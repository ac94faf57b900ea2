"""Scoring one query-vs-gallery search: which rows are queries and gallery, the FAISS top-k search in blocks
(never a queries x gallery matrix), and each query's metrics.

Relevance notions (``docs/retrieval.md``):

* ``label`` - a result is relevant when it has the query's category (the studies' protocol). Default:
  queries = the ``test`` split, gallery = ``train`` + ``val``.
* ``product`` - a result is relevant when it shows the query's product (the shopper's task). Default:
  queries = the ``model``-view images of the ``test`` split, gallery = every image of any split that is not
  a query view (the cutouts of all products), so a model photo has to find its own product's cutout.

A query is never its own match: when it is also in the gallery, its own result is removed and it does not
count in ``n_relevant``. Queries for which the gallery holds no relevant item are left out of the averages
and counted (``queries_without_relevant``). An empty query or gallery set is an error.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from imgsearch.retrieval import metrics as M
from imgsearch.retrieval.index import (
    build_index,
    group_members,
    prepare_vectors,
    search_batched,
    search_within_groups,
    set_search_params,
)
from imgsearch.utils.progress import progress

log = logging.getLogger(__name__)

RELEVANCE = ("label", "product")

DEFINITIONS = {
    "mAP@k": "mean over queries of the mean of precision@i over ranks i<=k holding a relevant item (0 if "
    "none) = torchmetrics RetrievalMAP(top_k=k)",
    "mAP@k_norm": "the same sum of precisions divided by min(k, relevant items in the gallery)",
    "MAP@R": "Musgrave et al. 2020: R = relevant items in the gallery, (1/R) * sum over i<=R of "
    "precision@i * rel(i); R capped at map_r_cap searched results",
    "recall@k": "fraction of queries with at least one relevant item in the top k (Recall@K / hit rate)",
    "precision@k": "relevant items in the top k divided by k",
}


def metric_columns(ks: Sequence[int]) -> list[str]:
    """The report's metric columns for cut-offs ``ks`` (the one list the Markdown and console tables use)."""
    k_max = max(ks)
    return [*(f"mAP@{k}" for k in ks), f"mAP@{k_max}_norm", "MAP@R", *(f"recall@{k}" for k in ks)]


@dataclass(frozen=True)
class Protocol:
    """Which catalogue rows are queries and gallery for one relevance notion."""

    relevance: str
    query_rows: np.ndarray  # positions in the catalogue
    gallery_rows: np.ndarray


@dataclass
class RunResult:
    """One setting under one protocol."""

    scores: dict[str, np.ndarray]  # per evaluated query
    query_rows: np.ndarray  # catalogue positions of the evaluated queries
    top_rows: np.ndarray  # [Q, max k] catalogue positions of the results, -1 = none
    relevant: np.ndarray  # [Q, max k] bool
    n_gallery: int
    n_queries_total: int
    without_relevant: int
    map_r_truncated: int

    def summary(self) -> dict[str, Any]:
        return {
            **M.summarize(self.scores),
            "queries": len(self.query_rows),
            "gallery": self.n_gallery,
            "queries_without_relevant": self.without_relevant,
            "map_r_truncated_queries": self.map_r_truncated,
        }


def _rows_where(mask: pd.Series | np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.asarray(mask, dtype=bool))


def select_protocol(
    catalogue: pd.DataFrame,
    relevance: str,
    *,
    query_splits: Sequence[str] = ("test",),
    gallery_splits: Sequence[str] = ("train", "val"),
    query_views: Sequence[str] = ("model",),
    product_gallery_splits: Sequence[str] | None = None,
) -> Protocol:
    """Query and gallery rows of ``catalogue`` for ``relevance`` (see the module doc).

    Raises:
        ValueError: unknown relevance, or an empty query or gallery set (with what was looked for).
    """
    split = catalogue["split"].astype(str)
    view = catalogue["view"].astype(str)
    if relevance == "label":
        queries = split.isin(list(query_splits))
        gallery = split.isin(list(gallery_splits))
        what_q, what_g = f"split in {list(query_splits)}", f"split in {list(gallery_splits)}"
    elif relevance == "product":
        queries = split.isin(list(query_splits)) & view.isin(list(query_views))
        gallery = ~view.isin(list(query_views))
        what_q = f"split in {list(query_splits)} and view in {list(query_views)}"
        what_g = f"view not in {list(query_views)}"
        if product_gallery_splits is not None:
            gallery &= split.isin(list(product_gallery_splits))
            what_g += f" and split in {list(product_gallery_splits)}"
    else:
        raise ValueError(f"unknown relevance {relevance!r}; use one of {RELEVANCE}")
    q, g = _rows_where(queries), _rows_where(gallery)
    if len(q) == 0:
        raise ValueError(
            f"{relevance}-level evaluation has no queries: no catalogue row with {what_q} "
            f"(splits present: {sorted(set(split))}, views: {sorted(set(view))})"
        )
    if len(g) == 0:
        raise ValueError(f"{relevance}-level evaluation has an empty gallery: no catalogue row with {what_g}")
    return Protocol(relevance, q, g)


def _codes(*arrays: np.ndarray) -> list[np.ndarray]:
    """Integer codes shared across arrays of strings (cheap equality in the relevance test)."""
    codes, _ = pd.factorize(np.concatenate([np.asarray(a, dtype=object) for a in arrays]))
    out, start = [], 0
    for a in arrays:
        out.append(codes[start : start + len(a)])
        start += len(a)
    return out


def _drop_self(ids: np.ndarray, self_pos: np.ndarray) -> np.ndarray:
    """Remove each query's own gallery position from its results (or the last column if absent)."""
    is_self = (ids == self_pos[:, None]) & (self_pos[:, None] >= 0)
    order = np.argsort(is_self, axis=1, kind="stable")  # non-self first, rank order kept
    return np.take_along_axis(ids, order, axis=1)[:, : ids.shape[1] - 1]


def search_relevance(
    query_vectors: np.ndarray,
    gallery_vectors: np.ndarray,
    query_keys: Sequence[str] | np.ndarray,
    gallery_keys: Sequence[str] | np.ndarray,
    *,
    ks: Sequence[int] = (1, 5, 10),
    metric: str = "ip",
    normalize: bool = True,
    factory: str = "Flat",
    search_params: str | None = None,
    query_self: np.ndarray | None = None,
    restrict_query: Sequence[str] | np.ndarray | None = None,
    restrict_gallery: Sequence[str] | np.ndarray | None = None,
    map_r_cap: int = 1000,
    batch_size: int = 4096,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, int]:
    """Search every query's top results and score them (the core of
    :func:`imgsearch.retrieval.evaluate.evaluate_retrieval`).

    Args:
        query_keys / gallery_keys: relevance keys (label or product id): relevant = equal key.
        query_self: gallery position of each query when it is also in the gallery, else -1.
        restrict_query / restrict_gallery: classify-then-search: query q only searches gallery items whose
            ``restrict_gallery`` value equals ``restrict_query[q]`` (its predicted category).
        map_r_cap: at most this many results are searched for MAP@R.

    Returns:
        ``(scores, kept, top_ids, top_relevant, truncated)``: per-query metrics of the kept queries,
        ``kept`` (query positions with at least one relevant gallery item), their top ``max(ks)`` gallery
        positions and relevance, and how many had ``R`` truncated by ``map_r_cap``.
    """
    n_q, n_g = len(query_vectors), len(gallery_vectors)
    if n_q == 0:
        raise ValueError("no queries to evaluate")
    if n_g == 0:
        raise ValueError("the gallery is empty")
    q_key, g_key = _codes(np.asarray(query_keys, dtype=object), np.asarray(gallery_keys, dtype=object))
    self_pos = np.full(n_q, -1, np.int64) if query_self is None else np.asarray(query_self, np.int64)
    counts = np.bincount(g_key, minlength=int(max(q_key.max(initial=0), g_key.max(initial=0))) + 1)
    n_rel = counts[q_key] - ((self_pos >= 0) & (g_key[np.maximum(self_pos, 0)] == q_key)).astype(np.int64)
    kept = np.flatnonzero(n_rel > 0)
    if len(kept) == 0:
        raise ValueError("no query has a relevant item in the gallery; nothing to evaluate")
    k_max = max(ks)
    k_eval = max(k_max, int(min(n_rel[kept].max(), map_r_cap)))
    truncated = int((n_rel[kept] > k_eval).sum())
    has_self = bool((self_pos[kept] >= 0).any())
    k_search = min(k_eval + int(has_self), n_g)

    index = set_search_params(
        build_index(gallery_vectors, factory=factory, metric=metric, normalize=normalize), search_params
    )
    queries = prepare_vectors(query_vectors[kept], normalize=normalize)
    kept_key, kept_self, kept_rel = q_key[kept], self_pos[kept], n_rel[kept]
    scores: dict[str, np.ndarray] = {}
    top_ids = np.full((len(kept), k_max), -1, np.int64)
    top_relevant = np.zeros((len(kept), k_max), bool)

    def score(members: np.ndarray, found: np.ndarray) -> None:
        # scored one block of queries at a time: with MAP@R a query keeps up to map_r_cap results, and
        # holding them for every query at once grew with the number of queries (make bench)
        if has_self:
            found = _drop_self(found, kept_self[members])
        relevant = (found >= 0) & (g_key[np.maximum(found, 0)] == kept_key[members][:, None])
        for name, values in M.retrieval_scores(relevant, kept_rel[members], ks).items():
            scores.setdefault(name, np.zeros(len(kept), dtype=values.dtype))[members] = values
        width = min(k_max, found.shape[1])
        top_ids[members, :width] = found[:, :width]
        top_relevant[members, :width] = relevant[:, :width]

    def search_block(members: np.ndarray) -> None:
        starts = range(0, len(members), batch_size)
        for start in progress(
            starts, total=len(starts), desc="searching query blocks", logger=log, unit="block"
        ):
            block = members[start : start + batch_size]
            if restrict_query is None:
                _, found = search_batched(index, queries[block], k_search, batch_size=batch_size)
            else:
                _, found = search_within_groups(
                    index, queries[block], k_search, rq[block], allowed, batch_size=batch_size
                )
            score(block, found)

    if restrict_query is not None:
        rq = np.asarray(restrict_query, dtype=object)[kept]
        allowed = group_members(restrict_gallery)
    search_block(np.arange(len(kept)))
    return scores, kept, top_ids, top_relevant, truncated
