"""What a live catalogue's new items get from the model beyond their search vector (#15): their colour part
and their predicted attribute columns, from the same heads that gave the built index its own.

* Colour parts (:mod:`imgsearch.retrieval.colour`) of items added after the build are rows of a table
  ``colour_parts (vector_id, part)`` in the live item table's database, written inside the add's own
  transaction (:meth:`ItemStore.upsert`'s ``on_insert``), so a reader never sees an item without its part.
  The built index's parts stay in ``colour.npy`` (row = position = the vector id it went live with).
  :class:`LiveColourParts` keeps both as one array indexed by vector id, reading only the rows added since
  its last look; vector ids are never reused, so removing and compacting (which keeps ids) leave it valid.
* Predicted attributes: the columns the build filled (the manifest's ``predicted_attributes``) are filled on
  the new rows the same way (:func:`~imgsearch.retrieval.predicted.fill_predicted_attributes`), so filters,
  facets and words keep working on photos a shop adds untagged.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

TABLE = "colour_parts"


def write_colour_parts(conn: sqlite3.Connection, vector_ids: Sequence[int], parts: np.ndarray) -> None:
    """Store the colour parts of new vector ids, in the caller's (the add's) transaction."""
    x = np.ascontiguousarray(parts, dtype=np.float32)
    if len(x) != len(vector_ids):
        raise ValueError(f"{len(vector_ids)} new items but {len(x)} colour parts")
    conn.execute(f"CREATE TABLE IF NOT EXISTS {TABLE} (vector_id INTEGER PRIMARY KEY, part BLOB NOT NULL)")
    conn.executemany(
        f"INSERT OR REPLACE INTO {TABLE} (vector_id, part) VALUES (?, ?)",
        [(int(v), x[i].tobytes()) for i, v in enumerate(vector_ids)],
    )


class LiveColourParts:
    """The colour parts of a live catalogue as one ``[max vector id + 1, dim]`` array (zeros where an id has
    none: such an item simply gets no colour bonus)."""

    def __init__(self, base: np.ndarray) -> None:
        self.dim = int(base.shape[1])
        self._buf = np.ascontiguousarray(base, dtype=np.float32)
        self._size = len(base)
        self._seen = len(base) - 1  # the largest vector id read from the table (base ids are positions)

    def _reserve(self, size: int) -> None:
        if size > len(self._buf):  # doubling: an add costs amortised O(its rows), not a copy of the whole
            grown = np.zeros((max(size, 2 * len(self._buf), 16), self.dim), np.float32)
            grown[: self._size] = self._buf[: self._size]
            self._buf = grown
        self._size = max(self._size, size)

    def refresh(self, conn: sqlite3.Connection, max_vector_id: int) -> np.ndarray:
        """Read the parts committed since the last call; returns the array (a view, rows = vector ids)."""
        exists = conn.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,))
        if exists.fetchone():
            rows = conn.execute(
                f"SELECT vector_id, part FROM {TABLE} WHERE vector_id > ? ORDER BY vector_id", (self._seen,)
            ).fetchall()
            if rows:
                self._reserve(int(rows[-1][0]) + 1)
                for vid, blob in rows:
                    self._buf[int(vid)] = np.frombuffer(blob, dtype=np.float32, count=self.dim)
                self._seen = int(rows[-1][0])
        self._reserve(int(max_vector_id) + 1)
        return self._buf[: self._size]


def predicted_columns(manifest: Mapping[str, Any]) -> tuple[dict[str, Any], float]:
    """``(the columns the build filled with predictions, the threshold it used)``."""
    info = manifest.get("predicted_attributes") or {}
    return dict(info.get("columns") or {}), float(info.get("min_confidence", 0.0))


def fill_new_rows(
    rows: pd.DataFrame,
    probs: Mapping[str, np.ndarray],
    classes: Mapping[str, Sequence[str]],
    manifest: Mapping[str, Any],
) -> pd.DataFrame:
    """``rows`` with the build's predicted columns filled where the new rows leave them empty."""
    from imgsearch.retrieval.predicted import fill_predicted_attributes

    columns, threshold = predicted_columns(manifest)
    heads = {c: probs[c] for c in columns if c in probs and c in classes}
    if not heads:
        return rows
    rows = rows.copy()
    for column in heads:  # a cell the new row leaves out is empty, not "nan"
        if column in rows.columns:
            rows[column] = rows[column].map(lambda v: "" if v is None or v != v else str(v))
    filled, _ = fill_predicted_attributes(rows, heads, {c: classes[c] for c in heads}, threshold)
    return filled


def new_item_extras(
    searcher: Any, rows: pd.DataFrame, images: Sequence[Any], batch_size: int = 32
) -> tuple[pd.DataFrame, np.ndarray | None]:
    """``(rows with predicted columns filled, their colour parts or None)`` for items about to be added to
    ``searcher``'s live catalogue: one pass of its model's attribute heads, only when the index has a colour
    part or predicted columns."""
    import torch

    from imgsearch.retrieval.colour import colour_source, photos_colour_part

    module, manifest = searcher.module, searcher.manifest
    colour = (manifest.get("colour") or {}).get("attribute") if searcher.has_colour_part else None
    columns, _ = predicted_columns(manifest)
    lab_parts = None
    if searcher.has_colour_part and colour_source(manifest) == "lab":  # the pixels' part needs no model
        lab_parts = photos_colour_part(manifest, None, images)
        if not columns:
            return rows, lab_parts
    if module is None or not hasattr(module, "predict_attributes") or not (colour or columns):
        return rows, lab_parts
    chunks: dict[str, list[np.ndarray]] = {}
    with torch.inference_mode():
        for start in range(0, len(images), batch_size):
            batch = searcher._batch(images[start : start + batch_size], searcher.class_transform)
            for name, p in module.predict_attributes(batch).items():
                chunks.setdefault(name, []).append(p.float().cpu().numpy())
    head_probs = {name: np.vstack(parts) for name, parts in chunks.items()}
    from imgsearch.models.colour_probe import probe_colour_probs

    # predicted colours and colour parts as the build's: through the index's colour probe where it has one,
    # which reads the photos' Lab histograms (made once, for both)
    probe = getattr(searcher, "colour_probe", None)
    hists = None
    if probe is not None:
        from imgsearch.retrieval.lab_colour import lab_descriptors

        hists = lab_descriptors(images)
    probs = probe_colour_probs(probe, head_probs, images, hists)
    rows = fill_new_rows(rows, probs, dict(getattr(module, "attribute_classes", {}) or {}), manifest)
    if lab_parts is not None:
        return rows, lab_parts
    if colour and colour not in head_probs:
        raise ValueError(f"the model has no {colour!r} head, but the index's colour part comes from one")
    return rows, photos_colour_part(manifest, head_probs[colour], images, probe, hists) if colour else None
