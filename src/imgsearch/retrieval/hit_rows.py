"""The item-table fields a search hit shows, read from column arrays instead of one pandas row per hit.

``items.loc[i]`` builds a whole Series per hit (about 0.1 ms each): 16 queries of 13 hits cost as much as a
third of their forward pass in the service. The columns are taken once per item-table state
(:class:`HitRows`) and a hit's fields are then plain array lookups, converted exactly as the per-row path
converted them (``str``, :func:`~imgsearch.data.schema.optional_price`, empty text for a missing value).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from imgsearch.data.schema import optional_price

#: hit fields read as text, each from the item-table column of the same name (required columns)
TEXT_FIELDS = ("item_id", "product_id", "label", "title", "brand", "image_path")
#: optional columns: "" when the table lacks them or the value is missing
OPTIONAL_FIELDS = ("currency", "url")


def text_or_empty(value: Any) -> str:
    """``""`` for None / NaN, else ``str(value)``."""
    return "" if value is None or (isinstance(value, float) and value != value) else str(value)


class HitRows:
    """Hit fields of the items with given ids (the item table's index: positions or live vector ids)."""

    def __init__(self, items: pd.DataFrame) -> None:
        self._index = items.index
        # to_numpy of an object column is a view, not a copy: cheap for every live change too
        self._text = [items[name].to_numpy() for name in TEXT_FIELDS]
        self._price = items["price"].to_numpy()
        self._optional = [
            items[name].to_numpy() if name in items.columns else None for name in OPTIONAL_FIELDS
        ]

    def fields(self, ids: np.ndarray) -> list[dict[str, Any]]:
        """One dict of hit fields per id, in order.

        Raises:
            KeyError: an id the item table does not hold (as ``items.loc`` would).
        """
        pos = self._index.get_indexer(np.asarray(ids, dtype=np.int64))
        if len(pos) and pos.min() < 0:
            raise KeyError(f"no item with id {int(np.asarray(ids)[pos < 0][0])} in the item table")
        text = [[str(v) for v in col[pos]] for col in self._text]
        price = [optional_price(v) for v in self._price[pos]]
        optional = [
            [""] * len(pos) if col is None else [text_or_empty(v) for v in col[pos]] for col in self._optional
        ]
        names = (*TEXT_FIELDS, "price", *OPTIONAL_FIELDS)
        return [dict(zip(names, values, strict=True)) for values in zip(*text, price, *optional, strict=True)]
