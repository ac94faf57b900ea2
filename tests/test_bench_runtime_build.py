"""benchmarks/bench_runtime_build (the suite's runtime_build section) on a few real photos: sane figures."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import bench_runtime_build  # noqa: E402


@pytest.mark.realdata
@pytest.mark.skipif(
    not (bench_runtime_build.FASHION / "styles_subset_joined.derived.csv").is_file(),
    reason="needs ../shared/realdata/fashion-product-images-small",
)
def test_runtime_build_smoke_compares_the_three_runtimes():
    res = bench_runtime_build.run(**bench_runtime_build.CONFIGS["smoke"])
    build, forward = res["tables"]
    assert [r[0] for r in build["rows"]] == ["torch", "onnx", "onnx-int8"]
    n = bench_runtime_build.CONFIGS["smoke"]["n_images"]
    assert all(r[1] == n for r in build["rows"])  # every photo embedded by every runtime
    assert float(build["rows"][1][5]) <= 1e-4  # FP32 ONNX gives PyTorch's vectors
    assert 0.0 < float(build["rows"][2][5]) < 0.3  # INT8 moves them, within its load check
    assert all(0.0 <= r[6] <= 1.0 for r in build["rows"])
    assert res["goals"][0]["met"] is True
    assert [r[0] for r in forward["rows"]] == ["onnx (FP32)", "onnx-int8"] and forward["rows"][1][3] > 0
