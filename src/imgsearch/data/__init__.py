"""Catalogue data: readers for each source, the one image decoder, preparation and splits.

Every reader returns the catalogue table (see :mod:`imgsearch.data.schema`); everything after
the readers reads only that table.

Names are resolved on first use (PEP 562), so ``from imgsearch.data import CATALOGUE_COLUMNS`` does not
import every reader, pandas parsers and the demo drawing code.
"""

from __future__ import annotations

import importlib
from typing import Any

# public name -> module that owns it
_EXPORTS = {
    "CATALOGUE_COLUMNS": "imgsearch.data.schema",
    "catalogue_hash": "imgsearch.data.schema",
    "empty_catalogue": "imgsearch.data.schema",
    "read_catalogue": "imgsearch.data.schema",
    "validate_catalogue": "imgsearch.data.schema",
    "write_catalogue": "imgsearch.data.schema",
    "ImageDecodeError": "imgsearch.data.images",
    "SkipReport": "imgsearch.data.images",
    "load_image": "imgsearch.data.images",
    "verify_images": "imgsearch.data.images",
    "prepare_catalogue": "imgsearch.data.prepare",
    "build_catalogue": "imgsearch.data.sources",
    "read_amazon": "imgsearch.data.readers.amazon",
    "read_farfetch": "imgsearch.data.readers.farfetch",
    "read_csv_catalogue": "imgsearch.data.readers.generic",
    "generate_demo": "imgsearch.data.demo",
    "demo_catalogue": "imgsearch.data.demo",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'imgsearch.data' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return __all__
