"""The batcher's wait policy: a lone photo at an idle model does not wait; photos gather while one runs."""

from __future__ import annotations

import asyncio
import threading

from imgsearch.serve.batching import BatchConfig, MicroBatcher

from .conftest import swatch


class _Gate:
    """Holds the first batch in the model thread until released; records every batch's size."""

    def __init__(self, inner):
        self.inner, self.items = inner, inner.items
        self.entered, self.release = threading.Event(), threading.Event()
        self.sizes: list[int] = []

    def search(self, images, k=10, *, restrict_to_predicted=False):
        self.sizes.append(len(images))
        self.entered.set()
        self.release.wait(10)
        return self.inner.search(images, k=k, restrict_to_predicted=restrict_to_predicted)


def test_lone_photo_does_not_wait_for_company(colour_searcher):
    # max_wait_ms of a minute: an idle model that waited for company would miss the 10 s bound by far
    batcher = MicroBatcher(colour_searcher, BatchConfig(max_batch=16, max_wait_ms=60_000))

    async def run():
        return await asyncio.wait_for(batcher.submit(swatch((200, 0, 0), seed=1), 3), timeout=10)

    result = asyncio.run(run())
    batcher.close()
    assert len(result.hits) == 3
    assert colour_searcher.calls[-1][0] == 1


def test_photos_gather_while_a_batch_runs(colour_searcher):
    gate = _Gate(colour_searcher)
    batcher = MicroBatcher(gate, BatchConfig(max_batch=16, max_wait_ms=0))
    photos = [swatch((40 * i, 100, 50), seed=i) for i in range(5)]

    async def run():
        first = asyncio.ensure_future(batcher.submit(photos[0], 2))
        await asyncio.get_running_loop().run_in_executor(None, gate.entered.wait, 10)
        later = []
        for p in photos[1:]:  # arriving one by one while the first batch holds the model
            later.append(asyncio.ensure_future(batcher.submit(p, 2)))
            await asyncio.sleep(0.01)
        gate.release.set()
        return await asyncio.gather(first, *later)

    results = asyncio.run(run())
    batcher.close()
    assert gate.sizes == [1, 4]  # the four that came during the first batch shared the next forward pass
    want = [colour_searcher.search([p], k=2)[0] for p in photos]
    assert [repr(r) for r in results] == [repr(w) for w in want]
