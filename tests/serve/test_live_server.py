"""The service under a real uvicorn: raw request paths (no client-side normalisation) and the CLI."""

from __future__ import annotations

import http.client
import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from imgsearch.serve.app import create_app

from .conftest import ColourSearcher, live_server


def raw_get(base_url: str, path: str) -> tuple[int, bytes]:
    """GET ``path`` byte for byte: http.client, unlike browsers and httpx, leaves ``..`` alone."""
    parts = urlsplit(base_url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_raw_traversal_paths_never_reach_a_file(colour_catalogue):
    secret = Path(colour_catalogue["image_path"].iloc[0]).parent / "secret.txt"
    secret.write_text("root:x:0:0 do not serve\n")
    app = create_app(ColourSearcher(colour_catalogue))
    rel = os.path.relpath(secret, Path("/items/x").resolve())
    paths = [
        "/items/../../etc/passwd/image",
        "/items/red-0/../../../../etc/passwd",
        f"/items/{rel}/image",
        f"/items/{secret}/image",
        "/items/..%2f..%2f..%2fetc%2fpasswd/image",
        "/items/%2e%2e%2f%2e%2e%2fetc%2fpasswd/image",
        "/static/../../../../../etc/passwd",
        "/static/../app.py",
        "/static/%2e%2e/app.py",
        "/../../../../etc/passwd",
    ]
    with live_server(app) as base_url:
        assert raw_get(base_url, "/items/red-0/image")[0] == 200
        for path in paths:
            status, body = raw_get(base_url, path)
            assert status in (400, 404), (path, status, body[:200])
            assert b"root:" not in body and b"create_app" not in body, path


def test_cli_refuses_a_missing_index_with_a_clear_message(tmp_path):
    exe = Path(sys.executable).with_name("imgsearch-serve")
    if not exe.is_file():
        pytest.skip(f"console script not installed next to {sys.executable} (pip install -e .)")
    missing = tmp_path / "no-index"
    proc = subprocess.run(
        [str(exe), f"index_dir={missing}", f"hydra.run.dir={tmp_path / 'run'}"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    assert f"no index at {missing}" in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_declared_oversize_upload_is_refused_before_its_body_is_sent(colour_catalogue):
    app = create_app(ColourSearcher(colour_catalogue), max_upload_bytes=1024 * 1024)
    with live_server(app) as base_url:
        parts = urlsplit(base_url)
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
        try:
            conn.putrequest("POST", "/search")
            conn.putheader("Content-Type", "multipart/form-data; boundary=xx")
            conn.putheader("Content-Length", str(500 * 1024 * 1024))
            conn.endheaders()  # headers only: not one byte of the 500 MB body is sent
            response = conn.getresponse()
            status, body = response.status, response.read()
        finally:
            conn.close()
    assert status == 413
    assert b"larger than the 1 MB limit" in body
