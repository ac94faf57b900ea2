"""The web service under load: latency of one client and of 16 concurrent ones, with and without a filter.

``imgsearch-serve`` runs in its own process on the demo index (``make demo`` builds it) so the load generator
does not share its interpreter; each client thread posts catalogue photos to ``/search`` over HTTP and
waits for the answer before sending the next one.
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

try:
    from benchmarks._common import REPO_ROOT, command_for, goal, log, section, table
except ImportError:  # run as a script from benchmarks/
    from _common import REPO_ROOT, command_for, goal, log, section, table

NAME = "serve"
DEMO_INDEX = REPO_ROOT / "outputs" / "demo" / "index"

CONFIGS: dict[str, dict[str, Any]] = {
    "smoke": {"clients": [1, 4], "requests": 20, "k": 12},
    "default": {"clients": [1, 16], "requests": 400, "k": 12},
    "full": {"clients": [1, 4, 16], "requests": 800, "k": 12},
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_ready(base: str, proc: subprocess.Popen, timeout_s: float = 180.0) -> None:
    import httpx

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"imgsearch-serve exited with {proc.returncode}")
        try:
            if httpx.get(base + "/readyz", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RuntimeError(f"imgsearch-serve not ready within {timeout_s} s")


def _load(base: str, photos: list[bytes], clients: int, n: int, params: dict[str, Any]) -> dict[str, float]:
    import httpx

    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(n))

    def client() -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            while True:
                with lock:
                    i = next(counter, None)
                if i is None:
                    return
                t = time.perf_counter()
                r = http.post("/search", params=params, files={"file": ("q.jpg", photos[i % len(photos)])})
                dt = time.perf_counter() - t
                with lock:
                    latencies.append(dt)
                    errors[0] += r.status_code != 200

    threads = [threading.Thread(target=client) for _ in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    q = statistics.quantiles(latencies, n=20)
    return {"rps": len(latencies) / wall, "p50": statistics.median(latencies) * 1000, "p95": q[18] * 1000,
            "errors": errors[0]}  # fmt: skip


def run(clients, requests, k, full: bool = False) -> dict[str, Any]:
    title = "Search service under concurrent clients (demo index)"
    if not (DEMO_INDEX / "manifest.json").is_file():
        why = f"no demo index at {DEMO_INDEX}: `make demo`"
        return section(NAME, title, command_for(NAME, full), skipped=why)
    from imgsearch.retrieval.index import load_index_dir

    _, items, _ = load_index_dir(DEMO_INDEX)  # image paths resolved against the recorded image root
    photos = [Path(p).read_bytes() for p in items["image_path"].astype(str)[:32] if Path(p).is_file()]
    if not photos:
        raise RuntimeError(
            f"none of the demo index's photos could be read (first: {items['image_path'].iloc[0]})"
        )
    brand = str(items["brand"].mode().iloc[0])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from imgsearch.serve.app import main; main()", f"index_dir={DEMO_INDEX}",
         f"port={port}", "hydra.run.dir=/tmp/imgsearch-bench-serve", "hydra.output_subdir=null"],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    rows, goals = [], []
    try:
        _wait_ready(base, proc)
        _load(base, photos, 1, 10, {"k": k})  # warm-up: the first forward passes are slow
        single = None
        for filtered in (False, True):
            params = {"k": k, **({"filter": f"brand={brand}"} if filtered else {})}
            for c in clients:
                m = _load(base, photos, c, requests if c > 1 else max(50, requests // 8), params)
                if c == 1 and not filtered:
                    single = m
                rows.append([c, f"brand={brand}" if filtered else "none", round(m["rps"], 1), round(m["p50"]),
                             round(m["p95"]), m["errors"]])  # fmt: skip
                log(f"{NAME}: {c} clients filter={filtered}: {m['rps']:.1f} req/s p50 {m['p50']:.0f} ms "
                    f"p95 {m['p95']:.0f} ms errors {m['errors']}")  # fmt: skip
        top = max(clients)
        busy = next(r for r in rows if r[0] == top and r[1] == "none")
        ratio = busy[4] / single["p50"]
        goals.append(goal(f"p95 at {top} clients <= 3x the single-client p50", f"{ratio:.2f}x", ratio <= 3))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
    return section(
        NAME,
        title,
        command_for(NAME, full),
        tables=[
            table(
                f"POST /search?k={k}, demo photos, each client waits for its answer",
                ["clients", "filter", "req/s", "p50 ms", "p95 ms", "errors"],
                rows,
            )
        ],
        goals=goals,
        notes=[
            f"{len(items)} items; the server's own defaults (runtime auto, micro-batching); "
            "clients and server share the machine's cores, which was shared with other jobs"
        ],
    )
