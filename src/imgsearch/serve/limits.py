"""Bounds on what decoding uploads may cost the server: pixels per photo and photos at a time.

A small file can decode to a huge bitmap (a 10.8 KB 1-bit PNG of 9400x9400 pixels costs about
770 MB), and the thread pool runs as many decodes as requests arrive. Three bounds keep the
memory of a service predictable:

* a pixel budget per photo, far below PIL's bomb guard, checked from the header before decoding;
* decoding at reduced size (``max_side``): JPEG draft mode, other formats shrunk before their
  conversion to RGB, since the model only ever sees a few hundred pixels;
* at most ``max_concurrent`` decodes at once; one more is answered ``503`` with ``Retry-After``
  at once rather than queued, so a burst cannot pile bitmaps up in memory;
* decodes run on a pool of exactly ``max_concurrent`` threads of their own, not on the web
  framework's (40 threads): glibc keeps freed memory in per-thread arenas, so bitmaps decoded on
  40 different threads held ~500 MB after a burst even one at a time, and 4 threads hold ~120 MB.

Peak decode memory is then about ``max_concurrent * max_pixels * 4`` bytes plus one RGB copy of
at most ``max_side**2 * 3`` bytes per slot.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

#: A search photo: 24 Mpx is a 6000x4000 camera frame, a quarter of PIL's default bomb guard.
DEFAULT_MAX_PIXELS = 24_000_000
#: Longest side kept after decoding; models take 224-512 px, and result pages show thumbnails.
DEFAULT_MAX_SIDE = 1024
#: Decodes allowed at once.
DEFAULT_MAX_CONCURRENT = 4
#: What a refused client is told to wait, in seconds.
DEFAULT_RETRY_AFTER_S = 1


@dataclass(frozen=True)
class DecodeLimits:
    """The per-service decode bounds (``conf/serve.yaml``: ``decode.*``)."""

    max_pixels: int = DEFAULT_MAX_PIXELS
    max_side: int = DEFAULT_MAX_SIDE
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    retry_after_s: int = DEFAULT_RETRY_AFTER_S

    def __post_init__(self) -> None:
        for name in ("max_pixels", "max_side", "max_concurrent", "retry_after_s"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"decode.{name} must be a positive integer, got {value!r}")


class DecodeBusy(Exception):
    """Every decode slot is taken; the request should be retried after ``retry_after_s``."""

    def __init__(self, retry_after_s: int) -> None:
        self.retry_after_s = retry_after_s
        super().__init__(f"the server is decoding too many photos at once; retry in {retry_after_s} s")


class DecodeSlots:
    """A fixed number of decode slots, taken without waiting (a full house raises :class:`DecodeBusy`)."""

    def __init__(self, limits: DecodeLimits) -> None:
        self.limits = limits
        self._sem = threading.BoundedSemaphore(limits.max_concurrent)
        self._lock = threading.Lock()
        self.in_use = 0
        self.peak = 0
        self.refused = 0
        self._pool = ThreadPoolExecutor(max_workers=limits.max_concurrent, thread_name_prefix="decode")

    def run(self, fn: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``fn(*args, **kwargs)`` on a decode thread, holding a slot; :class:`DecodeBusy` if none is free."""
        with self.slot():
            # never queues: a slot is held, and there are as many threads as slots
            return self._pool.submit(fn, *args, **kwargs).result()

    @contextmanager
    def slot(self) -> Iterator[None]:
        if not self._sem.acquire(blocking=False):
            with self._lock:
                self.refused += 1
            raise DecodeBusy(self.limits.retry_after_s)
        with self._lock:
            self.in_use += 1
            self.peak = max(self.peak, self.in_use)
        try:
            yield
        finally:
            with self._lock:
                self.in_use -= 1
            self._sem.release()
