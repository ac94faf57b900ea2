"""ONNX export: equivalence with PyTorch, the cache keyed by the checkpoint, refusal of bad exports."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from imgsearch.models.checkpoint import checkpoint_sha256
from imgsearch.models.classifier import ImageClassifier
from imgsearch.models.export import (
    MIN_COSINE,
    ExportError,
    OnnxEmbedder,
    cached_export_path,
    check_equivalence,
    export_onnx,
    min_cosine,
    onnx_embedder_for,
    probe_batch,
    select_runtime,
)
from train_helpers import save_checkpoint


def _torch_vectors(module, images):
    with torch.inference_mode():
        features = module.backbone(images)
        return features.numpy(), module.head(features).softmax(-1).numpy()


def _trained(backbone: str = "svm", input_size: int = 16) -> ImageClassifier:
    """A few SGD steps, so the weights are not the initial ones."""
    torch.manual_seed(0)
    model = ImageClassifier(backbone=backbone, num_classes=3, class_names=list("abc"), input_size=input_size)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = torch.randn(8, 3, input_size, input_size), torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    for _ in range(3):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    return model.eval()


@pytest.mark.parametrize(
    ("backbone", "size"),
    [
        ("efficientnet_lite0", 64),
        ("svm", 16),
        ("alexnet", 96),
        pytest.param("resnet50", 64, marks=pytest.mark.slow),
        pytest.param("inception_v3", 96, marks=pytest.mark.slow),
        pytest.param("vgg16", 32, marks=pytest.mark.slow),
    ],
)
def test_export_matches_pytorch_for_every_trained_backbone(tmp_path, backbone, size):
    torch.manual_seed(0)
    model = ImageClassifier(backbone=backbone, num_classes=3, input_size=size).eval()
    path = export_onnx(model, tmp_path / f"{backbone}.onnx")
    embedder = OnnxEmbedder(path)
    images = probe_batch(model, n=3, seed=1)  # another batch size than the export's example (dynamic batch)
    got = embedder(images)
    want_f, want_p = _torch_vectors(model, images)
    assert got["features"].shape == want_f.shape
    assert min_cosine(got["features"], want_f) >= MIN_COSINE
    assert min_cosine(got["probs"], want_p) >= MIN_COSINE
    assert embedder.data_config == model.data_config


def test_trained_checkpoint_export_is_cached_beside_it_by_sha256(tmp_path):
    model = _trained()
    ckpt = save_checkpoint(model, tmp_path / "run" / "checkpoints" / "best.ckpt")
    embedder = onnx_embedder_for(model, ckpt)
    sha = checkpoint_sha256(ckpt)
    assert embedder.path == cached_export_path(ckpt, sha)
    assert embedder.path.parent == ckpt.parent and sha[:16] in embedder.path.name
    assert embedder.meta["source_sha256"] == sha
    mtime = embedder.path.stat().st_mtime_ns
    again = onnx_embedder_for(model, ckpt)  # second use loads the cached file, does not export again
    assert again.path.stat().st_mtime_ns == mtime
    images = torch.randn(5, 3, 16, 16)
    assert min_cosine(again(images)["features"], _torch_vectors(model, images)[0]) >= MIN_COSINE


def test_pretrained_only_backbone_exports_without_a_checkpoint(tmp_path):
    model = ImageClassifier(backbone="efficientnet_lite0", num_classes=2, pretrained=True, input_size=64)
    model.eval()
    embedder = onnx_embedder_for(model, None, cache_dir=tmp_path)
    assert embedder.path.parent == tmp_path
    assert check_equivalence(embedder, model) >= MIN_COSINE


def test_corrupt_cached_export_is_refused_and_pytorch_used(tmp_path, caplog):
    model = _trained()
    ckpt = save_checkpoint(model, tmp_path / "best.ckpt")
    path = onnx_embedder_for(model, ckpt).path
    path.write_bytes(b"not an onnx graph")
    with pytest.raises(ExportError, match="cannot be loaded by ONNX Runtime"):
        onnx_embedder_for(model, ckpt)
    with caplog.at_level(logging.WARNING):
        assert select_runtime(model, ckpt, "onnx") is None
    assert "falling back to PyTorch" in caplog.text and "cannot be loaded" in caplog.text


def test_export_of_other_weights_is_refused(tmp_path):
    model = _trained()
    ckpt = save_checkpoint(model, tmp_path / "best.ckpt")
    sha = checkpoint_sha256(ckpt)
    other = ImageClassifier(backbone="svm", num_classes=3, class_names=["a", "b", "c"], input_size=16).eval()
    # an export of other weights under this checkpoint's name, with a forged sidecar: the probe catches it
    export_onnx(other, cached_export_path(ckpt, sha), source_sha256=sha)
    with pytest.raises(ExportError, match="does not match the PyTorch model"):
        onnx_embedder_for(model, ckpt)


def test_model_that_cannot_export_falls_back_with_logged_reason(tmp_path, monkeypatch, caplog):
    model = _trained()

    def broken(*args, **kwargs):
        raise RuntimeError("unsupported operator aten::made_up")

    monkeypatch.setattr(torch.onnx, "export", broken)
    with caplog.at_level(logging.WARNING):
        assert select_runtime(model, save_checkpoint(model, tmp_path / "best.ckpt"), "onnx") is None
    assert "cannot be exported" in caplog.text and "made_up" in caplog.text


def test_torch_runtime_and_gpu_never_export(tmp_path):
    model = _trained()
    ckpt = save_checkpoint(model, tmp_path / "best.ckpt")
    assert select_runtime(model, ckpt, "torch") is None
    assert select_runtime(model, ckpt, "auto", gpu=True) is None
    assert not list(tmp_path.glob("*.onnx"))
    with pytest.raises(ValueError, match="runtime must be one of"):
        select_runtime(model, ckpt, "tensorrt")


def test_min_cosine_sees_one_bad_row():
    a = np.eye(3, dtype=np.float32)
    b = a.copy()
    b[2] = [0, 1, 0]
    assert min_cosine(a, a) == pytest.approx(1.0)
    assert min_cosine(a, b) == pytest.approx(0.0)
