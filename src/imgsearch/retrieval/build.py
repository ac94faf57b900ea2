"""A FAISS index built from a shard directory in bounded memory, and advice on which index to build.

:func:`build_index_from_shards` trains the quantiser on a seeded sample of the shards (the same rows
:func:`imgsearch.retrieval.index.build_index` would draw from the whole array), then adds shard by shard
and writes ``items.csv`` shard by shard, so the peak is the index plus one shard, not all the vectors.
The index directory and manifest are those of :func:`imgsearch.retrieval.index.save_index_dir`.

:func:`recommend_index` turns ``(N, d, memory budget)`` into a factory string and search parameters, with
the rule autofaiss uses (an IVF with about ``4 sqrt(N)`` lists, the vectors stored exactly while they fit,
otherwise scalar-quantised, otherwise product-quantised to fit the budget).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from imgsearch.data.schema import CATALOGUE_COLUMNS, validate_catalogue
from imgsearch.retrieval.index import (
    INDEX_FILE,
    ITEMS_FILE,
    MANIFEST_FILE,
    metric_type,
    prepare_vectors,
)
from imgsearch.retrieval.shards import complete_shards, read_shard, read_spec, shard_paths
from imgsearch.utils.atomic import atomic_dir

log = logging.getLogger(__name__)

ADD_BLOCK = 2048  # rows per index.add call
# inverted lists grow by reallocation during add: old and new storage coexist, so budget twice the codes
LIST_GROWTH = 2


def recommend_index(
    n: int,
    dim: int,
    memory_gb: float,
    *,
    ondisk: bool = False,
    shard_rows: int = 200_000,
    hnsw_quantizer: bool | None = None,
) -> dict[str, Any]:
    """Factory string and search parameters for ``n`` vectors of ``dim`` floats within ``memory_gb``.

    Returns ``{"factory", "nprobe" or None, "ef_search" or None, "bytes_per_vector", "estimated_gb",
    "rule"}``. Below 100k vectors exact search is cheap enough (``Flat``); above, an IVF index whose list
    count grows as ``4 sqrt(n)`` (a power of two, at least 256) with codes of the largest size that fits
    ``memory_gb`` (float32 > 8-bit scalar > ``PQm`` with ``m`` dividing ``dim``). The inverted lists are
    budgeted at :data:`LIST_GROWTH` times their codes and ids: they grow by reallocation during ``add``,
    so old and new storage coexist (measured: 3M x 256 ``IVF8192,Flat`` estimated at 2.9 GiB for the codes
    alone peaked at 5.6 GiB).

    ``ondisk``: when the exact (``Flat``) lists do not fit, advise ``IVF{nlist},Flat`` with the lists on disk
    (``"ondisk": True``, :mod:`imgsearch.retrieval.ondisk`) instead of a lossy code: the build then holds
    the quantiser and one shard of ``shard_rows`` vectors, and ``disk_gb`` says the ``.ivfdata`` size (the
    build needs about twice that free: the per-shard sub-indexes exist until the merge).

    ``hnsw_quantizer`` (default: with ``ondisk``): ``IVF{nlist}_HNSW32``, an HNSW graph over the centroids
    as the coarse quantiser, as autofaiss does for large list counts: assigning each vector to its list
    exactly costs ``N * nlist * d`` (measured here: 20 s per 50k vectors at 16384 x 256 on 2 busy cores,
    over an hour for 10M), the graph a few hundred distances per vector.

    Raises:
        ValueError: non-positive sizes, or not even the smallest PQ code fits the budget.
    """
    if n < 1 or dim < 1 or memory_gb <= 0:
        raise ValueError(f"need n >= 1, dim >= 1 and memory_gb > 0, got {n}, {dim}, {memory_gb}")
    budget = memory_gb * 2**30 * 0.8  # leave a fifth for the search-time buffers and the process itself
    if n <= 100_000 and n * dim * 4 <= budget:
        return {"factory": "Flat", "nprobe": None, "ef_search": None, "bytes_per_vector": dim * 4,
                "estimated_gb": n * dim * 4 / 2**30, "rule": "exact search below 100k vectors"}  # fmt: skip
    nlist = max(256, 2 ** round(math.log2(4 * math.sqrt(n))))
    ids = 8  # inverted lists store an int64 id per vector
    ivf = f"IVF{nlist}_HNSW32" if (ondisk if hnsw_quantizer is None else hnsw_quantizer) else f"IVF{nlist}"
    choices = [(f"{ivf},Flat", dim * 4), (f"{ivf},SQ8", dim)]
    choices += [(f"{ivf},PQ{m}", m) for m in (64, 32, 16, 8) if dim % m == 0 and m < dim]
    for factory, code in choices:
        need = LIST_GROWTH * n * (code + ids) + nlist * dim * 4
        if ondisk and code == dim * 4 and need > budget:
            # one shard as float32, plus its sub-index's lists growing by reallocation, plus the quantiser
            shard = min(n, shard_rows)
            in_ram = shard * dim * 4 + LIST_GROWTH * shard * (code + ids) + nlist * dim * 4
            if in_ram <= budget:
                return {
                    "factory": factory,
                    "ondisk": True,
                    "nprobe": max(1, min(nlist, nlist // 16)),
                    "ef_search": None,
                    "bytes_per_vector": code + ids,
                    "estimated_gb": in_ram / 2**30,
                    "disk_gb": n * (code + ids) / 2**30,
                    "list_growth": LIST_GROWTH,
                    "rule": "IVF with 4*sqrt(N) lists, exact codes on disk (their lists exceed 80% of the "
                    "budget); RAM holds the quantiser and one shard",
                }
        if need <= budget:
            return {
                "factory": factory,
                "nprobe": max(1, min(nlist, nlist // 16)),
                "ef_search": None,
                "bytes_per_vector": code + ids,
                "estimated_gb": need / 2**30,
                "list_growth": LIST_GROWTH,
                "rule": f"IVF with 4*sqrt(N) lists, largest code whose lists ({LIST_GROWTH}x codes + ids, "
                "for the reallocation during add) and quantiser fit 80% of the budget",
            }
    raise ValueError(f"{n} x {dim} does not fit in {memory_gb} GiB even as {ivf},PQ8; give more memory")


def _hash_rows(h: Any, table) -> None:
    """Feed rows to ``h`` exactly as :func:`imgsearch.data.schema.catalogue_hash` does, so the hash of a
    table streamed shard by shard equals the hash of the whole table."""
    for row in table[CATALOGUE_COLUMNS].itertuples(index=False, name=None):
        cells = [
            "" if (isinstance(v, float) and np.isnan(v)) else repr(v) if isinstance(v, float) else v
            for v in row
        ]
        h.update(b"\x1e" + "\x1f".join(cells).encode("utf-8"))


def _rows_of(directory: Path, index: int) -> int:
    """Vector count of a shard from its .npy header alone."""
    with open(shard_paths(directory, index)[0], "rb") as fh:
        major, _ = np.lib.format.read_magic(fh)
        read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
        shape, _, _ = read(fh)
    return int(shape[0])


def _train_sample(directory: Path, shards: list[int], sizes: list[int], train_sample: int, seed: int):
    """The rows ``build_index`` would sample from the concatenated vectors, read shard by shard (mmap)."""
    n = sum(sizes)
    if n <= train_sample:
        picks = np.arange(n)
    else:
        picks = np.sort(np.random.default_rng(seed).choice(n, size=train_sample, replace=False))
    out, start = [], 0
    for i, size in zip(shards, sizes, strict=True):
        local = picks[(picks >= start) & (picks < start + size)] - start
        if len(local):
            # read whole (one shard at a time) rather than through mmap: touched pages of a mapping count
            # as resident memory, and a sample spread over every shard would touch most of them
            out.append(np.asarray(read_shard(directory, i).vectors[local], dtype=np.float32))
        start += size
    return np.concatenate(out)


def build_index_from_shards(
    shard_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    *,
    factory: str = "Flat",
    metric: str = "ip",
    normalize: bool = True,
    train_sample: int = 100_000,
    seed: int = 0,
    manifest_extra: dict[str, Any] | None = None,
    ondisk: bool = False,
) -> Path:
    """Build ``output_dir`` (index.faiss, items.csv, manifest.json) from the shards of ``shard_dir``.

    ``ondisk``: an IVF index whose inverted lists are merged into ``index.ivfdata`` in the directory
    (:mod:`imgsearch.retrieval.ondisk`); the build then holds the quantiser and one shard, not the lists.

    Raises:
        ValueError: unfinished shards, no vectors, a bad factory string, or too few vectors to train.
    """
    shard_dir = Path(shard_dir)
    spec = read_spec(shard_dir)
    shards = complete_shards(shard_dir)
    sizes = [_rows_of(shard_dir, i) for i in shards]
    n, dim = sum(sizes), int(spec["dim"])
    if n == 0:
        raise ValueError(f"{shard_dir}: the shards hold no vectors (every image unreadable?)")
    try:
        index = faiss.index_factory(dim, factory, metric_type(metric))
    except RuntimeError as exc:
        raise ValueError(f"FAISS cannot build index_factory({dim}, {factory!r}): {exc}") from exc
    if ondisk:
        from imgsearch.retrieval.ondisk import check_ondisk_factory

        check_ondisk_factory(index, factory)  # before the training, not after it
    if not index.is_trained:
        sample = prepare_vectors(
            _train_sample(shard_dir, shards, sizes, train_sample, seed), normalize=normalize
        )
        log.info("training %s on %d of %d vectors", factory, len(sample), n)
        try:
            index.train(sample)
        except RuntimeError as exc:
            raise ValueError(f"training {factory!r} on {len(sample)} vectors failed: {exc}") from exc
        del sample
    return write_index_dir_from_shards(
        shard_dir, output_dir, index, factory=factory, metric=metric, normalize=normalize, add=True,
        manifest_extra=manifest_extra, ondisk=ondisk,
    )  # fmt: skip


def _ondisk_record(directory: Path) -> dict[str, Any]:
    """Manifest entry of the on-disk lists: their file (beside index.faiss) and size. Not hashed: hashing
    a file larger than RAM on every load would cost minutes; the size catches a truncated copy."""
    from imgsearch.retrieval.ondisk import IVFDATA_FILE

    return {"ondisk": {"file": IVFDATA_FILE, "bytes": (directory / IVFDATA_FILE).stat().st_size}}


def write_index_dir_from_shards(
    shard_dir: str | os.PathLike[str],
    output_dir: str | os.PathLike[str],
    index: faiss.Index,
    *,
    factory: str,
    metric: str,
    normalize: bool,
    add: bool,
    manifest_extra: dict[str, Any] | None = None,
    ondisk: bool = False,
) -> Path:
    """Stream the shards' tables into ``items.csv`` (and with ``add`` their vectors into ``index``), then
    write ``index.faiss`` and the manifest: the index directory of :func:`save_index_dir`, atomically.

    Raises:
        ValueError: without ``add``, an index whose size is not the shards' number of vectors.
    """
    from imgsearch.retrieval.index import FILES_KEY, make_manifest
    from imgsearch.retrieval.locations import file_sha256, image_roots, relative_to

    shard_dir = Path(shard_dir)
    spec = read_spec(shard_dir)
    shards = complete_shards(shard_dir)
    h = hashlib.sha256()
    h.update("\x1f".join(CATALOGUE_COLUMNS).encode())
    skipped: list[dict[str, str]] = []
    folders: set[str] = set()  # of the images, for the serve confinement (#13), one shard at a time
    rows = 0
    out = Path(output_dir)
    with atomic_dir(out) as tmp:
        items_path = tmp / ITEMS_FILE
        builder = None
        if ondisk:
            from imgsearch.retrieval.ondisk import OnDiskBuilder

            if not add:
                raise ValueError("ondisk=true builds the index from the shards' vectors (add=True)")
            builder = OnDiskBuilder(index, tmp, factory)
        for k, i in enumerate(shards):
            shard = read_shard(shard_dir, i, mmap=not add)
            if builder is not None:
                blocks = (
                    prepare_vectors(shard.vectors[b : b + ADD_BLOCK], normalize=normalize)
                    for b in range(0, len(shard.vectors), ADD_BLOCK)
                )
                builder.add_shard(blocks, start=rows)
            elif add:
                # in blocks: PQ encoding allocates rows x M x 256 floats of distance tables per call
                # (a 20k-row shard at PQ16 would take 330 MB), so one call per shard would set the peak
                for b in range(0, len(shard.vectors), ADD_BLOCK):
                    index.add(prepare_vectors(shard.vectors[b : b + ADD_BLOCK], normalize=normalize))
            items = validate_catalogue(shard.metadata.drop(columns=["row"], errors="ignore"))
            items.to_csv(items_path, mode="a", header=k == 0, index=False)
            _hash_rows(h, items)
            folders.update(str(Path(p).resolve().parent) for p in items["image_path"].astype(str) if p)
            rows += len(items)
            skipped += shard.skipped
            added = builder.ntotal if builder is not None else index.ntotal
            log.info("shard %d/%d: %d items (%d in the index)", k + 1, len(shards), len(items), added)
        if builder is not None:
            index = builder.merge()
        if index.ntotal != rows:
            raise ValueError(f"the index holds {index.ntotal} vectors but the shards {rows}")
        faiss.write_index(index, str(tmp / INDEX_FILE))
        manifest = make_manifest(
            index=index,
            items=items.iloc[:0],
            embedding=str(spec["kind"]),
            metric=metric,
            normalize=normalize,
            factory=factory,
            checkpoint=spec.get("checkpoint"),
            checkpoint_sha256=spec.get("checkpoint_sha256"),
            backbone=spec.get("backbone"),
            data_config=spec.get("data_config"),
            class_names=spec.get("class_names"),
            catalogue_path=spec.get("catalogue"),
            catalogue_sha256=spec.get("catalogue_sha256"),
            catalogue_rows=int(spec["rows"]),
            skipped=skipped,
            pixel_size=spec.get("pixel_size"),
            extra={
                "shards": {"path": str(shard_dir.resolve()), "count": len(shards), "dtype": spec["dtype"]},
                **(_ondisk_record(tmp) if ondisk else {}),
                **(manifest_extra or {}),
            },
        )
        # make_manifest hashed an empty table; the streamed hash is the one of the whole item table
        manifest["catalogue"]["items"] = rows
        manifest["catalogue"]["items_sha256"] = h.hexdigest()
        manifest["catalogue"]["image_roots"] = image_roots(
            pd.DataFrame({"image_path": [f"{d}/x" for d in folders]})
        )
        if manifest["checkpoint"].get("path"):
            manifest["checkpoint"]["relative_to_index"] = relative_to(
                Path(manifest["checkpoint"]["path"]), out
            )
        manifest[FILES_KEY] = {name: file_sha256(tmp / name) for name in (INDEX_FILE, ITEMS_FILE)}
        (tmp / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    log.info("wrote index directory %s (%d items from %d shards)", out, rows, len(shards))
    return out
