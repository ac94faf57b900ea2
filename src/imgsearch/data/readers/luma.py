"""The Luma multi-view photos (``../shared/realdata/luma-multiview``, see its SOURCE.md) with their colour.

Luma's product is a style in one colour and its id says which (``MH01-Gray``): :func:`read_luma_catalogue`
reads the table like :func:`~imgsearch.data.readers.generic.read_csv_catalogue` and adds a ``colour``
column from the id's last part, so a colour head (``model.attributes=[colour]``) can learn from it. Ids whose
last part is not a colour word (``...-MP03``) get an empty colour: such rows add nothing to the colour loss.
"""

from __future__ import annotations

import logging
from typing import Any

import pandas as pd

from imgsearch.data.readers.generic import read_csv_catalogue

log = logging.getLogger(__name__)

COLOUR_COLUMN = "colour"


def colour_of_product_id(product_id: str) -> str:
    """``MH01-Gray`` -> ``Gray``; ``""`` when the last part holds a digit (a style code, not a colour)."""
    last = str(product_id).rsplit("-", 1)[-1] if "-" in str(product_id) else ""
    return last if last.isalpha() else ""


def read_luma_catalogue(**kwargs: Any) -> pd.DataFrame:
    """:func:`read_csv_catalogue` (same arguments) plus ``colour`` from each ``product_id``."""
    table = read_csv_catalogue(**kwargs)
    table[COLOUR_COLUMN] = table["product_id"].map(colour_of_product_id)
    empty = int((table[COLOUR_COLUMN] == "").sum())
    if empty:
        log.info("luma: %d of %d rows have no colour in their product id (left empty)", empty, len(table))
    return table
