"""Attribute columns a catalogue lacks, filled in from the model's attribute heads at index time.

A shop's photos often come without colour or gender; a model trained with ``model.attributes`` predicts them,
so filters, facets and text search work on those items too. Only cells the catalogue left empty (or a column
it does not have) are filled, and only with predictions at or above the confidence threshold; the shop's own
values always win. Each filled column ``c`` gets two companions in the item table:

* ``c_predicted``: ``"true"`` where ``c`` holds a prediction, ``""`` where it is the catalogue's own value
  (or was left empty, the prediction being under the threshold);
* ``c_confidence``: the prediction's probability (``"0.934"``) where ``c_predicted`` is ``"true"``.

The manifest's ``predicted_attributes`` says which columns were filled, how many cells, how many were left
empty for low confidence, and the threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

PREDICTED_SUFFIX = "_predicted"
CONFIDENCE_SUFFIX = "_confidence"


def fill_predicted_attributes(
    items: pd.DataFrame,
    probs: Mapping[str, np.ndarray],
    classes: Mapping[str, Sequence[str]],
    min_confidence: float,
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """``(items with the empty attribute cells filled, the manifest's predicted_attributes)``.

    ``probs[c]`` holds one row of probabilities per row of ``items`` (the same order).
    """
    out = items.copy()
    info: dict[str, Any] = {"min_confidence": float(min_confidence), "columns": {}}
    for name, p in probs.items():
        p = np.asarray(p)
        if p.shape != (len(out), len(classes[name])):
            raise ValueError(f"{name}: probabilities of shape {p.shape} for {len(out)} items")
        had_column = name in out.columns
        current = (
            out[name].astype(str).to_numpy(dtype=object) if had_column else np.full(len(out), "", object)
        )
        best = p.argmax(axis=1)
        conf = p[np.arange(len(out)), best]
        empty = current == ""
        fill = empty & (conf >= float(min_confidence))
        values = np.array([str(c) for c in classes[name]], dtype=object)[best]
        current = np.where(fill, values, current)
        out[name] = current
        out[name + PREDICTED_SUFFIX] = np.where(fill, "true", "").astype(object)
        out[name + CONFIDENCE_SUFFIX] = np.array(
            [f"{c:.3f}" if f else "" for c, f in zip(conf, fill, strict=True)], dtype=object
        )
        info["columns"][name] = {
            "flag": name + PREDICTED_SUFFIX,
            "confidence": name + CONFIDENCE_SUFFIX,
            "catalogue_had_column": had_column,
            "filled": int(fill.sum()),
            "low_confidence_left_empty": int((empty & ~fill).sum()),
            "catalogue_values_kept": int((~empty).sum()),
        }
        log.info(
            "predicted %s: filled %d empty cells, %d left empty (confidence < %.2f), %d shop values kept",
            name, int(fill.sum()), int((empty & ~fill).sum()), min_confidence, int((~empty).sum()),
        )  # fmt: skip
    return out, info
