"""IVF indexes whose inverted lists live on disk (``index.ivfdata``), for catalogues larger than RAM.

FAISS's recipe (``faiss.contrib.ondisk.merge_ondisk``): every shard is added to its own copy of the
trained, empty IVF index, written to disk and dropped, so the build holds the quantiser plus one shard;
the per-shard lists are then merged into one ``OnDiskInvertedLists`` file that searches mmap. The
sub-indexes are written inside the (atomic) index directory being built and deleted after the merge.

``index.faiss`` records the ``.ivfdata`` file's path as it was at build time; :func:`read_index` reads it
with ``IO_FLAG_ONDISK_SAME_DIR``, which takes the file beside ``index.faiss``, so a moved or copied index
directory still loads.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import faiss
import numpy as np
from faiss.contrib.ondisk import merge_ondisk

log = logging.getLogger(__name__)

IVFDATA_FILE = "index.ivfdata"
_SUBDIR = ".ondisk-shards"


def check_ondisk_factory(index: faiss.Index, factory: str) -> faiss.IndexIVF:
    """The IVF part of ``index``; on-disk lists exist only for IVF indexes (and not IVFPQR).

    Raises:
        ValueError: ``factory`` is not an IVF index.
    """
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError as exc:
        raise ValueError(
            f"ondisk=true needs an IVF factory (IVF4096,Flat, IVF16384,SQ8...), got {factory!r}"
        ) from exc
    if isinstance(ivf, faiss.IndexIVFPQR):
        raise ValueError(f"{factory!r}: FAISS cannot store IVFPQR lists on disk")
    return ivf


class OnDiskBuilder:
    """Adds shards to per-shard sub-indexes under ``directory``, then merges them into ``IVFDATA_FILE``."""

    def __init__(self, trained: faiss.Index, directory: str | os.PathLike[str], factory: str) -> None:
        check_ondisk_factory(trained, factory)
        if trained.ntotal:
            raise ValueError("the on-disk build starts from a trained, empty index")
        self.trained = trained
        self.directory = Path(directory)
        self.subdir = self.directory / _SUBDIR
        self.subdir.mkdir(parents=True, exist_ok=True)
        self.files: list[str] = []
        self.ntotal = 0

    def add_shard(self, blocks, start: int) -> int:
        """Add one shard (an iterable of float32 blocks, rows numbered from ``start``) as a sub-index.

        The explicit ids keep the global row order: each sub-index would otherwise number from 0.
        Returns the rows added.
        """
        sub = faiss.clone_index(self.trained)
        rows = 0
        for block in blocks:
            sub.add_with_ids(block, np.arange(start + rows, start + rows + len(block), dtype=np.int64))
            rows += len(block)
        path = self.subdir / f"{len(self.files):05d}.index"
        faiss.write_index(sub, str(path))
        del sub
        self.files.append(str(path))
        self.ntotal += rows
        return rows

    def merge(self) -> faiss.Index:
        """Merge the sub-indexes' lists into ``directory/IVFDATA_FILE``; returns the on-disk index."""
        index = self.trained
        log.info("merging %d sub-indexes (%d vectors) into %s", len(self.files), self.ntotal, IVFDATA_FILE)
        merge_ondisk(index, self.files, str(self.directory / IVFDATA_FILE))
        shutil.rmtree(self.subdir)
        if index.ntotal != self.ntotal:
            raise RuntimeError(f"merged {index.ntotal} vectors, added {self.ntotal}")
        return index


def read_index(path: str | os.PathLike[str], flags: int = 0) -> faiss.Index:
    """``faiss.read_index`` that finds an on-disk index's ``.ivfdata`` beside ``index.faiss`` (relocatable);
    indexes without on-disk lists read as usual."""
    return faiss.read_index(str(path), flags | faiss.IO_FLAG_ONDISK_SAME_DIR)


def check_ondisk_file(directory: str | os.PathLike[str], manifest: dict) -> None:
    """An index directory whose manifest records on-disk lists must hold them, at the recorded size.

    Raises:
        FileNotFoundError: the ``.ivfdata`` file is missing (copied without it?).
        ValueError: it has another size than at build time (truncated or from another build).
    """
    record = manifest.get("ondisk")
    if not isinstance(record, dict):
        return
    path = Path(directory) / str(record.get("file", IVFDATA_FILE))
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing: the index's inverted lists are on disk there")
    size, want = path.stat().st_size, record.get("bytes")
    if want is not None and size != want:
        raise ValueError(f"{path} holds {size} bytes, {want} when the index was built: truncated or replaced")
