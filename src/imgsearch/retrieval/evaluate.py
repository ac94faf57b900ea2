"""Query-vs-gallery retrieval evaluation through FAISS, in batches (never a queries x gallery matrix).

Relevance notions (``docs/retrieval.md``):

* ``label`` - a result is relevant when it has the query's category (the studies' protocol). Default:
  queries = the ``test`` split, gallery = ``train`` + ``val``.
* ``product`` - a result is relevant when it shows the query's product (the shopper's task). Default:
  queries = the ``model``-view images of the ``test`` split, gallery = every image of any split that is not
  a query view (the cutouts of all products), so a model photo has to find its own product's cutout.

A query is never its own match: when it is also in the gallery, its own result is removed and it does not
count in ``n_relevant``. Queries for which the gallery holds no relevant item are left out of the averages
and counted (``queries_without_relevant``). An empty query or gallery set is an error.

Options compared in one report: embedding kind (``features`` / ``probs`` / ``pixels``), similarity
(``ip`` = cosine with normalisation / ``l2`` = Euclidean) and classify-then-search (only the gallery items
of the query's predicted category are searched, via a FAISS ``IDSelectorBatch``).
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgsearch.retrieval import metrics as M
from imgsearch.retrieval.embed import MODEL_KINDS, PIXELS, Embeddings, embed_catalogue
from imgsearch.retrieval.index import build_index, prepare_vectors, search_batched, search_params
from imgsearch.retrieval.visualize import GridHit, GridRow, save_result_grid
from imgsearch.utils.atomic import atomic_write_json, atomic_write_text

log = logging.getLogger(__name__)

RELEVANCE = ("label", "product")
OPTIONS = ("embedding", "metric", "normalize", "classify_first", "factory")
REPORT_JSON = "retrieval.json"
REPORT_MD = "retrieval.md"

DEFINITIONS = {
    "mAP@k": "mean over queries of the mean of precision@i over ranks i<=k holding a relevant item (0 if "
    "none) = torchmetrics RetrievalMAP(top_k=k)",
    "mAP@k_norm": "the same sum of precisions divided by min(k, relevant items in the gallery)",
    "MAP@R": "Musgrave et al. 2020: R = relevant items in the gallery, (1/R) * sum over i<=R of "
    "precision@i * rel(i); R capped at map_r_cap searched results",
    "recall@k": "fraction of queries with at least one relevant item in the top k (Recall@K / hit rate)",
    "precision@k": "relevant items in the top k divided by k",
}


@dataclass(frozen=True)
class Setting:
    """How the gallery is searched: one point of the comparison."""

    embedding: str = "features"
    metric: str = "ip"
    normalize: bool = True
    classify_first: bool = False
    factory: str = "Flat"

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


@dataclass
class EvalReport:
    summary: dict[str, Any]
    main_results: dict[str, RunResult] = field(default_factory=dict)
    catalogue: pd.DataFrame | None = None
    files: dict[str, Path] = field(default_factory=dict)


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
    query_self: np.ndarray | None = None,
    restrict_query: Sequence[str] | np.ndarray | None = None,
    restrict_gallery: Sequence[str] | np.ndarray | None = None,
    map_r_cap: int = 1000,
    batch_size: int = 4096,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, int]:
    """Search every query's top results and score them; the core of :func:`evaluate_retrieval`.

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

    index = build_index(gallery_vectors, factory=factory, metric=metric, normalize=normalize)
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

    def search_block(members: np.ndarray, params: Any = None) -> None:
        for start in range(0, len(members), batch_size):
            block = members[start : start + batch_size]
            _, found = search_batched(index, queries[block], k_search, batch_size=batch_size, params=params)
            score(block, found)

    if restrict_query is None:
        search_block(np.arange(len(kept)))
    else:
        rq = np.asarray(restrict_query, dtype=object)[kept]
        rg = np.asarray(restrict_gallery, dtype=object)
        for value in pd.unique(rq):
            members = np.flatnonzero(rq == value)
            allowed = np.flatnonzero(rg == value)
            if len(allowed) == 0:
                # predicted a category the gallery lacks: no results
                score(members, np.full((len(members), k_search), -1, np.int64))
                continue
            search_block(members, search_params(index, ids=allowed))
    return scores, kept, top_ids, top_relevant, truncated


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


def _grid_rows(
    catalogue: pd.DataFrame, result: RunResult, relevance: str, n: int, seed: int = 0
) -> list[GridRow]:
    """Up to ``n`` sample queries, one per category first, drawn with ``seed``."""
    if len(result.query_rows) == 0:
        return []
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(result.query_rows))
    labels = catalogue["label"].to_numpy()[result.query_rows[order]]
    _, first = np.unique(labels, return_index=True)
    picks = list(order[np.sort(first)])[:n]
    picks += [i for i in order if i not in set(picks)][: n - len(picks)]
    rows = []
    for i in picks:
        q = catalogue.iloc[result.query_rows[i]]
        hits = []
        for rank, g in enumerate(result.top_rows[i]):
            if g < 0:
                continue
            item = catalogue.iloc[g]
            caption = item["label"] if relevance == "label" else str(item["product_id"])
            hits.append(GridHit(str(item["image_path"]), str(caption)[:18], bool(result.relevant[i, rank])))
        caption = q["label"] if relevance == "label" else f"{q['product_id']} ({q['label']})"
        rows.append(GridRow(str(q["image_path"]), str(caption)[:24], hits))
    return rows


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
    pixel_size: int = 32,
    batch_size: int = 64,
    num_workers: int | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    search_batch_size: int = 4096,
    runtime: Any = "torch",
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
            inner_product, see :data:`SIMILARITIES`), ``normalize``, ``classify_first``, ``factory``.
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
    )
    class_names = list(getattr(module, "class_names", []) or [])
    labels = table["label"].astype(str).to_numpy(dtype=object)
    keys = {"label": labels, "product": table["product_id"].astype(str).to_numpy(dtype=object)}

    cache: dict[tuple[Setting, str], RunResult] = {}

    def run(setting: Setting, rel: str) -> RunResult:
        if (setting, rel) in cache:
            return cache[(setting, rel)]
        proto = protocols[rel]
        q_rows = proto.query_rows[where[proto.query_rows] >= 0]
        g_rows = proto.gallery_rows[where[proto.gallery_rows] >= 0]
        if len(q_rows) == 0 or len(g_rows) == 0:
            raise ValueError(
                f"{rel}: no {'queries' if len(q_rows) == 0 else 'gallery items'} left after skipping "
                "unreadable images"
            )
        g_pos_of_row = np.full(len(table), -1, np.int64)
        g_pos_of_row[g_rows] = np.arange(len(g_rows))
        vec = vectors[setting.embedding]
        restrict_q = restrict_g = None
        if setting.classify_first:
            restrict_q = _predicted_labels(vectors["probs"][where[q_rows]], class_names)
            restrict_g = labels[g_rows]
        scores, kept, top, rel_top, truncated = search_relevance(
            vec[where[q_rows]],
            vec[where[g_rows]],
            keys[rel][q_rows],
            keys[rel][g_rows],
            ks=ks,
            metric=setting.metric,
            normalize=setting.normalize,
            factory=setting.factory,
            query_self=g_pos_of_row[q_rows],
            restrict_query=restrict_q,
            restrict_gallery=restrict_g,
            map_r_cap=map_r_cap,
            batch_size=search_batch_size,
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
        cache[(setting, rel)] = result
        return result

    summary: dict[str, Any] = {}
    main_results = {rel: run(main, rel) for rel in relevance}
    first = main_results[relevance[0]]
    summary.update(M.summarize(first.scores))
    summary["main"] = {"relevance": relevance[0], **dataclasses.asdict(main), "ks": list(ks)}
    summary["relevance"] = {}
    for rel, res in main_results.items():
        summary["relevance"][rel] = {
            **res.summary(),
            "per_class": M.per_class(res.scores, labels[res.query_rows]),
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
    return EvalReport(summary=summary, main_results=main_results, catalogue=table)


# --------------------------------------------------------------------------------------------- output


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _metric_columns(ks: Sequence[int]) -> list[str]:
    k_max = max(ks)
    return [*(f"mAP@{k}" for k in ks), f"mAP@{k_max}_norm", "MAP@R", *(f"recall@{k}" for k in ks)]


def markdown_report(summary: Mapping[str, Any]) -> str:
    """The report as Markdown tables: main setting per relevance, each compared option, per class."""
    ks = summary["main"]["ks"]
    cols = _metric_columns(ks)
    main = Setting(**{k: summary["main"][k] for k in OPTIONS})
    lines = ["# Retrieval evaluation", "", f"Main setting: **{main.describe()}**.", ""]

    def table(header: str, rows: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
        lines.extend([f"| {header} | relevance | {' | '.join(cols)} | queries | gallery |",
                      "| --- | --- |" + " ---: |" * (len(cols) + 2)])  # fmt: skip
        for name, rel, m in rows:
            values = " | ".join(_fmt(m.get(c, "")) for c in cols)
            lines.append(f"| {name} | {rel} | {values} | {m['queries']} | {m['gallery']} |")
        lines.append("")

    table("setting", ((main.describe(), rel, m) for rel, m in summary["relevance"].items()))
    for opt, values in summary.get("compare", {}).items():
        lines.extend([f"## {opt}", ""])
        table(opt, ((val, rel, m) for val, by_rel in values.items() for rel, m in by_rel.items()))
    for rel, res in summary["relevance"].items():
        lines.extend([f"## Per class ({rel} relevance, main setting)", ""])
        per_cols = [f"mAP@{ks[0]}", f"mAP@{max(ks)}", "MAP@R", f"recall@{max(ks)}"]
        lines.append(f"| class | queries | {' | '.join(per_cols)} |")
        lines.append("| --- |" + " ---: |" * (len(per_cols) + 1))
        for cls, m in res["per_class"].items():
            lines.append(f"| {cls} | {m['queries']} | {' | '.join(_fmt(m[c]) for c in per_cols)} |")
        lines.append("")
        if res["queries_without_relevant"]:
            lines.append(f"{res['queries_without_relevant']} {rel} queries had no relevant gallery item "
                         "and are not counted.\n")  # fmt: skip
    lines.extend(["## Definitions", ""])
    lines.extend(f"- **{name}**: {text}" for name, text in summary["definitions"].items())
    lines.extend(["", "## Protocol", ""])
    lines.extend(f"- {name}: {text}" for name, text in summary["protocol"].items())
    skipped = summary.get("skipped_images", {}).get("count", 0)
    if skipped:
        lines.append(f"- {skipped} images could not be read and were left out")
    return "\n".join(lines) + "\n"


def write_report(report: EvalReport, out_dir: str | os.PathLike[str], *, samples: int = 6) -> dict[str, Path]:
    """Write ``retrieval.json``, ``retrieval.md`` and one ``retrieval_grid_<relevance>.png`` per relevance."""
    out = Path(out_dir)
    files = {
        "json": atomic_write_json(out / REPORT_JSON, report.summary),
        "markdown": atomic_write_text(out / REPORT_MD, markdown_report(report.summary)),
    }
    if samples > 0 and report.catalogue is not None:
        main = Setting(**{k: report.summary["main"][k] for k in OPTIONS})
        for rel, result in report.main_results.items():
            grid = _grid_rows(report.catalogue, result, rel, samples)
            if grid:
                title = f"{rel} relevance, {main.describe()} (green = relevant)"
                files[f"grid_{rel}"] = save_result_grid(out / f"retrieval_grid_{rel}.png", grid, title=title)
    report.files = files
    return files


def flat_metrics(summary: Mapping[str, Any], prefix: str = "retrieval") -> dict[str, float]:
    """Scalar figures for experiment loggers: ``retrieval/<relevance>/<metric>`` and compared options."""
    out: dict[str, float] = {}
    for rel, res in summary["relevance"].items():
        out.update({f"{prefix}/{rel}/{k}": float(v) for k, v in res.items() if isinstance(v, float)})
    for opt, values in summary.get("compare", {}).items():
        for val, by_rel in values.items():
            for rel, m in by_rel.items():
                out.update(
                    {
                        f"{prefix}/{opt}={val}/{rel}/{k}": float(v)
                        for k, v in m.items()
                        if isinstance(v, float)
                    }
                )
    return out


def log_report(report: EvalReport, loggers: Sequence[Any] = ()) -> None:
    """Send the figures (and the grids, where the logger takes images) to Lightning loggers, and to the
    active W&B run if there is one and no W&B logger was given."""
    metrics = flat_metrics(report.summary)
    grids = {k: v for k, v in report.files.items() if k.startswith("grid_")}
    wandb_done = False
    for lg in loggers:
        lg.log_metrics(metrics)
        if hasattr(lg, "log_image") and grids:
            for key, path in grids.items():
                lg.log_image(key=f"retrieval/{key}", images=[str(path)])
        wandb_done |= type(lg).__name__ == "WandbLogger"
        if hasattr(lg, "save"):
            lg.save()
    if not wandb_done and "wandb" in sys.modules:
        import wandb

        if wandb.run is not None:
            wandb.log({**metrics, **{f"retrieval/{k}": wandb.Image(str(p)) for k, p in grids.items()}})
