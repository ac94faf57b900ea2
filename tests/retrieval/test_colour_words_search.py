"""Searcher colour weight, "in colour c" and words on a small built index: the weight moves the ranking
towards the query's colour (0 = the colour-blind ranking, exactly), an index without a colour part refuses a
weight clearly, and words alone or with a photo return the asked items."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from colour_shop import build_colour_shop
from imgsearch.retrieval.colour import COLOUR_FILE, NoColourPartError
from imgsearch.retrieval.search import Searcher
from imgsearch.retrieval.text import TextQueryError, UnknownColourError


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    """Bags and shoes in red and blue, 4 band positions each; a raw-pixel classifier whose colour head reads
    red minus blue from the pixels (set by hand, so what it predicts is known): tests/colour_shop.py."""
    return build_colour_shop(tmp_path_factory.mktemp("colour_shop"))


def _colours(result) -> list[str]:
    return [h.item_id.split("-")[1] for h in result.hits]


def test_manifest_records_the_colour_part_and_its_size(shop: Path) -> None:
    searcher = Searcher.from_index_dir(shop / "index")
    assert searcher.manifest["colour"]["attribute"] == "baseColour"
    assert searcher.manifest["colour"]["dim"] == 2 and (shop / "index" / COLOUR_FILE).is_file()
    assert searcher.colour_parts.shape == (16, 2)
    assert np.allclose(np.linalg.norm(searcher.colour_parts, axis=1), 1.0, atol=1e-5)
    assert "colour" not in Searcher.from_index_dir(shop / "blind").manifest


def test_colour_weight_moves_the_ranking_towards_the_query_colour(shop: Path) -> None:
    searcher = Searcher.from_index_dir(shop / "index")
    query = Image.open(shop / "bags-red-0.png")
    plain = searcher.search([query], k=8)[0]
    zero = searcher.search([query], k=8, colour_weight=0.0)[0]
    assert [h.item_id for h in zero.hits] == [h.item_id for h in plain.hits]  # 0 = today's ranking exactly
    assert [h.score for h in zero.hits] == [h.score for h in plain.hits]
    strong = searcher.search([query], k=8, colour_weight=10.0)[0]
    assert _colours(strong)[:8].count("red") == 8
    assert _colours(plain)[:8].count("red") < 8  # without the weight, blue items with a similar band come in
    blue = searcher.search([Image.open(shop / "shoes-blue-2.png")], k=4, colour_weight=10.0)[0]
    assert _colours(blue) == ["blue"] * 4


def test_an_index_without_a_colour_part_refuses_a_weight_clearly(shop: Path) -> None:
    searcher = Searcher.from_index_dir(shop / "blind")
    query = Image.open(shop / "bags-red-0.png")
    assert searcher.search([query], k=3, colour_weight=0.0)  # 0 is always fine
    with pytest.raises(NoColourPartError, match=r"no colour part.*colour_weight must be 0"):
        searcher.search([query], k=3, colour_weight=0.5)
    with pytest.raises(ValueError, match="finite number >= 0"):
        Searcher.from_index_dir(shop / "index").search([query], k=3, colour_weight=-1)


def test_this_in_colour_c_returns_that_colour_and_lists_known_ones(shop: Path) -> None:
    searcher = Searcher.from_index_dir(shop / "blind")  # the colour column alone is enough
    result = searcher.search([Image.open(shop / "bags-red-1.png")], k=4, colour="blue")[0]
    assert _colours(result) == ["blue"] * 4
    with pytest.raises(UnknownColourError, match="known colours: Blue, Red"):
        searcher.search([Image.open(shop / "bags-red-1.png")], k=4, colour="mauve")


def test_words_alone_and_with_a_photo(shop: Path) -> None:
    searcher = Searcher.from_index_dir(shop / "index")
    words = searcher.search_text("red bags", k=4)
    assert {h.item_id for h in words.hits} == {f"bags-red-{b}" for b in range(4)}  # stemmed: bags -> bag
    hybrid = searcher.search(
        [Image.open(shop / "shoes-blue-0.png")], k=3, q="running shoes", text_weight=1.0
    )[0]
    assert all(h.label == "shoes" for h in hybrid.hits)
    assert np.all(np.diff([h.score for h in hybrid.hits]) <= 0)
    filtered = searcher.search_text("shoes", k=8, filters={"baseColour": "Red"})
    assert {h.item_id for h in filtered.hits} == {f"shoes-red-{b}" for b in range(4)}
    for bad in ('"', "*", "x" * 10_000):  # nothing to search or too long: refused, never an SQLite error
        with pytest.raises(TextQueryError):
            searcher.search_text(bad, k=3)
    assert searcher.search_text("AND bags", k=2).hits  # FTS5 keywords are plain words
    assert searcher.search_text("NEAR( tote", k=2).hits
    with pytest.raises(TextQueryError):
        searcher.search([Image.open(shop / "shoes-blue-0.png")], k=3, q="***")


def test_the_query_colour_comes_from_the_same_forward_pass_as_its_vector(shop: Path) -> None:
    searcher = Searcher.from_index_dir(shop / "index")
    photos = [Image.open(shop / "bags-red-0.png"), Image.open(shop / "shoes-blue-3.png")]
    vectors, probs, colour = searcher._embed(photos, colour=True)
    assert np.allclose(colour, searcher._colour_query(photos), atol=1e-6)  # the colour head run on its own
    assert colour[0].argmax() == 1 and colour[1].argmax() == 0  # classes [Blue, Red]
    plain_vectors, plain_probs = searcher.embed(photos)
    assert np.array_equal(vectors, plain_vectors) and np.array_equal(probs, plain_probs)
    assert searcher._embed(photos)[2] is None  # no colour asked, none computed
    assert searcher.in_colour_filter("red") == {"baseColour": "Red"}  # any case
