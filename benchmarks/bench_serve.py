"""The web service under load: latency of one client and of 16 concurrent ones, with and without a filter;
the bare batched forward rate of the same runtime in the same run; what a second worker adds to memory.

``imgsearch-serve`` runs in its own process on the demo index (``make demo`` builds it). The load comes from
``benchmarks/serve_client.py`` (asyncio sockets, prebuilt requests) in a process of its own, so the
client's CPU, which shares the machine's cores with the server, stays small; one row repeats the 16 clients
with ``httpx`` threads for comparison. Each client waits for its answer before sending the next request.
``compare_src`` (``--set compare_src=/path/to/old/src``) serves the same load from another source tree too,
in the same run: before/after figures under the same machine load. ``compare_pure_python`` (on by default)
serves it once more from this tree with uvicorn's pure-Python HTTP parser and event loop (``http=h11
loop=asyncio``), to show what the default httptools + uvloop buy. ``compare_workers`` (2 by default, 0 = off)
serves it once more with ``workers=N`` processes behind the port: one process spends its Python (HTTP parsing,
decoding, JSON) under one interpreter lock, so on two cores a second worker is the lever left.

The ratios table also gives the closed-loop floor of the p95 goal: with ``c`` clients that each wait for their
answer, the mean latency is ``c / throughput`` (Little's law), so even a server running at the bare forward
rate could not bring its 16-client latency below ``16 / bare`` seconds; when that floor is already above
3x the single-client p50, the p95 goal cannot be met on this machine by any server.
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
    "smoke": {
        "clients": [1, 4],
        "requests": 20,
        "k": 12,
        "memory_items": 0,
        "compare_src": "",
        "compare_pure_python": False,
        "compare_workers": 0,
    },
    "default": {"clients": [1, 16], "requests": 400, "k": 12, "memory_items": 100_000, "compare_src": ""},
    "full": {"clients": [1, 4, 16], "requests": 800, "k": 12, "memory_items": 100_000, "compare_src": ""},
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
    cpu = time.process_time()  # this process is only the client while it runs
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.perf_counter() - t
    q = statistics.quantiles(latencies, n=20)
    return {"rps": len(latencies) / wall, "p50": statistics.median(latencies) * 1000, "p95": q[18] * 1000,
            "errors": errors[0], "cpu_share": (time.process_time() - cpu) / wall}  # fmt: skip


def _lean_load(port: int, photo_paths: list[str], clients: int, n: int, params: dict[str, Any]) -> dict:
    import json

    cmd = [sys.executable, str(Path(__file__).with_name("serve_client.py")), "--port", str(port),
           "--clients", str(clients), "--requests", str(n),
           *[f"--param={k}={v}" for k, v in params.items()], *photo_paths]  # fmt: skip
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=1800)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bare_forward(images: list[Any], batch: int = 16, repeats: int = 5) -> dict[str, Any]:
    """img/s of the served runtime alone at ``batch`` (preprocessed tensors), and of ``Searcher.search``
    (preprocessing + forward + FAISS + hits), on the demo index, with no server running."""
    from imgsearch.retrieval.search import Searcher

    try:
        from benchmarks._common import median_time
    except ImportError:
        from _common import median_time

    s = Searcher.from_index_dir(DEMO_INDEX, runtime="auto")
    ims = (images * batch)[:batch]
    x = s._batch(ims, s.transform)
    runtime = "onnx" if s.onnx is not None else "torch"
    fwd = (lambda: s.onnx(x)) if s.onnx is not None else (lambda: s.module.predict_step(x))
    t_fwd = median_time(fwd, repeats=repeats, warmup=2)
    t_search = median_time(lambda: s.search(ims, k=13), repeats=repeats, warmup=1)
    return {"runtime": runtime, "forward": batch / t_fwd, "search": batch / t_search}


def _serve(src: Path, port: int, extra: tuple[str, ...] = ()) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.Popen(
        [sys.executable, "-c", "from imgsearch.serve.app import main; main()", f"index_dir={DEMO_INDEX}",
         f"port={port}", "hydra.run.dir=/tmp/imgsearch-bench-serve", "hydra.output_subdir=null", *extra],
        cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def closed_loop_floor(clients: int, rate_per_s: float, single_p50_ms: float) -> float:
    """The least mean latency of ``clients`` closed-loop clients served at ``rate_per_s`` (Little's law:
    ``clients / rate``), as a multiple of the single-client p50: a p95 goal below it cannot be met."""
    if rate_per_s <= 0 or single_p50_ms <= 0:
        raise ValueError(f"rate and p50 must be positive, got {rate_per_s} and {single_p50_ms}")
    return clients / rate_per_s * 1000.0 / single_p50_ms


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


#: the pure-Python HTTP parser and event loop, served beside the default (httptools + uvloop) in the same run
PURE_PYTHON_SERVER = ("http=h11", "loop=asyncio")


def run(
    clients,
    requests,
    k,
    memory_items=0,
    compare_src="",
    compare_pure_python=True,
    compare_workers=2,
    rounds=2,
    full: bool = False,
) -> dict[str, Any]:
    title = "Search service under concurrent clients (demo index)"
    if not (DEMO_INDEX / "manifest.json").is_file():
        why = f"no demo index at {DEMO_INDEX}: `make demo`"
        return section(NAME, title, command_for(NAME, full), skipped=why)
    from PIL import Image

    from imgsearch.retrieval.index import load_index_dir

    _, items, _ = load_index_dir(DEMO_INDEX)  # image paths resolved against the recorded image root
    paths = [p for p in items["image_path"].astype(str)[:32] if Path(p).is_file()]
    if not paths:
        raise RuntimeError(
            f"none of the demo index's photos could be read (first: {items['image_path'].iloc[0]})"
        )
    photos = [Path(p).read_bytes() for p in paths]
    brand = str(items["brand"].mode().iloc[0])
    bare = bare_forward([Image.open(p).convert("RGB") for p in paths[:16]])
    log(f"{NAME}: bare {bare['runtime']} forward {bare['forward']:.1f} img/s at batch 16, "
        f"Searcher.search {bare['search']:.1f} img/s")  # fmt: skip
    here = REPO_ROOT / "src"
    trees = [("this tree", here, ())]
    if compare_pure_python:
        trees.append(("this tree, h11 + asyncio", here, PURE_PYTHON_SERVER))
    workers_tree = f"this tree, workers={int(compare_workers)}" if int(compare_workers) > 1 else None
    if workers_tree:
        trees.append((workers_tree, here, (f"workers={int(compare_workers)}",)))
    if compare_src:
        trees.append(("before", Path(compare_src), ()))
    rows, goals = [], []
    # Servers measured one after another drift with the machine (the first of a run came out 10-30% slower
    # than the same server later): with rounds=2 the second round runs them in reverse order and the ratios
    # are each server's mean over the rounds.
    per_round: dict[str, list[tuple[float, float, float]]] = {}
    for rnd in range(max(1, int(rounds))):
        for tree, src, extra in trees if rnd % 2 == 0 else trees[::-1]:
            label = tree if rounds == 1 else f"{tree} (round {rnd + 1})"
            port = _free_port()
            base = f"http://127.0.0.1:{port}"
            proc = _serve(src, port, extra)
            try:
                _wait_ready(base, proc)
                _lean_load(port, paths, 1, 10, {"k": k})  # warm-up: the first forward passes are slow
                single, busy = None, None
                for filtered in (False, True):
                    params = {"k": k, **({"filter": f"brand={brand}"} if filtered else {})}
                    for c in clients:
                        m = _lean_load(port, paths, c, requests if c > 1 else max(50, requests // 8), params)
                        if c == 1 and not filtered:
                            single = m
                        row = [label, "lean", c, f"brand={brand}" if filtered else "none",
                               round(m["rps"], 1), round(m["p50"]), round(m["p95"]), m["errors"],
                               f"{m['cpu_share']:.2f}"]  # fmt: skip
                        rows.append(row)
                        if c == max(clients) and not filtered:
                            busy = row
                        log(f"{NAME} [{label}]: {c} clients filter={filtered}: {m['rps']:.1f} req/s p50 "
                            f"{m['p50']:.0f} ms p95 {m['p95']:.0f} ms errors {m['errors']}")  # fmt: skip
                top = max(clients)
                m = _load(base, photos, top, requests, {"k": k})
                rows.append([label, "httpx threads", top, "none", round(m["rps"], 1), round(m["p50"]),
                             round(m["p95"]), m["errors"], f"{m['cpu_share']:.2f}"])  # fmt: skip
                per_round.setdefault(tree, []).append(
                    (busy[6] / single["p50"], busy[4] / bare["forward"], single["p50"])
                )
            finally:
                _stop(proc)
    ratios = {t: tuple(statistics.mean(v) for v in zip(*runs, strict=True)) for t, runs in per_round.items()}
    top = max(clients)
    p95_ratio, rate_ratio, single_p50 = ratios["this tree"]
    floor = closed_loop_floor(top, bare["forward"], single_p50)
    goals.append(goal(f"p95 at {top} clients <= 3x the single-client p50 (closed-loop floor at the bare "
                      f"forward rate: {floor:.2f}x)", f"{p95_ratio:.2f}x", p95_ratio <= 3))  # fmt: skip
    goals.append(goal(f"{top}-client throughput >= 0.8x the bare batched {bare['runtime']} forward "
                      f"({bare['forward']:.0f} img/s at batch 16, same run)", f"{rate_ratio:.2f}x",
                      rate_ratio >= 0.8))  # fmt: skip
    if workers_tree:
        rate = ratios[workers_tree][1]
        goals.append(goal(f"[workers={int(compare_workers)}] {top}-client throughput >= 0.8x the bare "
                          f"batched {bare['runtime']} forward", f"{rate:.2f}x", rate >= 0.8))  # fmt: skip
    if "before" in ratios:
        b = ratios["before"]
        now = ratios["this tree"][2]
        goals.append(goal("single-client p50 no worse than before +10% (same run)",
                          f"{now:.0f} ms vs {b[2]:.0f} ms", now <= 1.1 * b[2]))  # fmt: skip
    tables = [
        table(
            f"POST /search?k={k}, demo photos, each client waits for its answer",
            ["server", "client", "clients", "filter", "req/s", "p50 ms", "p95 ms", "errors", "client cores"],
            rows,
        ),
        table(
            "Ratios (same run; with rounds=2 each server's mean over both rounds)",
            ["server", f"p95 at {top} / p50 at 1", f"req/s at {top} / bare forward img/s", "1 client p50 ms"],
            [[t, f"{r[0]:.2f}x", f"{r[1]:.2f}x", f"{r[2]:.1f}"] for t, r in ratios.items()],
            note=f"bare {bare['runtime']} forward {bare['forward']:.1f} img/s at batch 16; Searcher.search "
            f"(preprocessing, forward, FAISS, hits) {bare['search']:.1f} img/s; closed-loop floor of the "
            f"{top}-client mean latency at that forward rate: {top / bare['forward'] * 1000:.1f} ms "
            f"= {floor:.2f}x the single-client p50 (Little's law)",
        ),
    ]
    if memory_items:
        mem_table, mem_goal = _memory(memory_items, photos[0])
        tables.append(mem_table)
        goals.append(mem_goal)
    return section(
        NAME,
        title,
        command_for(NAME, full),
        tables=tables,
        goals=goals,
        notes=[
            f"{len(items)} items; the server's own defaults (runtime auto, micro-batching). The load-"
            "generating clients share the machine's 2 cores with the server: 'client cores' is the client's "
            "CPU time over the wall time; the machine was shared with other jobs"
        ],
    )


def _memory(n: int, photo: bytes) -> tuple[dict[str, Any], dict[str, Any]]:
    try:
        from benchmarks.serve_memory import build_synthetic_index, measure
    except ImportError:
        from serve_memory import build_synthetic_index, measure

    index_dir = build_synthetic_index(DEMO_INDEX, Path("/tmp/imgsearch-bench-mem-index") / str(n), n)
    runs = {}
    for workers, mmap in ((1, True), (2, True), (1, False), (2, False)):
        runs[(workers, mmap)] = m = measure(index_dir, _free_port(), workers, mmap, photo, REPO_ROOT / "src")
        log(f"{NAME}: {n} items, workers={workers} mmap={mmap}: PSS {m['pss']:.0f} MiB over {m['procs']} "
            f"processes, {m['answered_by']} answered")  # fmt: skip
    rows = []
    for mmap in (True, False):
        one, two = runs[(1, mmap)]["pss"], runs[(2, mmap)]["pss"]
        rows.append(
            [str(mmap).lower(), round(one), round(two), round(two - one), f"{(two - one) / one:.2f}x"]
        )
    ratio = (runs[(2, True)]["pss"] - runs[(1, True)]["pss"]) / runs[(1, True)]["pss"]
    codes = n * 1280 * 4 / 2**20
    return (
        table(
            f"Memory of workers=N on a {n:,}-item index (1280-d Flat, {codes:.0f} MiB of codes; PSS of the "
            "server's processes)",
            ["mmap", "1 worker MiB", "2 workers MiB", "second worker adds MiB", "added / first"],
            rows,
        ),
        goal(
            f"a second worker adds < 0.25x the first's memory ({n:,} items, mmap)",
            f"{ratio:.2f}x",
            ratio < 0.25,
        ),
    )
