"""#10's pretrained-only model on ONNX Runtime: features-only export, cache key, refusal of a bad export."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from imgsearch.models.export import (
    MIN_COSINE,
    ExportError,
    OnnxEmbedder,
    min_cosine,
    onnx_embedder_for,
    pretrained_export_key,
    probe_batch,
    select_runtime,
)
from imgsearch.models.pretrained import PretrainedEmbedder
from imgsearch.models.weights import efficientnet_lite_weights_file
from imgsearch.retrieval.embed import embed_catalogue
from retrieval_fixtures import make_catalogue


@pytest.fixture(scope="module")
def lite0() -> PretrainedEmbedder:
    return PretrainedEmbedder("efficientnet_lite0", input_size=64)


def test_pretrained_export_has_features_only_and_matches_pytorch(tmp_path, lite0):
    embedder = onnx_embedder_for(lite0, None, cache_dir=tmp_path)
    assert embedder.outputs == ("features",) and embedder.meta["outputs"] == ["features"]
    assert embedder.path.parent == tmp_path and embedder.path.name.startswith("efficientnet_lite0.")
    images = probe_batch(lite0, n=5, seed=3)  # not the probe the export was checked on
    with torch.inference_mode():
        want = lite0.backbone(images).numpy()
    got = embedder(images)
    assert set(got) == {"features"} and got["features"].shape == want.shape
    assert min_cosine(got["features"], want) >= MIN_COSINE
    mtime = embedder.path.stat().st_mtime_ns
    assert onnx_embedder_for(lite0, None, cache_dir=tmp_path).path.stat().st_mtime_ns == mtime  # reused


def test_cache_key_follows_backbone_weights_file_and_input_size(tmp_path, lite0):
    assert lite0.weights_file() == efficientnet_lite_weights_file(0)
    key = pretrained_export_key(lite0)
    assert key == pretrained_export_key(PretrainedEmbedder("efficientnet_lite0", input_size=64))
    assert key != pretrained_export_key(PretrainedEmbedder("efficientnet_lite0", input_size=96))
    # the same architecture from a local state dict: another weights file, another key (and export)
    state = {k: v + 0.01 for k, v in lite0.backbone.model.state_dict().items()}
    weights = tmp_path / "shop_weights.pt"
    torch.save(state, weights)
    local = PretrainedEmbedder(
        "efficientnet_lite0", pretrained=False, pretrained_path=str(weights), input_size=64
    )
    assert local.weights_file() == weights
    assert pretrained_export_key(local) != key
    a = onnx_embedder_for(lite0, None, cache_dir=tmp_path)
    b = onnx_embedder_for(local, None, cache_dir=tmp_path)
    assert a.path != b.path


def test_corrupt_cached_pretrained_export_is_refused_and_pytorch_used(tmp_path, lite0, caplog, monkeypatch):
    monkeypatch.setenv("IMGSEARCH_ONNX_CACHE", str(tmp_path))
    path = onnx_embedder_for(lite0, None).path  # the default cache dir (the env var)
    assert path.parent == tmp_path
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # a truncated file
    with pytest.raises(ExportError, match="cannot be loaded by ONNX Runtime"):
        onnx_embedder_for(lite0, None)
    with caplog.at_level(logging.WARNING):
        assert select_runtime(lite0, None, "onnx") is None
    assert "falling back to PyTorch" in caplog.text and "cannot be loaded" in caplog.text


def test_pretrained_export_of_other_weights_under_its_key_is_refused(tmp_path, lite0):
    from imgsearch.models.export import export_onnx

    path = onnx_embedder_for(lite0, None, cache_dir=tmp_path).path
    other = PretrainedEmbedder("efficientnet_lite0", pretrained=False, input_size=64)  # random weights
    export_onnx(other, path, source_sha256=pretrained_export_key(lite0))  # forged sidecar: the probe sees it
    with pytest.raises(ExportError, match="does not match the PyTorch model"):
        onnx_embedder_for(lite0, None, cache_dir=tmp_path)


def test_embed_catalogue_of_a_pretrained_model_runs_on_onnx(tmp_path, lite0, caplog):
    table = make_catalogue(tmp_path, products_per_class=2, size=48)
    kw = {"num_workers": 0, "trainer_kwargs": {"accelerator": "cpu"}, "batch_size": 8}
    ref = embed_catalogue(lite0, table, runtime="torch", **kw)
    with caplog.at_level(logging.INFO):
        got = embed_catalogue(lite0, table, runtime="onnx", **kw)
    assert "embedding with ONNX Runtime" in caplog.text and "falling back" not in caplog.text
    assert np.array_equal(got.rows, ref.rows)
    assert min_cosine(got["features"], ref["features"]) >= MIN_COSINE


def test_onnx_embedder_refuses_outputs_other_than_its_sidecar(tmp_path, lite0):
    import json

    path = onnx_embedder_for(lite0, None, cache_dir=tmp_path).path
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text())
    sidecar.write_text(json.dumps(meta | {"outputs": ["features", "probs"]}))
    with pytest.raises(ExportError, match="sidecar records"):
        OnnxEmbedder(path)
