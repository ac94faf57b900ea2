"""Index from shards: build time, peak resident memory, recall@10 and QPS against N (1M / 3M / 10M x 256).

The gallery is written as float16 shards in imgsearch-embed's layout (``benchmarks.synthetic``, chunk by
chunk), then ``imgsearch.retrieval.build.build_index_from_shards`` runs in a child process whose VmHWM is the
peak (the parent that generated the data is not counted). Ground truth is exact inner-product search over
the same float16-rounded vectors, shard by shard, for 1,000 fresh queries; recall@10 is the fraction of the
exact top-10 found in the index's top-10. The factory is ``recommend_index``'s for a 4 GiB budget.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

try:
    from benchmarks._common import REPO_ROOT, command_for, goal, log, section, table
    from benchmarks.synthetic import ClusteredEmbeddings
except ImportError:  # run as a script from benchmarks/
    from _common import REPO_ROOT, command_for, goal, log, section, table
    from synthetic import ClusteredEmbeddings

NAME = "shard_build"
_SIZES = {"smoke": [20_000], "default": [200_000], "full": [1_000_000, 3_000_000, 10_000_000]}
CONFIGS: dict[str, dict[str, Any]] = {
    size: {
        "sizes": sizes,
        "dim": 32 if size == "smoke" else 256,
        "shard_rows": 5_000 if size == "smoke" else 200_000,
        "n_queries": 50 if size == "smoke" else 1000,
        "memory_gb": 4.0,
        "nprobes": [8] if size == "smoke" else [16, 64, 128],
        "train_sample": 5_000 if size == "smoke" else 50_000,
        # recommend_index(..., ondisk=True): exact lists on disk where they exceed the budget
        "ondisk": True,
    }
    for size, sizes in _SIZES.items()
}

CHILD = """
import json, sys, threading, time
import faiss
from imgsearch.retrieval.build import build_index_from_shards
def status(key):
    for line in open('/proc/self/status'):
        if line.startswith(key):
            return int(line.split()[1]) / 1024
# VmHWM counts the mapped pages of index.ivfdata the merge touches (page cache the kernel can drop);
# RssAnon is what the process cannot give back: sampled, its peak is the build's own memory
peak_anon = [0.0]
def sample():
    while True:
        peak_anon[0] = max(peak_anon[0], status('RssAnon'))
        time.sleep(0.05)
threading.Thread(target=sample, daemon=True).start()
base = status('VmHWM')
t = time.perf_counter()
build_index_from_shards(sys.argv[1], sys.argv[2], factory=sys.argv[3], train_sample=int(sys.argv[4]),
                        ondisk=sys.argv[5] == '1')
print(json.dumps({'seconds': time.perf_counter() - t, 'peak_mib': status('VmHWM'), 'base_mib': base,
                  'peak_anon_mib': max(peak_anon[0], status('RssAnon'))}))
"""


def _write_shards(directory: Path, gen: ClusteredEmbeddings, n: int, shard_rows: int) -> None:
    from imgsearch.retrieval.shards import write_shard
    from imgsearch.utils.atomic import atomic_write_json

    for i, (x, _) in enumerate(gen.gallery_chunks(n, chunk_size=shard_rows)):
        rows = np.arange(i * shard_rows, i * shard_rows + len(x))
        meta = pd.DataFrame({"row": rows, "item_id": rows.astype(str), "image_path": "", "label": ""})
        write_shard(directory, i, x.astype(np.float16), meta)
    spec = {"kind": "features", "dim": gen.dim, "dtype": "float16", "shard_rows": shard_rows, "rows": n}
    atomic_write_json(directory / "shards.json", spec)


def _exact_top10(directory: Path, q: np.ndarray) -> np.ndarray:
    from imgsearch.retrieval.shards import iter_shards

    best_d = np.full((len(q), 10), -np.inf, np.float32)
    best_i = np.full((len(q), 10), -1, np.int64)
    start = 0
    for shard in iter_shards(directory, mmap=True):
        x = np.asarray(shard.vectors, dtype=np.float32)
        faiss.normalize_L2(x)
        d, i = faiss.knn(q, x, 10, faiss.METRIC_INNER_PRODUCT)
        cat_d, cat_i = np.hstack([best_d, -d]), np.hstack([best_i, i + start])
        cat_d[:, :10] = -best_d
        order = np.argsort(cat_d, axis=1, kind="stable")[:, :10]
        best_d, best_i = -np.take_along_axis(cat_d, order, 1), np.take_along_axis(cat_i, order, 1)
        start += len(x)
    return best_i


def run(
    sizes,
    dim,
    shard_rows,
    n_queries,
    memory_gb,
    nprobes,
    train_sample=50_000,
    ondisk=False,
    full: bool = False,
) -> dict[str, Any]:
    import os

    from imgsearch.retrieval.build import recommend_index
    from imgsearch.retrieval.index import load_index_dir, search_batched, search_params

    gen = ClusteredEmbeddings(dim=dim)
    q, _ = gen.queries(n_queries)
    faiss.normalize_L2(q)
    rows, goals, advices = [], [], []
    for n in sizes:
        advice = recommend_index(n, dim, memory_gb, ondisk=ondisk, shard_rows=shard_rows)
        factory, on_disk = advice["factory"], bool(advice.get("ondisk"))
        advices.append(f"N={n:,}: {factory}{' (lists on disk)' if on_disk else ''}")
        work = Path(tempfile.mkdtemp(prefix="imgsearch-shard-bench-"))
        try:
            t = time.perf_counter()
            _write_shards(work / "shards", gen, n, shard_rows)
            gen_s = time.perf_counter() - t
            log(f"{NAME}: {n} x {dim} shards written in {gen_s:.0f} s; building {factory} ondisk={on_disk}")
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, str(work / "shards"), str(work / "index"), factory,
                 str(train_sample), "1" if on_disk else "0"],
                capture_output=True, text=True, cwd=REPO_ROOT,
                env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "src")},
            )  # fmt: skip
            if proc.returncode:
                raise RuntimeError(proc.stderr[-2000:])
            built = json.loads(proc.stdout.strip().splitlines()[-1])
            log(f"{NAME}: N={n} built in {built['seconds']:.0f} s: {built}")
            t = time.perf_counter()
            truth = _exact_top10(work / "shards", q)
            truth_s = time.perf_counter() - t
            disk_mib = sum(f.stat().st_size for f in (work / "index").iterdir()) / 2**20
            index, _, _ = load_index_dir(work / "index")
            for nprobe in nprobes if factory != "Flat" else [None]:
                params = search_params(index, nprobe=nprobe)
                search_batched(index, q[:50], 10, params=params)  # warm-up
                t = time.perf_counter()
                _, ids = search_batched(index, q, 10, params=params)
                qps = len(q) / (time.perf_counter() - t)
                recall = float(np.mean([len(set(a) & set(b)) / 10 for a, b in zip(ids, truth, strict=True)]))
                rows.append([n, factory, "disk" if on_disk else "RAM", nprobe, round(gen_s),
                             round(built["seconds"], 1), round(built["peak_mib"]),
                             round(built["peak_anon_mib"]), round(built["base_mib"]), round(disk_mib),
                             round(recall, 4), round(qps), round(truth_s)])  # fmt: skip
                log(f"{NAME}: N={n} nprobe={nprobe} recall@10={recall:.3f} qps={qps:.0f} "
                    f"build={built['seconds']:.0f}s peak={built['peak_mib']:.0f} MiB "
                    f"anon={built['peak_anon_mib']:.0f} MiB")  # fmt: skip
            best = max(r[10] for r in rows if r[0] == n)
            # on disk, the mapped .ivfdata pages count in VmHWM but are page cache: the anonymous peak is
            # the memory the build needs; in RAM both are the same lists
            peak = built["peak_anon_mib"] if on_disk else built["peak_mib"]
            kind = "anonymous RSS (lists on disk)" if on_disk else "RSS"
            measured = f"{peak:.0f} MiB {kind}, best recall {best:.3f}"
            met = peak < 4096 and best >= 0.90
            goals.append(goal(f"N={n:,}: peak RSS < 4 GiB, recall@10 >= 0.90", measured, met))
            del index
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return section(
        NAME,
        "Index from float16 shards: build time and peak memory against N",
        command_for(NAME, full),
        tables=[table("streaming build (child process: peak VmHWM and sampled peak RssAnon, both include "
                      "Python + libraries)",
                      ["N", "factory", "lists", "nprobe", "shards written s", "build s", "peak VmHWM MiB",
                       "peak anon MiB", "imports MiB", "index dir MiB", "recall@10", "QPS", "exact truth s"],
                      rows)],
        goals=goals,
        notes=[f"dim={dim}, float16 shards of {shard_rows} rows, train_sample={train_sample}, "
               f"{n_queries} queries, factory from "
               f"recommend_index(N, d, {memory_gb:g} GiB, ondisk={ondisk}): "
               + "; ".join(advices),
               "exact ground truth: faiss.knn over one shard at a time, the top-10 merged across shards",
               "on-disk rows: VmHWM includes the mmapped index.ivfdata pages the merge wrote (page cache, "
               "reclaimable); 'peak anon' is the memory the build itself holds",
               f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}, nice 10; the 2 cores were "
               "shared with four other engineers' jobs "
               f"(load average {os.getloadavg()[0]:.1f} at the end), so seconds are upper bounds"],
    )  # fmt: skip
