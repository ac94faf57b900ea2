"""The catalogue table: one row per image, the only thing stages after the readers look at.

See ``docs/architecture.md`` for the meaning of each column. All columns are strings except
``price`` (float, NaN when unknown); missing strings are ``""``, never NaN, so that a table
round-trips through CSV unchanged and ``catalogue_hash`` is stable.
"""

from __future__ import annotations

import hashlib
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

from imgsearch.utils.atomic import atomic_write_with

CATALOGUE_COLUMNS: list[str] = [
    "item_id",
    "product_id",
    "view",
    "image_path",
    "label",
    "split",
    "title",
    "brand",
    "price",
    "gender",
    "currency",
    "source",
]

#: Columns a table must carry; the others get defaults (``""`` / NaN) when absent.
REQUIRED_COLUMNS: tuple[str, ...] = ("item_id", "image_path", "label")
SPLITS: tuple[str, ...] = ("train", "val", "test")
_STRING_COLUMNS = [c for c in CATALOGUE_COLUMNS if c != "price"]


def as_str(series: pd.Series) -> pd.Series:
    """Strings with ``""`` for missing values (NaN/None), whatever the input dtype."""
    obj = series.astype(object)
    return obj.where(obj.notna(), "").map(str).astype(object)


def empty_catalogue() -> pd.DataFrame:
    """A table with the schema columns and no rows."""
    df = pd.DataFrame({c: pd.Series([], dtype=object) for c in _STRING_COLUMNS})
    df["price"] = pd.Series([], dtype=float)
    return df[CATALOGUE_COLUMNS]


def validate_catalogue(df: pd.DataFrame) -> pd.DataFrame:
    """Return a copy of ``df`` that follows the schema.

    Missing optional columns are added (``product_id`` defaults to ``item_id``, ``view`` to
    ``"main"``, the rest to ``""`` / NaN); string columns become ``str`` with ``""`` for
    missing; ``price`` becomes float. Extra columns are kept after the schema columns.

    Raises:
        ValueError: a required column is missing, ``item_id`` is empty or not unique, or
            ``split`` holds a value other than train/val/test/"".
    """
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        raise ValueError(f"catalogue table lacks required column(s) {missing}; has {list(df.columns)}")
    out = df.copy()
    for col in _STRING_COLUMNS:
        if col in out.columns:
            out[col] = as_str(out[col])
        elif col == "product_id":
            out[col] = out["item_id"].astype(object)
        elif col == "view":
            out[col] = "main"
        else:
            out[col] = ""
        out[col] = out[col].astype(object)
    if "price" in out.columns:
        price = pd.to_numeric(out["price"], errors="coerce")
        out["price"] = price.astype(float)
    else:
        out["price"] = np.nan
    empty_ids = (out["item_id"] == "").sum()
    if empty_ids:
        raise ValueError(f"catalogue table has {empty_ids} row(s) with an empty item_id")
    dup = out["item_id"][out["item_id"].duplicated()]
    if len(dup):
        raise ValueError(
            f"catalogue item_id must be unique; {len(dup)} duplicate(s), e.g. {dup.iloc[:3].tolist()}"
        )
    bad_split = sorted(set(out["split"]) - {*SPLITS, ""})
    if bad_split:
        raise ValueError(f"catalogue split values must be train/val/test or empty, got {bad_split}")
    extra = [c for c in out.columns if c not in CATALOGUE_COLUMNS]
    result = out[CATALOGUE_COLUMNS + extra]
    result.attrs = dict(df.attrs)
    return result


def write_catalogue(df: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Validate and write the table as CSV atomically (a reader never sees half a table)."""
    table = validate_catalogue(df)
    return atomic_write_with(path, lambda tmp: table.to_csv(tmp, index=False), suffix=".csv")


def read_catalogue(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read a catalogue CSV written by :func:`write_catalogue` (or by hand) and validate it.

    Strings stay strings (``"0001"`` is not turned into ``1``) and empty cells stay ``""``.
    Extra columns are kept. Usable as a Hydra ``_target_`` for an already prepared table.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"catalogue table not found: {path}")
    df = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[])
    if "price" in df.columns:
        df["price"] = pd.to_numeric(df["price"].replace("", np.nan), errors="coerce")
    out = validate_catalogue(df)
    out.attrs["report"] = {"source_files": [str(path)], "rows": len(out)}
    return out


def catalogue_hash(df: pd.DataFrame) -> str:
    """sha256 over the schema columns, in schema order, row order kept.

    Stable across a CSV round trip (prices are formatted with ``repr``), so it can pin which
    table a checkpoint or an index was built from.
    """
    table = validate_catalogue(df)[CATALOGUE_COLUMNS]
    h = hashlib.sha256()
    h.update("\x1f".join(CATALOGUE_COLUMNS).encode())
    for row in table.itertuples(index=False, name=None):
        cells = [
            "" if (isinstance(v, float) and np.isnan(v)) else repr(v) if isinstance(v, float) else v
            for v in row
        ]
        h.update(b"\x1e" + "\x1f".join(cells).encode("utf-8"))
    return h.hexdigest()


def optional_price(value: object) -> float | None:
    """A price for JSON output: a float, or ``None`` when missing or not a number (JSON has no NaN)."""
    try:
        price = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return None if math.isnan(price) else price


def parse_price(value: object) -> float:
    """A shop price as a float: ``378``, ``"378.0"``, ``"$1,598"``, ``"€ 1.250,00"`` -> NaN when unknown.

    Currency symbols and thousands separators are dropped. A comma followed by exactly two digits
    at the end is read as a decimal comma (European formatting).
    """
    if value is None:
        return float("nan")
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if not text:
        return float("nan")
    if "-" in text.lstrip("-"):  # a range such as "$10.99 - $20.00": take the lower bound
        text = text.lstrip("-").split("-", 1)[0]
    digits = "".join(ch for ch in text if ch.isdigit() or ch in ".,")
    if not digits:
        return float("nan")
    if len(digits) > 3 and digits[-3] == "," and "." not in digits[-3:]:
        digits = digits.replace(".", "").replace(",", ".")
    else:
        digits = digits.replace(",", "")
    try:
        return float(digits)
    except ValueError:
        return float("nan")
