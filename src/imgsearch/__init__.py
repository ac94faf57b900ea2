"""imgsearch: classify a product photo and retrieve the most similar catalogue items."""

__version__ = "0.1.0"
