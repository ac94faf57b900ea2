"""The serve benchmark's lean client (benchmarks/serve_client.py) speaks HTTP the server understands."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from benchmarks.serve_client import build_request, load

from imgsearch.serve.app import create_app
from imgsearch.serve.batching import BatchConfig

from .conftest import ColourSearcher, encode, live_server, swatch


def test_lean_client_gets_an_answer_to_every_request(colour_catalogue):
    app = create_app(ColourSearcher(colour_catalogue), batching=BatchConfig(max_wait_ms=1))
    photos = [encode(swatch((30 * i, 90, 200), seed=i)) for i in range(3)]
    with live_server(app) as base:
        port = urlsplit(base).port
        requests = [build_request("127.0.0.1", port, p, {"k": "4"}) for p in photos]
        out = asyncio.run(load("127.0.0.1", port, requests, clients=4, n=24))
        bad = asyncio.run(load("127.0.0.1", port, [build_request("127.0.0.1", port, b"", {})], 1, 2))
    assert out["statuses"] == {"200": 24} and out["errors"] == 0
    assert out["p95"] >= out["p50"] > 0
    assert bad["errors"] == 2 and "400" in bad["statuses"]  # an empty upload is refused, and counted
