"""Which models the ONNX export covers (docs/serve.md's table): every family the project trains, with
random weights at small sizes; the retrieval neck and the attribute heads are graph outputs too."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from imgsearch.models.classifier import ImageClassifier
from imgsearch.models.export import (
    MIN_COSINE,
    ExportError,
    OnnxEmbedder,
    export_onnx,
    min_cosine,
    onnx_embedder_for,
    probe_batch,
)
from imgsearch.retrieval.embed import embed_catalogue
from retrieval_fixtures import make_catalogue

ATTRS = {"baseColour": ["red", "blue", "black"], "gender": ["men", "women"]}


def _reference(model, images):
    with torch.inference_mode():
        return {k: v.numpy() for k, v in model.predict_step(images).items() if isinstance(v, torch.Tensor)}


@pytest.mark.parametrize(
    ("backbone", "size"),
    [
        ("efficientnet_lite1", 64),
        ("efficientnet_lite2", 64),
        pytest.param("timm/resnet18", 32, id="any-timm-model"),
    ],
)
def test_more_backbones_export_and_match(tmp_path, backbone, size):
    torch.manual_seed(0)
    model = ImageClassifier(backbone=backbone, num_classes=3, input_size=size).eval()
    embedder = onnx_embedder_for(model, None, cache_dir=tmp_path)  # exports and checks on a probe batch
    images = probe_batch(model, n=3, seed=2)
    got, want = embedder(images), _reference(model, images)
    assert embedder.outputs == ("features", "probs")
    for name in embedder.outputs:
        assert min_cosine(got[name], want[name]) >= MIN_COSINE


def test_retrieval_neck_and_attribute_heads_are_exported(tmp_path):
    torch.manual_seed(0)
    model = ImageClassifier(
        backbone="efficientnet_lite0", num_classes=3, input_size=64, embedding_dim=32,
        attributes=list(ATTRS), attribute_classes=ATTRS,
    ).eval()  # fmt: skip
    embedder = onnx_embedder_for(model, None, cache_dir=tmp_path)
    assert embedder.outputs == ("features", "probs", "attr:baseColour", "attr:gender")
    images = probe_batch(model, n=3, seed=2)
    got, want = embedder(images), _reference(model, images)
    assert got["features"].shape == (3, 32)  # the neck's vector, not the pooled features
    assert np.allclose(np.linalg.norm(got["features"], axis=1), 1.0, atol=1e-5)
    assert got["attr:gender"].shape == (3, 2)
    for name in embedder.outputs:
        assert min_cosine(got[name], want[name]) >= MIN_COSINE


def _svm_with_colour_head() -> ImageClassifier:
    torch.manual_seed(0)
    return ImageClassifier(
        backbone="svm", num_classes=3, input_size=16, attributes=["baseColour"],
        attribute_classes={"baseColour": ATTRS["baseColour"]},
    ).eval()  # fmt: skip


def test_attribute_kinds_embed_on_onnx_and_equal_pytorch(tmp_path, caplog):
    model = _svm_with_colour_head()
    table = make_catalogue(tmp_path / "cat", products_per_class=2)
    kw = {"kind": ("features", "attr:baseColour"), "num_workers": 0, "trainer_kwargs": {"accelerator": "cpu"}}
    ref = embed_catalogue(model, table, runtime="torch", **kw)
    engine = onnx_embedder_for(model, None, cache_dir=tmp_path)
    with caplog.at_level(logging.INFO):
        got = embed_catalogue(model, table, runtime=engine, **kw)
    assert "embedding with PyTorch" not in caplog.text
    for kind in kw["kind"]:
        assert min_cosine(got[kind], ref[kind]) >= MIN_COSINE


def test_export_without_the_asked_kind_falls_back_to_pytorch_with_a_reason(tmp_path, caplog):
    model = _svm_with_colour_head()
    plain = ImageClassifier(backbone="svm", num_classes=3, input_size=16).eval()
    old = OnnxEmbedder(export_onnx(plain, tmp_path / "old.onnx"))  # no attr:baseColour output
    with pytest.raises(ExportError, match="outputs"):
        from imgsearch.models.export import check_equivalence

        check_equivalence(old, model)
    table = make_catalogue(tmp_path / "cat", products_per_class=2)
    kw = {"kind": ("features", "attr:baseColour"), "num_workers": 0, "trainer_kwargs": {"accelerator": "cpu"}}
    with caplog.at_level(logging.INFO):
        got = embed_catalogue(model, table, runtime=old, **kw)
    assert "has no output ['attr:baseColour']" in caplog.text and "embedding with PyTorch" in caplog.text
    ref = embed_catalogue(model, table, runtime="torch", **kw)
    assert np.allclose(got["attr:baseColour"], ref["attr:baseColour"], atol=1e-6)


def test_cached_export_from_before_the_attribute_outputs_is_exported_again(tmp_path):
    from imgsearch.models.checkpoint import checkpoint_sha256
    from imgsearch.models.export import cached_export_path
    from train_helpers import save_checkpoint

    model = _svm_with_colour_head()
    ckpt = save_checkpoint(model, tmp_path / "best.ckpt")
    path = cached_export_path(ckpt, checkpoint_sha256(ckpt))
    # what the earlier export wrote for this checkpoint: features and probs only
    plain = ImageClassifier(backbone="svm", num_classes=3, input_size=16)
    plain.load_state_dict(model.state_dict(), strict=False)
    export_onnx(plain.eval(), path, source_sha256=checkpoint_sha256(ckpt))
    assert OnnxEmbedder(path).outputs == ("features", "probs")
    embedder = onnx_embedder_for(model, ckpt)
    assert embedder.path == path and embedder.outputs == ("features", "probs", "attr:baseColour")
