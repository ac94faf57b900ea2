"""Metadata filters on the item table, turned into the index positions a FAISS ``IDSelector`` admits.

A filter is a mapping ``column -> condition``: a value or a list of values (equality, any of them; strings
compare case-insensitively), or a ``(low, high)`` range for a numeric column (either end ``None`` = open).
``parse_filter("brand=Acme")``, ``"label=bags|shoes"`` and ``"price=10:50"`` give the same conditions from
the command line. The search applies the selector inside FAISS, so a filtered query still gets ``k`` results
when ``k`` items pass.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

Condition = Any  # a value, a list of values, or a (low, high) range


class FilterError(ValueError):
    """A filter names an unknown column or cannot be applied to it; the message says which and why."""


def parse_filter(text: str) -> tuple[str, Condition]:
    """``column=value``, ``column=a|b`` (any of them) or ``column=low:high`` (a numeric range; either end
    may be left out)."""
    column, sep, value = str(text).partition("=")
    column = column.strip()
    if not sep or not column:
        raise FilterError(f"filter {text!r} must look like column=value, column=a|b or column=low:high")
    if ":" in value:
        low, _, high = value.partition(":")
        try:
            return column, (float(low) if low.strip() else None, float(high) if high.strip() else None)
        except ValueError:
            raise FilterError(f"filter {text!r}: a range needs numbers, e.g. price=10:50") from None
    values = [v.strip() for v in value.split("|")]
    return column, values if len(values) > 1 else values[0]


def parse_filters(texts: Sequence[str]) -> dict[str, Condition]:
    return dict(parse_filter(t) for t in texts)


def _is_range(condition: Condition) -> bool:
    return isinstance(condition, tuple) and len(condition) == 2


class ItemFilter:
    """Filters over one item table, each column normalised once (case-folded text as codes, numbers as
    floats) on first use: a service answers many queries between two catalogue changes, and normalising a
    100k-row column per query cost 20 ms, 60x the filtered HNSW search itself."""

    def __init__(self, items: pd.DataFrame) -> None:
        self.items = items
        self._text: dict[str, tuple[np.ndarray, pd.Index]] = {}
        self._numbers: dict[str, np.ndarray] = {}

    def _column(self, column: str) -> pd.Series:
        if column not in self.items.columns:
            known = sorted(self.items.columns)
            raise FilterError(f"unknown filter column {column!r}; the items have {known}")
        return self.items[column]

    def _range_ok(self, column: str, low: Any, high: Any) -> np.ndarray:
        if column not in self._numbers:
            self._numbers[column] = pd.to_numeric(self._column(column), errors="coerce").to_numpy(dtype=float)
        values = self._numbers[column]
        if np.isnan(values).all() and len(values):
            raise FilterError(f"column {column!r} holds no numbers; a range filter cannot apply")
        ok = ~np.isnan(values)
        if low is not None:
            ok &= values >= float(low)
        if high is not None:
            ok &= values <= float(high)
        return ok

    def _values_ok(self, column: str, wanted: Any) -> np.ndarray:
        if column not in self._text:
            codes, uniques = pd.factorize(self._column(column).astype(str).str.strip().str.casefold())
            self._text[column] = (codes, pd.Index(uniques))
        codes, uniques = self._text[column]
        wanted = wanted if isinstance(wanted, list | set | tuple) else [wanted]
        known = uniques.get_indexer([str(v).strip().casefold() for v in wanted])
        return np.isin(codes, known[known >= 0])

    def mask(self, filters: Mapping[str, Condition]) -> np.ndarray:
        """Boolean mask of the rows that pass every condition."""
        mask = np.ones(len(self.items), dtype=bool)
        for column, condition in filters.items():
            if _is_range(condition):
                mask &= self._range_ok(column, *condition)
            else:
                mask &= self._values_ok(column, condition)
        return mask

    def allowed_ids(self, filters: Mapping[str, Condition] | None) -> np.ndarray | None:
        """See :func:`allowed_ids`."""
        if not filters:
            return None
        return self.items.index.to_numpy(dtype=np.int64)[self.mask(filters)]


def filter_mask(items: pd.DataFrame, filters: Mapping[str, Condition]) -> np.ndarray:
    """Boolean mask of the rows of ``items`` that pass every condition."""
    return ItemFilter(items).mask(filters)


def allowed_ids(items: pd.DataFrame, filters: Mapping[str, Condition] | None) -> np.ndarray | None:
    """FAISS ids of the rows passing ``filters``, i.e. the labels of ``items``' index (the positions of a
    built index, the ``vector_id``s of a live one); ``None`` = no filter: everything is allowed."""
    if not filters:
        return None
    return items.index.to_numpy(dtype=np.int64)[filter_mask(items, filters)]
