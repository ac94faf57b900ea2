"""A tiny shop whose colour is known from the pixels: bags and shoes in red and blue, 4 band positions each,
and a raw-pixel classifier whose colour head reads red minus blue (set by hand, so what it predicts is known).

Shared by the retrieval, live-catalogue and web tests of colour and words (#15); builds in about a second.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch
from PIL import Image

from imgsearch.data.schema import validate_catalogue, write_catalogue
from retrieval_fixtures import compose
from train_helpers import save_checkpoint

SIZE = 8
RGB = {"red": (230, 30, 30), "blue": (30, 30, 230)}
TITLES = {"bags": "Leather Tote Bag", "shoes": "Running Shoes"}


def shop_image(path: Path, band: int, colour: str, label: str) -> str:
    arr = np.full((SIZE, SIZE, 3), 255, np.uint8)
    if label == "bags":
        arr[band * 2 : band * 2 + 2, :] = RGB[colour]  # a horizontal band
    else:
        arr[:, band * 2 : band * 2 + 2] = RGB[colour]  # a vertical one
    Image.fromarray(arr).save(path)
    return str(path)


def write_shop_catalogue(root: Path, titles: dict[str, str] = TITLES) -> None:
    """Draw the shop's 16 photos (bags and shoes, red and blue, four bands each) into ``root`` and write
    their ``catalogue.csv`` (titles "<Colour> <titles[label]>")."""
    rows = []
    for label in ("bags", "shoes"):
        for colour in ("red", "blue"):
            for band in range(4):
                item = f"{label}-{colour}-{band}"
                path = shop_image(root / f"{item}.png", band, colour, label)
                rows.append({"item_id": item, "label": label, "split": "train", "baseColour": colour.title(),
                             "title": f"{colour.title()} {titles[label]}", "image_path": path})  # fmt: skip
    write_catalogue(validate_catalogue(pd.DataFrame(rows)), root / "catalogue.csv")


def blind_colour_model() -> object:
    """A bags / shoes raw-pixel classifier with a ``baseColour`` head (Blue, Red) whose weights, like the
    category head's, are all zero: every photo gets the same probabilities, so only the pixels tell colour."""
    from imgsearch.models.classifier import ImageClassifier

    model = ImageClassifier(
        backbone="svm", num_classes=2, class_names=["bags", "shoes"], input_size=SIZE,
        attributes=["baseColour"], attribute_classes={"baseColour": ["Blue", "Red"]},
    )  # fmt: skip
    with torch.no_grad():
        for layer in (model.attribute_heads["baseColour"], model.head):
            layer.weight.zero_()
            layer.bias.zero_()
    return model.eval()


def build_colour_shop(root: Path) -> Path:
    """``root`` with ``catalogue.csv``, ``checkpoints/best.ckpt``, ``index/`` (with a colour part) and
    ``blind/`` (built with ``colour_attribute=false``: no colour part)."""
    from imgsearch.cli.index import build
    from imgsearch.models.classifier import ImageClassifier

    write_shop_catalogue(root)
    model = ImageClassifier(
        backbone="svm", num_classes=2, class_names=["bags", "shoes"], input_size=SIZE,
        attributes=["baseColour"], attribute_classes={"baseColour": ["Blue", "Red"]},
    )  # fmt: skip
    n = SIZE * SIZE
    red_minus_blue = torch.cat([torch.ones(n), torch.zeros(n), -torch.ones(n)])  # CHW flattened
    with torch.no_grad():
        head = model.attribute_heads["baseColour"]
        head.weight.copy_(torch.stack([-red_minus_blue, red_minus_blue]))
        head.bias.zero_()
        # the category head: horizontal (bags) vs vertical (shoes) bands, from row vs column variation
        model.head.weight.zero_()
        model.head.bias.zero_()
    ckpt = save_checkpoint(model.eval(), root / "checkpoints" / "best.ckpt")
    for name, extra in (("index", []), ("blind", ["colour_attribute=false"])):
        build(
            compose(
                "index",
                [
                    f"checkpoint={ckpt}",
                    f"catalogue={root / 'catalogue.csv'}",
                    f"output_dir={root / name}",
                    "embed.num_workers=0",
                    "embed.trainer.accelerator=cpu",
                    f"hydra.run.dir={root / 'hydra'}",
                    *extra,
                ],
            )
        )
    return root
