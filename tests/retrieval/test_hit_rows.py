"""Hit fields from column arrays (retrieval/hit_rows.py) equal what a pandas row per hit gave."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from imgsearch.data.schema import optional_price
from imgsearch.retrieval.hit_rows import OPTIONAL_FIELDS, TEXT_FIELDS, HitRows, text_or_empty


def _items(index, with_optional: bool) -> pd.DataFrame:
    n = len(index)
    df = pd.DataFrame(
        {
            "item_id": [f"it{i}" for i in range(n)],
            "product_id": [i // 2 for i in range(n)],  # numbers: shown as text
            "label": ["bags", "shoes"] * (n // 2),
            "title": [f"title {i}" for i in range(n)],
            "brand": ["Acme"] * n,
            "image_path": [f"/x/{i}.jpg" for i in range(n)],
            "price": [float("nan") if i % 3 == 0 else 10.0 + i for i in range(n)],
        },
        index=index,
    )
    if with_optional:
        df["currency"] = [None if i % 2 else "EUR" for i in range(n)]
        df["url"] = [float("nan") if i % 2 else f"https://shop/{i}" for i in range(n)]
    return df


def _by_row(items: pd.DataFrame, i: int) -> dict:
    row = items.loc[i]
    out = {name: str(row[name]) for name in TEXT_FIELDS}
    out["price"] = optional_price(row["price"])
    out.update({name: text_or_empty(row.get(name, "")) for name in OPTIONAL_FIELDS})
    return out


@pytest.mark.parametrize("with_optional", [True, False])
@pytest.mark.parametrize("index", [pd.RangeIndex(8), pd.Index([40, 7, 13, 2, 99, 5, 61, 8])])
def test_fields_equal_the_row_by_row_conversion(index, with_optional):
    items = _items(index, with_optional)
    ids = np.array([index[5], index[0], index[3], index[3]])
    got = HitRows(items).fields(ids)
    want = [_by_row(items, int(i)) for i in ids]
    for g, w in zip(got, want, strict=True):
        assert g.keys() == w.keys()
        for key in g:
            assert (g[key] == w[key]) or (g[key] is None and w[key] is None), key
    assert got[0]["price"] is None or not math.isnan(got[0]["price"])


def test_unknown_id_is_a_key_error():
    items = _items(pd.Index([3, 4]), True)
    with pytest.raises(KeyError, match="no item with id 9"):
        HitRows(items).fields(np.array([3, 9]))
