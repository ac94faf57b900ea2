"""A live catalogue: add, update and remove items of a built index by id, without a rebuild.

The built index directory (``index.faiss``, ``items.csv``, ``manifest.json``) stays as it was built. Going
live adds ``<index_dir>/live/``: the SQLite item table and change log (:mod:`imgsearch.retrieval.store`) and
FAISS snapshots ``snapshot-<seq>.faiss``. The state a reader sees is the newest *committed* snapshot (the
built index itself before the first one) plus the changes after it, replayed in order:

* FAISS ids are ``vector_id``s, never reused. Index types that keep their own ids (IVF) take them
  directly; the others are wrapped in an ``IndexIDMap2``.
* ``remove_ids`` where the index supports it; where it does not (HNSW), the vector stays in the graph as a
  tombstone: any id in the index but not in the item table is excluded inside the search (an
  ``IDSelectorNot``), and :meth:`LiveIndex.compact` rebuilds the index from the live vectors.
* A snapshot is written to a temporary file, fsynced, renamed, and only then committed as a row of the
  item table, in the same transaction that drops the changes it includes. A process killed anywhere in
  between leaves the previous snapshot and the full change log, so the state is old or new, never mixed.

Readers in other processes (serve workers) call :meth:`LiveIndex.refresh` (cheap when nothing changed:
``PRAGMA data_version``) and apply only the new changes.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd

from imgsearch.data.schema import validate_catalogue
from imgsearch.retrieval.locations import file_sha256
from imgsearch.retrieval.store import (
    DB_FILE,
    STORE_DIR,
    Change,
    ItemStore,
    ItemStoreError,
    Snapshot,
    store_path,
)
from imgsearch.utils.atomic import default_mode

log = logging.getLogger(__name__)

#: The built ``index.faiss`` counts as the snapshot of ``seq`` 0 until a real one is committed.
BASE_SNAPSHOT = "../index.faiss"
#: Prefix of an image path stored relative to the index directory (photos uploaded through serve).
INDEX_RELATIVE = "@index/"
UPLOADS_DIR = "images"

#: Test hook: called with a point name at each step of a write; a crash test kills the process there.
crash_point: Callable[[str], None] = lambda name: None  # noqa: E731


def is_live(index_dir: str | os.PathLike[str]) -> bool:
    return store_path(index_dir).is_file()


def has_native_ids(index: faiss.Index) -> bool:
    """IVF indexes store the ids they are given and remove by id in place: no id map needed."""
    try:
        faiss.extract_index_ivf(index)
    except RuntimeError:
        return False
    return True


def with_ids(index: faiss.Index, ids: np.ndarray) -> faiss.Index:
    """``index`` whose vector ``i`` answers to ``ids[i]``: an ``IndexIDMap2`` over it, wrapped in place
    (no copy, no re-add: an HNSW graph is kept as built). IVF and id-mapped indexes come back as they are
    when their ids already are ``ids``."""
    if isinstance(faiss.downcast_index(index), faiss.IndexIDMap2 | faiss.IndexIDMap) or has_native_ids(index):
        return index
    if len(ids) != index.ntotal:
        raise ValueError(f"{len(ids)} ids for an index of {index.ntotal} vectors")
    mapped = faiss.IndexIDMap2(faiss.IndexFlat(index.d, index.metric_type))
    # The constructor insists on an empty index; install the full one after it (FAISS keeps the pointer,
    # referenced_objects keeps the Python object, and so its C++ index, alive as long as the map).
    mapped.index = index
    mapped.own_fields = False
    mapped.referenced_objects = [index]
    faiss.copy_array_to_vector(np.ascontiguousarray(ids, dtype=np.int64), mapped.id_map)
    mapped.ntotal = index.ntotal
    mapped.construct_rev_map()
    return mapped


def index_ids(index: faiss.Index) -> np.ndarray:
    """The ids an index answers with, in storage order."""
    index = faiss.downcast_index(index)
    if isinstance(index, faiss.IndexIDMap2 | faiss.IndexIDMap):
        return faiss.vector_to_array(index.id_map).astype(np.int64)
    ivf = faiss.extract_index_ivf(index)
    invlists = ivf.invlists
    parts = [
        faiss.rev_swig_ptr(invlists.get_ids(lst), invlists.list_size(lst)).copy()
        for lst in range(ivf.nlist)
        if invlists.list_size(lst)
    ]
    return np.concatenate(parts).astype(np.int64) if parts else np.zeros(0, np.int64)


class LiveIndex:
    """The in-memory FAISS index and item table of a live catalogue directory (see the module docstring).

    Attributes:
        index: the FAISS index, answering with ``vector_id``s. ``items``: the item rows, a DataFrame indexed
        by ``vector_id``. ``dead``: ids still in the index but no longer items (tombstones).
    """

    def __init__(self, directory: Path, store: ItemStore, image_root: Path | None) -> None:
        self.directory = directory
        self.store = store
        self.image_root = image_root
        self.lock = threading.RLock()
        self.index: faiss.Index
        self.items: pd.DataFrame
        self.applied_seq = 0
        self.snapshot_seq = 0
        self.dead = np.zeros(0, np.int64)
        self._data_version = -1
        self._removable = True
        self.manifest: dict[str, Any] = {}
        self._base: faiss.Index | None = None

    # ------------------------------------------------------------------------------------- opening

    @classmethod
    def open(
        cls,
        index_dir: str | os.PathLike[str],
        *,
        create: bool = True,
        image_root: str | os.PathLike[str] | None = None,
    ) -> LiveIndex:
        """Open the live state of an index directory; with ``create``, make a built index live first (its
        items keep their positions as ids).

        Raises:
            FileNotFoundError: not an index directory, or not live and ``create`` is false.
        """
        from imgsearch.retrieval.index import load_index_dir  # index imports live lazily too

        directory = Path(index_dir)
        index, items, manifest = load_index_dir(directory, image_root=image_root)
        if not is_live(directory):
            if not create:
                raise FileNotFoundError(f"{directory} has no live item table ({STORE_DIR}/{DB_FILE})")
            _initialise(directory, items)
        from imgsearch.retrieval.locations import resolve_image_root

        live = cls(
            directory, ItemStore(store_path(directory)), resolve_image_root(directory, manifest, image_root)
        )
        live.manifest = manifest
        live._base = index
        live._load()
        return live

    def _snapshot_path(self, snapshot: Snapshot) -> Path:
        return (self.directory / STORE_DIR / snapshot.file).resolve()

    def _read_snapshot(self, conn: Any) -> tuple[faiss.Index, int]:
        for snap in self.store.snapshots(conn):
            path = self._snapshot_path(snap)
            if path.is_file() and file_sha256(path) == snap.sha256:
                return faiss.read_index(str(path)), snap.seq
            log.warning("live snapshot %s is missing or corrupt; using an older state", path)
        from imgsearch.retrieval.index import INDEX_FILE

        # the built index, used as it is the first time (no copy: it may be most of the memory)
        base = self._base if self._base is not None else faiss.read_index(str(self.directory / INDEX_FILE))
        self._base = None
        return with_ids(base, np.arange(base.ntotal, dtype=np.int64)), 0

    def _load(self) -> None:
        with self.lock:
            self._data_version = self.store.data_version()
            with self.store.transaction(write=False) as conn:
                self._load_from(conn)

    def _load_from(self, conn: Any) -> None:
        """Newest committed snapshot + the changes after it, read in the caller's transaction."""
        index, seq = self._read_snapshot(conn)
        changes = self.store.changes_since(seq, conn)
        items = self.store.rows(conn=conn)
        self.index = index  # not downcast: a downcast proxy does not own the C++ index, and it would be freed
        if has_native_ids(self.index):  # reconstruct by id ("more like this") needs IVF's id -> list map
            faiss.extract_index_ivf(self.index).set_direct_map_type(faiss.DirectMap.Hashtable)
        self._removable = _supports_remove(self.index)
        self.snapshot_seq = self.applied_seq = seq
        self._apply(changes)
        self.items = self._resolve_paths(items)
        self._recount_dead()

    def refresh(self, *, force: bool = False) -> bool:
        """Apply what was committed since the last look; ``True`` if anything changed. Cheap when nothing
        did (``PRAGMA data_version``, which moves only for other connections' commits: this process's own
        writes pass ``force``)."""
        with self.lock:
            version = self.store.data_version()
            if version == self._data_version and not force:
                return False
            self._data_version = version
            with self.store.transaction(write=False) as conn:
                return self._catch_up(conn)

    def _catch_up(self, conn: Any) -> bool:
        snaps = self.store.snapshots(conn)
        if snaps and snaps[0].seq > self.applied_seq:
            self._load_from(conn)  # a snapshot dropped changes this process has not applied: start over
            return True
        changes = self.store.changes_since(self.applied_seq, conn)
        if not changes:
            return False
        touched = sorted({c.vector_id for c in changes if c.op != "remove"})
        rows = self.store.rows(touched, conn=conn) if touched else None
        self._apply(changes)
        kept = self.items[~self.items.index.isin([c.vector_id for c in changes])]
        if rows is not None and len(rows):
            kept = pd.concat([kept, self._resolve_paths(rows)])
        self.items = kept
        self._recount_dead()
        return True

    def _apply(self, changes: Sequence[Change]) -> None:
        for change in changes:
            if change.op == "remove":
                if self._removable:  # else (HNSW) the vector stays, excluded at search as a tombstone
                    # IDSelectorArray: the one selector an IVF index with a hashtable direct map accepts
                    self.index.remove_ids(faiss.IDSelectorArray(np.array([change.vector_id], np.int64)))
            elif change.op == "add":
                self.index.add_with_ids(change.vector[None, :], np.array([change.vector_id], np.int64))
            self.applied_seq = change.seq

    def _recount_dead(self) -> None:
        if self.index.ntotal == len(self.items):
            self.dead = np.zeros(0, np.int64)
            return
        ids = index_ids(self.index)
        self.dead = ids[~np.isin(ids, self.items.index.to_numpy())]

    def _resolve_paths(self, rows: pd.DataFrame) -> pd.DataFrame:
        def resolve(p: str) -> str:
            if not p or os.path.isabs(p):
                return p
            if p.startswith(INDEX_RELATIVE):
                return str(self.directory.resolve() / p[len(INDEX_RELATIVE) :])
            return str(self.image_root / p) if self.image_root is not None else p

        rows = rows.copy()
        rows["image_path"] = [resolve(str(p)) for p in rows["image_path"]]
        return rows

    def _stored_path(self, path: str) -> str:
        """What the table records for an image path: relative to the index directory for uploads, to the
        image root for catalogue photos under it (both survive moving the directory), else absolute."""
        if not path:
            return ""
        p = Path(path).resolve()
        if p.is_relative_to(self.directory.resolve()):
            return INDEX_RELATIVE + p.relative_to(self.directory.resolve()).as_posix()
        if self.image_root is not None and p.is_relative_to(self.image_root):
            return p.relative_to(self.image_root).as_posix()
        return str(p)

    # --------------------------------------------------------------------------------------- writes

    def _prepared(self, items: pd.DataFrame) -> pd.DataFrame:
        table = validate_catalogue(items)
        table["image_path"] = [self._stored_path(str(p)) for p in table["image_path"]]
        return table

    def add(
        self,
        items: pd.DataFrame,
        vectors: np.ndarray,
        *,
        mode: str = "add",
        on_insert: Callable[[Any, list[int]], None] | None = None,
    ) -> list[int]:
        """Add (``mode="add"``), replace (``update``) or either (``upsert``) items with their vectors
        (prepared like the index's: :func:`imgsearch.retrieval.index.prepare_vectors`). One transaction;
        ``on_insert`` writes what goes with the new rows in it (see :meth:`ItemStore.upsert`).

        Raises:
            ItemStoreError: duplicate or unknown ids for the mode; ValueError: wrong vector dimension.
        """
        x = np.ascontiguousarray(vectors, dtype=np.float32)
        if x.ndim != 2 or x.shape[1] != self.index.d:
            raise ValueError(f"vectors must be [n, {self.index.d}], got shape {x.shape}")
        with self.lock:
            crash_point("before_commit")
            new_ids, _ = self.store.upsert(self._prepared(items), x, mode=mode, on_insert=on_insert)
            crash_point("after_commit")
            self.refresh(force=True)
            return new_ids

    def remove(self, item_ids: Sequence[str], *, missing_ok: bool = False) -> list[int]:
        with self.lock:
            vids = self.store.remove(item_ids, missing_ok=missing_ok)
            self.refresh(force=True)
            return vids

    def set_metadata(self, item_id: str, values: Mapping[str, Any]) -> None:
        values = dict(values)
        if "image_path" in values:
            values["image_path"] = self._stored_path(str(values["image_path"]))
        with self.lock:
            self.store.set_metadata(item_id, values)
            self.refresh(force=True)

    def vector_of(self, item_id: str) -> np.ndarray:
        """The stored vector of an item ("more like this").

        Raises:
            ItemStoreError: unknown item id.
        """
        with self.lock:
            vid = self.store.vector_ids_of([item_id]).get(str(item_id))
            if vid is None or vid not in self.items.index:
                raise ItemStoreError(f"item id {item_id!r} is not in the catalogue")
            return self.index.reconstruct(int(vid))

    # ------------------------------------------------------------------------------ snapshot, compact

    def snapshot(self, *, compact: bool = False) -> Snapshot:
        """Write the current state as a snapshot and drop the change log it includes. ``compact``: first
        rebuild the index from the live vectors, so tombstones (HNSW) are gone from memory and disk.

        Holds the write lock of the item table throughout, so no change is committed in between.
        """
        with self.lock, self.store.transaction() as conn:
            self._catch_up(conn)  # under the write lock: nothing can be committed until this one is
            if compact and len(self.dead):
                self.index = self._rebuilt()
                self.dead = np.zeros(0, np.int64)
            seq = self.store.last_seq(conn)
            if seq != self.applied_seq:
                raise RuntimeError(f"live state at change {self.applied_seq} but the table is at {seq}")
            name = f"snapshot-{seq:012d}.faiss"
            final = self.directory / STORE_DIR / name
            fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=final.parent)
            os.close(fd)
            try:
                os.chmod(tmp, default_mode())
                faiss.write_index(self.index, tmp)
                with open(tmp, "rb+") as fh:
                    os.fsync(fh.fileno())
                crash_point("snapshot_written")
                os.replace(tmp, final)
                _fsync_dir(final.parent)
                crash_point("snapshot_renamed")
            finally:
                if os.path.exists(tmp):
                    os.unlink(tmp)
            snap = Snapshot(seq, name, file_sha256(final), int(self.index.ntotal))
            dropped = self.store.commit_snapshot(conn, snap)
        self.snapshot_seq = seq
        for old in dropped:
            path = self._snapshot_path(old)
            if path.is_file() and path.name != snap.file:
                path.unlink()
        log.info("live snapshot %s: %d vectors, %d items", name, snap.ntotal, len(self.items))
        return snap

    def compact(self) -> Snapshot:
        """Snapshot with tombstones removed (see :meth:`snapshot`)."""
        return self.snapshot(compact=True)

    def _rebuilt(self) -> faiss.Index:
        live_ids = self.items.index.to_numpy(dtype=np.int64)
        vectors = np.vstack([self.index.reconstruct(int(v)) for v in live_ids]) if len(live_ids) else None
        mapped = isinstance(faiss.downcast_index(self.index), faiss.IndexIDMap2 | faiss.IndexIDMap)
        inner = faiss.clone_index(self.index.index if mapped else self.index)
        inner.reset()  # keeps what was trained (a quantiser), drops vectors and graph
        fresh = faiss.IndexIDMap2(inner) if mapped else inner
        if vectors is not None:
            fresh.add_with_ids(vectors, live_ids)
        return fresh

    def pending_changes(self) -> int:
        return self.applied_seq - self.snapshot_seq

    def close(self) -> None:
        self.store.close()


def _supports_remove(index: faiss.Index) -> bool:
    try:
        index.remove_ids(faiss.IDSelectorArray(np.zeros(0, np.int64)))
    except RuntimeError:
        return False
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _initialise(directory: Path, items: pd.DataFrame) -> None:
    """Make a built index directory live: a new ``live/`` holding the item table of ``items.csv`` (ids
    = positions), published by one rename, so a crash leaves the directory not live rather than half."""
    from imgsearch.data.schema import read_catalogue
    from imgsearch.retrieval.index import ITEMS_FILE

    rows = read_catalogue(directory / ITEMS_FILE)  # stored (relocatable) paths, not the resolved ones
    if len(rows) != len(items):
        raise ItemStoreError(f"{directory}: items.csv changed while going live")
    tmp = Path(tempfile.mkdtemp(prefix=f".{STORE_DIR}.", dir=directory))
    try:
        os.chmod(tmp, default_mode(directory=True))
        store = ItemStore.create(tmp / DB_FILE, rows, list(range(len(rows))))
        store._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        store.close()
        for leftover in tmp.glob(f"{DB_FILE}-*"):
            leftover.unlink()
        os.chmod(tmp / DB_FILE, default_mode())
        target = directory / STORE_DIR
        if target.is_dir() and not is_live(directory):
            # a folder without a table (e.g. only uploaded photos): move its contents into the new one
            for entry in target.iterdir():
                os.replace(entry, tmp / entry.name)
            target.rmdir()
        os.rename(tmp, target)
    except OSError as exc:
        if is_live(directory):
            log.info("%s went live in another process meanwhile", directory)
        else:
            raise ItemStoreError(f"cannot make {directory} live: {exc}") from exc
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("made %s live (%d items)", directory, len(rows))
