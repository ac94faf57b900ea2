"""Preprocessing: the one owner of the timm ``data_config`` and of every transform built from it.

A model's preprocessing is a timm data config (``input_size``, ``interpolation``, ``mean``, ``std``,
``crop_pct``, ``crop_mode``). Backbones resolve it (:func:`resolve_data_config`), the checkpoint stores it,
and the DataModule, the embedding pass, search, serve and the index compatibility check read it back through
:func:`normalise_data_config`; every transform comes from ``timm.data.create_transform``, as in timm.

The raw-pixel baseline has no pretrained config: :func:`pixel_data_config` squashes the whole photo to a
``PIXEL_SIZE`` square (no crop: the baseline sees the whole product), for the SVM's inputs and for the
``pixels`` retrieval baseline alike.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from timm.data import create_transform

from imgsearch.utils.config import to_plain_container

#: The keys of a data config, in the order checkpoints and manifests store them.
DATA_CONFIG_KEYS = ("input_size", "interpolation", "mean", "std", "crop_pct", "crop_mode")

#: Side of the raw-pixel baseline's images (the SVM's input and the ``pixels`` embedding).
PIXEL_SIZE = 32

#: Augmentation used when ``train_augment`` is not given: timm's defaults, a milder crop scale.
DEFAULT_TRAIN_AUGMENT: dict[str, Any] = {"scale": (0.5, 1.0), "hflip": 0.5, "color_jitter": 0.2}


def resolve_data_config(config: Mapping[str, Any], input_size: int | None = None) -> dict[str, Any]:
    """The data-config keys of ``config`` (e.g. timm's ``resolve_model_data_config``), with ``input_size``
    (a side in pixels) overriding the height and width when given."""
    out = {k: config[k] for k in DATA_CONFIG_KEYS if k in config}
    if input_size is not None:
        if input_size <= 0:
            raise ValueError(f"input_size must be positive, got {input_size}")
        out["input_size"] = (3, int(input_size), int(input_size))
    return out


def pixel_data_config(size: int | None = None, *, mean: float = 0.5, std: float = 0.5) -> dict[str, Any]:
    """Raw pixels: the whole image squashed to ``size`` x ``size`` (default :data:`PIXEL_SIZE`).

    The SVM scales to [-1, 1] (mean = std = 0.5); the ``pixels`` retrieval baseline keeps [0, 1]
    (mean 0, std 1).
    """
    side = int(size or PIXEL_SIZE)
    if side <= 0:
        raise ValueError(f"pixel size must be positive, got {side}")
    return {
        "input_size": (3, side, side),
        "interpolation": "bilinear",
        "mean": (float(mean),) * 3,
        "std": (float(std),) * 3,
        "crop_pct": 1.0,
        "crop_mode": "squash",
    }


def normalise_data_config(data_config: Mapping[str, Any]) -> dict[str, Any]:
    """Check a timm data config and return it with tuple values (``input_size`` is ``(C, H, W)``)."""
    cfg = dict(to_plain_container(data_config))
    missing = [k for k in ("input_size", "mean", "std") if k not in cfg]
    if missing:
        raise ValueError(f"data_config lacks {missing}; got keys {sorted(cfg)}")
    size = cfg["input_size"]
    if isinstance(size, int):
        size = (3, size, size)
    size = tuple(int(s) for s in size)
    if len(size) == 2:
        size = (3, *size)
    cfg["input_size"] = size
    cfg["mean"] = tuple(float(m) for m in cfg["mean"])
    cfg["std"] = tuple(float(s) for s in cfg["std"])
    cfg.setdefault("interpolation", "bilinear")
    cfg.setdefault("crop_pct", 0.875)
    cfg.setdefault("crop_mode", "center")
    return {k: cfg[k] for k in DATA_CONFIG_KEYS}


def check_data_config(data_config: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming the keys a stored data config lacks."""
    missing = [k for k in DATA_CONFIG_KEYS if k not in data_config]
    if missing:
        raise ValueError(f"data_config lacks {missing}")


def eval_transform(data_config: Mapping[str, Any]) -> Any:
    """The model's evaluation preprocessing: timm ``create_transform(**data_config, is_training=False)``."""
    return create_transform(**normalise_data_config(data_config), is_training=False)


def pixel_transform(size: int = PIXEL_SIZE) -> Any:
    """Whole image squashed (no crop) to ``size`` x ``size``, RGB in [0, 1]: the raw-pixel baseline."""
    return eval_transform(pixel_data_config(size, mean=0.0, std=1.0))


def build_transforms(
    data_config: Mapping[str, Any], train_augment: Mapping[str, Any] | str | bool | None = None
) -> tuple[Any, Any]:
    """``(train_transform, eval_transform)`` from a timm data config.

    ``train_augment`` holds extra ``timm.data.create_transform`` options for training (``hflip``,
    ``scale``, ``color_jitter``, ``auto_augment`` e.g. ``"rand-m9-mstd0.5"``, ``re_prob``, ...);
    ``None`` uses :data:`DEFAULT_TRAIN_AUGMENT`; ``"none"`` / ``False`` trains on the eval
    transform (no augmentation at all).
    """
    cfg = normalise_data_config(data_config)
    eval_tf = create_transform(**cfg, is_training=False)
    augment = to_plain_container(train_augment)
    if augment is False or (isinstance(augment, str) and augment.lower() in ("none", "off", "false")):
        return eval_tf, eval_tf
    if augment is None or augment is True:
        augment = DEFAULT_TRAIN_AUGMENT
    if not isinstance(augment, Mapping):
        raise ValueError(
            f"train_augment must be a mapping of create_transform options or 'none', got {augment!r}"
        )
    opts = {k: (tuple(v) if isinstance(v, list) else v) for k, v in augment.items()}
    train_cfg = {k: v for k, v in cfg.items() if k not in ("crop_pct", "crop_mode")}
    train_tf = create_transform(**train_cfg, is_training=True, **opts)
    return train_tf, eval_tf


def draft_size_for(data_config: Mapping[str, Any]) -> tuple[int, int]:
    """Smallest decode size that loses nothing: the eval transform resizes to ``size / crop_pct``."""
    cfg = normalise_data_config(data_config)
    side = math.ceil(max(cfg["input_size"][1:]) / float(cfg["crop_pct"] or 1.0))
    return side, side


def data_config_diff(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (a's value, b's value)}`` for every data-config key on which two configs differ, after
    normalisation (a list and a tuple of the same numbers are the same config)."""
    na, nb = normalise_data_config(a), normalise_data_config(b)
    return {k: (na[k], nb[k]) for k in DATA_CONFIG_KEYS if na[k] != nb[k]}
