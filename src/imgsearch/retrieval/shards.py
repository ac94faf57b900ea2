"""Embeddings on disk as shards: ``embeddings/part-NNNNNN.npy`` + ``metadata/part-NNNNNN.parquet``.

The layout is the one autofaiss and embedding-reader read (``embeddings/*.npy`` and ``metadata/*.parquet``,
matched by sorted file name), so a shard directory can be handed to ``autofaiss build_index`` as it is.

Shard ``i`` always holds catalogue rows ``[i * shard_rows, (i + 1) * shard_rows)`` minus the unreadable
images, whatever the number of processes: under DDP rank ``r`` of ``w`` embeds the unfinished shards
``pending[r::w]`` and writes them itself (no gather into one process), so two processes produce the same
files as one, and a rerun after a kill only embeds the shards that are missing. A shard is complete when its
``.parquet`` exists: the ``.npy`` is renamed into place first, the table last, each from a temporary file, so
a killed writer leaves either nothing or a shard that the next run redoes.

Each table carries the catalogue columns of its kept rows, their ``row`` (position in the catalogue) and,
in the Parquet schema metadata, the rows skipped because their image could not be read.
``shards.json`` records what produced the vectors; a rerun with another model or catalogue is refused.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from imgsearch.data.dataset import CatalogueDataset, collate_skip_none
from imgsearch.retrieval.embed import PIXELS, _Embedder, prediction_trainer_kwargs
from imgsearch.utils.atomic import atomic_path, atomic_write_json

log = logging.getLogger(__name__)

EMBEDDINGS = "embeddings"
METADATA = "metadata"
SPEC_FILE = "shards.json"
# the unreadable images of every rank's shards, summed once all ranks have published (rank 0 writes it)
REPORT_FILE = "report.json"
SKIPPED_KEY = b"imgsearch.skipped"
DTYPES = ("float32", "float16")
# the fields of shards.json that must match for a rerun to continue an existing directory
_RESUME_KEYS = (
    "kind", "dim", "dtype", "shard_rows", "rows", "normalized", "catalogue_sha256", "checkpoint_sha256",
)  # fmt: skip


def shard_name(index: int) -> str:
    return f"part-{index:06d}"


def shard_paths(directory: str | os.PathLike[str], index: int) -> tuple[Path, Path]:
    d = Path(directory)
    return d / EMBEDDINGS / f"{shard_name(index)}.npy", d / METADATA / f"{shard_name(index)}.parquet"


def n_shards(rows: int, shard_rows: int) -> int:
    return max(1, -(-rows // shard_rows))


def is_complete(directory: str | os.PathLike[str], index: int) -> bool:
    npy, parquet = shard_paths(directory, index)
    return npy.is_file() and parquet.is_file()


def write_shard(
    directory: str | os.PathLike[str],
    index: int,
    vectors: np.ndarray,
    metadata: pd.DataFrame,
    skipped: list[dict[str, str]] = (),  # type: ignore[assignment]
) -> None:
    """Publish one shard: vectors first, table last, each renamed atomically into place."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if len(vectors) != len(metadata):
        raise ValueError(f"shard {index}: {len(vectors)} vectors but {len(metadata)} metadata rows")
    npy, parquet = shard_paths(directory, index)
    parquet.unlink(missing_ok=True)  # a stale table must not mark a shard complete while the npy changes
    with atomic_path(npy, suffix=".npy") as tmp, open(tmp, "wb") as fh:
        np.save(fh, np.ascontiguousarray(vectors))
    table = pa.Table.from_pandas(metadata.reset_index(drop=True), preserve_index=False)
    meta = dict(table.schema.metadata or {})
    meta[SKIPPED_KEY] = json.dumps(list(skipped)).encode()
    with atomic_path(parquet, suffix=".parquet") as tmp:
        pq.write_table(table.replace_schema_metadata(meta), tmp)


def read_spec(directory: str | os.PathLike[str]) -> dict[str, Any]:
    path = Path(directory) / SPEC_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{directory} is not a shard directory (no {SPEC_FILE}); run imgsearch-embed")
    return json.loads(path.read_text(encoding="utf-8"))


def check_or_write_spec(directory: str | os.PathLike[str], spec: Mapping[str, Any], *, write: bool) -> None:
    """A rerun continues only the same job: same model, catalogue, kind, dtype and shard size."""
    path = Path(directory) / SPEC_FILE
    if path.is_file():
        old = json.loads(path.read_text(encoding="utf-8"))
        diff = {k: (old.get(k), spec.get(k)) for k in _RESUME_KEYS if old.get(k) != spec.get(k)}
        if diff:
            raise ValueError(
                f"{directory} holds shards of another job ({diff}, as (existing, requested)); "
                "use a new output_dir or delete the old one"
            )
    elif write:
        atomic_write_json(path, dict(spec))


@dataclass
class Shard:
    index: int
    vectors: np.ndarray
    metadata: pd.DataFrame
    skipped: list[dict[str, str]]


def read_shard(directory: str | os.PathLike[str], index: int, *, mmap: bool = False) -> Shard:
    import pyarrow.parquet as pq

    npy, parquet = shard_paths(directory, index)
    table = pq.read_table(parquet)
    skipped = json.loads((table.schema.metadata or {}).get(SKIPPED_KEY, b"[]"))
    meta = table.to_pandas()
    vectors = np.load(npy, mmap_mode="r" if mmap else None)
    if len(vectors) != len(meta):
        raise ValueError(f"{npy}: {len(vectors)} vectors but {parquet.name} has {len(meta)} rows")
    return Shard(index, vectors, meta, skipped)


def complete_shards(directory: str | os.PathLike[str]) -> list[int]:
    """Indices of the shards of ``directory``; every shard must be complete (else: run embed again)."""
    spec = read_spec(directory)
    total = n_shards(int(spec["rows"]), int(spec["shard_rows"]))
    missing = [i for i in range(total) if not is_complete(directory, i)]
    if missing:
        raise ValueError(
            f"{directory}: {len(missing)} of {total} shards are unfinished (e.g. {shard_name(missing[0])}); "
            "rerun imgsearch-embed with the same arguments to finish them"
        )
    return list(range(total))


def iter_shards(directory: str | os.PathLike[str], *, mmap: bool = False) -> Iterator[Shard]:
    for i in complete_shards(directory):
        yield read_shard(directory, i, mmap=mmap)


def shard_report(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """Rows kept and skipped, summed over the shards (the per-shard counts come from each table)."""
    kept, skipped, per_shard = 0, [], {}
    shards = complete_shards(directory)
    for i in shards:
        s = read_shard(directory, i, mmap=True)
        kept += len(s.metadata)
        skipped += s.skipped
        if s.skipped:
            per_shard[shard_name(i)] = len(s.skipped)
    return {
        "shards": len(shards),
        "kept": kept,
        "skipped": len(skipped),
        "skipped_per_shard": per_shard,
        "skipped_items": skipped[:1000],
    }


class ShardWriter(BasePredictionWriter):
    """Buffers one rank's batches and publishes each shard as soon as its last row has gone by.

    The rank's loader walks its shards in row order (no shuffling, no distributed sampler), so a batch
    whose first row lies beyond a shard's end means that shard is finished; rows that never arrive were
    unreadable images and are recorded as the shard's skipped rows.
    """

    def __init__(
        self,
        directory: Path,
        table: pd.DataFrame,
        kind: str,
        shard_rows: int,
        dtype: str,
        normalize: bool = False,
    ) -> None:
        super().__init__(write_interval="batch")
        self.normalize = normalize
        self.directory, self.table, self.kind = directory, table, kind
        self.shard_rows, self.dtype = shard_rows, np.dtype(dtype)
        self.mine: list[int] = []
        self.dim: int | None = None
        self._rows: list[np.ndarray] = []
        self._vecs: list[np.ndarray] = []
        self._next = 0  # position in self.mine of the shard being filled
        self._t0 = time.perf_counter()
        self._done_rows = 0
        self.world = 1
        self.progress = None  # GlobalProgress, once the rank is known (the loader is built)

    def _flush_until(self, row: int | None) -> None:
        """Publish every shard of mine that ends at or before ``row`` (``None``: all the rest)."""
        while self._next < len(self.mine):
            idx = self.mine[self._next]
            start, stop = idx * self.shard_rows, min((idx + 1) * self.shard_rows, len(self.table))
            if row is not None and row < stop:
                return
            rows = np.concatenate(self._rows) if self._rows else np.zeros(0, np.int64)
            vecs = np.concatenate(self._vecs) if self._vecs else np.zeros((0, self.dim or 0), np.float32)
            take = (rows >= start) & (rows < stop)
            r, v = rows[take], vecs[take]
            order = np.argsort(r, kind="stable")
            r, v = r[order], v[order]
            part = self.table.iloc[start:stop]
            kept = np.zeros(stop - start, dtype=bool)
            kept[r - start] = True
            skipped = [
                {"item_id": str(a), "image_path": str(b)}
                for a, b in zip(part["item_id"][~kept], part["image_path"][~kept], strict=True)
            ]
            meta = part.iloc[r - start].copy()
            meta.insert(0, "row", r.astype(np.int64))
            write_shard(self.directory, idx, v.astype(self.dtype), meta, skipped)
            self._rows, self._vecs = [rows[~take]], [vecs[~take]]
            self._next += 1
            self._done_rows += stop - start
            rate = self._done_rows / max(time.perf_counter() - self._t0, 1e-9)
            left = sum(
                min((j + 1) * self.shard_rows, len(self.table)) - j * self.shard_rows
                for j in self.mine[self._next :]
            )
            log.info(
                "shard %s: %d vectors, %d unreadable skipped; %.1f items/s on this rank, %.0f s left (est.)",
                shard_name(idx), len(r), len(skipped), rate, left / max(rate, 1e-9),
            )  # fmt: skip
            if self.progress is not None:
                self.progress.update(in_flight=sum(len(x) for x in self._rows), shard_done=shard_name(idx))

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        if prediction is None:
            return
        rows = prediction["row"].detach().cpu().long().numpy()
        vecs = prediction[self.kind].detach().cpu().float().numpy()
        if self.normalize:  # for tools that index the vectors as stored (autofaiss): cosine = inner product
            vecs = vecs / np.maximum(np.linalg.norm(vecs, axis=1, keepdims=True), 1e-12)
        self.dim = vecs.shape[1]
        self._flush_until(int(rows.min()))
        self._rows.append(rows)
        self._vecs.append(vecs)
        if self.progress is not None:
            self.progress.update(in_flight=sum(len(r) for r in self._rows))

    def on_predict_epoch_start(self, trainer, pl_module) -> None:
        self._t0 = time.perf_counter()  # the rate is of embedding, not of starting the process group
        if self.progress is not None:
            self.progress.restart_clock()

    def on_predict_epoch_end(self, trainer, pl_module) -> None:
        self._flush_until(None)
        if self.progress is not None:
            self.progress.close()


class _ShardEmbedder(_Embedder):
    """Builds its rank's loader itself, once the process group exists and the rank is known."""

    def __init__(self, module, kind: str, writer: ShardWriter, dataset_args: dict[str, Any]) -> None:
        super().__init__(module, [kind])
        self.writer = writer
        self.dataset_args = dataset_args

    def predict_dataloader(self) -> DataLoader:
        w = self.writer
        rank, world = self.trainer.global_rank, self.trainer.world_size
        total = n_shards(len(w.table), w.shard_rows)
        pending = [i for i in range(total) if not is_complete(w.directory, i)]
        w.mine, w.world = pending[rank::world], world
        from imgsearch.retrieval.shard_progress import GlobalProgress

        w.progress = GlobalProgress(w.directory, len(w.table), w.shard_rows, rank=rank)
        if len(pending) < total:
            log.info("rank %d: %d of %d shards already complete, skipped", rank, total - len(pending), total)
        a = self.dataset_args
        parts = [w.table.iloc[i * w.shard_rows : (i + 1) * w.shard_rows] for i in w.mine]
        sub = pd.concat(parts) if parts else w.table.iloc[:0]
        ds = CatalogueDataset(sub, a["class_to_idx"], a["transform"], draft_size=a["draft_size"])
        return DataLoader(
            ds,
            batch_size=a["batch_size"],
            shuffle=False,
            num_workers=a["num_workers"],
            collate_fn=collate_skip_none,
            pin_memory=torch.cuda.is_available(),
        )


def embed_to_shards(
    module: L.LightningModule | None,
    df: pd.DataFrame,
    directory: str | os.PathLike[str],
    *,
    kind: str = "features",
    shard_rows: int = 100_000,
    dtype: str = "float32",
    batch_size: int = 64,
    num_workers: int | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    pixel_size: int | None = None,
    draft: bool = True,
    normalize: bool = False,
    spec_extra: Mapping[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Embed every row of ``df`` into shards under ``directory``; finished shards are not redone.

    Runs under whatever strategy ``trainer_kwargs`` names (``ddp`` with Lightning, torchrun or SLURM
    starting the processes); every rank writes its own shards. Returns the summed report
    (:func:`shard_report`) on rank 0, ``None`` on the other ranks.

    Raises:
        ValueError: a bad kind / dtype / shard size, or ``directory`` holds another job's shards.
    """
    from imgsearch.data.datamodule import default_num_workers
    from imgsearch.data.transforms import PIXEL_SIZE, draft_size_for, eval_transform, pixel_transform

    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
    if shard_rows < 1:
        raise ValueError(f"shard_rows must be >= 1, got {shard_rows}")
    if kind != PIXELS and module is None:
        raise ValueError(f"embedding kind {kind!r} needs a model")
    directory = Path(directory)
    table = df.reset_index(drop=True)
    if kind == PIXELS:
        size = int(pixel_size or PIXEL_SIZE)
        transform, draft_size, dim = pixel_transform(size), (size, size), 3 * size * size
    else:
        transform, draft_size = eval_transform(module.data_config), draft_size_for(module.data_config)
        dim = int(module.embedding_dim(kind))
    classes = list(getattr(module, "class_names", []) or [])
    workers = (
        (default_num_workers() if torch.cuda.is_available() else 0) if num_workers is None else num_workers
    )
    spec = {
        "kind": kind, "dim": dim, "dtype": dtype, "shard_rows": int(shard_rows), "rows": len(table),
        "shards": n_shards(len(table), shard_rows), "normalized": bool(normalize), **dict(spec_extra or {}),
    }  # fmt: skip
    spec.setdefault("catalogue_sha256", None)
    spec.setdefault("checkpoint_sha256", None)

    writer = ShardWriter(directory, table, kind, int(shard_rows), dtype, normalize=normalize)
    writer.dim = dim
    kwargs = prediction_trainer_kwargs(trainer_kwargs)
    # each rank chooses its own shards: Lightning must not split its loader again
    kwargs["use_distributed_sampler"] = False
    kwargs["callbacks"] = [*list(kwargs.get("callbacks") or []), writer]
    trainer = L.Trainer(**kwargs)
    check_or_write_spec(directory, spec, write=trainer.global_rank == 0)
    embedder = _ShardEmbedder(
        None if kind == PIXELS else module,
        kind,
        writer,
        {
            "class_to_idx": {c: i for i, c in enumerate(classes)},
            "transform": transform,
            "draft_size": draft_size if draft else None,
            "batch_size": batch_size,
            "num_workers": int(workers),
        },
    ).eval()
    trainer.predict(embedder, return_predictions=False)
    trainer.strategy.barrier("shards-written")  # rank 0 reports only once every rank has published
    if trainer.global_rank != 0:
        return None
    if writer.progress is not None:
        writer.progress.finish()
    report = write_report(directory)
    if report["skipped"]:
        log.warning("%d of %d images could not be read and were skipped", report["skipped"], len(table))
    return report


def write_report(directory: str | os.PathLike[str]) -> dict[str, Any]:
    """:func:`shard_report` (every rank's shards, summed) written to ``REPORT_FILE`` in ``directory``."""
    report = shard_report(directory)
    report["rows"] = int(read_spec(directory)["rows"])
    atomic_write_json(Path(directory) / REPORT_FILE, report)
    return report
