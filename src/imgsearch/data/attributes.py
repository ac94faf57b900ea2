"""Attribute columns a classifier learns beside its category: ``baseColour``, ``gender``, ``usage``, ...

An attribute is any catalogue column (schema or extra, see ``data.source.extra_columns``). Its classes are the
sorted distinct non-empty values of the column over the whole prepared catalogue (so the val/test rows score
against the same classes the training rows taught); a row with an empty or unseen value has target
:data:`UNKNOWN_ATTRIBUTE` and adds nothing to that attribute's loss or accuracy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import pandas as pd

#: Target of a row whose attribute value is empty or not among the classes (ignored by the loss).
UNKNOWN_ATTRIBUTE = -1


def attribute_classes_of(catalogue: pd.DataFrame, attributes: Sequence[str]) -> dict[str, list[str]]:
    """``{attribute: sorted distinct non-empty values}`` for each configured attribute column.

    Raises:
        ValueError: an attribute is not a column of the catalogue (the message lists the columns and says
            how a reader keeps one), repeats, or has fewer than two distinct values (nothing to learn).
    """
    names = [str(a) for a in attributes]
    if len(set(names)) != len(names):
        raise ValueError(f"model.attributes repeats a column: {names}")
    out: dict[str, list[str]] = {}
    for name in names:
        if "." in name or not name:
            raise ValueError(f"attribute name {name!r} is not a column name")
        if name not in catalogue.columns:
            raise ValueError(
                f"attribute {name!r} is not a catalogue column; the catalogue has {list(catalogue.columns)} "
                "(keep a source column with data.source.extra_columns=[...])"
            )
        values = sorted({str(v) for v in catalogue[name].tolist()} - {""})
        if len(values) < 2:
            raise ValueError(f"attribute {name!r} has {len(values)} distinct value(s); it needs at least 2")
        out[name] = values
    return out


def attribute_targets(rows: pd.DataFrame, classes: Mapping[str, Sequence[str]]) -> list[list[int]]:
    """Per row, each attribute's class index in ``classes`` order (``UNKNOWN_ATTRIBUTE`` when unknown)."""
    lookups = [({v: i for i, v in enumerate(values)}, name) for name, values in classes.items()]
    columns = [rows[name].astype(str).tolist() for _, name in lookups]
    return [
        [lookup.get(col[i], UNKNOWN_ATTRIBUTE) for (lookup, _), col in zip(lookups, columns, strict=True)]
        for i in range(len(rows))
    ]
