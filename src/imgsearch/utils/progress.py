"""Progress of long loops: a bar on a terminal, one summary line in the log either way.

In a log file a bar is noise (``0.00it/s • 0:00:00`` repeated); the bar is drawn only when stderr
is a terminal, and the end of the loop is always logged as one line with the count and the time.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def progress(
    iterable: Iterable[T], *, total: int | None, desc: str, logger: logging.Logger, unit: str = "it"
) -> Iterator[T]:
    """Yield from ``iterable`` with a bar only on a terminal; log ``<desc>: n <unit>s in t s`` at the end."""
    start = time.perf_counter()
    n = 0
    with tqdm(iterable, total=total, desc=desc, unit=unit, disable=not is_terminal(), leave=False) as bar:
        for item in bar:
            n += 1
            yield item
    elapsed = time.perf_counter() - start
    rate = f", {n / elapsed:.0f} {unit}/s" if elapsed > 0 and n else ""
    logger.info("%s: %d %ss in %.1f s%s", desc, n, unit, elapsed, rate)
