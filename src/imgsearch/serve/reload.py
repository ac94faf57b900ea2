"""Hot reload of the served index: each worker notices a replaced index directory and swaps to it between
requests, without failing one.

:func:`index_version` is a cheap fingerprint of what a reader of the directory would load: ``stat`` of the
manifest and the index file (a directory swapped in by :func:`imgsearch.utils.atomic.atomic_dir` has new
inodes) and of the live catalogue's SQLite files (their size and mtime move with each committed change).
:class:`Reloader` checks it at most every ``check_every_s`` seconds, when a request comes; a change loads
the new searcher in a background thread while requests go on with the old one, then swaps a reference.
A failed load is logged and the old searcher kept (retried when the fingerprint changes again).

:class:`ReloadingSearcher` is what the app holds: every attribute is looked up on the current searcher, so
a search that started on the old index finishes on it (the old index stays mapped until it is dropped).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

#: files whose identity says which index a reader gets (the live ones exist only for a live catalogue)
VERSION_FILES = ("manifest.json", "index.faiss", "live/items.sqlite", "live/items.sqlite-wal")


def index_version(index_dir: str | os.PathLike[str]) -> Hashable:
    """``(inode, size, mtime_ns)`` of each of :data:`VERSION_FILES` that exists (``None`` for the others)."""
    out = []
    for name in VERSION_FILES:
        try:
            st = os.stat(Path(index_dir) / name)
        except OSError:
            out.append(None)
            continue
        out.append((st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)


class Reloader:
    """Keeps ``current`` up to date with the directory's version (see the module docstring).

    Args:
        load: builds a new searcher (e.g. ``Searcher.from_index_dir``); may raise.
        version: the fingerprint to watch (e.g. ``lambda: index_version(d)``).
        searcher: the one already loaded, at ``version()`` as it is now.
        check_every_s: at most one fingerprint a this often (a few ``stat`` calls).
    """

    def __init__(
        self,
        load: Callable[[], Any],
        version: Callable[[], Hashable],
        searcher: Any,
        *,
        check_every_s: float = 1.0,
        on_reload: Callable[[Any], None] | None = None,
    ) -> None:
        self._load, self._version = load, version
        self.current = searcher
        self.loaded_version = version()
        self.check_every_s = float(check_every_s)
        self.on_reload = on_reload
        self.reloads = 0
        self.failures = 0
        self._next_check = time.monotonic() + self.check_every_s
        self._loading: threading.Thread | None = None
        self._lock = threading.Lock()

    def maybe_reload(self) -> bool:
        """Start a background reload when the fingerprint moved; ``True`` when one was started. Cheap."""
        now = time.monotonic()
        if now < self._next_check:
            return False
        with self._lock:
            if now < self._next_check or (self._loading is not None and self._loading.is_alive()):
                return False
            self._next_check = now + self.check_every_s
            try:
                version = self._version()
            except OSError as exc:
                log.warning("cannot check the index version: %s", exc)
                return False
            if version == self.loaded_version or version == getattr(self, "_failed_version", None):
                return False
            self._loading = threading.Thread(target=self._reload, args=(version,), daemon=True)
            self._loading.start()
            return True

    def wait(self, timeout: float | None = None) -> None:
        """Until a reload in progress is done (tests, shutdown)."""
        thread = self._loading
        if thread is not None:
            thread.join(timeout)

    def _reload(self, version: Hashable) -> None:
        t0 = time.perf_counter()
        try:
            searcher = self._load()
        except Exception as exc:  # keep serving the old index; the next change tries again
            self.failures += 1
            self._failed_version = version
            log.error("index reload failed, still serving the previous index: %s", exc)
            return
        # the fingerprint after the load: a swap during the load is picked up at the next check
        self.current, self.loaded_version = searcher, version
        self.reloads += 1
        if self.on_reload is not None:
            self.on_reload(searcher)
        log.info("index reloaded in %.1f s (%d items)", time.perf_counter() - t0, len(searcher.items))


class ReloadingSearcher:
    """A searcher that is always the reloader's current one (attribute access is delegated)."""

    def __init__(self, reloader: Reloader) -> None:
        object.__setattr__(self, "_reloader", reloader)

    def current_searcher(self) -> Any:
        """The searcher now; a caller that makes several calls for one request (embed, then search the
        vectors) takes it once, so a swap in between cannot mix two models."""
        return self._reloader.current

    def __getattr__(self, name: str) -> Any:
        return getattr(self._reloader.current, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._reloader.current, name, value)
