"""Catalogue embedding through Trainer.predict: row order, kinds, and unreadable images."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgsearch.data.images import load_image
from imgsearch.data.transforms import eval_transform as model_transform
from imgsearch.data.transforms import pixel_transform
from imgsearch.retrieval.embed import embed_catalogue, merge_parts

CPU = {"accelerator": "cpu", "enable_progress_bar": False}


def test_features_and_probs_in_catalogue_order(catalogue, pixel_model):
    emb = embed_catalogue(
        pixel_model, catalogue, kind=("features", "probs"), batch_size=5, num_workers=0, trainer_kwargs=CPU
    )
    assert emb.rows.tolist() == list(range(len(catalogue)))
    assert emb.item_ids == catalogue["item_id"].tolist()
    assert emb["features"].shape == (len(catalogue), pixel_model.embedding_dim("features"))
    assert emb["probs"].shape == (len(catalogue), 3)
    assert emb["features"].dtype == np.float32
    np.testing.assert_allclose(emb["probs"].sum(1), 1.0, rtol=1e-5)
    # the same vector as embedding one image by hand with the model's own preprocessing
    tf = model_transform(pixel_model.data_config)
    row = 7
    x = tf(load_image(catalogue.image_path.iloc[row]))[None]
    with torch.inference_mode():
        want = pixel_model.embed(x, "features")[0].numpy()
    np.testing.assert_allclose(emb["features"][row], want, rtol=1e-4, atol=1e-5)


def test_unreadable_images_are_skipped_and_ids_stay_aligned(catalogue, pixel_model, tmp_path):
    broken = catalogue.copy()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    broken.loc[3, "image_path"] = str(tmp_path / "bad.png")
    broken.loc[10, "image_path"] = str(tmp_path / "missing.png")
    # rows 8, 9 make a whole batch of bad images (batch_size=2): the batch is dropped, not a crash
    broken.loc[8, "image_path"] = str(tmp_path / "missing2.png")
    broken.loc[9, "image_path"] = str(tmp_path / "missing3.png")
    broken.index = broken.index + 100  # a non-positional index must not matter
    emb = embed_catalogue(
        pixel_model, broken, kind="features", batch_size=2, num_workers=0, trainer_kwargs=CPU
    )
    bad = {3, 8, 9, 10}
    assert emb.rows.tolist() == [i for i in range(len(broken)) if i not in bad]
    assert emb.item_ids == [broken.item_id.iloc[i] for i in emb.rows]
    assert sorted(s["item_id"] for s in emb.skipped) == sorted(broken.item_id.iloc[list(bad)])
    good = embed_catalogue(
        pixel_model, catalogue, kind="features", batch_size=2, num_workers=0, trainer_kwargs=CPU
    )
    np.testing.assert_allclose(emb["features"], good["features"][emb.rows], rtol=1e-5)


def test_pixels_baseline_needs_no_model(catalogue):
    emb = embed_catalogue(
        None, catalogue, kind="pixels", batch_size=8, num_workers=0, trainer_kwargs=CPU, pixel_size=6
    )
    assert emb["pixels"].shape == (len(catalogue), 3 * 6 * 6)
    assert emb["pixels"].min() >= 0.0 and emb["pixels"].max() <= 1.0
    x = pixel_transform(6)(load_image(catalogue.image_path.iloc[0])).flatten().numpy()
    np.testing.assert_allclose(emb["pixels"][0], x, rtol=1e-6)


def test_kind_errors(catalogue, pixel_model):
    with pytest.raises(ValueError, match="unknown embedding kind"):
        embed_catalogue(pixel_model, catalogue, kind="logits")
    with pytest.raises(ValueError, match="need a model"):
        embed_catalogue(None, catalogue, kind="features")
    with pytest.raises(ValueError, match="call of its own"):
        embed_catalogue(pixel_model, catalogue, kind=("features", "pixels"))
    # spawned workers would keep the vectors to themselves (checked at set-up: nothing is spawned)
    with pytest.raises(ValueError, match="strategy='ddp'"):
        embed_catalogue(
            pixel_model,
            catalogue,
            trainer_kwargs={"accelerator": "cpu", "devices": 2, "strategy": "ddp_spawn"},
        )


def test_merge_parts_orders_rows_and_drops_ddp_padding():
    # two "ranks" with interleaved rows; rank 1 repeats row 0 as DistributedSampler padding does
    parts = [
        {"row": np.array([0, 2]), "features": np.array([[0.0], [2.0]], np.float32)},
        {"row": np.array([1, 0]), "features": np.array([[1.0], [0.0]], np.float32)},
    ]
    merged = merge_parts(parts, ["features"], n_rows=3)
    assert merged["row"].tolist() == [0, 1, 2]
    assert merged["features"][:, 0].tolist() == [0.0, 1.0, 2.0]
    with pytest.raises(RuntimeError, match="outside"):
        merge_parts(parts, ["features"], n_rows=2)
