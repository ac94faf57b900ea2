"""The built-in demo catalogue: :mod:`.catalogue` writes it in the real source formats, :mod:`.drawing` draws
its product photos."""

from imgsearch.data.demo.catalogue import (
    AMAZON_DIR,
    AMAZON_META,
    CUTOUT_DIR,
    FARFETCH_COLUMNS,
    FARFETCH_CSV,
    MARKER,
    MODEL_DIR,
    SUPPORTED_CATEGORIES,
    demo_catalogue,
    ensure_demo,
    generate_demo,
)
from imgsearch.data.demo.sheet import demo_contact_sheet

__all__ = [
    "AMAZON_DIR",
    "AMAZON_META",
    "CUTOUT_DIR",
    "FARFETCH_COLUMNS",
    "FARFETCH_CSV",
    "MARKER",
    "MODEL_DIR",
    "SUPPORTED_CATEGORIES",
    "demo_catalogue",
    "demo_contact_sheet",
    "ensure_demo",
    "generate_demo",
]
