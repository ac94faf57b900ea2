"""Dynamic micro-batching: concurrent searches share one forward pass.

Each request puts its decoded photo on a bounded queue and awaits its answer. One worker task takes the first
waiting photo and runs it, with whatever else waits (up to ``max_batch``), through the searcher in one call,
in a thread of its own so the event loop stays free. While a batch runs, the next one gathers; a photo
arriving at an idle model goes at once, and only a burst (company already queued) waits up to
``max_wait_ms`` for the rest of it. A full queue is refused at once
(:class:`QueueFull`, answered 503 with ``Retry-After``) instead of letting latency grow without bound.

A batch is searched with the largest ``k`` asked in it; each answer keeps its own first ``k`` hits, which are
the hits a search with that ``k`` returns (hits are ranked, the index returns them best first). A batch whose
search raises is searched again one photo at a time, so only the photo that fails gets the error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, is_dataclass, replace
from typing import Any

log = logging.getLogger(__name__)


class QueueFull(RuntimeError):
    """More photos wait than the queue holds; the client should retry later."""


@dataclass(frozen=True)
class BatchConfig:
    """``max_batch`` photos per forward pass; ``max_wait_ms`` the longest a photo waits for company;
    ``max_queue`` photos waiting at most; ``decode_threads`` the bounded pool that decodes uploads;
    ``concurrent_batches`` forward passes in flight at once (each in a model thread of its own)."""

    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_queue: int = 256
    decode_threads: int = 2
    concurrent_batches: int = 1

    def __post_init__(self) -> None:
        small = min(self.max_batch, self.max_queue, self.decode_threads, self.concurrent_batches)
        if small < 1 or self.max_wait_ms < 0:
            raise ValueError(f"invalid batching settings {self}")


class MicroBatcher:
    """Runs ``searcher.search`` on batches of queued photos (see the module docstring).

    Args:
        searcher: has ``search(images, k, restrict_to_predicted=...)``, one result per image.
        config: batching limits.
        restrict_to_predicted: passed to every search.
        on_batch: called with each batch's size (for metrics).
    """

    def __init__(
        self,
        searcher: Any,
        config: BatchConfig,
        *,
        restrict_to_predicted: bool = False,
        on_batch: Callable[[int], None] | None = None,
    ) -> None:
        self.searcher = searcher
        self.config = config
        self.restrict_to_predicted = restrict_to_predicted
        self.on_batch = on_batch
        self._queue: asyncio.Queue | None = None
        self._worker: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # one thread a batch in flight: by default batches run one after another (the model already uses
        # every core per call)
        self._model_thread = ThreadPoolExecutor(
            max_workers=config.concurrent_batches, thread_name_prefix="imgsearch-batch"
        )

    def prepare(self, image: Any) -> Any:
        """``image`` made ready for the current searcher's model (its ``prepare``, when it has one).

        Called in the decode threads: resizing and normalising there run beside the forward pass instead
        of in the single batch thread, where they would add ~0.5 ms a photo to every batch (docs/serve.md).
        """
        prepare = getattr(self._current(), "prepare", None)
        return image if prepare is None else prepare(image)

    def _current(self) -> Any:
        # a hot-reloading holder (serve/reload.py) names the searcher of the moment; a plain one is itself
        return getattr(self.searcher, "current_searcher", lambda: self.searcher)()

    def depth(self) -> int:
        """Photos waiting now."""
        return self._queue.qsize() if self._queue is not None else 0

    def _ensure_worker(self) -> asyncio.Queue:
        loop = asyncio.get_running_loop()
        # a queue and its worker belong to one event loop; a new loop (a test client's per-request portal,
        # a restarted server) gets its own
        if self._queue is None or self._loop is not loop:
            self._loop = loop
            self._queue = asyncio.Queue(maxsize=self.config.max_queue)
            self._worker = None
        if self._worker is None or self._worker.done():
            self._worker = loop.create_task(self._run(self._queue))
        return self._queue

    async def submit(self, image: Any, k: int, **options: Any) -> Any:
        """The search result of one photo, computed in a batch with whatever else is waiting.

        ``options`` (``filters``, ``group_by_product``) are passed to the search; photos with different
        options still share the forward pass and are searched per option set.

        Raises:
            QueueFull: ``max_queue`` photos are already waiting.
        """
        queue = self._ensure_worker()
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        try:
            queue.put_nowait((image, int(k), _frozen(options), future))
        except asyncio.QueueFull:
            raise QueueFull(f"{self.config.max_queue} photos are waiting") from None
        return await future

    async def _collect(
        self, queue: asyncio.Queue, inflight: asyncio.Future | None
    ) -> list[tuple[Any, int, tuple, asyncio.Future]]:
        """The next batch. The model busy (``inflight``): photos gather until it frees, which costs them
        nothing. The model idle: a lone photo goes at once (no ``max_wait_ms`` added to a single client's
        latency); a photo with company already queued waits at most ``max_wait_ms`` for the rest of a
        burst."""
        batch = [await queue.get()]
        full = self.config.max_batch

        def take_queued() -> None:
            while len(batch) < full and not queue.empty():
                batch.append(queue.get_nowait())

        take_queued()
        if inflight is not None and not inflight.done():
            while len(batch) < full and not inflight.done():
                getter = asyncio.ensure_future(queue.get())
                await asyncio.wait({getter, inflight}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()  # asyncio.Queue.get gives its item back when cancelled before it got one
                    await asyncio.gather(getter, return_exceptions=True)
                if getter.done() and not getter.cancelled():
                    batch.append(getter.result())
        elif len(batch) > 1 and self.config.max_wait_ms > 0:
            deadline = time.monotonic() + self.config.max_wait_ms / 1000.0
            while len(batch) < full:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    batch.append(await asyncio.wait_for(queue.get(), remaining))
                except TimeoutError:
                    break
        take_queued()  # photos queued meanwhile join without waiting longer
        return batch

    def _search(self, batch: list[tuple[Any, int, tuple, asyncio.Future]]) -> list[Any]:
        """One forward pass for the whole batch, then one index search per set of options."""
        images = [b[0] for b in batch]
        # one searcher for the whole batch, even if a hot reload swaps it meanwhile (serve/reload.py)
        searcher = self._current()
        groups: dict[tuple, list[int]] = {}
        for i, (_, _, options, _) in enumerate(batch):
            groups.setdefault(options, []).append(i)
        restrict = self.restrict_to_predicted
        if len(groups) == 1:
            ((options, _),) = groups.items()
            k = max(b[1] for b in batch)
            return searcher.search(images, k=k, restrict_to_predicted=restrict, **_thawed(options))
        vectors, probs = searcher.embed(images)
        results: list[Any] = [None] * len(batch)
        for options, rows in groups.items():
            k = max(batch[i][1] for i in rows)
            found = searcher.search_vectors(
                vectors[rows], None if probs is None else probs[rows], k, restrict_to_predicted=restrict,
                **_thawed(options),
            )  # fmt: skip
            for i, result in zip(rows, found, strict=True):
                results[i] = result
        return results

    async def _run(self, queue: asyncio.Queue) -> None:
        # The next batch is collected while the model threads are all busy; it goes as soon as one frees.
        inflight: set[asyncio.Future] = set()
        while True:
            inflight = {f for f in inflight if not f.done()}
            slot = None
            if len(inflight) >= self.config.concurrent_batches:
                slot = asyncio.ensure_future(asyncio.wait(inflight, return_when=asyncio.FIRST_COMPLETED))
            batch = await self._collect(queue, slot)
            if slot is not None:
                await slot
            live = [b for b in batch if not b[3].done()]  # a client that went away is not searched
            if not live:
                continue
            if self.on_batch is not None:
                self.on_batch(len(live))
            inflight.add(asyncio.ensure_future(self._answer(live)))

    async def _answer(self, live: list[tuple[Any, int, tuple, asyncio.Future]]) -> None:
        loop = asyncio.get_running_loop()
        try:
            results = await loop.run_in_executor(self._model_thread, self._search, live)
        except Exception as exc:
            if len(live) == 1:
                if not live[0][3].done():
                    live[0][3].set_exception(exc)
                return
            # One bad photo must not fail the requests it happened to share a batch with: run them again one
            # at a time (only on failure, so the common path keeps its single forward pass).
            log.warning("a batch of %d photos failed (%s: %s); searching them one by one",
                        len(live), type(exc).__name__, exc)  # fmt: skip
            for entry in live:
                await self._answer([entry])
            return
        for (_, want_k, _, future), result in zip(live, results, strict=True):
            if not future.done():
                trimmed = list(result.hits)[:want_k]
                future.set_result(replace(result, hits=trimmed) if is_dataclass(result) else result)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
        self._model_thread.shutdown(wait=False, cancel_futures=True)


def _frozen(options: dict[str, Any]) -> tuple:
    """Search options as a hashable key: equal options, one search."""

    def freeze(value: Any) -> Any:
        if isinstance(value, dict):
            return ("__dict__", tuple(sorted((k, freeze(v)) for k, v in value.items())))
        if isinstance(value, list | tuple):  # kept apart: a 2-tuple is a range filter, a list a value set
            return ("__list__" if isinstance(value, list) else "__tuple__", tuple(freeze(v) for v in value))
        return value

    return tuple(sorted((k, freeze(v)) for k, v in options.items() if v not in (None, False, {}, ())))


def _thawed(key: tuple) -> dict[str, Any]:
    def thaw(value: Any) -> Any:
        if isinstance(value, tuple) and value[:1] == ("__dict__",):
            return {k: thaw(v) for k, v in value[1]}
        if isinstance(value, tuple) and value[:1] == ("__list__",):
            return [thaw(v) for v in value[1]]
        if isinstance(value, tuple) and value[:1] == ("__tuple__",):
            return tuple(thaw(v) for v in value[1])
        return value

    return {k: thaw(v) for k, v in key}
