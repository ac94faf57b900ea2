"""Retrieval evaluation of a model on a catalogue: the main setting and each compared option, in one report.

Options compared (each varied alone from the main setting): embedding kind (``features`` / ``probs`` /
``pixels``), similarity (``ip`` = cosine with normalisation / ``l2`` = Euclidean), classify-then-search (only
the gallery items of the query's predicted category are searched, via a FAISS ``IDSelectorBatch``) and the
FAISS index. The catalogue is embedded once for every kind any setting needs; each (setting, relevance)
pair is scored once by :func:`imgsearch.retrieval.scoring.search_relevance`. Writing and logging the report
is :mod:`imgsearch.retrieval.report`'s job.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgsearch.data.transforms import PIXEL_SIZE
from imgsearch.retrieval import metrics as M
from imgsearch.retrieval.embed import MODEL_KINDS, PIXELS, Embeddings, embed_catalogue
from imgsearch.retrieval.expansion import alpha_query_expansion, database_augmentation
from imgsearch.retrieval.scoring import (
    DEFINITIONS,
    RELEVANCE,
    Protocol,
    RunResult,
    search_relevance,
    select_protocol,
)

log = logging.getLogger(__name__)

OPTIONS = (
    "embedding",
    "metric",
    "normalize",
    "classify_first",
    "factory",
    "search_params",
    "qe",
    "dba",
    "qe_alpha",
)


@dataclass(frozen=True)
class Setting:
    """How the gallery is searched: one point of the comparison."""

    embedding: str = "features"
    metric: str = "ip"
    normalize: bool = True
    classify_first: bool = False
    factory: str = "Flat"
    search_params: str | None = None
    # search-time query expansion (imgsearch.retrieval.expansion): alpha-QE of each query with its ``qe``
    # nearest gallery items, DBA of each gallery item with its ``dba`` nearest; 0 = off
    qe: int = 0
    dba: int = 0
    qe_alpha: float = 3.0

    def __post_init__(self) -> None:
        for name in ("qe", "dba"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0 (0 = off), got {value!r}")
        if not isinstance(self.qe_alpha, int | float) or isinstance(self.qe_alpha, bool) or self.qe_alpha < 0:
            raise ValueError(f"qe_alpha must be a number >= 0, got {self.qe_alpha!r}")
        if (self.qe or self.dba) and not self.normalize:
            raise ValueError(
                "query expansion (qe / dba) averages unit vectors, so it needs normalize=true (cosine); "
                f"this setting has metric={self.metric}, normalize=false"
            )

    def describe(self) -> str:
        parts = [
            self.embedding,
            {
                "ip": "cosine" if self.normalize else "inner product",
                "l2": "L2 (normalised)" if self.normalize else "L2",
            }[self.metric],
        ]
        if self.classify_first:
            parts.append("classify-first")
        if self.factory != "Flat":
            parts.append(self.factory)
        if self.search_params:
            parts.append(self.search_params)
        if self.dba:
            parts.append(f"DBA k={self.dba}")
        if self.qe:
            parts.append(f"alpha-QE k={self.qe}")
        if self.qe or self.dba:
            parts.append(f"alpha={self.qe_alpha:g}")
        return ", ".join(parts)


#: Named similarities for ``compare.metric``: ``(faiss metric, normalise)``. Plain ``ip`` / ``l2`` keep the
#: main setting's normalisation, under which (normalised) L2 ranks exactly like cosine; ``euclidean`` is
#: the raw Euclidean distance the studies compare with cosine.
SIMILARITIES: dict[str, tuple[str, bool]] = {
    "cosine": ("ip", True),
    "euclidean": ("l2", False),
    "inner_product": ("ip", False),
}


def vary(main: Setting, option: str, value: Any) -> Setting:
    """``main`` with one option changed; ``metric`` also takes the names of :data:`SIMILARITIES`."""
    if option not in OPTIONS:
        raise ValueError(f"unknown compare option {option!r}; use {OPTIONS}")
    if option == "metric" and value in SIMILARITIES:
        metric, normalize = SIMILARITIES[value]
        return dataclasses.replace(main, metric=metric, normalize=normalize)
    if option == "metric" and value not in ("ip", "l2"):
        raise ValueError(f"unknown metric {value!r}; use ip, l2 or one of {sorted(SIMILARITIES)}")
    return dataclasses.replace(main, **{option: value})


@dataclass
class EvalReport:
    summary: dict[str, Any]
    main_results: dict[str, RunResult] = field(default_factory=dict)
    catalogue: pd.DataFrame | None = None
    files: dict[str, Path] = field(default_factory=dict)


def _predicted_labels(probs: np.ndarray, class_names: Sequence[str]) -> np.ndarray:
    return np.asarray(list(class_names), dtype=object)[np.asarray(probs).argmax(axis=1)]


def _embed_all(
    catalogue: pd.DataFrame,
    module: Any,
    rows: np.ndarray,
    kinds: set[str],
    *,
    batch_size: int,
    num_workers: int | None,
    trainer_kwargs: Mapping[str, Any] | None,
    pixel_size: int,
    runtime: Any = "torch",
    flip_average: bool = False,
) -> tuple[dict[str, np.ndarray], np.ndarray, list[dict[str, str]]]:
    """Vectors per kind for catalogue ``rows``; returns ``(vectors, position of each row or -1, skipped)``."""
    subset = catalogue.iloc[rows]
    where = np.full(len(catalogue), -1, np.int64)
    vectors: dict[str, np.ndarray] = {}
    skipped: list[dict[str, str]] = []
    runs: list[tuple[str, ...]] = []
    model_kinds = tuple(k for k in MODEL_KINDS if k in kinds)
    if model_kinds:
        runs.append(model_kinds)
    if PIXELS in kinds:
        runs.append((PIXELS,))
    kept_sets = []
    for run in runs:
        emb: Embeddings = embed_catalogue(
            None if run == (PIXELS,) else module,
            subset,
            kind=run,
            batch_size=batch_size,
            num_workers=num_workers,
            trainer_kwargs=trainer_kwargs,
            pixel_size=pixel_size,
            runtime=runtime,
            flip_average=flip_average,
        )
        kept_sets.append((emb, run))
        skipped.extend(s for s in emb.skipped if s not in skipped)
    # keep only rows every run could read, so all kinds compare on the same queries and gallery
    common = set(range(len(rows)))
    for emb, _ in kept_sets:
        common &= set(emb.rows.tolist())
    common_sorted = np.array(sorted(common), dtype=np.int64)
    for emb, run in kept_sets:
        pos = np.searchsorted(emb.rows, common_sorted)
        for kind in run:
            vectors[kind] = emb[kind][pos]
    where[rows[common_sorted]] = np.arange(len(common_sorted))
    return vectors, where, skipped


def _why_not(table: pd.DataFrame, relevance: str) -> str | None:
    """Why ``relevance`` cannot be measured on ``table`` (``None`` when it can).

    Product relevance needs products photographed more than once; a shop with one photo per product (most
    CSV catalogues, the Myntra photos) has nothing to find, which is a note in the report, not an error.
    """
    if relevance == "product" and not table["product_id"].astype(str).duplicated().any():
        return "every product has one photo, so no photo has another view of its product to find"
    return None


class _Runs:
    """Scores (setting, relevance) pairs on the embedded catalogue, each pair once."""

    def __init__(
        self,
        table: pd.DataFrame,
        protocols: Mapping[str, Protocol],
        vectors: Mapping[str, np.ndarray],
        where: np.ndarray,
        class_names: Sequence[str],
        *,
        ks: Sequence[int],
        map_r_cap: int,
        search_batch_size: int,
    ) -> None:
        self.table, self.protocols, self.vectors, self.where = table, protocols, vectors, where
        self.class_names = list(class_names)
        self.ks, self.map_r_cap, self.search_batch_size = ks, map_r_cap, search_batch_size
        self.labels = table["label"].astype(str).to_numpy(dtype=object)
        self.keys = {"label": self.labels, "product": table["product_id"].astype(str).to_numpy(dtype=object)}
        self._done: dict[tuple[Setting, str], RunResult] = {}

    def __call__(self, setting: Setting, rel: str) -> RunResult:
        if (setting, rel) not in self._done:
            self._done[(setting, rel)] = self._run(setting, rel)
        return self._done[(setting, rel)]

    def _run(self, setting: Setting, rel: str) -> RunResult:
        proto, where = self.protocols[rel], self.where
        q_rows = proto.query_rows[where[proto.query_rows] >= 0]
        g_rows = proto.gallery_rows[where[proto.gallery_rows] >= 0]
        if len(q_rows) == 0 or len(g_rows) == 0:
            raise ValueError(
                f"{rel}: no {'queries' if len(q_rows) == 0 else 'gallery items'} left after skipping "
                "unreadable images"
            )
        g_pos_of_row = np.full(len(self.table), -1, np.int64)
        g_pos_of_row[g_rows] = np.arange(len(g_rows))
        vec = self.vectors[setting.embedding]
        queries, gallery = vec[where[q_rows]], vec[where[g_rows]]
        if setting.dba:  # every gallery item moves towards its nearest gallery items
            gallery = database_augmentation(gallery, k=setting.dba, alpha=setting.qe_alpha)
        if setting.qe:  # a query that is also a gallery item never expands with itself
            queries = alpha_query_expansion(
                queries, gallery, k=setting.qe, alpha=setting.qe_alpha, self_positions=g_pos_of_row[q_rows]
            )
        restrict_q = restrict_g = None
        if setting.classify_first:
            restrict_q = _predicted_labels(self.vectors["probs"][where[q_rows]], self.class_names)
            restrict_g = self.labels[g_rows]
        scores, kept, top, rel_top, truncated = search_relevance(
            queries,
            gallery,
            self.keys[rel][q_rows],
            self.keys[rel][g_rows],
            ks=self.ks,
            metric=setting.metric,
            normalize=setting.normalize,
            factory=setting.factory,
            search_params=setting.search_params,
            query_self=g_pos_of_row[q_rows],
            restrict_query=restrict_q,
            restrict_gallery=restrict_g,
            map_r_cap=self.map_r_cap,
            batch_size=self.search_batch_size,
        )
        result = RunResult(
            scores=scores,
            query_rows=q_rows[kept],
            top_rows=np.where(top >= 0, g_rows[np.maximum(top, 0)], -1),
            relevant=rel_top,
            n_gallery=len(g_rows),
            n_queries_total=len(q_rows),
            without_relevant=len(q_rows) - len(kept),
            map_r_truncated=truncated,
        )
        if result.without_relevant:
            log.warning(
                "%s: %d of %d queries have no relevant gallery item and are left out",
                rel, result.without_relevant, len(q_rows),
            )  # fmt: skip
        return result


def evaluate_retrieval(
    catalogue: pd.DataFrame,
    module: Any | None,
    *,
    relevance: Sequence[str] = RELEVANCE,
    ks: Sequence[int] = (1, 5, 10),
    main: Setting | None = None,
    compare: Mapping[str, Sequence[Any]] | None = None,
    query_splits: Sequence[str] = ("test",),
    gallery_splits: Sequence[str] = ("train", "val"),
    query_views: Sequence[str] = ("model",),
    product_gallery_splits: Sequence[str] | None = None,
    map_r_cap: int = 1000,
    pixel_size: int = PIXEL_SIZE,
    batch_size: int = 64,
    num_workers: int | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    search_batch_size: int = 4096,
    runtime: Any = "torch",
    flip_average: bool = False,
) -> EvalReport:
    """Evaluate retrieval on ``catalogue`` with ``module``'s embeddings under every requested option.

    Args:
        catalogue: the catalogue table (with ``split`` filled in).
        module: the trained classifier (``None`` only when every setting uses ``pixels`` without
            classify-first).
        relevance: relevance notions to evaluate; the first one gives the report's top-level figures.
        ks: cut-offs for mAP@k, mAP@k_norm, recall@k, precision@k.
        main: the main setting (defaults: features, cosine, search all, exact ``Flat`` index).
        compare: option -> values to compare, each varied alone from ``main``: ``embedding``
            (features/probs/pixels), ``metric`` (ip/l2 with main's normalisation, or cosine/euclidean/
            inner_product, see :data:`SIMILARITIES`), ``normalize``, ``classify_first``, ``factory``,
            ``qe`` / ``dba`` / ``qe_alpha`` (query expansion, :mod:`imgsearch.retrieval.expansion`).
        query_splits, gallery_splits, query_views, product_gallery_splits: see :func:`select_protocol`.
        map_r_cap: most results searched for MAP@R (R above it is truncated, and counted).

    Raises:
        ValueError: empty query or gallery set, unknown option, or a setting that needs a model without one.
    """
    main = main or Setting()
    compare = {k: list(v) for k, v in (compare or {}).items() if v is not None and len(v)}
    unknown = sorted(set(compare) - set(OPTIONS))
    if unknown:
        raise ValueError(f"unknown compare option(s) {unknown}; use {OPTIONS}")
    if not relevance:
        raise ValueError("no relevance notion to evaluate")
    settings = [main] + [vary(main, opt, v) for opt, vals in compare.items() for v in vals]
    needs_model = any(s.embedding != PIXELS or s.classify_first for s in settings)
    if needs_model and module is None:
        raise ValueError(
            "these settings need a model checkpoint (only 'pixels' without classify_first do not)"
        )
    table = catalogue.reset_index(drop=True)
    skipped_relevance = {rel: why for rel in relevance if (why := _why_not(table, rel)) is not None}
    for rel, why in skipped_relevance.items():
        log.warning("%s relevance skipped: %s", rel, why)
    relevance = [rel for rel in relevance if rel not in skipped_relevance]
    if not relevance:
        raise ValueError(f"no relevance notion can be evaluated on this catalogue: {skipped_relevance}")
    protocols = {
        rel: select_protocol(
            table,
            rel,
            query_splits=query_splits,
            gallery_splits=gallery_splits,
            query_views=query_views,
            product_gallery_splits=product_gallery_splits,
        )
        for rel in relevance
    }
    rows = np.unique(
        np.concatenate([np.concatenate([p.query_rows, p.gallery_rows]) for p in protocols.values()])
    )
    kinds = {s.embedding for s in settings}
    if any(s.classify_first for s in settings):
        kinds.add("probs")
    vectors, where, skipped = _embed_all(
        table,
        module,
        rows,
        kinds,
        batch_size=batch_size,
        num_workers=num_workers,
        trainer_kwargs=trainer_kwargs,
        pixel_size=pixel_size,
        runtime=runtime,
        flip_average=flip_average,
    )
    run = _Runs(
        table,
        protocols,
        vectors,
        where,
        list(getattr(module, "class_names", []) or []),
        ks=ks,
        map_r_cap=map_r_cap,
        search_batch_size=search_batch_size,
    )
    summary: dict[str, Any] = {}
    main_results = {rel: run(main, rel) for rel in relevance}
    first = main_results[relevance[0]]
    summary.update(M.summarize(first.scores))
    summary["main"] = {"relevance": relevance[0], **dataclasses.asdict(main), "ks": list(ks)}
    summary["relevance"] = {}
    for rel, res in main_results.items():
        summary["relevance"][rel] = {
            **res.summary(),
            "per_class": M.per_class(res.scores, run.labels[res.query_rows]),
        }
    summary["compare"] = {
        opt: {str(v).lower() if isinstance(v, bool) else str(v): {
            rel: run(vary(main, opt, v), rel).summary() for rel in relevance
        } for v in vals}
        for opt, vals in compare.items()
    }  # fmt: skip
    summary["protocol"] = {
        "label": f"queries: split in {list(query_splits)}; gallery: split in {list(gallery_splits)}",
        "product": f"queries: view in {list(query_views)} of split {list(query_splits)}; gallery: all other "
        f"views"
        + (f" of split {list(product_gallery_splits)}" if product_gallery_splits else " of all splits"),
        "self_match": "a query never counts as its own result",
        "map_r_cap": map_r_cap,
    }
    summary["skipped_images"] = {"count": len(skipped), "items": skipped[:100]}
    summary["definitions"] = DEFINITIONS
    if skipped_relevance:
        summary["skipped_relevance"] = skipped_relevance
    return EvalReport(summary=summary, main_results=main_results, catalogue=table)
