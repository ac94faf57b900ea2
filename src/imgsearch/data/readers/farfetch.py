"""Farfetch listings (Kaggle "farfetch-listings", ``current_farfetch_listings.csv``) -> catalogue.

Each CSV row is one product with two photos, a packshot (``images.cutOut``) and a model photo
(``images.model``), given as URLs. The reader emits one row per (product, view), so the pair
shares ``product_id`` and the split can keep it together.

Image files are found under ``image_dir`` by one of two rules:

``url_name`` (default)
    the URL's last path segment (``<id>_<imageId>_<size>.jpg``), looked up in the Kaggle
    layout ``<image_dir>/cutout-img/cutout/`` / ``<image_dir>/model-img/model/``, then in
    ``<image_dir>/<view>/``, then flat in ``<image_dir>/``.
``product_view``
    ``<image_dir>/<view>/<id>.<any image extension>`` (e.g. ``model/14133999.jpg``).

The listings carry no category: the label is derived from ``shortDescription`` with a keyword
taxonomy (``conf/taxonomy/farfetch.yaml``; match rule in :mod:`imgsearch.data.readers.taxonomy`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgsearch.data.images import ImageDirIndex, url_file_name
from imgsearch.data.readers.generic import read_text_table
from imgsearch.data.readers.taxonomy import Taxonomy, load_taxonomy
from imgsearch.data.schema import parse_price, validate_catalogue

log = logging.getLogger(__name__)

#: view name -> (URL column, Kaggle sub-folder)
FARFETCH_VIEWS: dict[str, tuple[str, str]] = {
    "cutout": ("images.cutOut", "cutout-img/cutout"),
    "model": ("images.model", "model-img/model"),
}
IMAGE_RULES = ("url_name", "product_view")
_REQUIRED = ("id", "shortDescription")


def _candidate_dirs(root: Path, view: str) -> list[Path]:
    return [root / FARFETCH_VIEWS[view][1], root / view, root]


def read_farfetch(
    csv_path: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | None = None,
    *,
    image_rule: str = "url_name",
    taxonomy: str | os.PathLike[str] | Mapping[str, Any] | Taxonomy | None = "farfetch",
    unmatched: str = "drop",
    views: Sequence[str] = ("cutout", "model"),
) -> pd.DataFrame:
    """Read Farfetch listings into the catalogue table (one row per product and view).

    Args:
        csv_path: ``current_farfetch_listings.csv`` or a file with the same columns.
        image_dir: root of the downloaded images. When given, rows whose image is not found are
            dropped (and counted); when ``None`` every row is kept with ``image_path=""``.
        image_rule: ``"url_name"`` or ``"product_view"`` (see the module docstring).
        taxonomy: taxonomy name / YAML path / mapping for the label; ``None`` leaves labels empty.
        unmatched: descriptions the taxonomy does not match are ``"drop"``-ped or labelled ``"other"``.
        views: which photos to emit (``"cutout"``, ``"model"``).

    Returns:
        The catalogue table; ``df.attrs["report"]`` holds the counts (rows read, malformed lines,
        duplicate ids, unmatched descriptions, images resolved per view).
    """
    if image_rule not in IMAGE_RULES:
        raise ValueError(f"image_rule must be one of {IMAGE_RULES}, got {image_rule!r}")
    if unmatched not in ("drop", "other"):
        raise ValueError(f"unmatched must be 'drop' or 'other', got {unmatched!r}")
    bad_views = [v for v in views if v not in FARFETCH_VIEWS]
    if bad_views or not views:
        raise ValueError(f"views must be a non-empty subset of {list(FARFETCH_VIEWS)}, got {list(views)}")
    path = Path(csv_path)
    raw, table_report = read_text_table(path)
    # pandas' to_csv index comes back as an unnamed first column
    raw = raw.drop(columns=[c for c in raw.columns if c == "" or str(c).startswith("Unnamed:")])
    raw.columns = [str(c).strip() for c in raw.columns]
    needed = [*_REQUIRED, *(FARFETCH_VIEWS[v][0] for v in views)]
    missing = [c for c in needed if c not in raw.columns]
    if missing:
        raise ValueError(f"{path}: not a Farfetch listings file, missing column(s) {missing}")
    raw = raw.apply(lambda s: s.str.strip())

    report: dict[str, Any] = {"source_files": [str(path)], "rows_read": len(raw), **table_report}
    no_id = raw["id"] == ""
    dup = raw["id"].duplicated() & ~no_id
    report["empty_id"] = int(no_id.sum())
    report["duplicate_ids"] = int(dup.sum())
    raw = raw[~no_id & ~dup].reset_index(drop=True)

    tax = load_taxonomy(taxonomy) if taxonomy is not None else None
    if tax is not None:
        labels = raw["shortDescription"].map(tax.match)
        is_unmatched = labels.isna()
        report["unmatched"] = int(is_unmatched.sum())
        report["unmatched_examples"] = raw.loc[is_unmatched, "shortDescription"].head(20).tolist()
        if unmatched == "drop":
            raw, labels = raw[~is_unmatched], labels[~is_unmatched]
        labels = labels.fillna("other")
    else:
        labels = pd.Series("", index=raw.index)
        report["unmatched"] = 0

    price = raw.get("priceInfo.finalPrice", pd.Series("", index=raw.index)).map(parse_price)
    if "priceInfo.formattedFinalPrice" in raw.columns:  # "$1,598" when the number is missing
        price = price.fillna(raw["priceInfo.formattedFinalPrice"].map(parse_price))

    def col(name: str) -> pd.Series:
        return raw[name] if name in raw.columns else pd.Series("", index=raw.index)

    root = Path(image_dir).resolve() if image_dir is not None else None
    index = ImageDirIndex()
    frames = []
    report["image_dir"] = str(root) if root is not None else None
    report["image_rule"] = image_rule
    report["images"] = {}
    for view in views:
        urls = raw[FARFETCH_VIEWS[view][0]]
        if root is None:
            paths = [""] * len(raw)
        elif image_rule == "url_name":
            dirs = _candidate_dirs(root, view)
            paths = [index.by_name(dirs, url_file_name(u)) for u in urls]
        else:
            paths = [index.by_stem([root / view], pid) for pid in raw["id"]]
        frame = pd.DataFrame(
            {
                "item_id": raw["id"] + "_" + view,
                "product_id": raw["id"],
                "view": view,
                "image_path": paths,
                "label": labels,
                "split": "",
                "title": raw["shortDescription"],
                "brand": col("brand.name"),
                "price": price.astype(float),
                "gender": col("gender"),
                "currency": col("priceInfo.currencyCode"),
                "source": "farfetch",
                "image_url": urls,
                # the listing's page, from its id (Farfetch's item URLs redirect to the canonical one)
                "url": "https://www.farfetch.com/shopping/item-" + raw["id"] + ".aspx",
            }
        )
        if root is not None:
            resolved = int((frame["image_path"] != "").sum())
            report["images"][view] = {
                "rows": len(frame),
                "resolved": resolved,
                "missing": len(frame) - resolved,
            }
        frames.append(frame)
    df = pd.concat(frames, ignore_index=True)
    # cutout and model rows of one product next to each other: easier to read and to diff
    df = df.sort_values(["product_id", "view"], kind="stable", key=_product_order(raw)).reset_index(drop=True)
    if root is not None:
        df = df[df["image_path"] != ""].reset_index(drop=True)
    out = validate_catalogue(df)
    report["rows"] = len(out)
    report["products"] = int(out["product_id"].nunique())
    out.attrs["report"] = report
    img = report["images"]
    resolved_txt = (
        ", ".join(f"{v} {c['resolved']}/{c['rows']}" for v, c in img.items())
        if root is not None
        else "not resolved"
    )
    log.info(
        "%s: %d listings read, %d duplicate ids dropped, %d unmatched descriptions (%s), "
        "images %s -> %d rows",
        path,
        report["rows_read"],
        report["duplicate_ids"],
        report["unmatched"],
        "dropped" if unmatched == "drop" else "labelled other",
        resolved_txt,
        len(out),
    )
    return out


def _product_order(raw: pd.DataFrame):
    """Sort key that keeps the file's product order (ids are not sorted in the listings)."""
    order = {pid: i for i, pid in enumerate(raw["id"])}
    views = {v: i for i, v in enumerate(FARFETCH_VIEWS)}

    def key(s: pd.Series) -> pd.Series:
        mapping = order if s.name == "product_id" else views
        return s.map(mapping).astype(np.int64)

    return key
