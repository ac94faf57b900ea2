"""A live catalogue (#10): add throughput, remove latency, and what a metadata filter costs a query.

The gallery is synthetic (:mod:`benchmarks.synthetic`), so embedding is excluded: adds are timed from vectors
to committed rows (SQLite transaction + change log + FAISS add). Queries go through
``Searcher.search_vectors`` one at a time, as a service issues them, so each query pays for the filter mask
over the item table as well as the filtered FAISS search. ``label`` has 100 values (a filter on one of them
keeps 1% of the catalogue) and ``brand`` has 2 (50%).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

try:
    from benchmarks._common import command_for, goal, log, section, table
    from benchmarks.synthetic import ClusteredEmbeddings
except ImportError:  # run as a script from benchmarks/
    from _common import command_for, goal, log, section, table
    from synthetic import ClusteredEmbeddings

NAME = "live"
FILTER_GOAL = 0.3  # a 1% filter keeps at least 0.3x the unfiltered QPS

CONFIGS: dict[str, dict[str, Any]] = {
    "smoke": {
        "sizes": [2_000],
        "dim": 32,
        "factories": ["Flat"],
        "n_queries": 20,
        "n_add": 500,
        "n_remove": 5,
    },
    "default": {
        "sizes": [100_000],
        "dim": 256,
        "factories": ["Flat", "HNSW32"],
        "n_queries": 200,
        "n_add": 10_000,
        "n_remove": 20,
    },
    "full": {
        "sizes": [100_000, 1_000_000],
        "dim": 256,
        "factories": ["Flat", "HNSW32"],
        "n_queries": 200,
        "n_add": 10_000,
        "n_remove": 20,
    },
}


def _rows(start: int, n: int, rng: np.random.Generator) -> pd.DataFrame:
    ids = np.arange(start, start + n)
    return pd.DataFrame(
        {
            "item_id": [f"sku-{i}" for i in ids],
            "product_id": [f"p-{i}" for i in ids],
            "image_path": [f"/photos/{i}.jpg" for i in ids],
            "label": [f"cat-{c:02d}" for c in rng.integers(0, 100, n)],
            "brand": rng.choice(["Acme", "Bolt"], n),
            "price": rng.uniform(1, 500, n).round(2),
        }
    )


def _build(directory: Path, gen: ClusteredEmbeddings, n: int, factory: str) -> None:
    from imgsearch.data.schema import validate_catalogue
    from imgsearch.retrieval import index as I

    vectors, _ = gen.gallery(n)
    items = validate_catalogue(_rows(0, n, np.random.default_rng(0)))
    index = I.build_index(vectors, factory=factory, metric="ip", normalize=True)
    manifest = I.make_manifest(index=index, items=items, embedding="pixels", metric="ip", normalize=True,
                               factory=factory, checkpoint=None, checkpoint_sha256=None, backbone=None,
                               data_config=None, pixel_size=4)  # fmt: skip
    manifest["embedding"]["dim"] = gen.dim
    I.save_index_dir(directory, index, items, manifest)


def _qps(searcher: Any, queries: np.ndarray, filters: dict[str, Any] | None) -> float:
    searcher.search_vectors(queries[:5], None, 10, filters=filters)  # warm-up
    t = time.perf_counter()
    for q in queries:
        searcher.search_vectors(q[None, :], None, 10, filters=filters)
    return len(queries) / (time.perf_counter() - t)


def run(sizes, dim, factories, n_queries, n_add, n_remove, full: bool = False) -> dict[str, Any]:
    from imgsearch.retrieval import index as I
    from imgsearch.retrieval.live import LiveIndex
    from imgsearch.retrieval.search import Searcher

    gen = ClusteredEmbeddings(dim=dim)
    queries, _ = gen.queries(n_queries)
    queries = I.prepare_vectors(queries, normalize=True)
    writes, reads, goals = [], [], []
    for n in sizes:
        for factory in factories:
            work = Path(tempfile.mkdtemp(prefix="imgsearch-live-bench-"))
            try:
                t = time.perf_counter()
                _build(work / "index", gen, n, factory)
                build_s = time.perf_counter() - t
                live = LiveIndex.open(work / "index")
                rng = np.random.default_rng(1)
                batch = 1_000 if n_add >= 1_000 else n_add
                extra = I.prepare_vectors(gen.sample(n_add, stream=7)[0], normalize=True)
                t = time.perf_counter()
                for start in range(0, n_add, batch):
                    live.add(_rows(n + start, batch, rng), extra[start : start + batch])
                add_rate = n_add / (time.perf_counter() - t)
                one = []
                for j in range(n_remove):
                    t = time.perf_counter()
                    live.remove([f"sku-{j * 7}"])
                    one.append(time.perf_counter() - t)
                remove_ms = statistics.median(one) * 1000
                writes.append([n, factory, round(build_s, 1), batch, round(add_rate), round(remove_ms, 2)])
                log(f"{NAME}: N={n} {factory}: add {add_rate:.0f} items/s, remove {remove_ms:.1f} ms")

                manifest = {"embedding": {"kind": "pixels", "normalize": True, "pixel_size": 4, "dim": dim}}
                searcher = Searcher(live.index, live.items, manifest, None, live=live)
                base = _qps(searcher, queries, None)
                half = _qps(searcher, queries, {"brand": "Acme"})
                one_pct = _qps(searcher, queries, {"label": "cat-07"})
                price = _qps(searcher, queries, {"price": (100, 200)})
                reads.append([n, factory, round(base), round(half), round(half / base, 2), round(one_pct),
                              round(one_pct / base, 2), round(price / base, 2)])  # fmt: skip
                log(f"{NAME}: N={n} {factory}: QPS {base:.0f}, 50% {half:.0f}, 1% {one_pct:.0f}")
                goals.append(goal(f"N={n} {factory}: 1% filter QPS >= {FILTER_GOAL}x unfiltered",
                                  f"{one_pct / base:.2f}x", one_pct / base >= FILTER_GOAL))  # fmt: skip
                live.close()
            finally:
                shutil.rmtree(work, ignore_errors=True)
    return section(
        NAME,
        "Live catalogue: writes by id and filtered queries",
        command_for(NAME, full),
        tables=[
            table(
                "writes (embedding excluded; each add batch and each remove is one committed transaction)",
                ["N", "factory", "build s", "add batch", "add items/s", "remove one ms (median)"],
                writes,
            ),
            table(
                "queries one at a time through Searcher.search_vectors, k=10",
                [
                    "N",
                    "factory",
                    "QPS",
                    "QPS brand (50%)",
                    "ratio",
                    "QPS label (1%)",
                    "ratio",
                    "price 100-200 (20%) ratio",
                ],
                reads,
            ),
        ],
        goals=goals,
        notes=[
            f"dim={dim}, {n_queries} queries, {n_add} items added after the build, "
            "synthetic clustered vectors; the machine was shared with other jobs"
        ],
    )
