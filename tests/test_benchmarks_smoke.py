"""The benchmark suite's smallest configuration runs and returns sensible results (no timing assertions)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_eval_scaling, bench_search, run  # noqa: E402
from benchmarks.synthetic import ClusteredEmbeddings  # noqa: E402


def test_recall_at_counts_overlap_with_exact_top_k():
    exact = np.array([[1, 2, 3, 4], [5, 6, 7, 8]])
    found = np.array([[4, 3, 9, -1], [5, 6, 7, 8]])
    assert bench_search.recall_at(exact, found) == pytest.approx((2 + 4) / 8)


def test_nlist_is_about_four_sqrt_n_in_powers_of_two():
    assert bench_search.nlist_for(10_000) == 512
    assert bench_search.nlist_for(100_000) == 1024
    assert bench_search.nlist_for(1_000_000) == 4096


def test_linear_fit_recovers_slope_and_exponent():
    q = np.array([100, 200, 400, 800])
    fit = bench_eval_scaling.linear_fit(q, 0.002 * q)
    assert fit["s_per_query"] == pytest.approx(0.002)
    assert fit["r2"] == pytest.approx(1.0)
    assert fit["exponent"] == pytest.approx(1.0)


def test_synthetic_gallery_is_normalised_and_reproducible_by_chunk():
    gen = ClusteredEmbeddings(dim=16, rank=4, n_clusters=10)
    x, _ = gen.gallery(250, chunk_size=100)
    assert x.shape == (250, 16) and x.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 1.0, rtol=1e-5)
    again = np.concatenate([a for a, _ in gen.gallery_chunks(250, chunk_size=100)])
    np.testing.assert_array_equal(x, again)
    q, _ = gen.queries(5)
    assert not any((np.abs(x - qi).sum(axis=1) < 1e-6).any() for qi in q)  # queries are not gallery items


def test_smoke_suite_writes_document_from_the_results(tmp_path):
    out = tmp_path / "bench.md"
    assert run.main(["--smoke", "--only", "search", "--only", "gpu", "--out", str(out)]) == 0
    data = json.loads(out.with_suffix(".json").read_text())
    assert {"cpu_model", "cpu_cores", "ram_gib", "torch", "faiss", "date"} <= set(data["machine"])
    sections = {s["name"]: s for s in data["sections"]}
    assert set(sections) == {"search", "gpu"}

    rows = sections["search"]["rows"]
    flat = [r for r in rows if r["index"] == "Flat"]
    assert flat and all(r["recall@10"] == 1.0 and r["speedup"] == 1.0 for r in flat)
    assert {"HNSW32"} <= {r["index"] for r in rows}
    assert any(r["index"].startswith("IVF") and "PQ" in r["index"] for r in rows)
    for r in rows:
        assert 0.0 <= r["recall@10"] <= 1.0
        assert r["qps"] > 0 and r["build_s"] >= 0
    # HNSW with a large efSearch finds (almost) the exact neighbours on 1,000 items
    assert max(r["recall@10"] for r in rows if r["index"] == "HNSW32") >= 0.9

    text = out.read_text()
    table = sections["search"]["tables"][0]
    for row in table["rows"]:
        assert " | ".join(run._cell(c) for c in row) in text  # the document shows the printed numbers
    if not data["machine"]["cuda_available"]:
        assert sections["gpu"]["skipped"] and "not measured here" in text


def test_eval_scaling_smoke_reports_bounded_memory_and_sane_metrics():
    res = bench_eval_scaling.run(**bench_eval_scaling.CONFIGS["smoke"])
    fits = res["fits"]
    assert set(fits) == {"1000"}
    # a fitted line over a few tiny timings: its slope can come out at zero or below by noise, so only
    # its presence and the R^2 range are checked here (the real sizes are for make bench)
    assert math.isfinite(fits["1000"]["s_per_query"]) and fits["1000"]["r2"] <= 1.0
    k10_rows = [r for r in res["tables"][0]["rows"] if r[2].startswith("mAP@1/5/10")]
    assert len(k10_rows) == len(bench_eval_scaling.CONFIGS["smoke"]["queries"])
    for row in res["tables"][0]["rows"]:
        assert 0.0 <= row[-1] <= 1.0  # mAP@10
        assert row[5] >= 0  # peak MiB
    # clustered queries with same-category relevance find relevant items far above chance (1/50)
    assert max(r[-1] for r in k10_rows) > 0.1
