"""Amazon product metadata (J. McAuley) -> catalogue, both releases, detected per file.

2014 release (``meta_<Category>.json[.gz]``)
    one Python-literal dict per line (``str(dict)``: single quotes), parsed with
    ``ast.literal_eval`` (never ``eval``, never ``json``). Keys ``asin, title, price, imUrl,
    related, salesRank, brand, categories``. Label: level ``label_level`` (default the top) of
    the first path in ``categories``. Image: ``imUrl``.
2018 release (Ni, Li & McAuley)
    strict JSON, one object per line (a JSON array wrapping the lines, ``[`` ... ``,`` ... ``]``,
    is accepted too). Label: ``category[label_level]`` with HTML debris removed, else
    ``main_cat``. Image: first ``imageURLHighRes`` (``imageURL`` holds tiny thumbnails).

A file's release is decided by its first parseable line; every other line is parsed the same
way, and lines that fail are counted and reported with their line numbers (never a crash).

Images come from a local directory: rule ``asin`` = ``<image_dir>/<asin>.<any image ext>``,
rule ``url_name`` = the URL's file name (also tried URL-decoded and without Amazon's
``._SX38_...`` size suffix). ``.gif`` "no image" placeholder URLs count as no image.
"""

from __future__ import annotations

import ast
import glob
import gzip
import html
import json
import logging
import os
import re
import zlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import numpy as np
import pandas as pd

from imgsearch.data.images import ImageDirIndex, url_file_name
from imgsearch.data.schema import empty_catalogue, parse_price, validate_catalogue

log = logging.getLogger(__name__)

IMAGE_RULES = ("asin", "url_name")
_MAX_LINE_NUMBERS = 1000
_TAG = re.compile(r"<[^>]*>")
_ALT = re.compile(r'alt="([^"]*)"')
_SIZE_SUFFIX = re.compile(r"\._[^/]*_(?=\.[A-Za-z0-9]+$)")


def _expand(meta_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]]) -> list[Path]:
    items = [meta_path] if isinstance(meta_path, str | os.PathLike) else list(meta_path)
    files: list[Path] = []
    for item in items:
        text = str(item)
        if any(ch in text for ch in "*?["):
            hits = sorted(glob.glob(text))
            if not hits:
                raise FileNotFoundError(f"no Amazon metadata file matches {text}")
            files.extend(Path(h) for h in hits)
        else:
            p = Path(text)
            if not p.is_file():
                raise FileNotFoundError(f"Amazon metadata file not found: {p}")
            files.append(p)
    if not files:
        raise ValueError("read_amazon needs at least one metadata file")
    return files


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8", errors="replace") as fh:
        yield from enumerate(fh, start=1)


def _unwrap(line: str) -> str:
    """One record of the JSON-array-wrapped variant: drop the ``[`` / ``,`` / ``]`` around it."""
    text = line.strip()
    if text.startswith("["):
        text = text[1:].lstrip()
    if text.endswith("]"):
        text = text[:-1].rstrip()
    if text.endswith(","):
        text = text[:-1].rstrip()
    return text


def _parse_json(text: str) -> Any:
    return json.loads(text)


def _parse_literal(text: str) -> Any:
    return ast.literal_eval(text)


def clean_html(text: Any) -> str:
    """Category / main_cat text without HTML debris (``</span>``, ``<img alt="X">`` -> ``X``)."""
    if not isinstance(text, str):
        return ""
    alt = _ALT.search(text)
    if alt and not _TAG.sub("", text).strip():
        text = alt.group(1)
    return " ".join(html.unescape(_TAG.sub(" ", text)).split())


def _is_placeholder(url: str) -> bool:
    low = url.lower()
    return low.endswith(".gif") or "no-img" in low or "no_image" in low


def _record_2014(rec: dict[str, Any], label_level: int) -> dict[str, Any]:
    cats = rec.get("categories") or []
    first = cats[0] if cats and isinstance(cats[0], list | tuple) else []
    label = str(first[label_level]).strip() if len(first) > label_level else ""
    url = str(rec.get("imUrl") or "").strip()
    return {
        "label": label,
        "title": rec.get("title") or "",
        "brand": rec.get("brand") or "",
        "price": parse_price(rec.get("price")),
        "url": url,
    }


def _record_2018(rec: dict[str, Any], label_level: int) -> dict[str, Any]:
    cats = [c for c in (clean_html(c) for c in (rec.get("category") or [])) if c]
    label = cats[label_level] if len(cats) > label_level else clean_html(rec.get("main_cat"))
    urls = rec.get("imageURLHighRes") or rec.get("imageURL") or []
    if isinstance(urls, str):
        urls = [urls]
    return {
        "label": label,
        "title": clean_html(rec.get("title")),
        "brand": clean_html(rec.get("brand")),
        "price": parse_price(rec.get("price")),
        "url": str(urls[0]).strip() if urls else "",
    }


def _read_file(path: Path, label_level: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Records of one file and its report (release, lines, malformed line numbers)."""
    rows: list[dict[str, Any]] = []
    fmt: str | None = None
    parse = None
    n_lines = 0
    malformed: list[int] = []
    errors: list[str] = []
    truncated = ""
    try:
        for lineno, line in _lines(path):
            n_lines = lineno
            text = _unwrap(line)
            if not text:
                continue
            if fmt is None:
                try:
                    rec, fmt, parse = _parse_json(text), "2018", _parse_json
                except ValueError:
                    try:
                        rec, fmt, parse = _parse_literal(text), "2014", _parse_literal
                    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                        malformed.append(lineno)
                        errors.append(f"line {lineno}: {type(exc).__name__}: {str(exc)[:100]}")
                        continue
            else:
                try:
                    rec = parse(text)  # type: ignore[misc]
                except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError) as exc:
                    malformed.append(lineno)
                    if len(errors) < 20:
                        errors.append(f"line {lineno}: {type(exc).__name__}: {str(exc)[:100]}")
                    continue
            if not isinstance(rec, dict) or not str(rec.get("asin") or "").strip():
                malformed.append(lineno)
                if len(errors) < 20:
                    errors.append(f"line {lineno}: not a record with an 'asin'")
                continue
            fields = _record_2014(rec, label_level) if fmt == "2014" else _record_2018(rec, label_level)
            fields["asin"] = str(rec["asin"]).strip()
            fields["line"] = lineno
            rows.append(fields)
    except (EOFError, OSError, zlib.error) as exc:  # a cut-off .gz: keep what was read before the cut
        truncated = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        log.warning(
            "%s is truncated (%s) after line %d; kept the %d record(s) read before the cut",
            path,
            truncated,
            n_lines,
            len(rows),
        )
    if not rows and fmt is None and n_lines:
        # a pretty-printed JSON array: no line is a record on its own
        try:
            with (gzip.open if path.suffix == ".gz" else open)(path, "rt", encoding="utf-8") as fh:
                data = json.load(fh)
            if isinstance(data, list):
                fmt, malformed, errors = "2018", [], []
                for i, rec in enumerate(data):
                    if isinstance(rec, dict) and rec.get("asin"):
                        fields = _record_2018(rec, label_level)
                        fields.update(asin=str(rec["asin"]).strip(), line=i + 1)
                        rows.append(fields)
        except ValueError:
            pass
    report = {
        "file": str(path),
        "format": fmt or "unknown",
        "lines": n_lines,
        "records": len(rows),
        "malformed": len(malformed),
        "malformed_lines": malformed[:_MAX_LINE_NUMBERS],
        "malformed_examples": errors[:20],
        "truncated": truncated,
    }
    if malformed:
        log.warning(
            "%s: %d malformed line(s) skipped, line numbers %s%s",
            path,
            len(malformed),
            malformed[:20],
            " ..." if len(malformed) > 20 else "",
        )
    return rows, report


def _url_candidates(url: str) -> list[str]:
    name = url_file_name(url)
    out = [name, unquote(name), _SIZE_SUFFIX.sub("", name), _SIZE_SUFFIX.sub("", unquote(name))]
    return list(dict.fromkeys(n for n in out if n))


def read_amazon(
    meta_path: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    image_dir: str | os.PathLike[str] | None = None,
    *,
    image_rule: str = "asin",
    label_level: int = 0,
) -> pd.DataFrame:
    """Read Amazon metadata file(s) into the catalogue table (one row per product, view ``main``).

    Args:
        meta_path: a ``.json`` / ``.json.gz`` file, a list of them, or a glob pattern.
        image_dir: folder of the downloaded images. When given, products whose image is not
            found (or that only have a placeholder) are dropped and counted; when ``None`` every
            product with a label is kept with ``image_path=""``.
        image_rule: ``"asin"`` or ``"url_name"`` (see the module docstring).
        label_level: which level of the category path is the label (0 = top level, as in the
            source study; e.g. 3 for ``Clothing, Shoes & Jewelry > Women > Clothing > Dresses``).

    Returns:
        The catalogue table; ``df.attrs["report"]`` has per-file release, line counts and the
        line numbers of malformed lines, duplicates, products without label / image.
    """
    if image_rule not in IMAGE_RULES:
        raise ValueError(f"image_rule must be one of {IMAGE_RULES}, got {image_rule!r}")
    files = _expand(meta_path)
    rows: list[dict[str, Any]] = []
    file_reports = []
    for path in files:
        file_rows, file_report = _read_file(path, label_level)
        for r in file_rows:
            r["file"] = str(path)
        rows.extend(file_rows)
        file_reports.append(file_report)
    report: dict[str, Any] = {
        "source_files": [str(p) for p in files],
        "files": file_reports,
        "records": len(rows),
        "malformed": sum(r["malformed"] for r in file_reports),
        "truncated_files": [r["file"] for r in file_reports if r["truncated"]],
    }
    if not rows:
        out = empty_catalogue()
        report.update(duplicate_ids=0, no_label=0, rows=0)
        out.attrs["report"] = report
        log.warning("%s: no usable Amazon record", ", ".join(map(str, files)))
        return out
    df = pd.DataFrame(rows)
    dup = df["asin"].duplicated()
    report["duplicate_ids"] = int(dup.sum())
    df = df[~dup].reset_index(drop=True)
    no_label = df["label"].astype(str).str.strip() == ""
    report["no_label"] = int(no_label.sum())
    df = df[~no_label].reset_index(drop=True)
    placeholder = df["url"].map(_is_placeholder)
    report["placeholder_images"] = int(placeholder.sum())
    report["no_image_url"] = int((df["url"] == "").sum())

    root = Path(image_dir).resolve() if image_dir is not None else None
    report["image_dir"] = str(root) if root is not None else None
    if root is None:
        paths = [""] * len(df)
    else:
        index = ImageDirIndex()
        paths = []
        for asin, url, ph in zip(df["asin"], df["url"], placeholder, strict=True):
            if image_rule == "asin":
                paths.append(index.by_stem([root], asin))
            elif ph or not url:
                paths.append("")
            else:
                paths.append(next((p for n in _url_candidates(url) if (p := index.by_name([root], n))), ""))
    table = pd.DataFrame(
        {
            "item_id": df["asin"],
            "product_id": df["asin"],
            "view": "main",
            "image_path": paths,
            "label": df["label"].astype(str).str.strip(),
            "split": "",
            "title": df["title"].astype(str).str.strip(),
            "brand": df["brand"].astype(str).str.strip(),
            "price": df["price"].astype(float),
            "gender": "",
            "currency": np.where(df["price"].notna(), "USD", ""),
            "source": "amazon",
            "image_url": df["url"].where(~placeholder, ""),
            "url": "https://www.amazon.com/dp/" + df["asin"].astype(str),  # the product page, by ASIN
            "meta_file": df["file"],
            "meta_line": df["line"].astype(str),
        }
    )
    if root is not None:
        found = table["image_path"] != ""
        report["images_resolved"] = int(found.sum())
        report["images_missing"] = int((~found).sum())
        table = table[found].reset_index(drop=True)
    out = validate_catalogue(table)
    report["rows"] = len(out)
    out.attrs["report"] = report
    log.info(
        "%s: %d records (%s), %d malformed lines, %d duplicates, %d without label, images %s -> %d rows",
        ", ".join(p.name for p in files),
        report["records"],
        "/".join(sorted({r["format"] for r in file_reports})),
        report["malformed"],
        report["duplicate_ids"],
        report["no_label"],
        f"{report['images_resolved']} resolved, {report['images_missing']} missing"
        if root
        else "not resolved",
        len(out),
    )
    return out
