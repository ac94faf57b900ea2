"""Confusion-matrix figure for the test stage.

Built on a bare ``matplotlib.figure.Figure`` with the Agg canvas, never ``pyplot``: no global figure state,
no GUI backend, safe in DataLoader workers, DDP ranks and headless CI.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from imgsearch.utils.atomic import atomic_write_with


def confusion_matrix_figure(
    matrix: torch.Tensor | np.ndarray, class_names: Sequence[str], *, title: str = "Confusion matrix (test)"
) -> Figure:
    """Rows are true classes, columns predicted; cells show counts, colour the row-normalised rate.

    Colouring by rate keeps small classes readable next to large ones; the counts keep the absolute picture.
    """
    counts = np.asarray(matrix.cpu() if isinstance(matrix, torch.Tensor) else matrix, dtype=np.int64)
    n = counts.shape[0]
    if counts.shape != (n, n) or len(class_names) != n:
        raise ValueError(f"confusion matrix {counts.shape} does not fit {len(class_names)} class names")
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    side = min(4.0 + 0.45 * n, 40.0)
    fig = Figure(figsize=(side + 1.5, side))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_xticks(range(n), labels=list(class_names), rotation=90 if n > 6 else 45, ha="right")
    ax.set_yticks(range(n), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    if n <= 40:  # beyond that the numbers are unreadable anyway
        fontsize = 8 if n > 15 else 10
        for i in range(n):
            for j in range(n):
                colour = "white" if rates[i, j] > 0.5 else "black"
                ax.text(j, i, str(counts[i, j]), ha="center", va="center", color=colour, fontsize=fontsize)
    fig.tight_layout()
    return fig


def save_figure(fig: Figure, path: str | Path, dpi: int = 100) -> Path:
    """Write ``fig`` as PNG atomically (a reader never sees half a file)."""
    return atomic_write_with(path, lambda tmp: fig.savefig(tmp, format="png", dpi=dpi), suffix=".png")
