"""Where an index directory's parts are: its files' hashes, the folders its images live in, and the paths it
records relative to itself so that the directory can be moved (alone, or together with its images).
:mod:`imgsearch.retrieval.index` writes and reads index directories with these."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd


def file_sha256(path: str | os.PathLike[str], chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


def image_roots(items: pd.DataFrame) -> list[str]:
    """The fewest folders that hold every item's image (resolved): what serve may stream from."""
    if "image_path" not in items.columns:
        return []
    parents = sorted({str(Path(p).resolve().parent) for p in items["image_path"].astype(str) if p})
    roots: list[str] = []
    for folder in parents:  # sorted, so a folder comes right after any ancestor already kept
        if not roots or not Path(folder).is_relative_to(roots[-1]):
            roots.append(folder)
    return roots


def relative_to(path: Path, start: Path) -> str:
    """``path`` relative to the directory ``start`` (``..`` allowed): what an index records to be movable."""
    return os.path.relpath(path, start.resolve())


def _relocatable(
    directory: Path, items: pd.DataFrame, manifest: Mapping[str, Any]
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Image paths stored relative to the images' common root, which the manifest records both absolutely
    and relative to the index directory; the checkpoint likewise. An index directory moved alone, or moved
    together with its images, still finds them (:func:`resolve_image_root`)."""
    manifest = json.loads(json.dumps(dict(manifest)))
    paths = [str(p) for p in items["image_path"]]
    absolute = [p for p in paths if p and os.path.isabs(p)]
    if absolute and len(absolute) == len(paths):
        root = Path(os.path.commonpath(absolute))
        if len(set(absolute)) == 1 or Path(absolute[0]) == root:
            root = root.parent  # one image: its folder is the root
        items = items.copy()
        items["image_path"] = [os.path.relpath(p, root) for p in paths]
        manifest.setdefault("catalogue", {})["image_root"] = {
            "path": str(root),
            "relative_to_index": relative_to(root, directory),
        }
    ckpt = (manifest.get("checkpoint") or {}).get("path")
    if ckpt:
        manifest["checkpoint"]["relative_to_index"] = relative_to(Path(ckpt), directory)
    return items, manifest


def resolve_image_root(
    directory: str | os.PathLike[str], manifest: Mapping[str, Any], override: str | os.PathLike[str] | None
) -> Path | None:
    """Where an index's images are: ``override``, else the recorded absolute root when it exists, else the
    recorded root relative to the index directory (both moved together); ``None`` for an index that stores
    absolute image paths (built before paths were made relative)."""
    rec = (manifest.get("catalogue") or {}).get("image_root")
    if override is not None:
        return Path(override).resolve()
    if not rec:
        return None
    recorded = Path(rec["path"])
    beside = (Path(directory) / rec["relative_to_index"]).resolve()
    return recorded if recorded.is_dir() or not beside.is_dir() else beside


def _rebase_image_roots(manifest: dict[str, Any], root: Path) -> None:
    """The folders serve may stream from, moved along with the image root they were recorded under."""
    catalogue = manifest.get("catalogue") or {}
    old_root, roots = (catalogue.get("image_root") or {}).get("path"), catalogue.get("image_roots")
    if not old_root or not roots or Path(old_root) == root:
        return
    catalogue["image_roots"] = [
        str(root / os.path.relpath(r, old_root)) if Path(r).is_relative_to(old_root) else r for r in roots
    ]


def resolve_checkpoint_path(directory: str | os.PathLike[str], manifest: Mapping[str, Any]) -> Path | None:
    """The checkpoint an index was built with: its recorded path, or the same file relative to the index
    directory when the two were moved together."""
    rec = manifest.get("checkpoint") or {}
    if not rec.get("path"):
        return None
    recorded = Path(rec["path"])
    if recorded.is_file() or not rec.get("relative_to_index"):
        return recorded
    beside = (Path(directory) / rec["relative_to_index"]).resolve()
    return beside if beside.is_file() else recorded
