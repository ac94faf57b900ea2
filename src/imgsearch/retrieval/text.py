"""Words: SQLite FTS5 (porter stemming, BM25) over the item table, fused with the photo ranking.

The item table ``items`` (:mod:`imgsearch.retrieval.store`: ``vector_id INTEGER PRIMARY KEY``, TEXT columns)
gets an *external-content* FTS5 table ``items_fts``: it stores only the token index, the text stays in
``items``, and three triggers keep the two in step with every insert, delete and update of ``items``, inside
the writer's own transaction (so a search never sees an item whose words are missing, or words of a removed
item). A store made before this module, or one whose indexed columns changed, gets its text index (re)built
from ``items`` on first use (:func:`ensure_text_index`).

User words are never handed to FTS5's query language: each word (letters and digits) is quoted, so ``"``,
``AND``, ``*``, ``NEAR(`` are searched as the words they contain, or, when nothing searchable is left or the
query is too long, a :class:`TextQueryError` (a ``ValueError``; the web layer answers 400) says why.
"""

from __future__ import annotations

import json
import re
import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

FTS_TABLE = "items_fts"
ITEMS_TABLE = "items"
#: ``porter`` stems (shirts -> shirt) what ``unicode61`` split and folded (case, diacritics)
TOKENIZER = "porter unicode61 remove_diacritics 2"
#: Columns never worth matching words against: ids, paths, links, bookkeeping, numbers.
NOT_TEXT = frozenset(
    {
        "vector_id",
        "item_id",
        "product_id",
        "image_path",
        "url",
        "currency",
        "source",
        "split",
        "view",
        "price",
    }
)
#: Companion columns of predicted attributes (retrieval/predicted.py) hold flags and numbers, not words.
NOT_TEXT_SUFFIXES = ("_predicted", "_confidence")
MAX_QUERY_CHARS = 1000
MAX_QUERY_WORDS = 32
_WORD = re.compile(r"\w+", re.UNICODE)


class TextQueryError(ValueError):
    """Words that cannot be searched (none left after cleaning, too long, an unknown colour): a 400."""


class UnknownColourError(TextQueryError):
    """A colour name the catalogue does not have; ``known`` lists the ones it has."""

    def __init__(self, colour: str, known: Sequence[str], column: str) -> None:
        self.colour, self.known, self.column = colour, list(known), column
        super().__init__(f"unknown colour {colour!r} (column {column!r}); known colours: {', '.join(known)}")


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _table_columns(conn: sqlite3.Connection, table: str) -> list[str]:
    return [r[1] for r in conn.execute(f"PRAGMA table_info({_quote(table)})").fetchall()]


def text_columns(conn: sqlite3.Connection) -> list[str]:
    """The ``items`` columns worth matching words against: titles, labels, brands, attributes (given or
    predicted), i.e. every column but ids, paths, links, prices and the predicted-value flags."""
    return [
        c
        for c in _table_columns(conn, ITEMS_TABLE)
        if c not in NOT_TEXT and not c.endswith(NOT_TEXT_SUFFIXES)
    ]


def indexed_columns(conn: sqlite3.Connection) -> list[str] | None:
    """The columns the text index covers, or ``None`` when there is no text index."""
    if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (FTS_TABLE,)).fetchone():
        return None
    return _table_columns(conn, FTS_TABLE)


def create_text_index(conn: sqlite3.Connection, columns: Sequence[str] | None = None) -> list[str]:
    """(Re)create ``items_fts`` over ``columns`` (default :func:`text_columns`), its triggers, and fill it
    from ``items``; returns the indexed columns. Runs in the caller's transaction when there is one.

    Raises:
        ValueError: a column ``items`` lacks, or no column to index.
    """
    have = _table_columns(conn, ITEMS_TABLE)
    cols = list(columns) if columns is not None else text_columns(conn)
    missing = [c for c in cols if c not in have]
    if missing:
        raise ValueError(f"text index columns {missing} are not columns of {ITEMS_TABLE}: {have}")
    if not cols:
        raise ValueError(f"{ITEMS_TABLE} has no text column to index")
    drop_text_index(conn)
    decl = ", ".join(_quote(c) for c in cols)
    conn.execute(
        f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5({decl}, content={_quote(ITEMS_TABLE)}, "
        f"content_rowid='vector_id', tokenize='{TOKENIZER}')"
    )
    new = ", ".join(f"new.{_quote(c)}" for c in cols)
    old = ", ".join(f"old.{_quote(c)}" for c in cols)
    # external content: FTS5 needs the *old* values to remove a row's tokens, hence 'delete' with old.*
    conn.execute(
        f"CREATE TRIGGER {FTS_TABLE}_ai AFTER INSERT ON {ITEMS_TABLE} BEGIN "
        f"INSERT INTO {FTS_TABLE}(rowid, {decl}) VALUES (new.vector_id, {new}); END"
    )
    conn.execute(
        f"CREATE TRIGGER {FTS_TABLE}_ad AFTER DELETE ON {ITEMS_TABLE} BEGIN "
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, {decl}) VALUES ('delete', old.vector_id, {old}); END"
    )
    conn.execute(
        f"CREATE TRIGGER {FTS_TABLE}_au AFTER UPDATE ON {ITEMS_TABLE} BEGIN "
        f"INSERT INTO {FTS_TABLE}({FTS_TABLE}, rowid, {decl}) VALUES ('delete', old.vector_id, {old}); "
        f"INSERT INTO {FTS_TABLE}(rowid, {decl}) VALUES (new.vector_id, {new}); END"
    )
    conn.execute(f"INSERT INTO {FTS_TABLE}({FTS_TABLE}) VALUES ('rebuild')")
    return cols


def drop_text_index(conn: sqlite3.Connection) -> None:
    for suffix in ("ai", "ad", "au"):
        conn.execute(f"DROP TRIGGER IF EXISTS {FTS_TABLE}_{suffix}")
    conn.execute(f"DROP TABLE IF EXISTS {FTS_TABLE}")


def ensure_text_index(conn: sqlite3.Connection) -> list[str]:
    """The text index over today's :func:`text_columns`, created or rebuilt when it is missing or covers
    other columns (a column added since); returns the indexed columns."""
    want = text_columns(conn)
    if indexed_columns(conn) == want:
        return want
    # a savepoint: the drop, create, triggers and fill happen together or not at all, inside a caller's
    # transaction or on their own
    conn.execute("SAVEPOINT imgsearch_fts")
    try:
        cols = create_text_index(conn, want)
    except BaseException:
        conn.execute("ROLLBACK TO imgsearch_fts")
        conn.execute("RELEASE imgsearch_fts")
        raise
    conn.execute("RELEASE imgsearch_fts")
    return cols


def match_expression(query: str, *, any_word: bool = False) -> str:
    """The FTS5 MATCH expression for user words: each word quoted (so FTS5 operators and punctuation are
    plain words or dropped), joined by AND (implicit) or ``OR``.

    Raises:
        TextQueryError: the query is too long, has too many words, or has no word at all.
    """
    if not isinstance(query, str):
        raise TextQueryError(f"the query must be text, got {type(query).__name__}")
    if len(query) > MAX_QUERY_CHARS:
        raise TextQueryError(f"the query has {len(query)} characters; at most {MAX_QUERY_CHARS} are searched")
    words = _WORD.findall(query)
    if not words:
        raise TextQueryError(f"the query {query[:80]!r} has no word to search (letters or digits)")
    if len(words) > MAX_QUERY_WORDS:
        raise TextQueryError(f"the query has {len(words)} words; at most {MAX_QUERY_WORDS} are searched")
    quoted = [_quote(w) for w in dict.fromkeys(w.lower() for w in words)]
    return (" OR " if any_word else " ").join(quoted)


def text_search(
    conn: sqlite3.Connection,
    query: str,
    k: int,
    allowed: Iterable[int] | None = None,
    *,
    fill_with_any: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``(vector_ids, scores)`` of the ``k`` items best matching ``query`` by BM25 (higher = better).

    Items holding every word rank first; with ``fill_with_any``, items holding only some of them follow
    (so a word the catalogue spells otherwise still finds something). ``allowed``: only these vector ids
    (a filter's result). The text index is created first when the store has none.

    Raises:
        TextQueryError: see :func:`match_expression`; ``k < 1``.
    """
    if int(k) < 1:
        raise TextQueryError(f"k must be >= 1, got {k}")
    ensure_text_index(conn)
    where, params = "", []
    if allowed is not None:
        # one bound JSON array, not thousands of placeholders
        where = " AND rowid IN (SELECT value FROM json_each(?))"
        params = [json.dumps([int(v) for v in allowed])]
    sql = (
        f"SELECT rowid, -bm25({FTS_TABLE}) AS score FROM {FTS_TABLE} WHERE {FTS_TABLE} MATCH ?{where} "
        "ORDER BY bm25(" + FTS_TABLE + ") LIMIT ?"
    )
    rows = conn.execute(sql, [match_expression(query), *params, int(k)]).fetchall()
    if fill_with_any and len(rows) < int(k):
        seen = {int(r[0]) for r in rows}
        more = conn.execute(sql, [match_expression(query, any_word=True), *params, int(k) + len(seen)])
        rows += [r for r in more.fetchall() if int(r[0]) not in seen][: int(k) - len(rows)]
        # the all-words hits keep their place ahead of the some-words ones whatever their BM25
    ids = np.array([int(r[0]) for r in rows], dtype=np.int64)
    scores = np.array([float(r[1]) for r in rows], dtype=np.float32)
    return ids, scores


def reciprocal_rank_fusion(
    rankings: Sequence[Sequence[int]], weights: Sequence[float] | None = None, *, k: float = 60.0
) -> tuple[np.ndarray, np.ndarray]:
    """Fuse rankings (best first) by weighted reciprocal rank: ``sum_r w_r / (k + rank_r(id))``.

    ``weights``: one per ranking (default all 1); ``k`` damps the top ranks' advantage (60 is the
    original paper's). Returns ``(ids, fused scores)``, best first; ties keep first-seen order.
    """
    weights = [1.0] * len(rankings) if weights is None else [float(w) for w in weights]
    if len(weights) != len(rankings):
        raise ValueError(f"{len(weights)} weights for {len(rankings)} rankings")
    if any(w < 0 for w in weights):
        raise ValueError(f"fusion weights must be >= 0, got {weights}")
    scores: dict[int, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        for rank, item in enumerate(ranking, start=1):
            if int(item) < 0:
                continue  # FAISS's "no result"
            scores[int(item)] = scores.get(int(item), 0.0) + w / (k + rank)
    order = sorted(scores, key=lambda i: -scores[i])  # sorted is stable: ties keep first-seen order
    return np.array(order, dtype=np.int64), np.array([scores[i] for i in order], dtype=np.float32)


def known_colours(conn: sqlite3.Connection, column: str) -> list[str]:
    """The distinct non-empty values of ``column`` (given or predicted), sorted."""
    if column not in _table_columns(conn, ITEMS_TABLE):
        raise TextQueryError(f"the catalogue has no colour column {column!r}")
    rows = conn.execute(
        f"SELECT DISTINCT {_quote(column)} FROM {ITEMS_TABLE} WHERE {_quote(column)} != ''"
    ).fetchall()
    return sorted(str(r[0]) for r in rows)


def colour_filter(colour: str, known: Sequence[str], column: str) -> dict[str, Any]:
    """The metadata filter "in colour ``colour``" (any case, any spacing: ``navy blue`` = ``Navy Blue``).

    Raises:
        UnknownColourError: not among ``known``; the message lists them.
    """

    def norm(s: str) -> str:
        return " ".join(_WORD.findall(str(s).lower()))

    by_norm: Mapping[str, str] = {norm(c): c for c in known}
    match = by_norm.get(norm(colour))
    if match is None:
        raise UnknownColourError(str(colour), known, column)
    return {column: match}
