"""Catalogue table schema: defaults, validation errors, CSV round trip, stable hash."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from imgsearch.data import CATALOGUE_COLUMNS, read_catalogue, write_catalogue
from imgsearch.data.schema import catalogue_hash, empty_catalogue, parse_price, validate_catalogue


def _table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": ["0001_cutout", "0001_model", "0002_main"],
            "product_id": ["0001", "0001", "0002"],
            "view": ["cutout", "model", "main"],
            "image_path": ["/x/a.jpg", "/x/b.jpg", ""],
            "label": ["dress", "dress", "bag"],
            "split": ["train", "train", ""],
            "title": ["Zoe dress", "Zoe dress", None],
            "brand": ["Chloé", "Chloé", np.nan],
            "price": [1598.0, 1598.0, np.nan],
            "gender": ["women", "women", ""],
            "currency": ["USD", "USD", ""],
            "source": ["farfetch", "farfetch", "amazon"],
            "content_hash": ["aa", "bb", "cc"],
        }
    )


def test_empty_catalogue_has_schema_columns():
    df = empty_catalogue()
    assert list(df.columns) == CATALOGUE_COLUMNS
    assert len(df) == 0
    assert df["price"].dtype == float


def test_validate_fills_defaults_and_types():
    df = validate_catalogue(
        pd.DataFrame({"item_id": ["a", "b"], "image_path": ["/p/a.png", "/p/b.png"], "label": [1, 2]})
    )
    assert list(df.columns) == CATALOGUE_COLUMNS
    assert df["product_id"].tolist() == ["a", "b"]  # one product per row by default
    assert df["view"].tolist() == ["main", "main"]
    assert df["label"].tolist() == ["1", "2"]  # labels become strings
    assert df["split"].tolist() == ["", ""]
    assert df["price"].isna().all() and df["price"].dtype == float


def test_validate_turns_missing_strings_into_empty_strings_and_keeps_extras():
    df = validate_catalogue(_table())
    assert df.loc[2, "title"] == "" and df.loc[2, "brand"] == ""
    assert list(df.columns) == [*CATALOGUE_COLUMNS, "content_hash"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.drop(columns=["label"]), "label"),
        (lambda d: d.drop(columns=["image_path"]), "image_path"),
        (lambda d: d.assign(item_id=["a", "a", "b"]), "unique"),
        (lambda d: d.assign(item_id=["a", "", "b"]), "empty item_id"),
        (lambda d: d.assign(split=["train", "holdout", ""]), "holdout"),
    ],
)
def test_validate_rejects_bad_tables_with_a_clear_message(change, message):
    with pytest.raises(ValueError, match=message):
        validate_catalogue(change(_table()))


def test_csv_round_trip_keeps_strings_empties_nans_and_hash(tmp_path):
    df = validate_catalogue(_table())
    path = write_catalogue(df, tmp_path / "sub" / "catalogue.csv")
    back = read_catalogue(path)
    assert back["product_id"].tolist() == ["0001", "0001", "0002"]  # leading zeros survive
    assert back.loc[2, "title"] == "" and back.loc[2, "image_path"] == ""
    assert math.isnan(back.loc[2, "price"]) and back.loc[0, "price"] == 1598.0
    assert back.loc[0, "brand"] == "Chloé"
    assert back["content_hash"].tolist() == ["aa", "bb", "cc"]
    assert catalogue_hash(back) == catalogue_hash(df)
    assert not list(tmp_path.joinpath("sub").glob(".catalogue.csv.*"))  # no temp file left behind


def test_hash_changes_with_content_and_ignores_extra_columns():
    df = validate_catalogue(_table())
    assert catalogue_hash(df) == catalogue_hash(df.drop(columns=["content_hash"]))
    changed = df.copy()
    changed.loc[0, "label"] = "skirt"
    assert catalogue_hash(changed) != catalogue_hash(df)
    assert len(catalogue_hash(df)) == 64


def test_read_catalogue_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.csv"):
        read_catalogue(tmp_path / "nope.csv")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (378, 378.0),
        ("378", 378.0),
        ("$1,598", 1598.0),
        ("$1,250.00", 1250.0),
        ("€ 1.250,00", 1250.0),
        ("", None),
    ],
)
def test_parse_price(raw, expected):
    value = parse_price(raw)
    assert (math.isnan(value) and expected is None) or value == expected
