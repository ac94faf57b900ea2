"""A contact sheet of the demo catalogue: cutout / model pairs, one category a row (docs/img)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from imgsearch.data.demo.catalogue import _normalise_params, _rng
from imgsearch.data.demo.drawing import draw_look, render_cutout, render_model


def demo_contact_sheet(
    path: str | os.PathLike[str],
    *,
    seed: int = 0,
    categories: Sequence[str] | None = None,
    products: int = 2,
    image_size: int = 96,
    colours: int | None = 256,
) -> Path:
    """Draw a PNG grid of cutout / model pairs (``products`` per category, one category a row).

    ``colours``: palette size of the saved PNG (the model views' noise makes a full-colour PNG ~5x larger);
    ``None`` keeps full colour.
    """
    from PIL import Image

    cats = _normalise_params(seed, products, image_size, categories, False)["categories"]
    sheet = Image.new("RGB", (2 * products * image_size, len(cats) * image_size), "white")
    for r, category in enumerate(cats):
        for k in range(products):
            look = draw_look(category, _rng(seed, category, k, 0), image_size)
            model = render_model(look, image_size, _rng(seed, category, k, 1))
            sheet.paste(render_cutout(look, image_size), (2 * k * image_size, r * image_size))
            sheet.paste(model, ((2 * k + 1) * image_size, r * image_size))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    (sheet.quantize(colours) if colours else sheet).save(path, optimize=True)
    return path
