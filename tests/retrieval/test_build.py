"""Index from shards: equals the in-memory build, bounded memory, index advice, autofaiss hand-off."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgsearch.data.schema import catalogue_hash, read_catalogue
from imgsearch.retrieval.build import build_index_from_shards, recommend_index
from imgsearch.retrieval.index import build_index, load_index_dir, prepare_vectors, search_batched
from imgsearch.retrieval.shards import n_shards, shard_paths, write_shard
from imgsearch.utils.atomic import atomic_write_json


def write_synthetic_shards(directory: Path, vectors: np.ndarray, shard_rows: int, dtype: str = "float32"):
    """Shards as imgsearch-embed writes them, from an array (no images needed)."""
    n = len(vectors)
    items = pd.DataFrame(
        {
            "item_id": [f"it{i}" for i in range(n)],
            "image_path": [f"img/{i}.jpg" for i in range(n)],
            "label": [f"c{i % 7}" for i in range(n)],
        }
    )
    for s in range(n_shards(n, shard_rows)):
        part = items.iloc[s * shard_rows : (s + 1) * shard_rows].copy()
        part.insert(0, "row", np.arange(s * shard_rows, s * shard_rows + len(part)))
        write_shard(directory, s, vectors[s * shard_rows : (s + 1) * shard_rows].astype(dtype), part)
    spec = {"kind": "features", "dim": vectors.shape[1], "dtype": dtype, "shard_rows": shard_rows, "rows": n}
    atomic_write_json(directory / "shards.json", spec)
    return items


def clustered(n: int, d: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, d)).astype(np.float32)
    return centres[rng.integers(0, 50, n)] + 0.3 * rng.standard_normal((n, d)).astype(np.float32)


@pytest.mark.parametrize("factory", ["Flat", "IVF16,Flat"])
def test_streaming_build_equals_the_in_memory_build(tmp_path, factory):
    x = clustered(3000, 16)
    items = write_synthetic_shards(tmp_path / "shards", x, shard_rows=700)
    out = build_index_from_shards(tmp_path / "shards", tmp_path / "index", factory=factory, train_sample=1000)
    index, got_items, manifest = load_index_dir(out)
    ref = build_index(x, factory=factory, train_sample=1000)
    assert index.ntotal == ref.ntotal == len(x)
    q = prepare_vectors(x[::37], normalize=True)
    d1, i1 = search_batched(index, q, 10)
    d2, i2 = search_batched(ref, q, 10)
    np.testing.assert_array_equal(i1, i2)
    np.testing.assert_allclose(d1, d2, rtol=1e-5)
    if factory == "Flat":  # the same vectors, in the same order
        np.testing.assert_array_equal(index.reconstruct_n(0, index.ntotal), ref.reconstruct_n(0, ref.ntotal))
    assert got_items["item_id"].tolist() == items["item_id"].tolist()
    # the streamed hash is the hash of the whole item table, as the in-memory path records it
    assert manifest["catalogue"]["items_sha256"] == catalogue_hash(read_catalogue(out / "items.csv"))
    assert manifest["index"]["factory"] == factory and manifest["shards"]["count"] == 5


def test_unfinished_shards_are_refused(tmp_path):
    write_synthetic_shards(tmp_path / "s", clustered(100, 8), shard_rows=30)
    shard_paths(tmp_path / "s", 2)[1].unlink()  # killed before its table was published
    with pytest.raises(ValueError, match="unfinished"):
        build_index_from_shards(tmp_path / "s", tmp_path / "index")


PEAK_SCRIPT = """
import json, resource, sys
import faiss  # imported before the baseline: the libraries' code and buffers are not the vectors
import pyarrow.parquet
from imgsearch.retrieval.build import build_index_from_shards
faiss.omp_set_num_threads(1)
def hwm():
    for line in open('/proc/self/status'):
        if line.startswith('VmHWM'):
            return int(line.split()[1]) * 1024
base = hwm()
build_index_from_shards(sys.argv[1], sys.argv[2], factory='IVF64,PQ16', train_sample=10000)
print(json.dumps({'base': base, 'peak': hwm()}))
"""


@pytest.mark.slow
def test_streaming_build_of_200k_vectors_stays_in_bounded_memory(tmp_path):
    n, d, shard_rows = 200_000, 256, 10_000
    rng = np.random.default_rng(0)
    for s in range(n // shard_rows):  # written shard by shard: the test itself never holds all vectors
        rows = np.arange(s * shard_rows, (s + 1) * shard_rows)
        meta = pd.DataFrame(
            {"row": rows, "item_id": [f"it{r}" for r in rows], "image_path": "x.jpg", "label": "a"}
        )
        write_shard(tmp_path / "shards", s, rng.standard_normal((shard_rows, d)).astype(np.float32), meta)
    spec = {"kind": "features", "dim": d, "dtype": "float32", "shard_rows": shard_rows, "rows": n}
    atomic_write_json(tmp_path / "shards" / "shards.json", spec)
    proc = subprocess.run(
        [sys.executable, "-c", PEAK_SCRIPT, str(tmp_path / "shards"), str(tmp_path / "index")],
        capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1", **__import__("os").environ},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    mem = json.loads(proc.stdout.strip().splitlines()[-1])
    all_vectors = n * d * 4  # 195 MiB; an in-memory build holds them twice (with the normalised copy)
    grew = mem["peak"] - mem["base"]
    # measured 140 MiB on the 2-core dev machine: FAISS's training buffers (~65 MiB), the 5 MiB PQ16
    # index, a shard and its copy, and what the allocators keep; it plateaus after a few shards
    assert grew < all_vectors, (
        f"peak grew by {grew / 2**20:.0f} MiB, all vectors are {all_vectors / 2**20:.0f}"
    )
    assert load_index_dir(tmp_path / "index")[0].ntotal == n


def test_recommend_index_fits_the_budget_and_grows_with_n():
    small = recommend_index(50_000, 256, 4)
    assert small["factory"] == "Flat"
    big = recommend_index(10_000_000, 256, 4)
    assert big["factory"].startswith("IVF") and big["estimated_gb"] <= 4 * 0.8
    assert big["nprobe"] >= 1
    nlist = int(big["factory"].split(",")[0][3:])
    assert nlist & (nlist - 1) == 0 and 2**13 <= nlist <= 2**14  # about 4 sqrt(1e7) = 12.6k
    roomy = recommend_index(10_000_000, 256, 64)
    assert roomy["bytes_per_vector"] > big["bytes_per_vector"]  # more memory, finer codes
    with pytest.raises(ValueError, match="does not fit"):
        recommend_index(10**10, 256, 1)


@pytest.mark.parametrize(
    ("n", "dim", "memory_gb"),
    [
        (1_000_000, 256, 4),
        (3_000_000, 256, 4),
        (10_000_000, 256, 4),
        (5_000_000, 512, 4),
        (2_000_000, 128, 2),
    ],
)
def test_recommend_index_budgets_growing_lists_and_picks_the_finest_code_that_fits(n, dim, memory_gb):
    from imgsearch.retrieval.build import LIST_GROWTH

    advice = recommend_index(n, dim, memory_gb)
    nlist = int(advice["factory"].split(",")[0][3:])
    budget = memory_gb * 2**30 * 0.8

    # the rule, restated: growing lists of codes + 8-byte ids, and the centroids
    def need(code: int) -> float:
        return LIST_GROWTH * n * (code + 8) + nlist * dim * 4

    code = advice["bytes_per_vector"] - 8
    assert need(code) <= budget
    assert advice["estimated_gb"] == pytest.approx(need(code) / 2**30)
    finer = [c for c in (dim * 4, dim, 64, 32, 16, 8) if c > code and (c >= dim or dim % c == 0)]
    assert all(need(c) > budget for c in finer), f"{advice['factory']} while a finer code fits"


def test_recommend_index_no_longer_picks_flat_codes_for_the_measured_overshoot():
    # docs/benchmarks.md: 3M x 256 IVF8192,Flat peaked at 5578 MiB against a 4 GiB budget
    advice = recommend_index(3_000_000, 256, 4)
    assert not advice["factory"].endswith(",Flat")
    assert advice["list_growth"] == 2


def test_factory_auto_records_the_advice_in_the_manifest(tmp_path):
    from imgsearch.cli.index import build
    from retrieval_fixtures import compose

    write_synthetic_shards(tmp_path / "shards", clustered(500, 8), shard_rows=200)
    cfg = compose(
        "index",
        [f"shards={tmp_path / 'shards'}", "factory=auto", "memory_gb=1", f"output_dir={tmp_path / 'ix'}"],
    )
    out = build(cfg)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["recommendation"]["factory"] == manifest["index"]["factory"] == "Flat"
    assert manifest["index"]["ntotal"] == 500


AUTOFAISS_BUILD = """
import sys
from autofaiss import build_index
build_index(embeddings=sys.argv[1], index_path=sys.argv[2], index_infos_path=sys.argv[3], metric_type="ip",
            max_index_memory_usage="1G", current_memory_available="2G", nb_cores=1)
"""


def _autofaiss_python() -> str:
    """A Python with autofaiss: this one, or ``$AUTOFAISS_PYTHON`` (its own venv: it needs numpy<2)."""
    import importlib.util
    import os

    if importlib.util.find_spec("autofaiss") is not None:
        return sys.executable
    other = os.environ.get("AUTOFAISS_PYTHON")
    if other and subprocess.run([other, "-c", "import autofaiss"], capture_output=True).returncode == 0:
        return other
    pytest.skip("autofaiss is not importable (it needs numpy<2); set AUTOFAISS_PYTHON to a venv that has it")


@pytest.mark.slow
def test_an_autofaiss_index_loads_with_its_metadata(tmp_path):
    python = _autofaiss_python()
    x = clustered(2000, 16)
    write_synthetic_shards(tmp_path / "shards", x, shard_rows=500)
    from imgsearch.retrieval.autofaiss import index_dir_from_autofaiss

    af, infos = tmp_path / "af.index", tmp_path / "infos.json"
    proc = subprocess.run(
        [python, "-c", AUTOFAISS_BUILD, str(tmp_path / "shards" / "embeddings"), str(af), str(infos)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = index_dir_from_autofaiss(tmp_path / "shards", af, tmp_path / "ix", index_infos_path=infos)
    index, items, manifest = load_index_dir(out)
    assert index.ntotal == 2000 and manifest["built_by"] == "autofaiss"
    assert manifest["index"]["factory"] == json.loads(infos.read_text())["index_key"]
    # index position i is row i of the shards' tables: the hits of a gallery vector name its own item first
    _, ids = search_batched(index, x[::97], 1)
    exact = np.argmax(x[::97] @ x.T, axis=1)
    assert (
        items["item_id"].iloc[ids[:, 0]].to_numpy() == items["item_id"].iloc[exact].to_numpy()
    ).mean() >= 0.95
