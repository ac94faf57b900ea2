"""data/transforms.py: the one owner of preprocessing."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from imgsearch.data.transforms import (
    DATA_CONFIG_KEYS,
    PIXEL_SIZE,
    data_config_diff,
    eval_transform,
    normalise_data_config,
    pixel_data_config,
    pixel_transform,
    resolve_data_config,
)
from imgsearch.models.backbones import create_backbone


def _bands() -> Image.Image:
    """A 96x32 photo: red, green and blue thirds from left to right."""
    arr = np.zeros((32, 96, 3), dtype=np.uint8)
    arr[:, :32, 0] = 255
    arr[:, 32:64, 1] = 255
    arr[:, 64:, 2] = 255
    return Image.fromarray(arr)


def test_pixel_baseline_squashes_the_whole_image_no_crop() -> None:
    # The bug: the pixels baseline centre-cropped a wide photo down to its green middle.
    x = pixel_transform(8)(_bands())
    assert x.shape == (3, 8, 8)
    left, right = x[:, :, 0].mean(1), x[:, :, -1].mean(1)
    assert left[0] > 0.9 and left[2] < 0.1, "left edge must still be red"
    assert right[2] > 0.9 and right[0] < 0.1, "right edge must still be blue"
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0


def test_svm_input_and_pixels_baseline_see_the_same_image() -> None:
    svm = create_backbone("svm", pretrained=False, input_size=8)
    assert svm.data_config == pixel_data_config(8)
    svm_in = eval_transform(svm.data_config)(_bands())  # scaled to [-1, 1]
    baseline = pixel_transform(8)(_bands())  # [0, 1]
    torch.testing.assert_close(svm_in * 0.5 + 0.5, baseline, atol=1e-5, rtol=0)


def test_pixel_size_default_is_one_constant() -> None:
    assert create_backbone("svm", pretrained=False).size == PIXEL_SIZE
    assert pixel_data_config()["input_size"] == (3, PIXEL_SIZE, PIXEL_SIZE)


def test_resolve_keeps_data_config_keys_and_overrides_size() -> None:
    cfg = resolve_data_config(
        {"input_size": (3, 224, 224), "mean": (0.5,) * 3, "std": (0.5,) * 3, "num_classes": 1000}, 128
    )
    assert set(cfg) <= set(DATA_CONFIG_KEYS) and cfg["input_size"] == (3, 128, 128)
    with pytest.raises(ValueError, match="positive"):
        resolve_data_config({"input_size": (3, 8, 8)}, 0)


def test_diff_ignores_list_vs_tuple_and_names_changed_keys() -> None:
    a = normalise_data_config({"input_size": [3, 64, 64], "mean": [0.5] * 3, "std": [0.2] * 3})
    b = {"input_size": (3, 64, 64), "mean": (0.5,) * 3, "std": (0.2,) * 3}
    assert data_config_diff(a, b) == {}
    assert set(data_config_diff(a, {**b, "input_size": (3, 96, 96), "crop_pct": 1.0})) == {
        "input_size",
        "crop_pct",
    }
