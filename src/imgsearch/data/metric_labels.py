"""Which label a metric-learning loss pulls together: the product (its several photos) or the category.

A shopper wants *this* product, so where a catalogue has several photos per product (the demo's cutout and
model photo, Amazon items with several images) the metric loss should treat those photos as the positives;
a catalogue with one photo per product has no product-level positives, and only the category can serve.
"""

from __future__ import annotations

import pandas as pd

METRIC_LABELS = ("category", "product")

_COLUMNS = {"category": "label", "product": "product_id"}


def metric_label_column(labels: str) -> str:
    """The catalogue column holding the metric label for ``labels`` (``category`` | ``product``)."""
    if labels not in _COLUMNS:
        raise ValueError(f"labels {labels!r} unknown; use one of {METRIC_LABELS}")
    return _COLUMNS[labels]


def metric_label_names(catalogue: pd.DataFrame, labels: str, split: str = "train") -> list[str]:
    """Sorted distinct metric labels of the ``split`` rows; index = the metric target a loss sees.

    Raises ``ValueError`` under ``labels="product"`` when no training product has two photos: every batch
    would hold only negatives, and the loss would learn nothing (or push photos of nothing apart).
    """
    column = metric_label_column(labels)
    rows = catalogue[catalogue["split"] == split] if "split" in catalogue.columns else catalogue
    if rows.empty:
        raise ValueError(f"the catalogue has no {split!r} rows to take metric labels from")
    values = rows[column].astype(str)
    if labels == "product":
        counts = values.value_counts()
        if int(counts.max()) < 2:
            raise ValueError(
                f"labels=product needs products with several photos, but each of the {len(counts)} "
                f"{split} products has one; use labels=category for this catalogue"
            )
    return sorted(set(values.tolist()))
