"""Hot reload in one worker (serve/reload.py): requests during a reload are answered (by the old index),
then by the new one; a load that fails keeps the old index."""

from __future__ import annotations

import threading

from fastapi.testclient import TestClient

from imgsearch.serve.app import create_app
from imgsearch.serve.batching import BatchConfig
from imgsearch.serve.reload import Reloader, ReloadingSearcher

from .conftest import ColourSearcher, encode, swatch


def _client(reloader: Reloader) -> TestClient:
    return TestClient(create_app(ReloadingSearcher(reloader), batching=BatchConfig(max_wait_ms=1), top_k=3,
                                 reloader=reloader))  # fmt: skip


def _search(client: TestClient) -> tuple[int, list[str]]:
    r = client.post("/search", files={"file": ("p.png", encode(swatch((200, 30, 30), seed=3)), "image/png")})
    return r.status_code, [h["item_id"] for h in r.json().get("results", [])]


def test_requests_during_a_reload_are_answered_then_the_new_index_answers(colour_catalogue):
    old = ColourSearcher(colour_catalogue)
    red_first = _search(_client(Reloader(lambda: old, lambda: 0, old, check_every_s=0)))[1]
    new = ColourSearcher(
        colour_catalogue[~colour_catalogue["item_id"].isin(red_first)].reset_index(drop=True)
    )
    version, gate = [0], threading.Event()

    def slow_load():
        gate.wait(10)  # the new index is still loading while the requests below run
        return new

    reloader = Reloader(slow_load, lambda: version[0], old, check_every_s=0)
    client = _client(reloader)
    version[0] = 1  # the directory was replaced
    during = [_search(client) for _ in range(5)]
    assert all(status == 200 and ids == red_first for status, ids in during), during
    gate.set()
    reloader.wait(10)
    status, after = _search(client)
    assert status == 200 and after and not set(after) & set(red_first)
    assert reloader.reloads == 1 and reloader.failures == 0


def test_a_failed_reload_keeps_the_old_index(colour_catalogue):
    old = ColourSearcher(colour_catalogue)
    version = [0]

    def broken():
        raise RuntimeError("index.faiss is truncated")

    reloader = Reloader(broken, lambda: version[0], old, check_every_s=0)
    client = _client(reloader)
    first = _search(client)
    version[0] = 1
    _search(client)
    reloader.wait(10)
    assert reloader.failures == 1 and reloader.current is old
    assert _search(client) == first
    reloader.maybe_reload()  # the same broken version is not retried on every request
    assert reloader.failures == 1
