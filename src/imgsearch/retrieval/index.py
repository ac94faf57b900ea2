"""FAISS index: build from an ``index_factory`` string, save/load as one atomic directory, guard its use.

An index directory holds three files, written together (``imgsearch.utils.atomic.atomic_dir``) so an
interrupted build leaves the previous directory intact:

* ``index.faiss`` - the FAISS index; vector ``i`` is row ``i`` of ``items.csv``;
* ``items.csv`` - the catalogue rows in index order (schema of ``docs/architecture.md``);
* ``manifest.json`` - what produced the vectors (checkpoint path + sha256, backbone, embedding kind and
  dimension, metric, normalisation, factory string, preprocessing, catalogue hash, sizes, time, versions),
  checked by :func:`check_compatible` before a model queries the index.

Index positions are the FAISS ids (``0 .. ntotal-1``), so no ``IndexIDMap`` is needed and an
``IDSelector`` over positions restricts a search to a subset (e.g. one category).
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

import imgsearch
from imgsearch.data.schema import catalogue_hash, read_catalogue, write_catalogue
from imgsearch.data.transforms import data_config_diff
from imgsearch.retrieval.locations import (
    _rebase_image_roots,
    _relocatable,
    file_sha256,
    image_roots,
    resolve_image_root,
)
from imgsearch.retrieval.ondisk import check_ondisk_file
from imgsearch.retrieval.ondisk import read_index as read_ondisk_aware
from imgsearch.utils.atomic import atomic_dir

log = logging.getLogger(__name__)

INDEX_FILE = "index.faiss"
ITEMS_FILE = "items.csv"
MANIFEST_FILE = "manifest.json"
MANIFEST_VERSION = 1
#: Manifest key of the sha256 of the other two files, written by :func:`save_index_dir` and checked by
#: :func:`load_index_dir`: flipped bytes in ``index.faiss`` load fine and silently change the hits.
FILES_KEY = "files"


METRICS: dict[str, int] = {"ip": faiss.METRIC_INNER_PRODUCT, "l2": faiss.METRIC_L2}


class IndexCompatibilityError(ValueError):
    """The index was built with a different model, embedding or preprocessing than the one querying it."""


def _as_float32(vectors: np.ndarray) -> np.ndarray:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"vectors must be a 2-D [n, dim] array, got shape {x.shape}")
    return x


def prepare_vectors(vectors: np.ndarray, *, normalize: bool) -> np.ndarray:
    """float32, C-contiguous copy, L2-normalised per row when ``normalize`` (cosine = inner product)."""
    x = np.array(_as_float32(vectors), copy=True)
    if not np.isfinite(x).all():
        raise ValueError("vectors contain NaN or inf; the model or the input images are broken")
    if normalize and len(x):
        faiss.normalize_L2(x)
    return x


def metric_type(metric: str) -> int:
    try:
        return METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; use one of {sorted(METRICS)}") from None


def build_index(
    vectors: np.ndarray,
    *,
    factory: str = "Flat",
    metric: str = "ip",
    normalize: bool = True,
    train_sample: int = 100_000,
    seed: int = 0,
) -> faiss.Index:
    """Build a FAISS index from ``faiss.index_factory(dim, factory, metric)`` and add ``vectors``.

    Args:
        vectors: ``[n, dim]`` embeddings, row ``i`` becomes id ``i``.
        factory: any ``index_factory`` string: ``Flat`` (exact), ``HNSW32``, ``IVF4096,PQ64``, ...
        metric: ``ip`` (inner product; cosine similarity when ``normalize``) or ``l2`` (Euclidean).
        normalize: L2-normalise rows first (queries must then be normalised too; the manifest says so).
        train_sample: indexes that need training (IVF, PQ, PCA) are trained on at most this many rows,
            drawn with ``seed`` so a rebuild gives the same index.

    Raises:
        ValueError: no vectors, a bad factory string or metric, or too few vectors to train the index.
    """
    x = prepare_vectors(vectors, normalize=normalize)
    n, dim = x.shape
    if n == 0:
        raise ValueError("cannot build an index from zero vectors (empty gallery)")
    try:
        index = faiss.index_factory(dim, factory, metric_type(metric))
    except RuntimeError as exc:
        raise ValueError(f"FAISS cannot build index_factory({dim}, {factory!r}): {exc}") from exc
    if not index.is_trained:
        rng = np.random.default_rng(seed)
        sample = x if n <= train_sample else x[np.sort(rng.choice(n, size=train_sample, replace=False))]
        log.info("training %s index on %d of %d vectors", factory, len(sample), n)
        try:
            index.train(sample)
        except RuntimeError as exc:
            raise ValueError(
                f"training the {factory!r} index on {len(sample)} vectors failed (an IVF index with nlist "
                f"lists needs well over nlist vectors; use a smaller factory such as 'Flat'): {exc}"
            ) from exc
    index.add(x)
    return index


def id_selector(ids: Sequence[int] | np.ndarray) -> tuple[faiss.IDSelector, np.ndarray | None]:
    """A FAISS selector admitting ``ids``, and the array it points into (keep it alive with the selector).

    A dense set (at least one id in 64 of the id range) becomes an ``IDSelectorBitmap``, built from a numpy
    mask in microseconds; a sparse one an ``IDSelectorBatch`` (a hash set). Per query, hashing the ids of a
    50% filter over 100k items cost more than the filtered HNSW search it served.
    """
    ids = np.ascontiguousarray(np.asarray(ids), dtype=np.int64)
    if len(ids) and ids.min() >= 0:
        n = int(ids.max()) + 1
        if n <= 64 * len(ids):
            mask = np.zeros(n, dtype=bool)
            mask[ids] = True
            bits = np.packbits(mask, bitorder="little")  # FAISS reads bit (id & 7) of byte id >> 3
            return faiss.IDSelectorBitmap(len(bits), faiss.swig_ptr(bits)), bits  # its n counts bytes
    return faiss.IDSelectorBatch(ids), None


#: A filter admitting at most this many items is answered exactly over their vectors (see search_subset).
SUBSET_MAX = 2048


def search_subset(
    index: faiss.Index, queries: np.ndarray, k: int, ids: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """Exact top-``k`` among ``ids`` alone, from their stored vectors; ``None`` when ``index`` cannot give
    them back (IVF without a direct map, codes without ``reconstruct``).

    A graph index searched through a selector that admits few items walks the graph past them: at 0.5% of
    3,000 vectors HNSW missed a third of the true top-10 even at efSearch 4000. Scoring a small admitted set
    directly is exact and cheaper than the walk (the way filtered vector databases plan such queries).
    """
    ids = np.ascontiguousarray(ids, dtype=np.int64)
    if _ivf_of(index) is not None:
        return None
    try:
        vectors = index.reconstruct_batch(ids)
    except RuntimeError:
        return None
    flat = faiss.IndexFlat(index.d, index.metric_type)
    flat.add(np.ascontiguousarray(vectors, dtype=np.float32))
    scores, pos = flat.search(np.ascontiguousarray(queries, dtype=np.float32), min(k, len(ids)))
    found = np.where(pos >= 0, ids[np.clip(pos, 0, None)], -1)
    if pos.shape[1] < k:  # fewer admitted items than k: pad like FAISS does
        pad = k - pos.shape[1]
        fill = -np.inf if index.metric_type == faiss.METRIC_INNER_PRODUCT else np.inf
        scores = np.hstack([scores, np.full((len(scores), pad), fill, np.float32)])
        found = np.hstack([found, np.full((len(found), pad), -1, np.int64)])
    return scores, found


def _ivf_of(index: faiss.Index) -> faiss.IndexIVF | None:
    try:
        return faiss.extract_index_ivf(index)
    except RuntimeError:
        return None


def search_params(
    index: faiss.Index,
    *,
    ids: Sequence[int] | np.ndarray | None = None,
    nprobe: int | None = None,
    ef_search: int | None = None,
    exclude: Sequence[int] | np.ndarray | None = None,
) -> faiss.SearchParameters | None:
    """Per-search parameters of the right FAISS type for ``index``.

    ``ids`` restricts the search to those index positions (``IDSelectorBatch``; classify-then-search),
    ``nprobe`` (IVF) and ``ef_search`` (HNSW) trade speed for recall; ``exclude`` leaves those ids out
    (a live index's tombstones). Returns ``None`` when nothing is set.
    """
    if ids is None and nprobe is None and ef_search is None and (exclude is None or not len(exclude)):
        return None
    sel = keep = bits = None
    if ids is not None:
        sel, bits = id_selector(ids)
    elif exclude is not None and len(exclude):
        keep, bits = id_selector(exclude)
        sel = faiss.IDSelectorNot(keep)

    def make(idx: faiss.Index) -> faiss.SearchParameters:
        idx = faiss.downcast_index(idx)
        if isinstance(idx, faiss.IndexIDMap2 | faiss.IndexIDMap):
            return make(idx.index)  # the map translates the selector and hands the parameters down
        if isinstance(idx, faiss.IndexPreTransform):
            return faiss.SearchParametersPreTransform(index_params=make(idx.index))
        kwargs: dict[str, Any] = {} if sel is None else {"sel": sel}
        # A parameters object replaces the index's own settings, and its defaults (nprobe 1, efSearch 16)
        # would silently undo what set_search_params configured: carry the index's values over.
        if isinstance(idx, faiss.IndexIVF):
            kwargs["nprobe"] = int(nprobe if nprobe is not None else idx.nprobe)
            return faiss.SearchParametersIVF(**kwargs)
        if isinstance(idx, faiss.IndexHNSW):
            kwargs["efSearch"] = int(ef_search if ef_search is not None else idx.hnsw.efSearch)
            return faiss.SearchParametersHNSW(**kwargs)
        return faiss.SearchParameters(**kwargs)

    params = make(index)
    params._imgsearch_sel = (sel, keep, bits)  # keep the selectors (and a bitmap's bytes) alive as long
    return params


def set_search_params(index: faiss.Index, params: str | None) -> faiss.Index:
    """Apply a FAISS ``ParameterSpace`` string (``"nprobe=16"``, ``"efSearch=128"``, ``"nprobe=8,ht=62"``)
    to ``index`` in place; ``None`` or ``""`` leaves it as it is. A name the index lacks: ``ValueError``."""
    text = (params or "").strip()
    if not text:
        return index
    try:
        faiss.ParameterSpace().set_index_parameters(index, text)
    except RuntimeError as exc:
        raise ValueError(f"search parameters {text!r} do not apply to this index: {exc}") from exc
    return index


def search_batched(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    batch_size: int = 4096,
    params: faiss.SearchParameters | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-``k`` search in batches of ``batch_size`` queries, so memory stays ``O(batch_size * k)``.

    Queries must already be prepared like the index vectors (see :func:`prepare_vectors`).

    Returns:
        ``(scores, ids)``, ``[Q, k]`` float32 / int64. Scores are inner products (higher is closer) for
        ``ip`` and squared L2 distances (lower is closer) for ``l2``. ``ids`` are index positions; ``-1``
        marks a missing result (fewer than ``k`` items, or fewer allowed by the selector).
    """
    q = _as_float32(queries)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if q.shape[1] != index.d:
        raise ValueError(f"query dimension {q.shape[1]} does not match the index dimension {index.d}")
    scores = np.empty((len(q), k), dtype=np.float32)
    ids = np.empty((len(q), k), dtype=np.int64)
    for start in range(0, len(q), batch_size):
        stop = min(start + batch_size, len(q))
        if params is None:
            d, i = index.search(q[start:stop], k)
        else:
            # pytorch-metric-learning imports faiss.contrib.torch_utils, which swaps every index's search for
            # one without params= and keeps the original as search_numpy: a filter must not depend on imports.
            search = getattr(index, "search_numpy", index.search)
            d, i = search(q[start:stop], k, params=params)
        scores[start:stop], ids[start:stop] = d, i
    return scores, ids


def group_members(
    gallery_groups: Sequence[Any] | np.ndarray, ids: np.ndarray | None = None
) -> Callable[[Any], np.ndarray]:
    """``value -> ids of the gallery items whose group is value``, computed once per value; ``ids`` are
    the items' FAISS ids (default: their positions)."""
    groups = np.asarray(gallery_groups, dtype=object)
    cache: dict[Any, np.ndarray] = {}

    def members(value: Any) -> np.ndarray:
        if value not in cache:
            where = np.flatnonzero(groups == value)
            cache[value] = where if ids is None else ids[where]
        return cache[value]

    return members


def search_within_groups(
    index: faiss.Index,
    queries: np.ndarray,
    k: int,
    query_groups: Sequence[Any] | np.ndarray,
    members: Callable[[Any], np.ndarray],
    *,
    batch_size: int = 4096,
) -> tuple[np.ndarray, np.ndarray]:
    """Classify-then-search: query ``i`` only searches the index positions ``members(query_groups[i])``
    (its predicted category), through a FAISS ``IDSelectorBatch`` inside the search, so each query still
    gets up to ``k`` results of its group. A group with no member gives a row of ``-1`` ids.

    Returns ``(scores, ids)`` as :func:`search_batched` does, rows in the order of ``queries``.
    """
    q = _as_float32(queries)
    groups = np.asarray(query_groups, dtype=object)
    scores = np.full((len(q), k), np.nan, dtype=np.float32)
    ids = np.full((len(q), k), -1, dtype=np.int64)
    for value in pd.unique(groups):
        rows = np.flatnonzero(groups == value)
        allowed = members(value)
        if len(allowed) == 0:
            continue
        params = search_params(index, ids=allowed)
        scores[rows], ids[rows] = search_batched(index, q[rows], k, batch_size=batch_size, params=params)
    return scores, ids


def _json_normalise(obj: Any) -> Any:
    """Tuples become lists, numpy scalars Python numbers: the form a value has after a JSON round trip."""
    return json.loads(json.dumps(obj, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def make_manifest(
    *,
    index: faiss.Index,
    items: pd.DataFrame,
    embedding: str,
    metric: str,
    normalize: bool,
    factory: str,
    checkpoint: str | os.PathLike[str] | None,
    checkpoint_sha256: str | None,
    backbone: str | None,
    data_config: Mapping[str, Any] | None,
    class_names: Sequence[str] | None = None,
    pretrained: Mapping[str, Any] | None = None,
    search_params: str | None = None,
    catalogue_path: str | os.PathLike[str] | None = None,
    catalogue_sha256: str | None = None,
    catalogue_rows: int | None = None,
    skipped: Sequence[Mapping[str, Any]] = (),
    pixel_size: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest written beside an index: everything a later query needs to embed compatibly.

    ``pixel_size`` is recorded for a ``pixels`` index (the side its images were resized to); ``pretrained``
    describes a pretrained-only model (no checkpoint) that queries are embedded with.
    """
    embedding_info: dict[str, Any] = {"kind": embedding, "dim": int(index.d), "normalize": bool(normalize)}
    if embedding == "pixels":
        embedding_info["pixel_size"] = pixel_size
    return _json_normalise(
        {
            "manifest_version": MANIFEST_VERSION,
            "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
            "imgsearch_version": imgsearch.__version__,
            "faiss_version": faiss.__version__,
            "checkpoint": {
                "path": None if checkpoint is None else str(Path(checkpoint).resolve()),
                "sha256": checkpoint_sha256,
            },
            "model": {
                "backbone": backbone,
                "data_config": dict(data_config) if data_config is not None else None,
                "class_names": list(class_names) if class_names is not None else None,
                "pretrained": dict(pretrained) if pretrained is not None else None,
            },
            "embedding": embedding_info,
            "index": {
                "factory": factory,
                "metric": metric,
                "ntotal": int(index.ntotal),
                **({"search_params": search_params} if search_params else {}),
            },
            "catalogue": {
                "path": None if catalogue_path is None else str(Path(catalogue_path).resolve()),
                "sha256": catalogue_sha256,
                "rows": catalogue_rows,
                "items": len(items),
                "items_sha256": catalogue_hash(items),
                "image_roots": image_roots(items),
                "skipped": len(skipped),
                "skipped_items": list(skipped)[:1000],
            },
            **(dict(extra) if extra else {}),
        }
    )


def save_index_dir(
    directory: str | os.PathLike[str],
    index: faiss.Index,
    items: pd.DataFrame,
    manifest: Mapping[str, Any],
    arrays: Mapping[str, np.ndarray] | None = None,
    files: Mapping[str, bytes] | None = None,
) -> Path:
    """Write ``index.faiss``, ``items.csv`` and ``manifest.json`` into ``directory`` atomically.

    ``arrays``: side arrays saved with ``np.save`` under their file names in the same swap (the colour
    part, :mod:`imgsearch.retrieval.colour`); ``files``: other side files, written as given (the colour
    probe, :mod:`imgsearch.models.colour_probe`).

    Raises:
        ValueError: the index and the item table disagree in size.
    """
    if index.ntotal != len(items):
        raise ValueError(f"index holds {index.ntotal} vectors but the item table has {len(items)} rows")
    directory = Path(directory)
    items, manifest = _relocatable(directory, items.reset_index(drop=True), manifest)
    with atomic_dir(directory) as tmp:
        faiss.write_index(index, str(tmp / INDEX_FILE))
        write_catalogue(items, tmp / ITEMS_FILE)
        for name, array in (arrays or {}).items():
            np.save(tmp / name, np.ascontiguousarray(array), allow_pickle=False)
        for name, data in (files or {}).items():
            (tmp / name).write_bytes(data)
        hashes = {name: file_sha256(tmp / name) for name in (INDEX_FILE, ITEMS_FILE)}
        record = {**dict(manifest), FILES_KEY: hashes}
        (tmp / MANIFEST_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    log.info("wrote index directory %s (%d items)", directory, len(items))
    return directory


def load_index_dir(
    directory: str | os.PathLike[str],
    *,
    image_root: str | os.PathLike[str] | None = None,
    mmap: bool = False,
) -> tuple[faiss.Index, pd.DataFrame, dict[str, Any]]:
    """Read an index directory written by :func:`save_index_dir`; checks that its parts agree.

    The sha256 of ``index.faiss`` and ``items.csv`` recorded in the manifest are checked first, and
    then dropped from the manifest returned (it is the one given to :func:`save_index_dir`). An index
    written before they were recorded loads with a warning. ``image_root`` overrides where the images are
    (see :func:`resolve_image_root`); the returned items hold absolute image paths, and the manifest's
    ``catalogue.image_roots`` (what serve may stream from) follow the images when they moved. ``mmap``:
    map the index's codes instead of reading them (read-only; :mod:`imgsearch.retrieval.mmap_index`).

    Raises:
        FileNotFoundError: the directory or one of its three files is missing.
        IndexCompatibilityError: a file changed since it was written, cannot be read, or index, items
            and manifest disagree (sizes, dimension); the message is one line naming the file.
    """
    directory = Path(directory)
    missing = [n for n in (INDEX_FILE, ITEMS_FILE, MANIFEST_FILE) if not (directory / n).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} is not an index directory: missing {', '.join(missing)}")
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise IndexCompatibilityError(f"{directory / MANIFEST_FILE}: not valid JSON ({exc})") from exc
    if not isinstance(manifest, dict):
        raise IndexCompatibilityError(f"{directory / MANIFEST_FILE}: not a manifest (a JSON object)")
    recorded = manifest.pop(FILES_KEY, None)
    if isinstance(recorded, Mapping):
        for name in (INDEX_FILE, ITEMS_FILE):
            want, got = recorded.get(name), file_sha256(directory / name)
            if want and got != want:
                raise IndexCompatibilityError(
                    f"{directory / name} changed since the index was written (sha256 {got[:12]}... != "
                    f"{want[:12]}... in manifest.json): it is corrupt or was edited; rebuild the index"
                )
    else:
        log.warning("%s records no file hashes (an older index): its files cannot be verified", directory)
    try:
        check_ondisk_file(directory, manifest)
    except ValueError as exc:
        raise IndexCompatibilityError(str(exc)) from exc
    try:
        if mmap:
            from imgsearch.retrieval.mmap_index import read_index_mapped

            # on-disk lists stay where they are (the .ivfdata beside it); the rest is mapped where FAISS can
            index, _ = read_index_mapped(directory / INDEX_FILE, faiss.IO_FLAG_ONDISK_SAME_DIR)
        else:
            index = read_ondisk_aware(directory / INDEX_FILE)  # on-disk lists: the .ivfdata beside it
    except RuntimeError as exc:  # FAISS reports truncated or foreign files as RuntimeError
        cause = next((ln for ln in str(exc).splitlines() if ln.strip()), "unreadable")
        raise IndexCompatibilityError(
            f"{directory / INDEX_FILE} is not a readable FAISS index ({cause.strip()[:160]}); "
            "rebuild the index"
        ) from exc
    try:
        items = read_catalogue(directory / ITEMS_FILE)
    except (ValueError, UnicodeDecodeError) as exc:
        raise IndexCompatibilityError(
            f"{directory / ITEMS_FILE} is not a readable item table ({exc})"
        ) from exc
    root = resolve_image_root(directory, manifest, image_root)
    if root is not None:
        items["image_path"] = [str(root / p) if p else "" for p in items["image_path"].astype(str)]
        _rebase_image_roots(manifest, root)
    if index.ntotal != len(items):
        raise IndexCompatibilityError(
            f"{directory}: index holds {index.ntotal} vectors but items.csv has {len(items)} rows"
        )
    dim = manifest.get("embedding", {}).get("dim")
    if dim != index.d:
        raise IndexCompatibilityError(f"{directory}: manifest says dimension {dim}, index has {index.d}")
    return index, items, manifest


def _module_backbone(module: Any) -> str | None:
    hparams = getattr(module, "hparams", None) or {}
    backbone = hparams.get("backbone") if hasattr(hparams, "get") else None
    return None if backbone is None else str(backbone)


def check_compatible(manifest: Mapping[str, Any], module: Any | None, kind: str | None = None) -> None:
    """Stop with a clear error if ``module`` cannot produce queries for the index of ``manifest``.

    Checks the embedding kind, the embedding dimension (``module.embedding_dim(kind)``), the backbone
    name (``module.hparams["backbone"]``) and the preprocessing (``module.data_config``). ``module`` may
    be ``None`` only for a ``pixels`` index.

    Raises:
        IndexCompatibilityError: naming what differs and both values.
    """
    emb = manifest.get("embedding", {})
    index_kind = emb.get("kind")
    kind = kind or index_kind
    if kind != index_kind:
        raise IndexCompatibilityError(f"index holds {index_kind!r} embeddings but {kind!r} were requested")
    if kind == "pixels":
        return
    if module is None:
        raise IndexCompatibilityError(f"a {kind!r} index needs a model checkpoint to embed queries")
    dim = int(module.embedding_dim(kind))
    if dim != emb.get("dim"):
        raise IndexCompatibilityError(
            f"embedding dimension mismatch: index has {emb.get('dim')}-d {kind!r} vectors, "
            f"the model gives {dim}-d ones (different backbone or number of classes?)"
        )
    model = manifest.get("model", {})
    want, got = model.get("backbone"), _module_backbone(module)
    if want is not None and got is not None and want != got:
        raise IndexCompatibilityError(
            f"model mismatch: index built with backbone {want!r}, checkpoint is {got!r}"
        )
    want_cfg = model.get("data_config")
    got_cfg = getattr(module, "data_config", None)
    if want_cfg is not None and got_cfg is not None:
        diff = data_config_diff(want_cfg, got_cfg)
        if diff:
            detail = "; ".join(
                f"{k}: index {_json_normalise(a)!r} vs model {_json_normalise(b)!r}"
                for k, (a, b) in diff.items()
            )
            raise IndexCompatibilityError(f"preprocessing mismatch between index and model: {detail}")
    if kind == "probs":
        want_classes = model.get("class_names")
        got_classes = list(getattr(module, "class_names", []) or [])
        if want_classes is not None and got_classes and want_classes != got_classes:
            raise IndexCompatibilityError(
                "class list of the model differs from the one the index was built with"
            )
