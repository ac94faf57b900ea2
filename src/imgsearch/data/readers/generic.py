"""Any shop's catalogue: a CSV or Parquet table with configurable columns, images under a root.

This is how users bring their own data. It is tested on Kaggle's "Fashion Product Images"
``styles.csv`` (``id`` -> ``<id>.jpg``, label ``articleType``), whose full version has a few
lines with an unquoted comma in ``productDisplayName``: those lines are skipped and counted.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgsearch.data.images import ImageDirIndex
from imgsearch.data.schema import as_str, parse_price, validate_catalogue

log = logging.getLogger(__name__)

_MAX_EXAMPLES = 10


def read_text_table(
    path: str | os.PathLike[str], *, encoding: str = "utf-8-sig"
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Read a CSV (all cells as strings, ``""`` for empty) or Parquet table.

    Malformed CSV lines (more fields than the header) are skipped, counted and reported with
    their line numbers instead of stopping the run. A file that is not in ``encoding`` is a
    one-line ``ValueError`` naming the file, the byte offset and the ``encoding=`` option.

    Returns:
        ``(table, report)`` with ``report = {"bad_lines": n, "bad_line_numbers": [...],
        "bad_line_examples": [...]}``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"catalogue source not found: {path}")
    report: dict[str, Any] = {"bad_lines": 0, "bad_line_numbers": [], "bad_line_examples": []}
    if path.suffix.lower() in (".parquet", ".pq"):
        df = pd.read_parquet(path)
        for col in df.columns:
            if df[col].dtype == object or pd.api.types.is_string_dtype(df[col]):
                df[col] = as_str(df[col])
        return df, report
    opts: dict[str, Any] = {
        "dtype": str,
        "keep_default_na": False,
        "na_values": [],
        "encoding": encoding,  # utf-8-sig: a BOM would otherwise end up in the first column name
        "skipinitialspace": False,
    }
    try:
        df = pd.read_csv(path, on_bad_lines="error", **opts)
    except UnicodeDecodeError as exc:
        raise ValueError(
            f"{path} is not {exc.encoding} text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start}); "
            "give the file's encoding, e.g. data.source.encoding=latin-1 or cp1252"
        ) from None
    except pd.errors.ParserError:
        # Slow path only for files that need it: the python engine hands each bad line to us.
        bad: list[list[str]] = []

        def on_bad(fields: list[str]) -> None:
            bad.append(fields)
            return None

        df = pd.read_csv(path, on_bad_lines=on_bad, engine="python", **opts)
        report["bad_lines"] = len(bad)
        report["bad_line_numbers"] = _bad_line_numbers(path, bad, encoding)
        report["bad_line_examples"] = [",".join(f) for f in bad[:_MAX_EXAMPLES]]
        (log.warning if bad else log.debug)(
            "%s: skipped %d malformed line(s) (more fields than the header), line numbers %s",
            path,
            len(bad),
            report["bad_line_numbers"][:_MAX_EXAMPLES],
        )
    return _drop_cut_records(path, df, report, encoding), report


def _drop_cut_records(path: Path, df: pd.DataFrame, report: dict[str, Any], encoding: str) -> pd.DataFrame:
    """Count records with fewer fields than the header, or cut inside a quoted field, as malformed.

    pandas fills a short record's missing cells with ``""`` (a listing cut mid-row then looks like a
    row with an empty description) and its python engine drops a record that ends inside a quote
    without a word; both are what a cut-off download leaves on its last line.
    """
    import csv

    short_rows: list[int] = []  # positions in df
    cut: list[tuple[int, str]] = []  # (line number, why)
    with open(path, encoding=encoding, newline="") as fh:
        reader = csv.reader(fh, strict=True)
        header = next(reader, [])
        position, start = 0, reader.line_num + 1
        while True:
            try:
                row = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                cut.append((start, f"line {start}: {exc} (the file ends inside a quoted field?)"))
                break
            if row and len(row) <= len(header):  # blank lines and over-long lines are not in df
                if len(row) < len(header):
                    short_rows.append(position)
                    cut.append((start, f"line {start}: {len(row)} of {len(header)} fields (cut off?)"))
                position += 1
            start = reader.line_num + 1
    if not cut:
        return df
    numbers = sorted({*report["bad_line_numbers"], *(n for n, _ in cut)})
    report["bad_lines"] += len(cut)
    report["bad_line_numbers"] = numbers
    report["bad_line_examples"] = (report["bad_line_examples"] + [why for _, why in cut])[:_MAX_EXAMPLES]
    log.warning(
        "%s: skipped %d record(s) with too few fields or cut inside a quoted field: %s",
        path,
        len(cut),
        [why for _, why in cut][:_MAX_EXAMPLES],
    )
    keep = ~pd.Series(range(len(df)), index=df.index).isin(short_rows)
    return df[keep.to_numpy()].reset_index(drop=True)


def _bad_line_numbers(path: Path, bad: list[list[str]], encoding: str = "utf-8-sig") -> list[int]:
    """1-based physical line numbers of the skipped lines (found by their field count)."""
    if not bad:
        return []
    import csv

    numbers: list[int] = []
    with open(path, encoding=encoding, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, [])
        for row in reader:
            if len(row) > len(header):
                numbers.append(reader.line_num)
    return numbers


def _column(df: pd.DataFrame, name: str | None, what: str, path: Path) -> pd.Series | None:
    if name is None:
        return None
    if name not in df.columns:
        raise ValueError(f"{path}: {what} column {name!r} not found; columns are {list(df.columns)}")
    return as_str(df[name]).str.strip()


def read_csv_catalogue(
    path: str | os.PathLike[str],
    image_dir: str | os.PathLike[str] | None,
    *,
    image_column: str = "id",
    image_template: str = "{}.jpg",
    label_column: str | None = "articleType",
    product_column: str | None = None,
    item_column: str | None = None,
    title_column: str | None = None,
    brand_column: str | None = None,
    price_column: str | None = None,
    gender_column: str | None = None,
    view_column: str | None = None,
    currency_column: str | None = None,
    url_column: str | None = None,
    extra_columns: list[str] | None = None,
    source: str = "csv",
    encoding: str = "utf-8-sig",
    image_roots: list[str | os.PathLike[str]] | None = None,
) -> pd.DataFrame:
    """Read a user's catalogue table into the catalogue schema.

    Args:
        path: ``.csv`` (any other suffix is read as CSV too) or ``.parquet``.
        image_dir: root of the images; ``image_template.format(<image_column value>)`` is the
            path under it (``"{}.jpg"`` for Kaggle's ``<id>.jpg``; ``"{}"`` when the column holds
            relative paths already). ``"{}.*"`` means the id with any image extension. When
            ``None``, rows are kept with relative (unresolved) ``image_path`` for inspection.
        image_column: column holding the image id or relative path.
        label_column: category column (rows with an empty label are dropped and counted).
        product_column: rows sharing it are one product (default: one product per row).
        item_column: unique row id (default: the image column).
        title_column, brand_column, price_column, gender_column, view_column: metadata columns.
        currency_column: the prices' currency (``EUR``, ``$``); url_column: the product's page, which
            the search page links each result to (kept as ``currency`` and ``url``).
        extra_columns: other columns to keep under their own names (``colour``, ``season``, ...): they
            can be filtered on at search time.
        source: value of the ``source`` column.
        encoding: the table's text encoding (``latin-1``, ``cp1252``, ...).
        image_roots: folders image paths must resolve into (symlinks and ``..`` followed); a
            row whose image lies elsewhere (``../outside.jpg``) is dropped and counted as
            ``outside_image_root``. Default: ``[image_dir]``.

    Returns:
        The catalogue table; when ``image_dir`` is given, only rows whose image file exists.
        ``df.attrs["report"]`` says what was read, skipped and resolved; ``report["dropped"]``
        lists every dropped row with its reason (``prepare_catalogue`` puts them in ``skipped.json``).

    Raises:
        FileNotFoundError: the table or ``image_dir`` does not exist.
    """
    path = Path(path)
    if image_dir is not None and not Path(image_dir).is_dir():
        raise FileNotFoundError(
            f"image directory not found: {image_dir} (images of {path}); set data.source.image_dir="
        )
    raw, report = read_text_table(path, encoding=encoding)
    report = {"source_files": [str(path)], "rows_read": len(raw), **report}
    image_ref = _column(raw, image_column, "image", path)
    assert image_ref is not None
    label = _column(raw, label_column, "label", path) if label_column else pd.Series("", index=raw.index)
    item = _column(raw, item_column, "item", path) if item_column else image_ref
    product = _column(raw, product_column, "product", path) if product_column else item
    df = pd.DataFrame(
        {
            "item_id": item,
            "product_id": product,
            "view": _column(raw, view_column, "view", path) if view_column else "main",
            "label": label,
            "title": _column(raw, title_column, "title", path) if title_column else "",
            "brand": _column(raw, brand_column, "brand", path) if brand_column else "",
            "price": raw[price_column].map(parse_price) if price_column else np.nan,
            "gender": _column(raw, gender_column, "gender", path) if gender_column else "",
            "currency": _column(raw, currency_column, "currency", path) if currency_column else "",
            "source": source,
        }
    )
    if url_column:
        df["url"] = _column(raw, url_column, "url", path)
    for name in extra_columns or []:
        if name in df.columns:
            raise ValueError(f"extra column {name!r} clashes with a catalogue column; rename it in the table")
        df[name] = _column(raw, name, name, path)
    if price_column and price_column not in raw.columns:
        raise ValueError(f"{path}: price column {price_column!r} not found; columns are {list(raw.columns)}")
    refs = image_ref.tolist()
    if image_dir is None:
        df["image_path"] = [image_template.replace(".*", "").format(r) if r else "" for r in refs]
    else:
        root = Path(image_dir).resolve()
        index = ImageDirIndex()
        paths = []
        for ref in refs:
            if not ref:
                paths.append("")
            elif image_template.endswith(".*"):
                rel = Path(image_template[:-2].format(ref))
                paths.append(index.by_stem([(root / rel).parent], rel.name))
            else:
                rel = Path(image_template.format(ref))
                paths.append(index.by_name([(root / rel).parent], rel.name))
        df["image_path"] = paths

    keep = pd.Series(True, index=df.index)
    dropped: list[dict[str, str]] = []

    def drop(mask: pd.Series, reason: str, detail: str) -> int:
        nonlocal keep
        mask = mask & keep
        for i in mask[mask].index:
            dropped.append(
                {
                    "item_id": str(df.at[i, "item_id"]),
                    "image_path": str(df.at[i, "image_path"]),
                    "reason": reason,
                    "detail": detail.format(ref=refs[i]),
                }
            )
        keep &= ~mask
        return int(mask.sum())

    report["empty_id"] = drop(df["item_id"] == "", "empty_id", "empty id")
    report["duplicate_ids"] = drop(df["item_id"].duplicated(), "duplicate_id", "id seen on an earlier row")
    report["empty_label"] = drop(df["label"] == "", "empty_label", "empty label") if label_column else 0
    if image_dir is not None:
        allowed = [Path(r).resolve() for r in (image_roots or [image_dir])]
        outside = df["image_path"].map(
            lambda p: bool(p) and not any(Path(p).resolve().is_relative_to(r) for r in allowed)
        )
        report["images_outside_roots"] = drop(
            outside, "outside_image_root", f"{{ref}} lies outside the image roots {[str(r) for r in allowed]}"
        )
        unresolved = (df["image_path"] == "") & keep
        report["images_resolved"] = int((keep & ~unresolved).sum())
        report["images_missing"] = drop(
            df["image_path"] == "", "image_missing", f"no file for {{ref}} in {root}"
        )
    for n in report.get("bad_line_numbers", []):
        dropped.append({"item_id": "", "image_path": "", "reason": "malformed_line", "detail": f"line {n}"})
    out = validate_catalogue(df[keep].reset_index(drop=True))
    report["rows"] = len(out)
    report["dropped"] = dropped
    out.attrs["report"] = report
    log.info(
        "%s: %d rows read, %d kept (%d bad lines, %d duplicate ids, %d without label, %s images missing)",
        path,
        report["rows_read"],
        len(out),
        report["bad_lines"],
        report["duplicate_ids"],
        report["empty_label"],
        report.get("images_missing", "n/a"),
    )
    return out
