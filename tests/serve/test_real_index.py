"""The service over a real index: EfficientNet-Lite0 features of demo images, built by imgsearch-index."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imgsearch.serve.app import create_app, manifest_facts

from .conftest import encode

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(demo_searcher) -> TestClient:
    model, facts = manifest_facts(demo_searcher.manifest)
    return TestClient(create_app(demo_searcher, top_k=6, model_name=model, details=facts))


def test_catalogue_photo_finds_itself_first(client, demo_searcher):
    items = demo_searcher.items
    for view in ("model", "cutout"):
        row = items[items["view"] == view].iloc[0]
        data = Path(row["image_path"]).read_bytes()
        r = client.post("/search", files={"file": ("shop.jpg", data, "image/jpeg")})
        assert r.status_code == 200, r.text
        body = r.json()
        assert len(body["results"]) == 6
        top = body["results"][0]
        assert top["item_id"] == row["item_id"]
        assert top["score"] == pytest.approx(1.0, abs=1e-3)  # cosine with itself
        assert top["title"] == row["title"] and top["brand"] == row["brand"]
        assert top["price"] == pytest.approx(row["price"]) and top["currency"] == row["currency"]
        assert body["category"] in demo_searcher.module.class_names
        assert 0.0 < body["probability"] <= 1.0
        for hit in body["results"]:
            assert client.get("/" + hit["image_url"]).status_code == 200


def test_reencoded_photo_gets_the_same_answer_as_the_library(client, demo_searcher):
    row = demo_searcher.items.iloc[5]
    image = Image.open(row["image_path"]).convert("RGB").resize((150, 150))
    png = encode(image, "PNG")
    r = client.post("/search", files={"file": ("photo.png", png, "image/png")}, params={"k": 4})
    assert r.status_code == 200
    from imgsearch.data.images import load_image_bytes

    (expected,) = demo_searcher.search([load_image_bytes(png)], k=4)
    assert [h["item_id"] for h in r.json()["results"]] == [h.item_id for h in expected.hits]
    assert r.json()["category"] == expected.category
    assert r.json()["probability"] == pytest.approx(expected.probability)


def test_health_describes_the_loaded_index(client, demo_searcher):
    body = client.get("/health").json()
    assert body["index_size"] == len(demo_searcher.items) == 48
    assert body["model"] == "efficientnet_lite0"
    assert body["details"]["embedding"] == "features" and body["details"]["metric"] == "ip"
    assert body["details"]["dim"] == demo_searcher.index.d
    assert body["details"]["classes"] == 12


def test_bad_uploads_stay_4xx_with_a_real_model(client):
    good = encode(Image.new("RGB", (40, 40), (120, 30, 30)), "JPEG")
    assert client.post("/search", files={"file": ("a.jpg", good, "image/jpeg")}).status_code == 200
    assert client.post("/search", files={"file": ("a.jpg", good[:300], "image/jpeg")}).status_code == 422
    assert client.post("/search", files={"file": ("a.txt", b"hello" * 40, "text/plain")}).status_code == 415
    # a 1x1 image and a very wide one still embed (the transform resizes and crops)
    for size in ((1, 1), (600, 20)):
        tiny = encode(Image.new("RGB", size, (0, 90, 200)), "PNG")
        assert client.post("/search", files={"file": ("s.png", tiny, "image/png")}).status_code == 200


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_loads_the_index_once_and_serves(demo_index, tmp_path):
    exe = Path(sys.executable).with_name("imgsearch-serve")
    if not exe.is_file():
        pytest.skip(f"console script not installed next to {sys.executable} (pip install -e .)")
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [
                str(exe),
                f"index_dir={demo_index}",
                f"port={port}",
                "top_k=3",
                f"hydra.run.dir={tmp_path / 'run'}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "OMP_NUM_THREADS": "1"},
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                health = httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "imgsearch-serve did not start:\n" + log.read_text()
                time.sleep(0.5)
        assert health.json()["index_size"] == 48 and health.json()["model"] == "efficientnet_lite0"
        photo = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 180, 40)).save(photo, format="JPEG")
        for _ in range(2):
            r = httpx.post(
                f"{base}/search", files={"file": ("p.jpg", photo.getvalue(), "image/jpeg")}, timeout=60
            )
            assert r.status_code == 200 and len(r.json()["results"]) == 3  # top_k from the command line
        page = httpx.get(base + "/", timeout=10)
        assert page.status_code == 200 and "imgsearch" in page.text
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log.read_text()
    # one load at start-up, however many requests
    assert text.count("serving 48 items") == 1, text


def test_serve_refuses_an_unusable_checkpoint_with_a_clear_message(demo_index, tmp_path):
    from hydra import compose, initialize_config_dir

    from imgsearch.serve.app import serve
    from imgsearch.utils.config import config_dir

    bad = tmp_path / "not-a-checkpoint.ckpt"
    bad.write_bytes(b"PK\x03\x04 this is not a checkpoint")
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="serve", overrides=[f"index_dir={demo_index}", f"checkpoint={bad}"])
    assert cfg.host == "127.0.0.1" and cfg.port == 8000 and cfg.top_k == 12 and cfg.device == "cpu"
    with pytest.raises(SystemExit, match=r"cannot serve .*not-a-checkpoint\.ckpt"):
        serve(cfg)


@pytest.mark.parametrize("content", [b"", b"IxFI not an index", bytes(range(256)) * 8])
def test_serve_refuses_a_broken_index_file_in_one_line(demo_index, tmp_path, content):
    import shutil

    from hydra import compose, initialize_config_dir

    from imgsearch.serve.app import serve
    from imgsearch.utils.config import config_dir

    broken = tmp_path / "index"
    shutil.copytree(demo_index, broken)
    (broken / "index.faiss").write_bytes(content)
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="serve", overrides=[f"index_dir={broken}"])
    with pytest.raises(SystemExit) as info:
        serve(cfg)
    message = str(info.value)
    assert message.startswith(f"cannot serve {broken}") and "index.faiss" in message and "\n" not in message


def test_query_expansion_answers_as_the_library(client, demo_searcher):
    row = demo_searcher.items.iloc[7]
    data = Path(row["image_path"]).read_bytes()
    params = {"k": 5, "qe": 2, "qe_alpha": 1.0}
    r = client.post("/search", files={"file": ("shop.jpg", data, "image/jpeg")}, params=params)
    assert r.status_code == 200, r.text
    from imgsearch.data.images import load_image_bytes

    (expected,) = demo_searcher.search([load_image_bytes(data)], k=5, qe=2, qe_alpha=1.0)
    got = r.json()["results"]
    assert [h["item_id"] for h in got] == [h.item_id for h in expected.hits]
    assert [h["score"] for h in got] == pytest.approx([h.score for h in expected.hits], abs=1e-4)
    (plain,) = demo_searcher.search([load_image_bytes(data)], k=5)
    assert [h["score"] for h in got] != pytest.approx([h.score for h in plain.hits], abs=1e-4)
    bad = client.post("/search", files={"file": ("shop.jpg", data, "image/jpeg")}, params={"qe": -1})
    assert bad.status_code == 422
    demo_searcher.normalize = False  # as an index built with normalize=false
    try:
        r = client.post("/search", files={"file": ("shop.jpg", data, "image/jpeg")}, params={"qe": 1})
    finally:
        demo_searcher.normalize = True
    assert r.status_code == 400 and "cosine index" in r.json()["detail"]


def test_server_default_query_expansion(demo_searcher):
    data = Path(demo_searcher.items.iloc[7]["image_path"]).read_bytes()
    from imgsearch.data.images import load_image_bytes

    (expanded,) = demo_searcher.search([load_image_bytes(data)], k=5, qe=2, qe_alpha=1.0)
    (plain,) = demo_searcher.search([load_image_bytes(data)], k=5)
    client = TestClient(create_app(demo_searcher, top_k=5, qe=2, qe_alpha=1.0))
    assert client.get("/health").json()["qe"] == 2

    def scores(**params):
        r = client.post("/search", files={"file": ("shop.jpg", data, "image/jpeg")}, params=params)
        assert r.status_code == 200, r.text
        return [h["score"] for h in r.json()["results"]]

    assert scores() == pytest.approx([h.score for h in expanded.hits], abs=1e-4)  # the server's setting
    assert scores(qe=0) == pytest.approx([h.score for h in plain.hits], abs=1e-4)  # a request turns it off
    demo_searcher.normalize = False
    try:
        with pytest.raises(ValueError, match="cosine index"):
            create_app(demo_searcher, qe=1)  # refused at start-up, not on every request
    finally:
        demo_searcher.normalize = True
    with pytest.raises(ValueError, match="qe must be an integer"):
        create_app(demo_searcher, qe=1.5)
