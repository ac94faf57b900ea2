"""Micro-batching in imgsearch-serve: shared forward passes give the unbatched answers; full queue: 503."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from imgsearch.serve.app import _batch_config, create_app
from imgsearch.serve.batching import BatchConfig, MicroBatcher, QueueFull

from .conftest import COLOURS, encode, swatch


def _photos():
    return [swatch(c, seed=i) for i, c in enumerate(list(COLOURS.values()) * 3)]


def test_batched_answers_equal_unbatched(colour_searcher):
    photos = _photos()
    ks = [1, 3, 5, 2, 4, 6, 1, 5, 3]
    want = [colour_searcher.search([p], k=k)[0] for p, k in zip(photos, ks, strict=True)]
    colour_searcher.calls.clear()
    batcher = MicroBatcher(colour_searcher, BatchConfig(max_batch=16, max_wait_ms=50))

    async def run():
        return await asyncio.gather(*(batcher.submit(p, k) for p, k in zip(photos, ks, strict=True)))

    got = asyncio.run(run())
    batcher.close()
    for g, w, k in zip(got, want, ks, strict=True):
        assert len(g.hits) == len(w.hits) == k
        assert repr(g) == repr(w)  # repr: the catalogue has an item without a price (nan != nan)
    assert max(n for n, _, _ in colour_searcher.calls) > 1, "concurrent photos shared a forward pass"
    assert sum(n for n, _, _ in colour_searcher.calls) == len(photos)


def test_batch_is_at_most_max_batch(colour_searcher):
    batcher = MicroBatcher(colour_searcher, BatchConfig(max_batch=2, max_wait_ms=50))

    async def run():
        return await asyncio.gather(*(batcher.submit(p, 3) for p in _photos()))

    assert len(asyncio.run(run())) == 9
    batcher.close()
    assert max(n for n, _, _ in colour_searcher.calls) == 2


class _BlockedSearcher:
    """Holds the first batch until released, so the queue fills behind it."""

    def __init__(self, inner):
        self.inner, self.items, self.release = inner, inner.items, threading.Event()

    def search(self, images, k=10, *, restrict_to_predicted=False):
        self.release.wait(10)
        return self.inner.search(images, k=k, restrict_to_predicted=restrict_to_predicted)


def test_full_queue_refuses_at_once(colour_searcher):
    blocked = _BlockedSearcher(colour_searcher)
    batcher = MicroBatcher(blocked, BatchConfig(max_batch=1, max_wait_ms=0, max_queue=2))
    photo = _photos()[0]

    async def run():
        first = asyncio.ensure_future(batcher.submit(photo, 1))
        await asyncio.sleep(0.05)  # the worker took it and is blocked in the searcher
        waiting = [asyncio.ensure_future(batcher.submit(photo, 1)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(QueueFull):
            await batcher.submit(photo, 1)
        blocked.release.set()
        return await asyncio.gather(first, *waiting)

    assert len(asyncio.run(run())) == 3
    batcher.close()


class _PoisonSearcher:
    """Fails any search that holds the poisoned photo, as a photo the model cannot take would."""

    def __init__(self, inner, poison):
        self.inner, self.items, self.poison, self.calls = inner, inner.items, poison, []

    def search(self, images, k=10, *, restrict_to_predicted=False):
        self.calls.append(len(images))
        if any(im is self.poison for im in images):
            raise ValueError("this photo cannot be searched")
        return self.inner.search(images, k=k, restrict_to_predicted=restrict_to_predicted)


def test_a_failing_photo_fails_only_its_own_request(colour_searcher):
    photos = _photos()[:5]
    want = [colour_searcher.search([p], k=3)[0] for p in photos]
    poisoned = _PoisonSearcher(colour_searcher, photos[2])
    batcher = MicroBatcher(poisoned, BatchConfig(max_batch=16, max_wait_ms=50))

    async def run():
        return await asyncio.gather(*(batcher.submit(p, 3) for p in photos), return_exceptions=True)

    got = asyncio.run(run())
    batcher.close()
    assert max(poisoned.calls) > 1, "the photos shared a batch, so the failure had company to spoil"
    assert isinstance(got[2], ValueError) and "cannot be searched" in str(got[2])
    for i in (0, 1, 3, 4):
        assert repr(got[i]) == repr(want[i])


class _OverlapSearcher:
    """Records how many searches run at once (each holds its thread a little, as a forward pass does)."""

    def __init__(self, inner):
        self.inner, self.items, self.active, self.most, self.lock = inner, inner.items, 0, 0, threading.Lock()

    def search(self, images, k=10, *, restrict_to_predicted=False):
        with self.lock:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            time.sleep(0.05)
            return self.inner.search(images, k=k, restrict_to_predicted=restrict_to_predicted)
        finally:
            with self.lock:
                self.active -= 1


@pytest.mark.parametrize("concurrent", [1, 2])
def test_concurrent_batches_overlap_and_answer_like_unbatched(colour_searcher, concurrent):
    photos = _photos()
    want = [colour_searcher.search([p], k=3)[0] for p in photos]
    overlap = _OverlapSearcher(colour_searcher)
    batcher = MicroBatcher(overlap, BatchConfig(max_batch=2, max_wait_ms=0, concurrent_batches=concurrent))

    async def run():
        return await asyncio.gather(*(batcher.submit(p, 3) for p in photos))

    got = asyncio.run(run())
    batcher.close()
    assert [repr(g) for g in got] == [repr(w) for w in want]
    assert overlap.most == concurrent  # never more forward passes at once than configured, and that many


def test_app_batched_json_equals_unbatched(colour_searcher):
    plain = TestClient(create_app(colour_searcher, top_k=4))
    batched = TestClient(create_app(colour_searcher, top_k=4, batching=BatchConfig(max_wait_ms=1)))
    for i, photo in enumerate(_photos()[:3]):
        files = {"file": ("p.jpg", encode(photo), "image/jpeg")}
        a = plain.post("/search", files=files, params={"k": i + 2})
        b = batched.post("/search", files=files, params={"k": i + 2})
        assert a.status_code == b.status_code == 200
        assert a.json() == b.json()


def test_app_queue_full_is_503_with_retry_after(colour_searcher):
    app = create_app(colour_searcher, batching=BatchConfig())

    async def full(image, k):
        raise QueueFull("256 photos are waiting")

    app.state.batcher.submit = full
    r = TestClient(app).post("/search", files={"file": ("p.jpg", encode(_photos()[0]), "image/jpeg")})
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert r.json()["reason"] == "busy"


def test_operations_endpoints_answer(colour_searcher, caplog):
    client = TestClient(create_app(colour_searcher, batching=BatchConfig(max_wait_ms=1)))
    assert client.get("/healthz").json() == {"status": "alive"}
    assert client.get("/readyz").status_code == 200
    with caplog.at_level("INFO", logger="imgsearch.serve.access"):
        assert client.post(
            "/search", files={"file": ("p.jpg", encode(_photos()[0]), "image/jpeg")}
        ).is_success
    assert client.post("/search", files={"file": ("p.jpg", b"", "image/jpeg")}).status_code == 400
    assert any("POST /search" in r.getMessage() and " ms" in r.getMessage() for r in caplog.records)
    text = client.get("/metrics").text
    assert 'imgsearch_requests_total{path="/search",status="200"} 1.0' in text
    assert 'imgsearch_requests_total{path="/search",status="400"} 1.0' in text
    assert "imgsearch_batch_size_count 1.0" in text
    assert "imgsearch_queue_depth 0.0" in text
    assert 'imgsearch_request_seconds_count{path="/search"} 2.0' in text


def test_metrics_count_unmatched_paths_and_refused_uploads_by_status(colour_searcher):
    # the pure ASGI observer reads the status from the response start message, including answers that
    # come from the body-size middleware inside it and from the router's 404 (no route in the scope)
    client = TestClient(create_app(colour_searcher, max_upload_bytes=1000))
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/items/no-such-item/image").status_code == 404
    big = {"file": ("p.jpg", b"\xff" * 200_000, "image/jpeg")}
    assert client.post("/search", files=big).status_code == 413
    text = client.get("/metrics").text
    assert 'imgsearch_requests_total{path="unmatched",status="404"} 1.0' in text
    # the route's template, whatever the item id: ids must not make one time series each
    assert 'imgsearch_requests_total{path="/items/{item_id:path}/image",status="404"} 1.0' in text
    # a declared oversized body is refused before the router runs, so no route is recorded
    assert 'imgsearch_requests_total{path="unmatched",status="413"} 1.0' in text


def test_prepared_photos_search_like_plain_ones_and_stale_tensors_are_not_used(demo_searcher):
    """serve prepares photos in its decode threads; a search of them equals a search of the plain photos,
    and a tensor made by another transform (a model swapped by hot reload) is remade, not searched."""
    from imgsearch.data.images import load_image
    from imgsearch.retrieval.search import PreparedImage

    photos = [load_image(p) for p in demo_searcher.items["image_path"].head(4)]
    want = demo_searcher.search(photos, k=5)
    prepared = [demo_searcher.prepare(p) for p in photos]
    assert all(isinstance(p, PreparedImage) and p.transform is demo_searcher.transform for p in prepared)
    assert repr(demo_searcher.search(prepared, k=5)) == repr(want)
    # a wrong tensor under a foreign transform: the searcher must ignore it and remake the photo's own
    stale = [PreparedImage(p.image, p.tensor.flip(-1).neg(), transform=object()) for p in prepared]
    assert repr(demo_searcher.search(stale, k=5)) == repr(want)
    # the same wrong tensor claimed by the searcher's own transform is used, so the check above had teeth
    spoofed = [PreparedImage(p.image, p.tensor.flip(-1).neg(), demo_searcher.transform) for p in prepared]
    spoofed_ids = [h.item_id for h in demo_searcher.search(spoofed, k=5)[0].hits]
    assert spoofed_ids != [h.item_id for h in want[0].hits]


def test_app_prepares_uploads_in_the_decode_threads(demo_searcher):
    """The batched path hands the batcher prepared photos, and its answers equal the unbatched path's."""
    from imgsearch.retrieval.search import PreparedImage

    seen: list[type] = []
    original = demo_searcher.search

    def spy(images, *args, **kwargs):
        seen.extend(type(im) for im in images)
        return original(images, *args, **kwargs)

    path = demo_searcher.items["image_path"].iloc[0]
    data = Path(path).read_bytes()
    plain = TestClient(create_app(demo_searcher, batching=None))
    want = plain.post("/search?k=5", files={"file": ("a.jpg", data, "image/jpeg")}).json()
    demo_searcher.search = spy
    try:
        batched = TestClient(create_app(demo_searcher, batching=BatchConfig()))
        got = batched.post("/search?k=5", files={"file": ("a.jpg", data, "image/jpeg")}).json()
    finally:
        del demo_searcher.search
    assert seen == [PreparedImage]
    assert len(want["results"]) == 5 and got["results"] == want["results"]


@pytest.mark.parametrize(
    "bad",
    [
        {"max_batch": 0},
        {"max_queue": 0},
        {"decode_threads": 0},
        {"concurrent_batches": 0},
        {"max_wait_ms": -1},
    ],
)
def test_invalid_batching_settings_are_refused(bad):
    with pytest.raises(ValueError, match="invalid batching settings"):
        BatchConfig(**bad)
    # through serve's config too: a zero is refused, not replaced by a default
    section = {"max_batch": 16, "max_wait_ms": 5, "max_queue": 256, "decode_threads": 2, **bad}
    with pytest.raises(ValueError, match="invalid batching settings"):
        _batch_config({"batching": section})


def test_a_serve_config_without_concurrent_batches_runs_one_batch_at_a_time():
    section = {"max_batch": 16, "max_wait_ms": 5, "max_queue": 256, "decode_threads": 2}
    assert _batch_config({"batching": section}).concurrent_batches == 1
