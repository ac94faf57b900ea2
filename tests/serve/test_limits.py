"""Bounded decoding of uploads: pixel budget, reduced-size decoding, decode slots with 503 + Retry-After."""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imgsearch.serve.app import create_app
from imgsearch.serve.limits import DecodeBusy, DecodeLimits, DecodeSlots

from .conftest import ColourSearcher, encode, swatch

MB = 1024 * 1024


class SizeRecorder(ColourSearcher):
    """Also records the size of every image the app hands over."""

    def __init__(self, items) -> None:
        super().__init__(items)
        self.sizes: list[tuple[int, int]] = []

    def search(self, images: Sequence[Image.Image], k: int = 10, *, restrict_to_predicted: bool = False):
        self.sizes.extend(im.size for im in images)
        return super().search(images, k, restrict_to_predicted=restrict_to_predicted)


def bilevel_png(width: int, height: int) -> bytes:
    """A few KB that decode to width*height pixels: the shape of a decompression bomb."""
    buf = io.BytesIO()
    Image.new("1", (width, height), 1).save(buf, "PNG")
    return buf.getvalue()


def upload(client: TestClient, data: bytes, name: str = "photo.png", mime: str = "image/png"):
    return client.post("/search", files={"file": (name, data, mime)})


def test_limits_refuse_bad_settings():
    for bad in ({"max_pixels": 0}, {"max_side": -1}, {"max_concurrent": 0}, {"retry_after_s": 1.5}):
        with pytest.raises(ValueError, match="positive integer"):
            DecodeLimits(**bad)


def test_photo_over_the_pixel_budget_is_422_before_decoding(colour_catalogue):
    data = bilevel_png(3000, 3000)
    assert len(data) < 20_000  # small file, 9 Mpx
    app = create_app(ColourSearcher(colour_catalogue), decode_limits=DecodeLimits(max_pixels=4_000_000))
    r = upload(TestClient(app), data, name="bomb.png")
    assert r.status_code == 422
    assert r.json()["reason"] == "too_large"
    assert "3000x3000" in r.json()["detail"] and "pixel budget=4000000" in r.json()["detail"]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_large_photo_is_decoded_at_reduced_size_and_still_found(colour_catalogue, fmt):
    searcher = SizeRecorder(colour_catalogue)
    app = create_app(searcher, max_upload_bytes=32 * MB, decode_limits=DecodeLimits(max_side=256))
    r = upload(TestClient(app), encode(swatch((200, 30, 40), size=2000), fmt), name=f"big.{fmt.lower()}")
    assert r.status_code == 200, r.text
    assert r.json()["category"] == "red"
    assert searcher.sizes and max(searcher.sizes[-1]) <= 256


def test_full_decode_slots_answer_503_with_retry_after(colour_catalogue):
    app = create_app(
        ColourSearcher(colour_catalogue), decode_limits=DecodeLimits(max_concurrent=1, retry_after_s=3)
    )
    client = TestClient(app)
    photo = encode(swatch((30, 170, 60)), "PNG")
    with app.state.decode_slots.slot():  # the one slot is taken by a decode in progress
        busy = upload(client, photo)
    assert busy.status_code == 503
    assert busy.headers["retry-after"] == "3"
    assert busy.json()["reason"] == "busy"
    assert upload(client, photo).status_code == 200  # the slot is free again


def test_decode_slots_count_and_release():
    slots = DecodeSlots(DecodeLimits(max_concurrent=2))
    with slots.slot(), slots.slot():
        with pytest.raises(DecodeBusy), slots.slot():
            pass
        assert slots.in_use == 2
    assert slots.in_use == 0 and slots.peak == 2 and slots.refused == 1


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS line")


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="reads RSS from /proc (Linux)")
def test_40_parallel_near_limit_uploads_keep_rss_bounded(colour_catalogue):
    """40 uploads at once of 23 Mpx 1-bit PNGs (12 KB each), just under a 24 Mpx budget.

    Unbounded, each costs ~200 MB decoded to full-size RGB (~8 GB for 40). The bound asserted: RSS
    grows by less than max_concurrent * max_pixels * 4 bytes + 64 MB (450 MB here).
    """
    limits = DecodeLimits(max_pixels=24_000_000, max_side=1024, max_concurrent=4)
    app = create_app(ColourSearcher(colour_catalogue), max_upload_bytes=MB, decode_limits=limits)
    client = TestClient(app)
    data = bilevel_png(4800, 4800)
    before = _rss_bytes()
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _rss_bytes())
            done.wait(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        with ThreadPoolExecutor(max_workers=40) as pool:
            codes = list(pool.map(lambda i: upload(client, data, name=f"p{i}.png"), range(40)))
    finally:
        done.set()
        sampler.join()
    statuses = [r.status_code for r in codes]
    assert set(statuses) <= {200, 503}, statuses
    assert 200 in statuses
    assert all(r.headers.get("retry-after") == "1" for r in codes if r.status_code == 503)
    assert app.state.decode_slots.peak <= 4
    bound = limits.max_concurrent * limits.max_pixels * 4 + 64 * MB
    assert peak - before < bound, f"RSS grew by {(peak - before) / MB:.0f} MB (bound {bound / MB:.0f} MB)"
    print(f"RSS grew {(peak - before) / MB:.0f} MB; {statuses.count(503)} of 40 answered 503")
