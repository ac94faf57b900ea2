"""workers=N behind one port, a memory-mapped index, hot reload after an index swap (serve/workers.py,
serve/reload.py, retrieval/mmap_index.py): a real imgsearch-serve with two forked workers."""

from __future__ import annotations

import http.client
import io
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import faiss
import numpy as np
import pytest
from PIL import Image

from imgsearch.retrieval.index import load_index_dir, save_index_dir
from imgsearch.retrieval.mmap_index import is_mapped, read_index_mapped
from imgsearch.serve.reload import index_version
from retrieval_fixtures import index_dir, trained_run  # noqa: F401  (fixtures)

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, photo: bytes) -> tuple[int, str, dict]:
    """POST /search on a fresh connection (so the kernel may hand it to either worker)."""
    boundary = "b0undary"
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="q.png"\r\n'
            "Content-Type: image/png\r\n\r\n"
        ).encode()
        + photo
        + f"\r\n--{boundary}--\r\n".encode()
    )
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(
            "POST", "/search?k=5", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        r = conn.getresponse()
        return r.status, r.getheader("X-Imgsearch-Worker") or "", json.loads(r.read() or b"{}")
    finally:
        conn.close()


def _png(path: str) -> bytes:
    buf = io.BytesIO()
    Image.open(path).convert("RGB").save(buf, "PNG")
    return buf.getvalue()


def _answers_in_bursts(port: int, photo: bytes, within_s: float, done) -> Iterator[tuple[str, list[str]]]:
    """``(worker, item ids)`` of each answer to bursts of four concurrent POSTs, every one a 200, until
    ``done()`` or ``within_s`` passed.

    Bursts, and time rather than a count of tries: which worker accepts a connection is the kernel's choice,
    and an idle machine may hand a run of sequential ones to the same worker (or the second worker may still
    be starting when the first answers /readyz)."""
    deadline = time.monotonic() + within_s
    with ThreadPoolExecutor(4) as pool:
        while time.monotonic() < deadline and not done():
            for status, worker, body in pool.map(lambda _: _post(port, photo), range(4)):
                assert status == 200, body  # never a failed request, also while the workers reload
                yield worker, [h["item_id"] for h in body["results"]]


def _answers_by_worker(port: int, photo: bytes, within_s: float = 90.0) -> dict[str, list[str]]:
    """Item ids answered by each worker, until two workers answered (or ``within_s`` passed)."""
    seen: dict[str, list[str]] = {}
    for worker, ids in _answers_in_bursts(port, photo, within_s, lambda: len(seen) >= 2):
        seen.setdefault(worker, ids)
    return seen


@pytest.fixture
def served(index_dir, tmp_path):  # noqa: F811
    """imgsearch-serve workers=2 on a copy of the tiny index (so the test may swap it)."""
    import shutil

    served_dir = tmp_path / "index"
    shutil.copytree(index_dir, served_dir)
    port = _free_port()
    env = {**os.environ, "PYTHONPATH": str(REPO / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from imgsearch.serve.app import main; main()", f"index_dir={served_dir}",
         f"port={port}", "workers=2", "reload.check_every_s=0.2", f"hydra.run.dir={tmp_path / 'hydra'}",
         "runtime=torch"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"imgsearch-serve exited: {proc.stderr.read().decode()[-2000:]}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/readyz")
            if conn.getresponse().status == 200:
                break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("imgsearch-serve workers=2 not ready in 120 s")
        time.sleep(0.3)
    try:
        yield port, served_dir
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def test_two_workers_answer_the_same_and_both_follow_an_index_swap(served):
    port, served_dir = served
    _, items, manifest = load_index_dir(served_dir)
    photo = _png(str(items["image_path"].iloc[0]))
    before = _answers_by_worker(port, photo)
    assert len(before) == 2, f"only worker(s) {sorted(before)} answered"
    first, second = before.values()
    assert first == second and len(first) == 5

    # a new index swapped in atomically: the same catalogue without the first answer's items
    index = faiss.read_index(str(served_dir / "index.faiss"))
    vectors = index.reconstruct_n(0, index.ntotal)
    keep = ~items["item_id"].isin(first[:3]).to_numpy()
    smaller = (
        faiss.IndexFlatIP(vectors.shape[1])
        if manifest["index"]["metric"] == "ip"
        else faiss.IndexFlatL2(vectors.shape[1])
    )
    smaller.add(np.ascontiguousarray(vectors[keep]))
    manifest = {**manifest, "index": {**manifest["index"], "ntotal": int(keep.sum())}}
    save_index_dir(served_dir, smaller, items[keep], manifest)

    fresh: dict[str, list[str]] = {}
    for worker, ids in _answers_in_bursts(port, photo, 90.0, lambda: len(fresh) >= 2):
        if not set(ids) & set(first[:3]):
            fresh[worker] = ids
    assert sorted(fresh) == sorted(before), f"workers answering from the new index: {sorted(fresh)}"
    a, b = fresh.values()
    assert a == b


def test_flat_index_codes_are_mapped(tmp_path):
    x = np.random.default_rng(0).random((500, 16), dtype=np.float32)
    flat = faiss.IndexFlatIP(16)
    flat.add(x)
    path = tmp_path / "index.faiss"
    faiss.write_index(flat, str(path))
    plain = faiss.read_index(str(path))
    assert not is_mapped(path)
    mapped, ok = read_index_mapped(path)
    assert ok and is_mapped(path)
    np.testing.assert_array_equal(mapped.search(x[:4], 5)[1], plain.search(x[:4], 5)[1])


def test_index_version_moves_with_a_swap_only(index_dir, tmp_path):  # noqa: F811
    import shutil

    d = tmp_path / "index"
    shutil.copytree(index_dir, d)
    v0 = index_version(d)
    assert index_version(d) == v0
    index, items, manifest = load_index_dir(d)
    save_index_dir(d, index, items, manifest)  # the same content, a new directory swapped in
    assert index_version(d) != v0
