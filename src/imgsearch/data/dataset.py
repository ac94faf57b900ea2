"""A catalogue table as a torch ``Dataset`` of ``(image_tensor, target, row_index)``.

Images are decoded only through :func:`imgsearch.data.images.load_image`. The catalogue was
verified when it was built, but a file can still change or vanish before training reads it: such
an item comes back as ``None``, is counted and logged, and :func:`collate_skip_none` leaves it out
of the batch, so an epoch never dies on one bad file.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import pandas as pd
import torch
from torch.utils.data import Dataset, default_collate

from imgsearch.data.images import ImageDecodeError, load_image

log = logging.getLogger(__name__)

#: Target of a row whose label is not among the classes (e.g. predicting on a new catalogue).
UNKNOWN_TARGET = -1

Sample = (
    tuple[torch.Tensor, int, int]
    | tuple[torch.Tensor, int, int, int]
    | tuple[torch.Tensor, int, int, int, torch.Tensor]
)


class CatalogueDataset(Dataset):
    """Rows of a catalogue table as ``(transform(image), class index, row index)``.

    Args:
        df: catalogue rows (needs ``image_path`` and ``label``). ``row_index`` is the row's index
            label in ``df``, so with a frame sliced from a RangeIndex-ed catalogue it is the row's
            position in the whole catalogue (what embedding and retrieval map results back with).
        class_to_idx: label -> class index; labels not in it get :data:`UNKNOWN_TARGET`.
        transform: PIL image -> tensor (a timm transform).
        draft_size: ``(width, height)`` the JPEG decoder may shrink large images to (at least
            this size) before the transform; ``None`` decodes at full size.
        metric_targets: per-row metric-learning labels; adds a 4th item element when given.
        attribute_targets: per-row attribute class indices (see :mod:`imgsearch.data.attributes`); adds a
            5th element (an int64 tensor, one entry per attribute), and the 4th is then the class target when
            no metric targets are given, so a batch's positions always mean the same.
    """

    def __init__(
        self,
        df: pd.DataFrame,
        class_to_idx: Mapping[str, int],
        transform: Callable[[Any], torch.Tensor],
        *,
        draft_size: tuple[int, int] | None = None,
        metric_targets: Sequence[int] | None = None,
        attribute_targets: Sequence[Sequence[int]] | None = None,
    ) -> None:
        missing = [c for c in ("image_path", "label") if c not in df.columns]
        if missing:
            raise ValueError(f"catalogue rows lack column(s) {missing}")
        self.paths: list[str] = [str(p) for p in df["image_path"].tolist()]
        self.targets: list[int] = [class_to_idx.get(str(lbl), UNKNOWN_TARGET) for lbl in df["label"].tolist()]
        self.row_index: list[int] = [int(i) for i in df.index.tolist()]
        self.transform = transform
        # Labels for a metric-learning loss (product or category index, see data/metric_labels.py): when
        # given, items are (image, target, row, metric_target) and the classifier reads the 4th element.
        self.metric_targets = [int(t) for t in metric_targets] if metric_targets is not None else None
        if self.metric_targets is not None and len(self.metric_targets) != len(self.paths):
            raise ValueError(f"{len(self.metric_targets)} metric targets for {len(self.paths)} rows")
        self.attribute_targets = (
            torch.as_tensor([list(t) for t in attribute_targets], dtype=torch.long)
            if attribute_targets is not None
            else None
        )
        if self.attribute_targets is not None and len(self.attribute_targets) != len(self.paths):
            raise ValueError(f"{len(self.attribute_targets)} attribute targets for {len(self.paths)} rows")
        self.draft_size = tuple(draft_size) if draft_size is not None else None
        # Shared with DataLoader worker processes (handed over when they start), so the main
        # process sees the skips that happened in the workers.
        self._skipped = mp.Value("i", 0)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def skipped(self) -> int:
        """How many items were skipped at load time so far (all worker processes together)."""
        return int(self._skipped.value)

    def __getitem__(self, i: int) -> Sample | None:
        path = self.paths[i]
        try:
            image = load_image(path, draft_size=self.draft_size)
        except ImageDecodeError as exc:
            with self._skipped.get_lock():
                self._skipped.value += 1
            log.warning("skipping unreadable image at load time: %s (%s)", exc.path or path, exc.reason)
            return None
        if self.attribute_targets is not None:
            metric = self.metric_targets[i] if self.metric_targets is not None else self.targets[i]
            return (
                self.transform(image),
                self.targets[i],
                self.row_index[i],
                metric,
                self.attribute_targets[i],
            )
        if self.metric_targets is not None:
            return self.transform(image), self.targets[i], self.row_index[i], self.metric_targets[i]
        return self.transform(image), self.targets[i], self.row_index[i]


def collate_skip_none(batch: Sequence[Sample | None]) -> list[torch.Tensor] | None:
    """``default_collate`` without the items that failed to load.

    Returns ``None`` when every item of the batch failed; the LightningModule's steps skip a
    ``None`` batch.
    """
    kept = [b for b in batch if b is not None]
    if not kept:
        return None
    return default_collate(kept)
