"""PNG grid of sample queries and their top-k results, relevant results framed green, others red."""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image, ImageOps

from imgsearch.data.images import ImageDecodeError, load_image
from imgsearch.utils.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

RELEVANT_COLOUR = "#1a9850"
OTHER_COLOUR = "#d73027"


@dataclass
class GridHit:
    image_path: str
    caption: str
    relevant: bool


@dataclass
class GridRow:
    query_path: str
    query_caption: str
    hits: list[GridHit] = field(default_factory=list)


def _thumbnail(path: str, size: int) -> np.ndarray:
    """The image as a ``size`` x ``size`` array (letterboxed on white); grey if it cannot be read."""
    try:
        im = load_image(path, draft_size=(size, size))
    except ImageDecodeError as exc:
        log.warning("result grid: cannot show %s (%s)", path, exc.reason)
        return np.full((size, size, 3), 200, np.uint8)
    im = ImageOps.contain(im, (size, size))  # small images are scaled up too, so every cell is alike
    canvas = Image.new("RGB", (size, size), "white")
    canvas.paste(im, ((size - im.width) // 2, (size - im.height) // 2))
    return np.asarray(canvas)


def render_result_grid(rows: Sequence[GridRow], *, thumb: int = 128, title: str | None = None) -> bytes:
    """PNG bytes: one row per query (query first, then its hits in rank order)."""
    if not rows:
        raise ValueError("no queries to draw")
    n_cols = 1 + max(len(r.hits) for r in rows)
    fig = Figure(figsize=(1.6 * n_cols, 1.9 * len(rows) + (0.4 if title else 0)), dpi=100)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(rows), n_cols, squeeze=False)
    for r, row in enumerate(rows):
        cells = [
            (row.query_path, row.query_caption, None),
            *[(h.image_path, h.caption, h.relevant) for h in row.hits],
        ]
        for c in range(n_cols):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            if c >= len(cells):
                ax.axis("off")
                continue
            path, caption, relevant = cells[c]
            ax.imshow(_thumbnail(path, thumb))
            ax.set_xlabel(caption, fontsize=7)
            colour = "black" if relevant is None else (RELEVANT_COLOUR if relevant else OTHER_COLOUR)
            for spine in ax.spines.values():
                spine.set_edgecolor(colour)
                spine.set_linewidth(1.5 if relevant is None else 4)
            if c == 0:
                ax.set_title("query", fontsize=8)
            else:
                ax.set_title(f"#{c}" + (" \u2713" if relevant else ""), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()


def save_result_grid(
    path: str | os.PathLike[str], rows: Sequence[GridRow], *, thumb: int = 128, title: str | None = None
) -> Path:
    """Write :func:`render_result_grid` to ``path`` atomically."""
    return atomic_write_bytes(path, render_result_grid(rows, thumb=thumb, title=title))
