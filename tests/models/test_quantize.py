"""runtime=onnx-int8: static INT8 of the export, calibrated on catalogue photos, close to FP32, or refused."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from imgsearch.models.export import ExportError, OnnxEmbedder, min_cosine, onnx_embedder_for, select_runtime
from imgsearch.models.pretrained import PretrainedEmbedder
from imgsearch.models.quantize import calibration_batches, int8_embedder_for, int8_path
from imgsearch.retrieval.embed import embed_catalogue
from retrieval_fixtures import make_catalogue

#: Least per-photo cosine of INT8 with FP32 vectors seen on this test's catalogue (pretrained Lite0, 64 px,
#: 24 synthetic photos): 0.93 measured; the bound leaves room for ONNX Runtime versions.
SMALL_MODEL_MIN_COSINE = 0.85


@pytest.fixture(scope="module")
def lite0() -> PretrainedEmbedder:
    return PretrainedEmbedder("efficientnet_lite0", input_size=64)


@pytest.fixture
def table(tmp_path):
    return make_catalogue(tmp_path / "cat", products_per_class=4, size=64)


KW = {"num_workers": 0, "trainer_kwargs": {"accelerator": "cpu"}, "batch_size": 8}


def test_int8_vectors_stay_close_to_fp32_and_the_graph_is_cached(tmp_path, monkeypatch, lite0, table, caplog):
    monkeypatch.setenv("IMGSEARCH_ONNX_CACHE", str(tmp_path / "cache"))
    fp32 = embed_catalogue(lite0, table, runtime="onnx", **KW)
    with caplog.at_level(logging.INFO):
        int8 = embed_catalogue(lite0, table, runtime="onnx-int8", **KW)
    assert "embedding with the INT8 export" in caplog.text
    (graph,) = (tmp_path / "cache").glob("*.int8.onnx")
    meta = OnnxEmbedder(graph).meta["quantization"]
    assert meta["format"] == "QDQ" and meta["per_channel"] and meta["calibration_images"] == len(table)
    cos = min_cosine(int8["features"], fp32["features"])
    assert cos >= SMALL_MODEL_MIN_COSINE, cos
    assert not np.allclose(int8["features"], fp32["features"], atol=1e-4)  # it is quantised, not a copy
    mtime = graph.stat().st_mtime_ns
    again = embed_catalogue(lite0, table, runtime="onnx-int8", **KW)  # reuses the cached graph
    assert graph.stat().st_mtime_ns == mtime
    assert np.allclose(again["features"], int8["features"], atol=1e-6)


def test_broken_int8_graph_is_refused_and_fp32_used(tmp_path, monkeypatch, lite0, caplog):
    monkeypatch.setenv("IMGSEARCH_ONNX_CACHE", str(tmp_path))
    fp32 = onnx_embedder_for(lite0, None)
    photos = calibration_batches(b for b in [np.zeros((0, 3, 64, 64))])
    with pytest.raises(ExportError, match="needs calibration photos"):
        int8_embedder_for(fp32, photos or [np.zeros((0, 3, 64, 64), np.float32)])
    with pytest.raises(ExportError, match="no catalogue photos to calibrate"):
        int8_embedder_for(fp32, None)
    int8_path(fp32.path).write_bytes(b"junk")
    int8_path(fp32.path).with_suffix(".json").write_text("{}")
    with caplog.at_level(logging.WARNING):
        got = select_runtime(lite0, None, "onnx-int8")
    assert got is not None and got.path == fp32.path  # the checked FP32 export, not PyTorch
    assert "INT8 not used" in caplog.text
