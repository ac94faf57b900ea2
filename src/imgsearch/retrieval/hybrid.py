"""What ``Searcher.search`` adds for words and colour (kept here so search.py stays the photo path):

* ``q=``: the items best matching the words (:mod:`imgsearch.retrieval.text`) fused with the photo ranking by
  reciprocal rank (``text_weight`` is the words' weight, the photo's is 1); a built (not live) index gets an
  in-memory SQLite copy of its item table for this, made on first use.
* ``colour=``: "this, in colour c": the photo's predicted kind of product, only items whose colour column
  (given or predicted) is ``c``; an unknown ``c`` answers with the known ones.
* ``colour_weight=``: see :mod:`imgsearch.retrieval.colour`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from imgsearch.retrieval.colour import NoColourPartError
from imgsearch.retrieval.text import (
    TextQueryError,
    _quote,
    colour_filter,
    create_text_index,
    text_search,
)

#: colour columns looked for, in this order, when the index has no colour part naming its attribute
COLOUR_COLUMNS = ("baseColour", "colour", "color")


class MemoryText:
    """An in-memory ``items`` table + text index of a built index's item table (ids = its positions)."""

    def __init__(self, items: pd.DataFrame) -> None:
        self._lock = threading.Lock()
        self.conn = sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
        cols = [c for c in items.columns if c != "price"]
        decl = ", ".join(f"{_quote(c)} TEXT NOT NULL DEFAULT ''" for c in cols)
        self.conn.execute(f"CREATE TABLE items (vector_id INTEGER PRIMARY KEY, {decl})")
        marks = ", ".join("?" * (len(cols) + 1))
        self.conn.executemany(
            f"INSERT INTO items (vector_id, {', '.join(_quote(c) for c in cols)}) VALUES ({marks})",
            [
                (int(i), *(str(v) for v in row))
                for i, row in zip(items.index, items[cols].to_numpy(), strict=True)
            ],
        )
        create_text_index(self.conn)

    def text_search(
        self, query: str, k: int, allowed: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            return text_search(self.conn, query, k, allowed)


def colour_column(items: pd.DataFrame, manifest: dict[str, Any]) -> str:
    """The item column holding colours: the colour part's attribute, else one of :data:`COLOUR_COLUMNS`."""
    attr = (manifest.get("colour") or {}).get("attribute")
    for column in ([attr] if attr else []) + list(COLOUR_COLUMNS):
        if column in items.columns:
            return column
    raise TextQueryError(
        f"this catalogue has no colour column (looked for {[c for c in [attr, *COLOUR_COLUMNS] if c]}); "
        "index it with a model trained with a colour attribute, or give the column"
    )


def known_colour_values(items: pd.DataFrame, manifest: dict[str, Any]) -> tuple[str, list[str]]:
    """``(the colour column, its distinct non-empty values, sorted)``."""
    column = colour_column(items, manifest)
    return column, sorted(set(items[column].astype(str).unique().tolist()) - {""})


def in_colour_filters(items: pd.DataFrame, manifest: dict[str, Any], colour: str) -> dict[str, Any]:
    """The metadata filter of "in colour ``colour``"; :class:`UnknownColourError` lists the known ones."""
    column, known = known_colour_values(items, manifest)
    return colour_filter(colour, known, column)


def check_colour_weight(weight: float, parts: np.ndarray | None) -> float:
    weight = float(weight)
    if not np.isfinite(weight) or weight < 0:
        raise ValueError(f"colour_weight must be a finite number >= 0, got {weight}")
    if weight == 0:
        return 0.0
    if parts is None:
        raise NoColourPartError(
            "this index has no colour part (its manifest records none: it was built without a model with a "
            "colour attribute head), so colour_weight must be 0; rebuild it with colour_part=lab (the "
            "photos' colours, any model) or with a checkpoint trained with model.attributes=[baseColour,...]"
        )
    return weight


def fuse_with_text(
    image_ids: Sequence[int], text_ids: Sequence[int], text_weight: float, k: int
) -> tuple[np.ndarray, np.ndarray]:
    from imgsearch.retrieval.text import reciprocal_rank_fusion

    ids, scores = reciprocal_rank_fusion([list(image_ids), list(text_ids)], [1.0, float(text_weight)])
    return ids[:k], scores[:k]
