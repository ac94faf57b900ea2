"""Words, colour and filters next to a photo query (#15): what each adds to the latency of one query.

A 100k-item live catalogue (synthetic vectors from :mod:`benchmarks.synthetic`, titles and colours drawn from
a small vocabulary, so a word matches thousands of items as real colour and type words do) is searched one
query at a time through ``Searcher``, as a service issues them:

* photo: the model's forward pass (EfficientNet-Lite0 with a 256-d neck and a colour head, ImageNet weights,
  224 px, one CPU thread) + the FAISS search;
* words: ``search_text`` (SQLite FTS5, BM25) alone;
* photo + words (reciprocal-rank fusion), photo + a filter (1% and 50% of the catalogue), photo + colour
  weight (re-scoring 200 candidates), photo + "in colour c" (the predicted category and a colour filter).

Ratios are to the photo query of the same run. The same rows without the model's forward pass
(``search_vectors``, the query vector given) show the search's own costs.
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

NAME = "words"
GOAL = 1.2  # words and filters add at most 20% to a photo query's latency

COLOURS = ["Black", "White", "Blue", "Red", "Green", "Grey", "Navy Blue", "Pink", "Brown", "Beige", "Purple",
           "Yellow"]  # fmt: skip
TYPES = ["Shirt", "Tshirt", "Dress", "Jeans", "Shoes", "Bag", "Watch", "Jacket", "Skirt", "Sandals", "Belt",
         "Scarf", "Kurta", "Shorts", "Top", "Heels", "Wallet", "Cap", "Socks", "Sweater"]  # fmt: skip
WORDS = ["Men", "Women", "Casual", "Formal", "Printed", "Solid", "Striped", "Slim", "Cotton", "Leather",
         "Classic", "Sports", "Party", "Summer", "Winter"]  # fmt: skip

CONFIGS: dict[str, dict[str, Any]] = {
    "smoke": {"n": 2_000, "factory": "Flat", "n_queries": 5, "input_size": 64},
    "default": {"n": 100_000, "factory": "HNSW32", "n_queries": 40, "input_size": 224},
    "full": {"n": 100_000, "factory": "HNSW32", "n_queries": 100, "input_size": 224},
}


def _rows(n: int, rng: np.random.Generator) -> pd.DataFrame:
    colour = rng.choice(COLOURS, n)
    kind = rng.choice(TYPES, n)
    a, b = rng.choice(WORDS, n), rng.choice(WORDS, n)
    return pd.DataFrame(
        {
            "item_id": [f"sku-{i}" for i in range(n)],
            "product_id": [f"p-{i}" for i in range(n)],
            "image_path": [f"/photos/{i}.jpg" for i in range(n)],
            "label": [f"cat-{c:02d}" for c in rng.integers(0, 100, n)],
            "brand": rng.choice(["Acme", "Bolt"], n),
            "price": rng.uniform(1, 500, n).round(2),
            "baseColour": colour,
            "title": [f"{x} {y} {c} {t}" for x, y, c, t in zip(a, b, colour, kind, strict=True)],
        }
    )


def _model(input_size: int) -> Any:
    import torch

    from imgsearch.models.classifier import ImageClassifier

    torch.manual_seed(0)
    return ImageClassifier(
        backbone="efficientnet_lite0", num_classes=100, class_names=[f"cat-{c:02d}" for c in range(100)],
        pretrained=True, input_size=input_size, embedding_dim=256, attributes=["baseColour"],
        attribute_classes={"baseColour": sorted(COLOURS)},
    ).eval()  # fmt: skip


def _build(directory: Path, n: int, factory: str, module: Any) -> None:
    from imgsearch.data.schema import validate_catalogue
    from imgsearch.retrieval import index as I
    from imgsearch.retrieval.colour import COLOUR_FILE, colour_manifest, colour_part

    gen = ClusteredEmbeddings(dim=256)
    vectors, _ = gen.gallery(n)
    rng = np.random.default_rng(0)
    items = validate_catalogue(_rows(n, rng))
    index = I.build_index(vectors, factory=factory, metric="ip", normalize=True)
    classes = sorted(COLOURS)
    manifest = I.make_manifest(
        index=index, items=items, embedding="features", metric="ip", normalize=True, factory=factory,
        checkpoint=None, checkpoint_sha256=None, backbone="efficientnet_lite0",
        data_config=module.data_config, class_names=module.class_names,
        extra={"colour": colour_manifest("baseColour", classes)},
    )  # fmt: skip
    probs = rng.dirichlet(np.full(len(classes), 0.3), n).astype(np.float32)
    I.save_index_dir(directory, index, items, manifest, {COLOUR_FILE: colour_part(probs)})


def _searcher(directory: Path, module: Any) -> Any:
    from imgsearch.retrieval.colour import load_colour_part
    from imgsearch.retrieval.live import LiveIndex
    from imgsearch.retrieval.search import Searcher

    live = LiveIndex.open(directory, create=True)  # words through the live item table's FTS5, as served
    searcher = Searcher(live.index, live.items, live.manifest, module, live=live)
    searcher._colour_base = load_colour_part(directory, live.manifest)  # as from_index_dir does
    searcher._adopt_colour()
    return searcher


def _ms(cases: dict[str, Any], n_queries: int) -> dict[str, float]:
    """Median ms per case; the cases take turns on each query, so a busy moment of the shared machine falls on
    all of them alike and the ratios stay comparable."""
    for fn in cases.values():
        fn(0)  # warm-up (first FTS5 use, FAISS and torch caches, per-catalogue lookups)
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(n_queries):
        for name, fn in cases.items():
            t = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(v) * 1000 for name, v in times.items()}


def run(n: int, factory: str, n_queries: int, input_size: int, full: bool = False) -> dict[str, Any]:
    import torch
    from PIL import Image

    torch.set_num_threads(1)
    rng = np.random.default_rng(3)
    module = _model(input_size)
    work = Path(tempfile.mkdtemp(prefix="imgsearch-words-bench-"))
    try:
        t = time.perf_counter()
        _build(work / "index", n, factory, module)
        searcher = _searcher(work / "index", module)
        build_s = time.perf_counter() - t
        log(f"{NAME}: built and opened {n} items ({factory}) in {build_s:.0f} s")
        photos = [
            Image.fromarray(rng.integers(0, 255, (256, 256, 3), dtype=np.uint8)) for _ in range(n_queries)
        ]
        words = [f"{rng.choice(COLOURS).lower()} {rng.choice(TYPES).lower()}s" for _ in range(n_queries)]
        k = 10
        cases = {
            "photo": lambda i: searcher.search([photos[i]], k=k),
            "words": lambda i: searcher.search_text(words[i], k=k),
            "photo + words": lambda i: searcher.search([photos[i]], k=k, q=words[i]),
            "photo + filter 1%": lambda i: searcher.search([photos[i]], k=k, filters={"label": "cat-07"}),
            "photo + filter 50%": lambda i: searcher.search([photos[i]], k=k, filters={"brand": "Acme"}),
            "photo + colour weight 1": lambda i: searcher.search([photos[i]], k=k, colour_weight=1.0),
            "photo + in colour c": lambda i: searcher.search([photos[i]], k=k, colour="Red"),
        }
        ms = _ms(cases, n_queries)
        for name, value in ms.items():
            log(f"{NAME}: {name}: {value:.1f} ms")
        vectors, _ = searcher.embed(photos)
        parts = searcher._colour_query(photos)
        bare = {
            "photo": lambda i: searcher.search_vectors(vectors[i : i + 1], None, k),
            "photo + filter 1%": lambda i: searcher.search_vectors(
                vectors[i : i + 1], None, k, filters={"label": "cat-07"}
            ),
            "photo + filter 50%": lambda i: searcher.search_vectors(
                vectors[i : i + 1], None, k, filters={"brand": "Acme"}
            ),
            "photo + colour weight 1": lambda i: searcher.search_vectors(
                vectors[i : i + 1], None, k, colour_weight=1.0, colour_query=parts[i : i + 1]
            ),
        }
        bare_ms = _ms(bare, n_queries)
        base = ms["photo"]
        rows = [
            [name, round(v, 1), round(v / base, 2), round(bare_ms[name], 2) if name in bare_ms else ""]
            for name, v in ms.items()
        ]
        goals = [
            goal(
                f"{name}: at most {GOAL}x the photo query", f"{ms[name] / base:.2f}x", ms[name] / base <= GOAL
            )
            for name in ("photo + words", "photo + filter 1%", "photo + filter 50%")
        ]
        searcher.live.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return section(
        NAME,
        "Words, colour and filters beside a photo query",
        command_for(NAME, full),
        tables=[
            table(
                f"one query at a time, k={k}, N={n}, {factory}, median of {n_queries}",
                ["query", "ms", "x photo", "ms without the forward pass (search_vectors)"],
                rows,
            )
        ],
        goals=goals,
        notes=[
            f"EfficientNet-Lite0 + 256-d neck + colour head at {input_size} px on one CPU thread; synthetic "
            f"clustered vectors, vocabulary titles (a colour word matches ~1/{len(COLOURS)} of the items); "
            f"build + open {build_s:.0f} s; the machine was shared with other jobs"
        ],
    )
