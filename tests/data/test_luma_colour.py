"""The Luma reader's colour column (#15): the colour in each product id, empty where the id holds none."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsearch.data.readers.luma import colour_of_product_id, read_luma_catalogue

LUMA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "luma-multiview"


@pytest.mark.parametrize(
    ("product_id", "colour"),
    [("MH01-Gray", "Gray"), ("WS03-Blue", "Blue"), ("WS03-MP03", ""), ("MH01", ""), ("", "")],
)
def test_colour_of_product_id(product_id, colour):
    assert colour_of_product_id(product_id) == colour


def test_luma_rows_get_the_colour_of_their_product():
    if not (LUMA / "products.csv").is_file():
        pytest.skip(f"{LUMA} not found (../shared/realdata is provided in CI)")
    table = read_luma_catalogue(
        path=LUMA / "products.csv", image_dir=LUMA / "images", image_column="image_file", image_template="{}",
        label_column="category", product_column="product_id", item_column="image_file", view_column="view",
    )  # fmt: skip
    assert "colour" in table.columns and len(table) > 0
    coloured = table[table["colour"] != ""]
    assert len(coloured) > 0.9 * len(table)
    for product_id, colour in zip(coloured["product_id"], coloured["colour"], strict=True):
        assert product_id.endswith("-" + colour)
    # one product, one colour: the colour is a property of the product, not of a view
    assert (coloured.groupby("product_id")["colour"].nunique() == 1).all()
