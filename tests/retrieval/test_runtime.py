"""Embedding through ONNX Runtime gives PyTorch's vectors and answers (runtime=onnx vs runtime=torch)."""

from __future__ import annotations

import logging

import numpy as np

from imgsearch.data.images import load_image
from imgsearch.data.schema import read_catalogue
from imgsearch.models.checkpoint import load_classifier
from imgsearch.models.export import MIN_COSINE, OnnxEmbedder, min_cosine
from imgsearch.retrieval.embed import embed_catalogue
from imgsearch.retrieval.search import Searcher


def test_embed_catalogue_onnx_equals_torch(trained_run):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    module = load_classifier(ckpt)
    table = read_catalogue(trained_run / "catalogue.csv")
    kw = {"kind": ("features", "probs"), "num_workers": 0, "trainer_kwargs": {"accelerator": "cpu"}}
    ref = embed_catalogue(module, table, runtime="torch", **kw)
    got = embed_catalogue(module, table, runtime="onnx", checkpoint=str(ckpt), **kw)
    assert np.array_equal(got.rows, ref.rows) and got.item_ids == ref.item_ids
    for kind in ("features", "probs"):
        assert got[kind].dtype == np.float32 and got[kind].shape == ref[kind].shape
        assert min_cosine(got[kind], ref[kind]) >= MIN_COSINE
    assert list(ckpt.parent.glob("best.ckpt.*.onnx")), "the export is cached beside the checkpoint"


def test_searcher_onnx_gives_the_torch_answers(index_dir, caplog):
    with caplog.at_level(logging.INFO):
        fast = Searcher.from_index_dir(index_dir, runtime="onnx")
    slow = Searcher.from_index_dir(index_dir, runtime="torch")
    assert isinstance(fast.onnx, OnnxEmbedder) and slow.onnx is None
    images = [load_image(p) for p in fast.items.image_path.iloc[[0, 5, 11, 20]]]
    for a, b in zip(fast.search(images, k=5), slow.search(images, k=5), strict=True):
        assert a.category == b.category
        assert abs(a.probability - b.probability) < 1e-4
        assert [h.item_id for h in a.hits][:1] == [h.item_id for h in b.hits][:1]
        assert np.allclose([h.score for h in a.hits], [h.score for h in b.hits], atol=1e-4)
