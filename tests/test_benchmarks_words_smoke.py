"""bench_words' smallest configuration runs each query kind through a real Searcher (no timed assertions)."""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_words, run  # noqa: E402


def test_words_benchmark_smoke_reports_every_query_kind():
    assert run.BENCHMARKS["words"] == "benchmarks.bench_words"
    result = bench_words.run(**bench_words.CONFIGS["smoke"])
    (table,) = result["tables"]
    names = [row[0] for row in table["rows"]]
    assert names == ["photo", "words", "photo + words", "photo + filter 1%", "photo + filter 50%",
                     "photo + colour weight 1", "photo + in colour c"]  # fmt: skip
    by_name = {row[0]: row for row in table["rows"]}
    assert by_name["photo"][2] == 1.0  # the ratios are to the photo query
    assert all(row[1] > 0 for row in table["rows"])
    assert len(result["goals"]) == 3
