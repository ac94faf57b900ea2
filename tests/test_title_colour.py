"""data/title_colour.py: a colour column from the titles' colour words, for a colour head."""

from __future__ import annotations

import pandas as pd
import pytest

from imgsearch.data.demo.drawing import COLOURS, METALS
from imgsearch.data.title_colour import add_title_colour, colour_of_title


@pytest.mark.parametrize(
    ("title", "colour"),
    [
        ("ivory striped knee-high leather boots", "ivory"),
        ("Ada Sky Blue check midi dress", "sky blue"),  # the longer phrase, not "blue"
        ("navy blue wool coat", "navy"),
        ("gray marl sweater", "grey"),
        ("silver-tone hoop earrings", "silver"),
        ("primrose print scarf", ""),  # whole words only: no "rose", and "print" is no colour
        ("black and white trainers", "black"),  # the first named
        ("leather belt", ""),
        (None, ""),
    ],
)
def test_colour_of_title(title, colour):
    assert colour_of_title(title) == colour


def test_every_demo_colour_is_read_back_as_itself():
    # the demo's own colour names, and its metals as the metal
    for name in COLOURS:
        assert colour_of_title(f"{name} cotton shirt") == name
    for metal in METALS:
        assert colour_of_title(f"{metal} necklace jewellery") == metal.removesuffix("-tone")


def test_add_title_colour_keeps_given_cells_and_counts_the_rest(caplog):
    table = pd.DataFrame(
        {"title": ["red dress", "blue shirt", "linen trousers"], "colour": ["Burgundy", "", None]}
    )
    with caplog.at_level("INFO", logger="imgsearch.data.title_colour"):
        out = add_title_colour(table)
    assert out["colour"].tolist() == ["Burgundy", "blue", ""]
    # the input is not changed
    assert table["colour"].iloc[:2].tolist() == ["Burgundy", ""] and pd.isna(table["colour"].iloc[2])
    assert "1 of 3 rows name no colour" in caplog.text
    with pytest.raises(ValueError, match="no title column"):
        add_title_colour(pd.DataFrame({"label": ["x"]}))


def test_prepare_fills_the_column_a_colour_head_learns(tmp_path):
    from imgsearch.data.attributes import attribute_classes_of
    from imgsearch.data.demo import demo_catalogue
    from imgsearch.data.prepare import prepare_catalogue

    raw = demo_catalogue(root=tmp_path / "demo", products_per_class=2, image_size=32, amazon=False)
    assert "colour" not in raw.columns
    table = prepare_catalogue(raw, split=(0.5, 0.25, 0.25), title_colour="colour", verify=False)
    # every demo title names its colour: no cell is left empty, and each is the title's colour word
    assert (table["colour"] != "").all()
    titles = table["title"].str.lower().str.replace("-tone", "")
    assert all(c in t for c, t in zip(table["colour"], titles, strict=True))
    assert len(attribute_classes_of(table, ["colour"])["colour"]) >= 2
