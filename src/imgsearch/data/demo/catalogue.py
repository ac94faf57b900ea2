"""Built-in demo catalogue: the embedded default data for ``make demo`` and CI.

:func:`generate_demo` writes, deterministically from a seed, a small shop catalogue in the *real* source
formats, so that the real readers are the ones exercised:

- ``current_farfetch_listings.csv`` in the schema of Kaggle's "farfetch-listings" (pandas ``to_csv`` with
  its index; URLs ``https://cdn-images.farfetch-contents.com/AA/BB/CC/DD/<id>_<imageId>_300.jpg``), with the
  images in the Kaggle layout ``cutout-img/cutout/<url file name>`` and ``model-img/model/<url file name>``;
- ``meta_Demo.json``: Amazon 2014-style metadata, one Python ``str(dict)`` per line (``ast.literal_eval``,
  not ``json``), whose first category path starts with the product's category; images
  ``amazon-img/<asin>.jpg``;
- ``DEMO.json``: the generation parameters, written last, so its presence means the data is complete.

Each product's ``shortDescription`` ends with its category keyword (``"navy striped wool coat"``), so the
keyword taxonomy labels it. Images are drawn by :mod:`imgsearch.data.demo.drawing`: a packshot on white and
a "model" photo of the same item on clutter with other scale, rotation and light, so finding the cutout
from the model photo is a real (but solvable) retrieval task.

:func:`demo_catalogue` generates on first use (atomically, safe for several processes such as DDP ranks)
and returns the catalogue table through :func:`imgsearch.data.readers.farfetch.read_farfetch`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
import uuid
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgsearch.data.demo.amazon_format import AMAZON_DIR, AMAZON_META, write_amazon
from imgsearch.data.demo.drawing import DRAWERS, SHOES, draw_look, jpeg_bytes, render_cutout, render_model
from imgsearch.utils.atomic import atomic_write_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MARKER = "DEMO.json"
FARFETCH_CSV = "current_farfetch_listings.csv"
CUTOUT_DIR = "cutout-img/cutout"
MODEL_DIR = "model-img/model"
#: everything generate_demo writes; a directory holding only these may be replaced by demo_catalogue
DEMO_ENTRIES = frozenset({MARKER, FARFETCH_CSV, AMAZON_META, "cutout-img", "model-img", AMAZON_DIR})

#: every category the generator can draw (the names of ``conf/taxonomy/farfetch.yaml``)
SUPPORTED_CATEGORIES: tuple[str, ...] = tuple(DRAWERS)
#: the default 12: clearly different silhouettes
DEFAULT_CATEGORIES: tuple[str, ...] = (
    "t-shirt",
    "dress",
    "trousers",
    "shorts",
    "skirt",
    "coat",
    "sneakers",
    "boots",
    "bag",
    "hat",
    "sunglasses",
    "scarf",
)

#: the real listings' column order after the unnamed index column
FARFETCH_COLUMNS: tuple[str, ...] = (
    "availableSizes",
    "brand.id",
    "brand.name",
    "gender",
    "hasSimilarProducts",
    "id",
    "images.cutOut",
    "images.model",
    "isCustomizable",
    "merchandiseLabel",
    "merchandiseLabelField",
    "merchantId",
    "priceInfo.currencyCode",
    "priceInfo.discountLabel",
    "priceInfo.finalPrice",
    "priceInfo.formattedFinalPrice",
    "priceInfo.formattedInitialPrice",
    "priceInfo.initialPrice",
    "priceInfo.installmentsLabel",
    "priceInfo.isOnSale",
    "shortDescription",
    "stockTotal",
)

# Invented brands (with the non-ASCII names real listings have); ids look like Farfetch brand ids.
_BRANDS: tuple[tuple[str, int], ...] = (
    ("Maison Lumen", 353121),
    ("Atelier Émile", 4012877),
    ("Nordhavn Studio", 1520340),
    ("Søren Vik", 6639012),
    ("Marlowe Row", 88214),
    ("Petra Lind", 2301456),
    ("Studio Ossa", 5120987),
    ("Halcyon Goods", 41873),
    ("Casa Orvieto", 970345),
    ("Oki & Wren", 7713209),
    ("Bellweather", 12760),
    ("Rue Dauphine", 3388411),
)
_STYLE_NAMES = ("Ada", "Milo", "Rhea", "Juno", "Orla", "Cleo", "Nico", "Ines", "Vera", "Luca", "Tove", "Ezra")
#: the word a title uses for each pattern ("" = none): a product's look can be read back from its title
PATTERN_WORDS = {
    "solid": "",
    "stripes": "striped",
    "dots": "polka-dot",
    "checks": "check",
    "gradient": "ombré",
}
_MODIFIERS: dict[str, tuple[str, ...]] = {
    "dress": ("mini", "midi", "maxi", "wrap"),
    "skirt": ("mini", "midi", "pleated", "A-line"),
    "trousers": ("wide-leg", "tailored", "straight-leg", "cropped"),
    "jeans": ("wide-leg", "skinny", "straight-leg", "high-waisted"),
    "shorts": ("tailored", "high-waisted", "bermuda"),
    "shirt": ("oversized", "button-down", "poplin"),
    "t-shirt": ("oversized", "cropped", "logo print", "crew-neck"),
    "sweater": ("ribbed", "oversized", "crew-neck"),
    "jacket": ("zip-up", "cropped", "bomber-style"),
    "coat": ("single-breasted", "double-breasted", "belted", "oversized"),
    "sneakers": ("low-top", "high-top", "platform"),
    "boots": ("ankle", "knee-high", "chelsea"),
    "sandals": ("flat", "strappy", "buckled"),
    "pumps": ("pointed", "round-toe", "slingback"),
    "bag": ("tote", "shoulder", "mini", "top-handle"),
    "wallet": ("zip-around", "bifold", "continental"),
    "belt": ("buckle", "reversible", "skinny"),
    "hat": ("fedora", "wide-brim", "bucket"),
    "scarf": ("fringed", "oversized", "lightweight"),
    "sunglasses": ("tinted", "oversized"),
    "jewellery": ("pendant", "chain"),
}
_MATERIALS: dict[str, tuple[str, ...]] = {
    "jeans": ("denim",),
    "sweater": ("wool", "cashmere", "knit"),
    "coat": ("wool", "tweed", "cotton"),
    "jacket": ("leather", "cotton", "wool"),
    "sneakers": ("leather", "canvas", "suede"),
    "boots": ("leather", "suede"),
    "sandals": ("leather", "suede"),
    "pumps": ("leather", "patent leather", "satin"),
    "bag": ("leather", "calf leather", "canvas", "suede"),
    "wallet": ("leather", "calf leather"),
    "belt": ("leather", "suede"),
    "hat": ("wool", "felt", "straw"),
    "scarf": ("silk", "wool", "cashmere"),
    "sunglasses": ("acetate",),
    "jewellery": ("",),
}
_CLOTH = ("cotton", "linen", "silk", "wool", "jersey")
_LETTER_SIZES = ("XXS", "XS", "S", "M", "L", "XL", "XXL")
_SHOE_SIZES = tuple(str(s) for s in range(35, 43))
_ONE_SIZE = frozenset({"bag", "wallet", "hat", "scarf", "sunglasses", "jewellery", "belt"})
_LABELS = (
    ("", "NoTag"),
    ("New Season", "NewSeason"),
    ("Exclusive", "Exclusive"),
    ("Positively Conscious", "NoTag"),
)
_DISCOUNTS = (20, 30, 40, 50, 55, 60, 65, 70)
_PRICE_RANGE = {"jewellery": (150, 3500), "bag": (300, 3500), "coat": (400, 3000), "wallet": (150, 800)}


def _normalise_params(
    seed: int, products_per_class: int, image_size: int, categories: Sequence[str] | None, amazon: bool
) -> dict[str, Any]:
    cats = list(DEFAULT_CATEGORIES if categories is None else categories)
    unknown = [c for c in cats if c not in DRAWERS]
    if unknown:
        raise ValueError(f"demo generator cannot draw {unknown}; choose from {list(SUPPORTED_CATEGORIES)}")
    if not cats or len(set(cats)) != len(cats):
        raise ValueError(f"categories must be a non-empty list without repeats, got {cats}")
    if int(products_per_class) < 1:
        raise ValueError(f"products_per_class must be >= 1, got {products_per_class}")
    if int(image_size) < 16:
        raise ValueError(f"image_size must be >= 16 pixels, got {image_size}")
    return {
        "seed": int(seed),
        "products_per_class": int(products_per_class),
        "image_size": int(image_size),
        "categories": cats,
        "amazon": bool(amazon),
    }


def _rng(seed: int, category: str, k: int, stream: int) -> np.random.Generator:
    """Independent stream per (product, purpose): product k of a category does not depend on the others."""
    return np.random.default_rng([seed, zlib.crc32(category.encode()), k, stream])


def _money(value: int) -> str:
    return f"${value:,}"


def _description(category: str, look_colour: str, pattern: str, rng: np.random.Generator) -> str:
    """A Farfetch-like ``shortDescription`` whose LAST word is the category keyword."""
    words: list[str] = []
    if rng.random() < 0.25:
        words.append(str(rng.choice(_STYLE_NAMES)))
    if category == "jewellery":
        words += [look_colour, str(rng.choice(_MODIFIERS[category]))]
    else:
        words.append(look_colour)
        if PATTERN_WORDS[pattern]:
            words.append(PATTERN_WORDS[pattern])
        if rng.random() < 0.5:
            words.append(str(rng.choice(_MODIFIERS[category])))
        words.append(str(rng.choice(_MATERIALS.get(category, _CLOTH))))
    words.append(category)
    text = " ".join(w for w in words if w)
    if rng.random() < 0.5:
        text = text[0].upper() + text[1:]
    return text


def _sizes(category: str, rng: np.random.Generator) -> str | None:
    """Python-repr list of size dicts, as in the real column (empty for some products)."""
    if rng.random() < 0.2:
        return None
    if category in _ONE_SIZE:
        sizes: Sequence[str] = ["One Size"]
    else:
        scale = _SHOE_SIZES if category in SHOES else _LETTER_SIZES
        lo = int(rng.integers(0, len(scale) - 2))
        sizes = scale[lo : int(rng.integers(lo + 1, len(scale) + 1))]
    return repr([{"scaleId": 0, "size": s} for s in sizes])


def _listing(
    category: str, k: int, seed: int, look_colour: str, pattern: str, used: set[int]
) -> dict[str, Any]:
    rng = _rng(seed, category, k, 2)
    pid = int(rng.integers(10_000_000, 20_000_000))
    while pid in used:  # deterministic: products are visited in a fixed order
        pid = int(rng.integers(10_000_000, 20_000_000))
    used.add(pid)
    cut_img = int(rng.integers(15_000_000, 19_900_000))
    model_img = cut_img + int(rng.integers(1, 60))
    s = f"{pid:08d}"
    base = f"https://cdn-images.farfetch-contents.com/{s[0:2]}/{s[2:4]}/{s[4:6]}/{s[6:8]}/{s}"
    brand, brand_id = _BRANDS[int(rng.integers(len(_BRANDS)))]
    lo, hi = _PRICE_RANGE.get(category, (90, 1800))
    initial = round(float(np.exp(rng.uniform(np.log(lo), np.log(hi)))))
    on_sale = bool(rng.random() < 0.45)
    discount = int(rng.choice(_DISCOUNTS)) if on_sale else 0
    final = round(initial * (100 - discount) / 100)
    label, label_field = _LABELS[int(rng.choice(4, p=[0.8, 0.12, 0.04, 0.04]))]
    gender = str(rng.choice(["women", "men", "unisex"], p=[0.7, 0.22, 0.08]))
    return {
        "availableSizes": _sizes(category, rng),
        "brand.id": brand_id,
        "brand.name": brand,
        "gender": gender,
        "hasSimilarProducts": bool(rng.random() < 0.94),
        "id": pid,
        "images.cutOut": f"{base}_{cut_img}_300.jpg",
        "images.model": f"{base}_{model_img}_300.jpg",
        "isCustomizable": False,
        "merchandiseLabel": label or None,
        "merchandiseLabelField": label_field,
        "merchantId": int(rng.integers(9000, 12100)),
        "priceInfo.currencyCode": "USD",
        "priceInfo.discountLabel": f"{discount}% Off" if on_sale else None,
        "priceInfo.finalPrice": final,
        "priceInfo.formattedFinalPrice": _money(final),
        "priceInfo.formattedInitialPrice": _money(initial),
        "priceInfo.initialPrice": initial,
        "priceInfo.installmentsLabel": None,
        "priceInfo.isOnSale": on_sale,
        # real descriptions sometimes end with a space; the category is still the last word
        "shortDescription": _description(category, look_colour, pattern, rng)
        + (" " if rng.random() < 0.05 else ""),
        "stockTotal": int(rng.geometric(0.04)),
    }


def generate_demo(
    root: str | os.PathLike[str],
    *,
    seed: int = 0,
    products_per_class: int = 12,
    image_size: int = 128,
    categories: Sequence[str] | None = None,
    amazon: bool = True,
) -> Path:
    """Write the demo catalogue into ``root`` (created if needed) and return ``root``.

    The output is a pure function of the arguments: the same arguments give byte-identical files. Product
    ``k`` of a category is the same whatever ``products_per_class`` or the other categories are.

    Args:
        root: output directory. Existing files of the same names are overwritten; other files are left.
        seed: base seed of every random choice.
        products_per_class: products per category (two images each, plus one Amazon image).
        image_size: side of the square images in pixels.
        categories: which of :data:`SUPPORTED_CATEGORIES` to draw (default :data:`DEFAULT_CATEGORIES`).
        amazon: also write ``meta_Demo.json`` and ``amazon-img/``.
    """
    params = _normalise_params(seed, products_per_class, image_size, categories, amazon)
    root = Path(root)
    for sub in (CUTOUT_DIR, MODEL_DIR, *([AMAZON_DIR] if amazon else [])):
        (root / sub).mkdir(parents=True, exist_ok=True)

    rows: list[dict[str, Any]] = []
    cats: list[str] = []
    cutouts: list[bytes] = []
    used_ids: set[int] = set()
    size = params["image_size"]
    for category in params["categories"]:
        for k in range(params["products_per_class"]):
            look = draw_look(category, _rng(params["seed"], category, k, 0), size)
            row = _listing(category, k, params["seed"], look.colour_name, look.pattern, used_ids)
            model_rng = _rng(params["seed"], category, k, 1)
            model = render_model(look, size, model_rng)
            cutout = jpeg_bytes(render_cutout(look, size), 92)
            (root / CUTOUT_DIR / row["images.cutOut"].rsplit("/", 1)[-1]).write_bytes(cutout)
            (root / MODEL_DIR / row["images.model"].rsplit("/", 1)[-1]).write_bytes(
                jpeg_bytes(model, int(model_rng.integers(55, 86)))
            )
            rows.append(row)
            cats.append(category)
            cutouts.append(cutout)

    # Real listings are not grouped by category.
    order = np.random.default_rng([params["seed"], 7]).permutation(len(rows))
    table = pd.DataFrame([rows[i] for i in order], columns=list(FARFETCH_COLUMNS))
    table.to_csv(root / FARFETCH_CSV, index=True, lineterminator="\n")

    if amazon:
        write_amazon(
            root,
            params["seed"],
            [rows[i] for i in order],
            [cats[i] for i in order],
            [cutouts[i] for i in order],
        )

    atomic_write_json(
        root / MARKER,
        {
            "generator": "imgsearch.data.demo",
            "format_version": FORMAT_VERSION,
            "params": params,
            "products": len(rows),
            "farfetch_images": 2 * len(rows),
            "amazon_images": len(rows) if amazon else 0,
        },
    )
    log.info(
        "demo catalogue: %d products x 2 views in %d categories at %d px -> %s",
        len(rows),
        len(params["categories"]),
        size,
        root,
    )
    return root


# --- generate-once access ------------------------------------------------------------------------------


def _marker_params(root: Path) -> dict[str, Any] | None:
    try:
        marker = json.loads((root / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(marker, dict) or marker.get("format_version") != FORMAT_VERSION:
        return None
    return marker.get("params")


@contextlib.contextmanager
def _exclusive(lock_path: Path) -> Iterator[None]:
    """Serialise generation between processes on one machine (e.g. DDP ranks); no-op without fcntl."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield
        return
    with open(lock_path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_demo(root: str | os.PathLike[str] = "data/demo", **generate_kwargs: Any) -> Path:
    """Generate the demo into ``root`` unless its marker already records the same parameters.

    The data is built in a sibling temporary directory and renamed into place, so readers never see a
    half-written catalogue; a process that loses the race to another generating the same data uses theirs.
    A stale demo (other parameters) is replaced; a non-empty ``root`` that is not a demo is never touched.
    """
    root = Path(root)
    params = _normalise_params(**{**_defaults(), **generate_kwargs})
    if _marker_params(root) == params:
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(root.parent / f".{root.name}.lock"):
        if _marker_params(root) == params:  # another process finished while we waited
            return root
        if root.exists() and any(p.name not in DEMO_ENTRIES for p in root.iterdir()):
            raise FileExistsError(
                f"{root} exists and holds files the demo generator did not write; "
                "choose another demo root or remove it"
            )
        tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
        old = root.with_name(f".{root.name}.old-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        try:
            generate_demo(tmp, **params)
            if root.exists():
                os.replace(root, old)
            try:
                os.replace(tmp, root)
            except OSError:
                if _marker_params(root) != params:  # someone else's equal demo is as good as ours
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            shutil.rmtree(old, ignore_errors=True)
    return root


def _defaults() -> dict[str, Any]:
    return {"seed": 0, "products_per_class": 12, "image_size": 128, "categories": None, "amazon": True}


def demo_catalogue(root: str | os.PathLike[str] = "data/demo", **generate_kwargs: Any) -> pd.DataFrame:
    """The demo's catalogue table (Farfetch reader over the generated listings), generating it if needed.

    ``generate_kwargs`` are those of :func:`generate_demo` (seed, products_per_class, image_size,
    categories, amazon).
    """
    from imgsearch.data.readers.farfetch import (
        read_farfetch,  # the reader imports heavier deps; keep demo light
    )

    root = ensure_demo(root, **generate_kwargs)
    return read_farfetch(root / FARFETCH_CSV, image_dir=root)
