"""The live item table: SQLite (standard library) in WAL mode, the transactional half of a live catalogue.

One database, ``<index_dir>/live/items.sqlite``, holds:

* ``items`` - one row per catalogue item, keyed by ``vector_id`` (the FAISS id of its current vector); the
  schema columns of :mod:`imgsearch.data.schema` plus any other catalogue column, added as a TEXT column the
  first time an item carries it;
* ``changes`` - the change log since the newest snapshot: ``add`` (with the vector, float32 bytes),
  ``remove`` and ``meta`` (metadata only) by ``vector_id``, numbered by ``seq``;
* ``snapshots`` - committed FAISS snapshots (file, sha256, the ``seq`` they include);
* ``meta`` - ``next_vector_id``, so an id is never reused (an HNSW index keeps a removed vector as a
  tombstone, and a reused id would bring it back).

Every add, update or remove is one SQLite transaction over the item rows *and* the change log, so the two
never disagree: a process killed at any point leaves either the old or the new state. The FAISS index is
derived: the newest committed snapshot plus the changes after it (:mod:`imgsearch.retrieval.live`).
Readers use their own connection; WAL lets them read a consistent state while a writer works.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgsearch.data.schema import CATALOGUE_COLUMNS
from imgsearch.retrieval.text import (
    create_text_index,
    ensure_text_index,
    indexed_columns,
    match_expression,
    text_columns,
    text_search,
)

STORE_DIR = "live"
DB_FILE = "items.sqlite"
SCHEMA_VERSION = 1
#: Columns every item row has; ``price`` is REAL, the others TEXT.
BASE_COLUMNS: tuple[str, ...] = tuple(CATALOGUE_COLUMNS)
_COLUMN_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_RESERVED = {"vector_id", "rowid", "oid", "_rowid_"}


class ItemStoreError(ValueError):
    """A write the item table refuses (an unknown or duplicate id, a bad column name); the message says
    which."""


@dataclass(frozen=True)
class Change:
    seq: int
    op: str  # "add" | "remove" | "meta"
    vector_id: int
    vector: np.ndarray | None


@dataclass(frozen=True)
class Snapshot:
    seq: int
    file: str
    sha256: str
    ntotal: int


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def check_column_name(column: str) -> str:
    if column in _RESERVED or not _COLUMN_NAME.match(column):
        raise ItemStoreError(
            f"column name {column!r} is not allowed in the item table (letters, digits and _, at most 63, "
            "not starting with a digit)"
        )
    return column


def _cell(column: str, value: Any) -> Any:
    if column == "price":
        try:
            price = float(value)
        except (TypeError, ValueError):
            return None
        return None if math.isnan(price) else price
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return str(value)


class ItemStore:
    """The SQLite item table and change log of one live catalogue (see the module docstring).

    Thread-safe: one connection per store, guarded by a lock (SQLite serialises writers anyway). Open one
    store per process; other processes open their own and see committed changes.
    """

    def __init__(self, path: str | Path, *, timeout: float = 30.0, create: bool = False) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise FileNotFoundError(f"no item table at {self.path}")
        # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE for writes), never implicit;
        # mode=rw: opening never creates an empty database where a table was expected
        uri = f"{self.path.resolve().as_uri()}?mode={'rwc' if create else 'rw'}"
        self._conn = sqlite3.connect(
            uri, uri=True, timeout=timeout, isolation_level=None, check_same_thread=False
        )
        self._lock = threading.RLock()
        mode = self._conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise ItemStoreError(
                f"{self.path}: SQLite refused WAL mode (got {mode!r}); is it on a network disk?"
            )
        # FULL: a commit is on disk before it returns, so a crash right after an acknowledged add keeps it
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute("PRAGMA foreign_keys=ON")

    # ------------------------------------------------------------------------------------- lifecycle

    @classmethod
    def create(
        cls,
        path: str | Path,
        items: pd.DataFrame,
        vector_ids: Sequence[int],
        extra_columns: Sequence[str] = (),
    ) -> ItemStore:
        """A new database at ``path`` holding ``items`` (row ``i`` has FAISS id ``vector_ids[i]``) and no
        changes: the state of a freshly built index."""
        store = cls(path, create=True)
        columns = [c for c in BASE_COLUMNS if c != "item_id"]
        text = "TEXT NOT NULL DEFAULT ''"
        decls = ", ".join(f"{_quote(c)} {'REAL' if c == 'price' else text}" for c in columns)
        with store.transaction() as conn:
            conn.execute(
                f"CREATE TABLE items (vector_id INTEGER PRIMARY KEY, item_id TEXT NOT NULL UNIQUE, {decls})"
            )
            conn.execute(
                "CREATE TABLE changes (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
                "op TEXT NOT NULL CHECK (op IN ('add', 'remove', 'meta')), vector_id INTEGER NOT NULL, "
                "vector BLOB)"
            )
            conn.execute(
                "CREATE TABLE snapshots (seq INTEGER PRIMARY KEY, file TEXT NOT NULL, sha256 TEXT NOT NULL, "
                "ntotal INTEGER NOT NULL)"
            )
            conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)")
            for column in extra_columns:
                store._add_column(conn, column)
            store._insert_rows(conn, items, vector_ids)
            create_text_index(conn)  # words (retrieval/text.py), kept in step by triggers from now on
            next_id = int(max(vector_ids, default=-1)) + 1
            conn.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [("schema_version", str(SCHEMA_VERSION)), ("next_vector_id", str(next_id))],
            )
        return store

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> ItemStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self, *, write: bool = True) -> Iterator[sqlite3.Connection]:
        """``BEGIN IMMEDIATE`` (takes the write lock up front, so two writers never deadlock on an upgrade)
        or a deferred read transaction, which sees one consistent state for all its SELECTs."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def data_version(self) -> int:
        """Changes when another connection commits (``PRAGMA data_version``): a cheap "anything new?"."""
        with self._lock:
            return int(self._conn.execute("PRAGMA data_version").fetchone()[0])

    # ---------------------------------------------------------------------------------------- schema

    def columns(self, conn: sqlite3.Connection | None = None) -> list[str]:
        with self._lock:
            rows = (conn or self._conn).execute("PRAGMA table_info(items)").fetchall()
        return [r[1] for r in rows]

    def _add_column(self, conn: sqlite3.Connection, column: str) -> None:
        check_column_name(column)
        conn.execute(f"ALTER TABLE items ADD COLUMN {_quote(column)} TEXT NOT NULL DEFAULT ''")
        if indexed_columns(conn) is not None and column in text_columns(conn):
            ensure_text_index(conn)  # a new words column (a colour, a predicted tag): index it too

    def _insert_rows(self, conn: sqlite3.Connection, items: pd.DataFrame, vector_ids: Sequence[int]) -> None:
        if len(items) != len(vector_ids):
            raise ItemStoreError(f"{len(items)} rows but {len(vector_ids)} vector ids")
        known = set(self.columns(conn))
        for column in items.columns:
            if column not in known and column != "vector_id":
                self._add_column(conn, column)
                known.add(column)
        cols = [c for c in items.columns if c != "vector_id"]
        sql = (
            f"INSERT INTO items (vector_id, {', '.join(_quote(c) for c in cols)}) "
            f"VALUES (?{', ?' * len(cols)})"
        )
        records = items[cols].to_dict("records")
        try:
            conn.executemany(
                sql,
                [(int(v), *(_cell(c, r[c]) for c in cols)) for v, r in zip(vector_ids, records, strict=True)],
            )
        except sqlite3.IntegrityError as exc:
            raise ItemStoreError(f"item ids must be unique in the catalogue: {exc}") from exc

    # ---------------------------------------------------------------------------------------- writes

    def _next_ids(self, conn: sqlite3.Connection, n: int) -> list[int]:
        start = int(conn.execute("SELECT value FROM meta WHERE key = 'next_vector_id'").fetchone()[0])
        conn.execute("UPDATE meta SET value = ? WHERE key = 'next_vector_id'", (str(start + n),))
        return list(range(start, start + n))

    def vector_ids_of(
        self, item_ids: Sequence[str], conn: sqlite3.Connection | None = None
    ) -> dict[str, int]:
        with self._lock:
            c = conn or self._conn
            out: dict[str, int] = {}
            for chunk in _chunks(list(item_ids), 500):
                marks = ", ".join("?" * len(chunk))
                for item_id, vid in c.execute(
                    f"SELECT item_id, vector_id FROM items WHERE item_id IN ({marks})", chunk
                ):
                    out[item_id] = int(vid)
            return out

    def upsert(
        self,
        items: pd.DataFrame,
        vectors: np.ndarray,
        *,
        mode: str = "add",
        on_insert: Callable[[sqlite3.Connection, list[int]], None] | None = None,
    ) -> tuple[list[int], list[int]]:
        """Insert ``items`` with their ``vectors`` in one transaction.

        ``mode``: ``add`` (every item id must be new), ``update`` (every item id must exist: its row and
        vector are replaced, under a new vector id) or ``upsert`` (either). Returns ``(new vector ids,
        replaced vector ids)``. ``on_insert(conn, new vector ids)`` writes what goes with the new rows (their
        colour parts, :mod:`imgsearch.retrieval.live_attributes`) inside the same transaction.

        Raises:
            ItemStoreError: a duplicate id within ``items``, an id that exists (add) or does not (update).
        """
        if mode not in ("add", "update", "upsert"):
            raise ValueError(f"mode must be add, update or upsert, got {mode!r}")
        ids = items["item_id"].astype(str).tolist()
        if len(set(ids)) != len(ids):
            dup = pd.Series(ids)[pd.Series(ids).duplicated()].tolist()[:3]
            raise ItemStoreError(f"item ids repeat within one write, e.g. {dup}")
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or len(x) != len(ids):
            raise ItemStoreError(f"{len(ids)} items need {len(ids)} vectors, got shape {x.shape}")
        with self.transaction() as conn:
            existing = self.vector_ids_of(ids, conn)
            if mode == "add" and existing:
                raise ItemStoreError(
                    f"{len(existing)} item id(s) already in the catalogue, e.g. {sorted(existing)[:3]}; "
                    "update them instead"
                )
            if mode == "update" and len(existing) < len(ids):
                missing = [i for i in ids if i not in existing][:3]
                raise ItemStoreError(
                    f"{len(ids) - len(existing)} item id(s) not in the catalogue, e.g. {missing}"
                )
            replaced = [existing[i] for i in ids if i in existing]
            self._delete(conn, replaced)
            new_ids = self._next_ids(conn, len(ids))
            self._insert_rows(conn, items, new_ids)
            conn.executemany(
                "INSERT INTO changes (op, vector_id, vector) VALUES ('add', ?, ?)",
                [(v, x[i].tobytes()) for i, v in enumerate(new_ids)],
            )
            if on_insert is not None:
                on_insert(conn, new_ids)
        return new_ids, replaced

    def _delete(self, conn: sqlite3.Connection, vector_ids: Sequence[int]) -> None:
        for chunk in _chunks(list(vector_ids), 500):
            conn.execute(f"DELETE FROM items WHERE vector_id IN ({', '.join('?' * len(chunk))})", chunk)
        conn.executemany(
            "INSERT INTO changes (op, vector_id) VALUES ('remove', ?)", [(int(v),) for v in vector_ids]
        )

    def remove(self, item_ids: Sequence[str], *, missing_ok: bool = False) -> list[int]:
        """Delete items by id in one transaction; returns their vector ids.

        Raises:
            ItemStoreError: an id is not in the catalogue (unless ``missing_ok``).
        """
        ids = [str(i) for i in item_ids]
        with self.transaction() as conn:
            found = self.vector_ids_of(ids, conn)
            missing = [i for i in ids if i not in found]
            if missing and not missing_ok:
                raise ItemStoreError(f"{len(missing)} item id(s) not in the catalogue, e.g. {missing[:3]}")
            vids = [found[i] for i in ids if i in found]
            self._delete(conn, vids)
        return vids

    def set_metadata(self, item_id: str, values: Mapping[str, Any]) -> int:
        """Change an item's metadata (not its photo) in one transaction; returns its vector id.

        Raises:
            ItemStoreError: unknown item id, or an attempt to change ``item_id`` or ``vector_id``.
        """
        bad = {"item_id", "vector_id"} & set(values)
        if bad:
            raise ItemStoreError(f"{sorted(bad)} cannot be changed; remove the item and add it again")
        with self.transaction() as conn:
            vid = self.vector_ids_of([item_id], conn).get(str(item_id))
            if vid is None:
                raise ItemStoreError(f"item id {item_id!r} is not in the catalogue")
            known = set(self.columns(conn))
            for column in values:
                if column not in known:
                    self._add_column(conn, column)
            if values:
                sets = ", ".join(f"{_quote(c)} = ?" for c in values)
                conn.execute(
                    f"UPDATE items SET {sets} WHERE vector_id = ?",
                    [*(_cell(c, v) for c, v in values.items()), vid],
                )
                conn.execute("INSERT INTO changes (op, vector_id) VALUES ('meta', ?)", (vid,))
        return vid

    # ----------------------------------------------------------------------------------------- reads

    def rows(
        self, vector_ids: Sequence[int] | None = None, conn: sqlite3.Connection | None = None
    ) -> pd.DataFrame:
        """Item rows (all, or those ids) as a DataFrame indexed by ``vector_id``, in the catalogue schema
        (strings ``""`` when empty, ``price`` float NaN when unknown)."""
        with self._lock:
            c = conn or self._conn
            columns = self.columns(c)
            if vector_ids is None:
                cursor = c.execute("SELECT * FROM items ORDER BY vector_id")
                data = cursor.fetchall()
            else:
                data = []
                for chunk in _chunks([int(v) for v in vector_ids], 500):
                    marks = ", ".join("?" * len(chunk))
                    data += c.execute(
                        f"SELECT * FROM items WHERE vector_id IN ({marks}) ORDER BY vector_id", chunk
                    ).fetchall()
        df = pd.DataFrame.from_records(data, columns=columns)
        df["price"] = pd.to_numeric(df["price"], errors="coerce").astype(float)
        for col in df.columns:
            if col not in ("price", "vector_id"):
                df[col] = df[col].astype(object)
        return df.set_index("vector_id")

    def text_search(
        self, query: str, k: int, allowed: Sequence[int] | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``(vector_ids, BM25 scores)`` of the items best matching ``query`` (:func:`text.text_search`);
        a store made before the text index gets it built first, in a write transaction."""
        match_expression(query)  # bad words fail before any write
        with self._lock:
            if indexed_columns(self._conn) != text_columns(self._conn):
                with self.transaction() as conn:
                    ensure_text_index(conn)
            with self.transaction(write=False) as conn:
                return text_search(conn, query, k, allowed)

    def count(self) -> int:
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM items").fetchone()[0])

    def last_seq(self, conn: sqlite3.Connection | None = None) -> int:
        with self._lock:
            row = (
                (conn or self._conn)
                .execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'")
                .fetchone()
            )
        return int(row[0]) if row else 0

    def changes_since(self, seq: int, conn: sqlite3.Connection | None = None) -> list[Change]:
        with self._lock:
            cursor = (conn or self._conn).execute(
                "SELECT seq, op, vector_id, vector FROM changes WHERE seq > ? ORDER BY seq", (int(seq),)
            )
            return [
                Change(int(s), op, int(v), None if blob is None else np.frombuffer(blob, dtype=np.float32))
                for s, op, v, blob in cursor
            ]

    def snapshots(self, conn: sqlite3.Connection | None = None) -> list[Snapshot]:
        """Committed snapshots, newest first."""
        with self._lock:
            cursor = (conn or self._conn).execute(
                "SELECT seq, file, sha256, ntotal FROM snapshots ORDER BY seq DESC"
            )
            return [Snapshot(int(s), f, h, int(n)) for s, f, h, n in cursor]

    def commit_snapshot(self, conn: sqlite3.Connection, snapshot: Snapshot) -> list[Snapshot]:
        """Within the caller's write transaction: record ``snapshot`` and forget what it includes (older
        snapshots, changes up to its ``seq``). Returns the snapshots dropped (their files may go)."""
        older = [s for s in self.snapshots(conn) if s.seq < snapshot.seq]
        conn.execute(
            "INSERT OR REPLACE INTO snapshots VALUES (?, ?, ?, ?)",
            (snapshot.seq, snapshot.file, snapshot.sha256, snapshot.ntotal),
        )
        conn.execute("DELETE FROM snapshots WHERE seq < ?", (snapshot.seq,))
        conn.execute("DELETE FROM changes WHERE seq <= ?", (snapshot.seq,))
        return older


def _chunks(values: list[Any], size: int) -> Iterator[list[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def store_path(index_dir: str | Path) -> Path:
    return Path(index_dir) / STORE_DIR / DB_FILE


def column_json(values: Mapping[str, Any]) -> str:
    """Metadata as JSON for logs and errors (NaN-free)."""
    return json.dumps({k: _cell(k, v) for k, v in values.items()}, sort_keys=True)
