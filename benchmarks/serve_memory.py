"""Memory of ``workers=N``: what a second serve worker adds (PSS) on a 100k-item index, mmap on and off.

The index directory holds synthetic unit vectors of the demo model's dimension (1280-d float32: 488 MiB of
codes) and the demo catalogue's rows repeated under new ids, with the demo manifest, so ``imgsearch-serve``
loads the real model over it. PSS (``/proc/<pid>/smaps_rollup``) splits each shared page between the
processes mapping it, so the sum over the server's processes is the memory the service really holds.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def build_synthetic_index(demo_index: Path, out: Path, n: int, seed: int = 0) -> Path:
    """A ``n``-item Flat/ip index directory over the demo manifest (its checkpoint embeds queries)."""
    import faiss

    from imgsearch.retrieval.index import load_index_dir, save_index_dir

    if (out / "manifest.json").is_file():
        return out
    index, items, manifest = load_index_dir(demo_index)
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, index.d), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    flat = faiss.IndexFlatIP(index.d)
    flat.add(vectors)
    rows = items.iloc[np.arange(n) % len(items)].reset_index(drop=True)
    rows["item_id"] = [f"syn{i}" for i in range(n)]
    rows["product_id"] = [f"synp{i // 2}" for i in range(n)]
    manifest = {**manifest, "index": {**manifest["index"], "factory": "Flat", "ntotal": n}}
    save_index_dir(out, flat, rows, manifest)
    return out


def tree_pss_mib(pid: int) -> tuple[float, int]:
    """``(PSS of pid and its descendants in MiB, number of processes)``."""
    pids, frontier = [pid], [pid]
    while frontier:
        children = []
        for p in frontier:
            try:
                for task in os.listdir(f"/proc/{p}/task"):
                    text = Path(f"/proc/{p}/task/{task}/children").read_text()
                    children += [int(c) for c in text.split()]
            except OSError:
                pass
        pids += children
        frontier = children
    total = 0
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total / 1024, len(pids)


def measure(index_dir: Path, port: int, workers: int, mmap: bool, photo: bytes, src: Path) -> dict[str, Any]:
    """Start ``imgsearch-serve`` (``workers``, ``mmap``), answer a few searches (every worker's pages
    touched), read the PSS of its process tree, stop it."""
    import httpx

    env = {**os.environ, "PYTHONPATH": str(src)}
    proc = subprocess.Popen(
        [sys.executable, "-c", "from imgsearch.serve.app import main; main()", f"index_dir={index_dir}",
         f"port={port}", f"workers={workers}", f"mmap={str(mmap).lower()}",
         "hydra.run.dir=/tmp/imgsearch-bench-mem", "hydra.output_subdir=null"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline, seen = time.monotonic() + 300, set()
        while time.monotonic() < deadline and len(seen) < workers:
            if proc.poll() is not None:
                raise RuntimeError(f"imgsearch-serve exited with {proc.returncode}")
            try:
                r = httpx.post(base + "/search", files={"file": ("q.jpg", photo)}, timeout=60)
                if r.status_code == 200:
                    seen.add(r.headers.get("X-Imgsearch-Worker"))
            except httpx.HTTPError:
                time.sleep(0.5)
        for _ in range(4 * workers):  # every worker searched the whole index at least once
            httpx.post(base + "/search", files={"file": ("q.jpg", photo)}, timeout=60)
        time.sleep(1)
        pss, procs = tree_pss_mib(proc.pid)
        return {"workers": workers, "mmap": mmap, "pss": pss, "procs": procs, "answered_by": len(seen)}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
