"""Atomic writes: a reader never sees a half-written index, report or table.

Everything is written to a temporary file in the destination directory (same file system, so
``os.replace`` is atomic) and renamed over the target only once it is complete and flushed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_mode(directory: bool = False) -> int:
    """The mode a plain ``open()`` / ``mkdir()`` would give under the current umask. ``mkstemp`` and
    ``mkdtemp`` create 0600 / 0700 on purpose; a published build output must be readable like any other
    file (a server running as another user reads the index), so the temporary path gets this mode."""
    return (0o777 if directory else 0o666) & ~_umask()


@contextmanager
def atomic_path(target: str | os.PathLike[str], suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` if the block succeeds."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=suffix or ".tmp", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, default_mode())
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def atomic_write_text(target: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def atomic_write_bytes(target: str | os.PathLike[str], data: bytes) -> Path:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def atomic_write_json(target: str | os.PathLike[str], obj: Any, indent: int = 2) -> Path:
    return atomic_write_text(target, json.dumps(obj, indent=indent, sort_keys=False, default=str) + "\n")


def atomic_write_with(
    target: str | os.PathLike[str], writer: Callable[[Path], None], suffix: str = ""
) -> Path:
    """Call ``writer(tmp_path)`` (e.g. ``faiss.write_index``, ``df.to_csv``) and publish atomically."""
    with atomic_path(target, suffix=suffix) as tmp:
        writer(tmp)
    return Path(target)


_RENAME_EXCHANGE = 2  # linux/fs.h


def exchange_paths(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Swap two existing paths in one atomic step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns ``False`` where the system has no such call (other OSes, old kernels, some file
    systems), so the caller can fall back to two renames.
    """
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd = -100
    rc = renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), _RENAME_EXCHANGE)
    if rc == 0:
        return True
    err = ctypes.get_errno()
    if err in (38, 22, 95):  # ENOSYS, EINVAL, EOPNOTSUPP: no exchange here; rename instead
        return False
    raise OSError(err, os.strerror(err), str(a))


@contextmanager
def atomic_dir(target: str | os.PathLike[str]) -> Iterator[Path]:
    """Build a whole directory in a sibling temp dir and swap it in at the end.

    The previous directory (if any) stays intact until the new one is complete; an exception
    inside the block leaves it untouched. On Linux the new directory replaces the old one in one
    atomic exchange, so a reader always finds a complete index at ``target`` (two renames leave a
    moment with none); the old one is removed only after that.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    os.chmod(tmp, default_mode(directory=True))
    try:
        yield tmp
        old = None
        if target.exists() and exchange_paths(tmp, target):
            old = tmp  # after the exchange, tmp holds the previous directory
        else:
            if target.exists():
                old = target.with_name(f".{target.name}.old.{os.getpid()}")
                os.replace(target, old)
            os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
