"""Tiny catalogues, models and fixtures for the retrieval and command tests (seconds on two shared cores)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgsearch.data.schema import validate_catalogue
from train_helpers import save_checkpoint

CLASSES = ("bags", "dresses", "shoes")
COLOURS = {"bags": (200, 40, 40), "dresses": (40, 160, 40), "shoes": (40, 40, 200)}


def make_catalogue(root: Path, products_per_class: int = 4, size: int = 24, seed: int = 0) -> pd.DataFrame:
    """Per class ``products_per_class`` products with a ``cutout`` and a ``model`` view.

    A class has its own colour; a product its own stripe position, so both class and product can be found
    from the pixels. Products 0..n-3 are train, n-2 val, n-1 test.
    """
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    rows = []
    for cls in CLASSES:
        for p in range(products_per_class):
            split = (
                "train" if p < products_per_class - 2 else ("val" if p == products_per_class - 2 else "test")
            )
            for view in ("cutout", "model"):
                arr = (
                    np.full((size, size, 3), 255, np.uint8)
                    if view == "cutout"
                    else rng.integers(150, 255, (size, size, 3), dtype=np.uint8)
                )
                band = slice(p * size // products_per_class, (p + 1) * size // products_per_class)
                arr[band, 2:-2] = COLOURS[cls]
                path = root / f"{cls}_{p}_{view}.png"
                Image.fromarray(arr).save(path)
                rows.append(
                    {
                        "item_id": f"{cls}{p}_{view}",
                        "product_id": f"{cls}{p}",
                        "view": view,
                        "image_path": str(path),
                        "label": cls,
                        "split": split,
                        "title": f"{cls} {p}",
                        "brand": "acme",
                        "price": 10.0 + p,
                    }
                )
    return validate_catalogue(pd.DataFrame(rows))


@pytest.fixture
def catalogue(tmp_path) -> pd.DataFrame:
    return make_catalogue(tmp_path / "images")


@pytest.fixture
def pixel_model():
    """A real ImageClassifier on raw 8x8 pixels (the 'svm' backbone): no weights to download, instant."""
    from imgsearch.models.classifier import ImageClassifier

    return ImageClassifier(
        backbone="svm", num_classes=len(CLASSES), class_names=list(CLASSES), input_size=8
    ).eval()


def compose(config_name: str, overrides: list[str]):
    """The composed Hydra config as the entry point would see it (``${hydra:...}`` resolvable)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.hydra_config import HydraConfig

    from imgsearch.utils.config import config_dir

    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=True)
    HydraConfig().set_config(cfg)
    return cfg


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    """A training run directory: ``catalogue.csv`` + ``checkpoints/best.ckpt`` (raw-pixel classifier)."""
    from imgsearch.data.schema import write_catalogue
    from imgsearch.models.classifier import ImageClassifier

    run = tmp_path_factory.mktemp("run")
    write_catalogue(make_catalogue(run / "images"), run / "catalogue.csv")
    model = ImageClassifier(backbone="svm", num_classes=len(CLASSES), class_names=list(CLASSES), input_size=8)
    save_checkpoint(model.eval(), run / "checkpoints" / "best.ckpt")
    return run


@pytest.fixture(scope="module")
def index_dir(trained_run) -> Path:
    """``imgsearch-index`` run on :func:`trained_run` (default output: ``<run>/index``)."""
    from imgsearch.cli.index import build

    cfg = compose(
        "index",
        [
            f"checkpoint={trained_run / 'checkpoints' / 'best.ckpt'}",
            "embed.num_workers=0",
            "embed.trainer.accelerator=cpu",
            f"hydra.run.dir={trained_run / 'hydra'}",
        ],
    )
    out = build(cfg)
    assert out == trained_run / "index"
    return out
