"""Catalogue data: readers for each source, the one image decoder, preparation and splits.

Every reader returns the catalogue table (see :mod:`imgsearch.data.schema`); everything after
the readers reads only that table.
"""

from __future__ import annotations

from typing import Any

from imgsearch.data.amazon import read_amazon
from imgsearch.data.farfetch import read_farfetch
from imgsearch.data.generic import read_csv_catalogue
from imgsearch.data.images import ImageDecodeError, SkipReport, load_image, verify_images
from imgsearch.data.prepare import prepare_catalogue
from imgsearch.data.schema import (
    CATALOGUE_COLUMNS,
    catalogue_hash,
    empty_catalogue,
    read_catalogue,
    validate_catalogue,
    write_catalogue,
)
from imgsearch.data.sources import build_catalogue

__all__ = [
    "CATALOGUE_COLUMNS",
    "ImageDecodeError",
    "SkipReport",
    "build_catalogue",
    "catalogue_hash",
    "demo_catalogue",
    "empty_catalogue",
    "generate_demo",
    "load_image",
    "prepare_catalogue",
    "read_amazon",
    "read_catalogue",
    "read_csv_catalogue",
    "read_farfetch",
    "validate_catalogue",
    "verify_images",
    "write_catalogue",
]


def __getattr__(name: str) -> Any:
    # The demo generator imports drawing code that most users of this package never need.
    if name in ("generate_demo", "demo_catalogue"):
        from imgsearch.data import demo

        return getattr(demo, name)
    raise AttributeError(f"module 'imgsearch.data' has no attribute {name!r}")
