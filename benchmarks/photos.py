"""Product-photo-like JPEGs for the loading and embedding benchmarks, and catalogue tables over them.

A synthetic 600x800 "packshot": light studio background with a soft vignette, a garment-shaped
silhouette with a colour gradient, fabric-like texture and a shadow, saved at JPEG quality 90. What
matters for decoding cost is the pixel count, the quality setting and enough texture that the file
is not trivially compressible (the files come out around 40-90 KB, like real catalogue photos).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

try:
    from benchmarks._common import SHARED_REALDATA
except ImportError:  # run as a script from benchmarks/
    from _common import SHARED_REALDATA

REAL_IMAGES = SHARED_REALDATA / "fashion-product-images-small" / "images"


def product_photo(rng: np.random.Generator, width: int = 600, height: int = 800) -> Image.Image:
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    cx, cy = width / 2, height / 2
    vignette = 1.0 - 0.15 * (((xx - cx) / width) ** 2 + ((yy - cy) / height) ** 2)
    bg = (235 + rng.integers(-10, 10, 3)).astype(np.float32)
    img = vignette[..., None] * bg[None, None, :]

    mask_im = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask_im)
    w2, top, bottom = (
        width * rng.uniform(0.22, 0.32),
        height * rng.uniform(0.1, 0.2),
        height * rng.uniform(0.8, 0.9),
    )
    sleeve = width * rng.uniform(0.05, 0.15)
    draw.polygon(
        [(cx - w2, top), (cx - w2 - sleeve, top + height * 0.25), (cx - w2 * 0.8, bottom),
         (cx + w2 * 0.8, bottom), (cx + w2 + sleeve, top + height * 0.25), (cx + w2, top)],
        fill=255,
    )  # fmt: skip
    mask_im = mask_im.filter(ImageFilter.GaussianBlur(2))
    mask = np.asarray(mask_im, dtype=np.float32)[..., None] / 255.0
    shadow = np.asarray(mask_im.filter(ImageFilter.GaussianBlur(18)), dtype=np.float32)[..., None] / 255.0

    c0, c1 = rng.uniform(20, 230, 3), rng.uniform(20, 230, 3)
    t = (yy / height)[..., None]
    garment = c0 * (1 - t) + c1 * t
    weave = 12 * np.sin(xx * rng.uniform(0.3, 0.9))[..., None] * np.sin(yy * rng.uniform(0.3, 0.9))[..., None]
    garment = garment + weave + rng.normal(0, 6, (height, width, 1)).astype(np.float32)
    img = img * (1 - 0.35 * np.roll(shadow, (12, 12), axis=(0, 1))) + 0 * shadow
    img = img * (1 - mask) + garment * mask
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def write_photos(
    folder: Path, n: int, *, seed: int = 0, size: tuple[int, int] = (600, 800), unique: int = 24
) -> list[Path]:
    """``n`` JPEGs (quality 90) in ``folder``: ``unique`` drawn photos, the rest mirrored/recoloured
    variants of them (drawing one costs far more than decoding it; variants decode the same way)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    bases = [product_photo(rng, *size) for _ in range(min(n, unique))]
    paths = []
    for i in range(n):
        im = bases[i % len(bases)]
        variant = i // len(bases)
        if variant % 2:
            im = im.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if variant >= 2:
            shift = int(variant * 7 % 40)
            im = im.point(lambda v, s=shift: min(255, v + s))
        p = folder / f"photo_{i:05d}.jpg"
        im.save(p, "JPEG", quality=90)
        paths.append(p)
    return paths


def real_photos(n: int) -> list[Path]:
    """Up to ``n`` of the real 224x224 product JPEGs in ../shared/realdata (empty when absent)."""
    if not REAL_IMAGES.is_dir():
        return []
    return sorted(REAL_IMAGES.glob("*.jpg"))[:n]


def catalogue_of(paths: list[Path], n_classes: int = 4) -> pd.DataFrame:
    """A schema-valid catalogue table over ``paths`` (labels cycle over ``n_classes``, split = train)."""
    from imgsearch.data.schema import validate_catalogue

    df = pd.DataFrame(
        {
            "item_id": [p.stem for p in paths],
            "image_path": [str(p) for p in paths],
            "label": [f"class_{i % n_classes}" for i in range(len(paths))],
            "split": ["train"] * len(paths),
        }
    )
    return validate_catalogue(df)
