"""Progress of a sharded embedding over the whole catalogue, across ranks and nodes.

Every rank knows the catalogue size and the shard size, and the shard directory is shared (it has to be:
every rank publishes its shards there), so the finished work of *all* ranks is the rows of the complete
shards on disk. Reading that needs no collective call (a rank that is slow or dead cannot hang the others),
and it is exact at shard boundaries; between them the rank adds the rows it holds in its own unfinished
shard. Rank 0 draws the bar (on a terminal) and logs one line per shard; the rate counts only this run's
work (shards finished by a killed run are the bar's starting point, not speed).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from imgsearch.utils.progress import is_terminal

log = logging.getLogger(__name__)


class GlobalProgress:
    """Items done, items/s and ETA against the global total, from the complete shards on disk."""

    def __init__(
        self,
        directory: str | os.PathLike[str],
        total_rows: int,
        shard_rows: int,
        *,
        rank: int = 0,
        min_interval: float = 1.0,
    ) -> None:
        self.directory, self.total, self.shard_rows = Path(directory), int(total_rows), int(shard_rows)
        self.rank, self.min_interval = rank, min_interval
        self.start_done = self.complete_rows()
        self._t0 = time.perf_counter()
        self._last = 0.0
        self.bar = tqdm(
            total=self.total,
            initial=self.start_done,
            desc="catalogue (all ranks)",
            unit="item",
            disable=rank != 0 or not is_terminal(),
            leave=False,
        )

    def _rows_of(self, shard: int) -> int:
        return max(0, min((shard + 1) * self.shard_rows, self.total) - shard * self.shard_rows)

    def complete_rows(self) -> int:
        """Catalogue rows (kept or skipped) in the complete shards of every rank."""
        from imgsearch.retrieval.shards import METADATA

        # a shard is complete once its table has its final name (temporary files start with a dot): one
        # listing, not a stat per shard
        try:
            names = os.listdir(self.directory / METADATA)
        except FileNotFoundError:
            return 0
        done = [int(n[5:-8]) for n in names if n.startswith("part-") and n.endswith(".parquet")]
        return sum(self._rows_of(i) for i in done)

    def restart_clock(self) -> None:
        """The rate is of embedding, not of starting the process group."""
        self._t0 = time.perf_counter()

    def state(self, in_flight: int = 0) -> dict[str, Any]:
        """``{"done", "total", "items_per_s", "eta_s"}``; ``in_flight``: this rank's rows of its unfinished
        shard."""
        done = min(self.total, self.complete_rows() + in_flight)
        elapsed = max(time.perf_counter() - self._t0, 1e-9)
        rate = max(done - self.start_done, 0) / elapsed
        eta = (self.total - done) / rate if rate > 0 else None
        return {"done": done, "total": self.total, "items_per_s": rate, "eta_s": eta}

    def update(self, in_flight: int = 0, *, shard_done: str | None = None) -> dict[str, Any] | None:
        """Refresh the bar (at most every ``min_interval`` s, always at a shard boundary); rank 0 logs the
        global line when a shard was published. Returns the state when it was read."""
        now = time.perf_counter()
        if shard_done is None and now - self._last < self.min_interval:
            return None
        self._last = now
        s = self.state(in_flight)
        self.bar.n = s["done"]
        self.bar.set_postfix_str("" if s["eta_s"] is None else f"ETA {s['eta_s']:.0f} s", refresh=False)
        self.bar.refresh()
        if shard_done is not None and self.rank == 0:
            self._log(s)
        return s

    def _log(self, s: dict[str, Any]) -> None:
        eta = "unknown" if s["eta_s"] is None else f"{s['eta_s']:.0f} s"
        log.info(
            "catalogue: %d / %d items embedded by all ranks (%.1f%%), %.1f items/s, ETA %s",
            s["done"], s["total"], 100 * s["done"] / max(s["total"], 1), s["items_per_s"], eta,
        )  # fmt: skip

    def finish(self) -> dict[str, Any]:
        """Rank 0's last line, read once every rank has published (after the barrier): the per-shard lines
        are written when *rank 0* publishes, so when another rank ends last they stop short of the total."""
        s = self.state()
        if self.rank == 0:
            self._log(s)
        return s

    def close(self) -> None:
        self.bar.close()
