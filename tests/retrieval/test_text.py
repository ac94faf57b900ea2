"""Words over the item table (retrieval/text.py): FTS5 finds stemmed words, follows inserts, deletes and
updates through its triggers, survives a reopen, never lets a user's words reach FTS5's syntax, fuses with a
photo ranking, and "in colour c" answers an unknown colour with the known ones."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from imgsearch.retrieval.store import ItemStore
from imgsearch.retrieval.text import (
    TextQueryError,
    UnknownColourError,
    colour_filter,
    create_text_index,
    drop_text_index,
    ensure_text_index,
    indexed_columns,
    known_colours,
    match_expression,
    reciprocal_rank_fusion,
    text_search,
)

ROWS = [
    (0, "a", "Shirts", "Navy Blue Striped Shirt", "Acme", "Navy Blue"),
    (1, "b", "Shirts", "Red Checked Shirt", "Acme", "Red"),
    (2, "c", "Jeans", "Blue Running Jeans", "Levis", "Blue"),
    (3, "d", "Shoes", "Red Runner Shoes", "Nike", "Red"),
    (4, "e", "Shoes", "White Canvas Sneakers", "Nike", ""),
]


def _items(conn: sqlite3.Connection, rows=ROWS) -> sqlite3.Connection:
    conn.execute(
        "CREATE TABLE items (vector_id INTEGER PRIMARY KEY, item_id TEXT NOT NULL UNIQUE, product_id TEXT "
        "NOT NULL DEFAULT '', label TEXT NOT NULL DEFAULT '', title TEXT NOT NULL DEFAULT '', brand TEXT "
        "NOT NULL DEFAULT '', image_path TEXT NOT NULL DEFAULT '', price REAL, baseColour TEXT NOT NULL "
        "DEFAULT '', baseColour_predicted TEXT NOT NULL DEFAULT '')"
    )
    conn.executemany(
        "INSERT INTO items (vector_id, item_id, label, title, brand, baseColour, image_path, price) "
        "VALUES (?, ?, ?, ?, ?, ?, '/x.jpg', 9.5)",
        rows,
    )
    return conn


@pytest.fixture
def conn() -> sqlite3.Connection:
    c = _items(sqlite3.connect(":memory:", isolation_level=None))
    create_text_index(c)
    return c


def _ids(conn, query, k=10, **kw) -> list[int]:
    return text_search(conn, query, k, **kw)[0].tolist()


def test_indexes_words_columns_only(conn) -> None:
    assert indexed_columns(conn) == ["label", "title", "brand", "baseColour"]


def test_stemmed_words_rank_items_with_every_word_first(conn) -> None:
    assert set(_ids(conn, "shirts", fill_with_any=False)) == {0, 1}  # Shirt -> shirt
    assert _ids(conn, "runs", fill_with_any=False) == [2]  # Running -> run; Runner stays runner
    ids, scores = text_search(conn, "navy blue shirts", 5)
    assert ids[0] == 0  # the only item with all three words comes first, then those with some
    assert set(ids[1:].tolist()) == {1, 2}
    assert np.all(np.diff(scores[1:]) <= 1e-6)
    assert text_search(conn, "navy blue shirts", 5, fill_with_any=False)[0].tolist() == [0]
    assert _ids(conn, "red shoes", 1) == [3]
    assert set(_ids(conn, "NIKE")) == {3, 4}  # any case


def test_allowed_restricts_to_those_ids(conn) -> None:
    assert _ids(conn, "red", allowed=[3, 4]) == [3]
    assert _ids(conn, "red", allowed=[]) == []


def test_triggers_follow_inserts_deletes_and_updates(conn) -> None:
    conn.execute("INSERT INTO items (vector_id, item_id, title) VALUES (9, 'z', 'Yellow Raincoat')")
    assert _ids(conn, "raincoats") == [9]
    conn.execute("UPDATE items SET title = 'Green Poncho' WHERE vector_id = 9")
    assert _ids(conn, "raincoat") == []
    assert _ids(conn, "poncho") == [9]
    conn.execute("DELETE FROM items WHERE vector_id IN (9, 3)")
    assert _ids(conn, "poncho") == []
    assert 3 not in _ids(conn, "red shoes")
    # the index agrees with the table (FTS5's own check for external content)
    conn.execute("INSERT INTO items_fts(items_fts, rank) VALUES ('integrity-check', 1)")


@pytest.mark.parametrize(
    "query", ['"', '"shirt', "AND", "shirt AND", "OR NOT", "*", "shir*", "NEAR(", "NEAR(red shoes",
              "title:red", "red) OR (", "'; DROP TABLE items; --", "^red", "red + - shoes", "ünïcödé shoes"],
)  # fmt: skip
def test_bad_words_are_searched_as_words_or_refused_clearly(conn, query: str) -> None:
    try:
        ids = _ids(conn, query)
    except TextQueryError as exc:
        assert "no word" in str(exc)
        return
    assert all(isinstance(i, int) for i in ids)
    assert conn.execute("SELECT COUNT(*) FROM items").fetchone()[0] == len(ROWS)


def test_keywords_are_words_and_too_long_or_empty_queries_are_refused(conn) -> None:
    assert match_expression('AND "x" NEAR(') == '"and" "x" "near"'
    with pytest.raises(TextQueryError, match="at most 1000"):
        text_search(conn, "shirt " * 2000, 5)  # 12 KB
    with pytest.raises(TextQueryError, match="no word"):
        text_search(conn, '"*()', 5)
    with pytest.raises(TextQueryError, match="40 words; at most 32"):
        text_search(conn, " ".join(["red"] * 40), 5)
    assert issubclass(TextQueryError, ValueError)


def test_ensure_builds_a_missing_index_and_refreshes_a_stale_one() -> None:
    c = _items(sqlite3.connect(":memory:", isolation_level=None))
    assert indexed_columns(c) is None
    assert _ids(c, "sneakers") == [4]  # built on first use
    c.execute("ALTER TABLE items ADD COLUMN usage TEXT NOT NULL DEFAULT ''")
    c.execute("UPDATE items SET usage = 'Formal' WHERE vector_id = 1")
    assert "usage" in ensure_text_index(c)
    assert _ids(c, "formal") == [1]
    drop_text_index(c)
    assert indexed_columns(c) is None


def test_reciprocal_rank_fusion_weights_the_rankings() -> None:
    text, image = [1, 2, 3], [3, 4, 1]
    ids, scores = reciprocal_rank_fusion([text, image])
    assert ids[0] in (1, 3) and set(ids) == {1, 2, 3, 4}
    assert np.all(np.diff(scores) <= 0)
    assert reciprocal_rank_fusion([text, image], [1.0, 0.0])[0][:3].tolist() == text
    assert reciprocal_rank_fusion([text, image], [0.0, 1.0])[0][:3].tolist() == image
    assert reciprocal_rank_fusion([[-1, 5]])[0].tolist() == [5]
    with pytest.raises(ValueError, match="2 weights for 1"):
        reciprocal_rank_fusion([text], [1.0, 2.0])


def test_in_colour_matches_any_case_and_lists_the_known_ones(conn) -> None:
    known = known_colours(conn, "baseColour")
    assert known == ["Blue", "Navy Blue", "Red"]
    assert colour_filter("navy  BLUE", known, "baseColour") == {"baseColour": "Navy Blue"}
    with pytest.raises(UnknownColourError, match="known colours: Blue, Navy Blue, Red") as info:
        colour_filter("chartreuse", known, "baseColour")
    assert info.value.known == known and isinstance(info.value, TextQueryError)
    with pytest.raises(TextQueryError, match="no colour column 'colour'"):
        known_colours(conn, "colour")


def _catalogue() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "item_id": [r[1] for r in ROWS], "label": [r[2] for r in ROWS], "title": [r[3] for r in ROWS],
            "brand": [r[4] for r in ROWS], "image_path": "/x.jpg", "price": 1.0,
        }
    )  # fmt: skip


def test_item_store_keeps_words_in_step_with_its_writes_and_a_reopen(tmp_path: Path) -> None:
    path = tmp_path / "items.sqlite"
    store = ItemStore.create(path, _catalogue(), [10, 11, 12, 13, 14])
    assert store.text_search("checked shirts", 3)[0].tolist()[0] == 11
    store.upsert(pd.DataFrame({"item_id": ["f"], "title": ["Linen Trousers"], "image_path": ["/y.jpg"]}),
                 np.zeros((1, 4), np.float32))  # fmt: skip
    new_id = store.text_search("trouser", 5)[0].tolist()
    assert len(new_id) == 1 and new_id[0] >= 15
    store.remove(["c"])
    assert 12 not in store.text_search("jeans", 5)[0].tolist()
    store.set_metadata("d", {"title": "Golden Sandals"})
    assert store.text_search("sandal", 5)[0].tolist() == [13]
    store.set_metadata("e", {"baseColour": "Chartreuse"})  # a new column: indexed from now on
    assert store.text_search("chartreuse", 5)[0].tolist() == [14]
    store.close()
    with ItemStore(path) as again:  # survives a reload
        assert again.text_search("sandals", 5)[0].tolist() == [13]
        assert again.text_search("chartreuse", 5)[0].tolist() == [14]
        with again.transaction() as c:
            drop_text_index(c)  # a store from before the text index
        assert again.text_search("sandals", 5)[0].tolist() == [13]  # built on first use
        with pytest.raises(TextQueryError):
            again.text_search("*", 5)
