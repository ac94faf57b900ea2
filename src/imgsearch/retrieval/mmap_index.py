"""Read a FAISS index with its codes memory-mapped, so serve workers share one copy in the page cache.

``faiss.read_index(path, IO_FLAG_MMAP_IFC)`` maps the vectors of Flat, IDMap2-over-Flat, HNSW(Flat), PQ and
IVF indexes in the installed FAISS (1.15); the plain ``IO_FLAG_MMAP`` maps only IVF inverted lists. A type
a flag does not cover is read into memory without any error, so whether the file was mapped is checked
afterwards in ``/proc/self/maps``, and reported (a worker then holds its own copy).

A mapped index is read-only: the live catalogue (which adds and removes vectors) reads its own copy.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import faiss

log = logging.getLogger(__name__)


def is_mapped(path: str | os.PathLike[str]) -> bool:
    """Whether this process has ``path`` memory-mapped (Linux ``/proc/self/maps``; ``False`` elsewhere)."""
    target = str(Path(path).resolve())
    try:
        with open("/proc/self/maps", encoding="utf-8", errors="replace") as fh:
            return any(line.rstrip("\n").endswith(" " + target) for line in fh)
    except OSError:
        return False


def read_index_mapped(path: str | os.PathLike[str], flags: int = 0) -> tuple[faiss.Index, bool]:
    """``(index, mapped)``: the index read with ``IO_FLAG_MMAP_IFC`` (plus ``flags``); ``mapped`` says
    whether its codes really are mapped. Where the flag fails, a normal read, with the reason logged.

    Raises:
        RuntimeError: FAISS cannot read the file at all (as :func:`faiss.read_index`).
    """
    path = str(path)
    try:
        index = faiss.read_index(path, faiss.IO_FLAG_MMAP_IFC | flags)
    except RuntimeError as exc:
        log.info("%s cannot be memory-mapped (%s); reading it into memory", path, str(exc).strip()[:160])
        return faiss.read_index(path, flags), False
    mapped = is_mapped(path)
    if not mapped:
        log.info(
            "%s (%s) was read into memory: FAISS maps no part of this index type; each worker holds a copy",
            path,
            type(index).__name__,
        )
    return index, mapped
