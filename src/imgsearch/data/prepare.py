"""Turn a reader's table into the table a run trains and evaluates on.

Steps, in this order (each one counted in ``df.attrs["report"]`` and ``skipped.json``):

0. with ``title_colour``, that column is filled from each title's colour words where it is empty
   (:mod:`imgsearch.data.title_colour`);
1. rows without a label are dropped;
2. **verify**: every image is decoded once (:func:`imgsearch.data.images.verify_images`); rows
   whose image fails are dropped with their reason;
3. **dedup**: rows whose image file has the same bytes (sha1) as an earlier row are dropped,
   across products too (the same photo listed twice would leak between train and test);
4. **top-k classes**: keep the ``top_k_classes`` classes with the most images (ties by name);
5. **rare classes**: a class with fewer than ``min_per_class`` split units (products when
   ``group_by_product``, else images) is dropped, or merged into ``other``;
6. **cap**: at most ``max_per_class`` images per class, sampled as whole products (seeded), so
   a product's views stay together;
7. **split**: per class, the products are shuffled (seeded by ``seed`` and the class name, so a
   class's split does not depend on the other classes) and cut by ``split`` fractions with the
   largest-remainder method; every split with a positive fraction gets at least one product of
   each class that has enough products (>= 3 for 7:2:1). All views of a product land in one split.
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from imgsearch.data.images import SkipReport, verify_images
from imgsearch.data.schema import SPLITS, validate_catalogue
from imgsearch.data.title_colour import add_title_colour
from imgsearch.utils.atomic import atomic_write_json
from imgsearch.utils.progress import progress

log = logging.getLogger(__name__)


def _sources(df: pd.DataFrame) -> str:
    files = (df.attrs.get("report") or {}).get("source_files") or []
    if not files and "source" in df.columns and len(df):
        files = sorted(set(df["source"]) - {""})
    return ", ".join(map(str, files)) or "<in-memory table>"


def _hash_files(df: pd.DataFrame, report: SkipReport) -> pd.DataFrame:
    """content_hash without decoding (``verify=False``); unreadable files are skipped."""
    hashes, keep = [], []
    rows = progress(zip(df["item_id"], df["image_path"], strict=True), total=len(df), desc="hashing images",
                    logger=log, unit="image")  # fmt: skip
    for item_id, path in rows:
        try:
            hashes.append(hashlib.sha1(Path(path).read_bytes()).hexdigest() if path else "")
            keep.append(bool(path))
            if not path:
                report.add(item_id, path, "missing", "no image path")
        except FileNotFoundError:
            hashes.append("")
            keep.append(False)
            report.add(item_id, path, "missing", "no such file")
        except OSError as exc:
            hashes.append("")
            keep.append(False)
            report.add(item_id, path, "unreadable", str(exc))
    out = df.assign(content_hash=hashes)
    return out[keep].reset_index(drop=True)


def allocate(n: int, fractions: Sequence[float]) -> list[int]:
    """Split ``n`` units by ``fractions`` (largest remainder); each positive fraction gets >= 1
    unit when ``n`` allows it (the units are taken from the largest share)."""
    fr = np.asarray(fractions, dtype=float)
    exact = fr * n
    counts = np.floor(exact).astype(int)
    order = np.argsort(-(exact - counts), kind="stable")
    for i in order[: n - counts.sum()]:
        counts[i] += 1
    positive = np.flatnonzero(fr > 0)
    if n >= len(positive):
        for i in positive:
            if counts[i] == 0:
                donor = int(np.argmax(counts))
                counts[donor] -= 1
                counts[i] += 1
    elif n > 0:  # fewer units than splits: fill the splits in order of their fraction
        counts = np.zeros_like(counts)
        for i in np.argsort(-fr, kind="stable")[:n]:
            counts[i] = 1
    return counts.tolist()


def _class_rng(seed: int, label: str) -> np.random.Generator:
    return np.random.default_rng([seed, zlib.crc32(label.encode("utf-8"))])


def split_catalogue(
    df: pd.DataFrame,
    fractions: Sequence[float] = (0.7, 0.2, 0.1),
    *,
    seed: int = 42,
    group_column: str = "product_id",
) -> pd.Series:
    """Stratified (by label), grouped (by ``group_column``) split; returns the split per row."""
    if len(fractions) != 3 or any(f < 0 for f in fractions) or sum(fractions) <= 0:
        raise ValueError(
            f"split must be three non-negative fractions (train, val, test), got {tuple(fractions)}"
        )
    fr = np.asarray(fractions, dtype=float) / float(sum(fractions))
    unit_label = df.groupby(group_column, sort=False)["label"].first()
    assignment: dict[str, str] = {}
    for label in sorted(unit_label.unique()):
        units = sorted(unit_label.index[unit_label == label])
        rng = _class_rng(seed, label)
        units = [units[i] for i in rng.permutation(len(units))]
        counts = allocate(len(units), fr)
        start = 0
        for name, count in zip(SPLITS, counts, strict=True):
            for u in units[start : start + count]:
                assignment[u] = name
            start += count
    return df[group_column].map(assignment)


def _cap_per_class(df: pd.DataFrame, cap: int, seed: int, group_column: str) -> pd.DataFrame:
    keep_units: set[str] = set()
    sizes = df.groupby(group_column, sort=False).size()
    unit_label = df.groupby(group_column, sort=False)["label"].first()
    for label in sorted(unit_label.unique()):
        units = sorted(unit_label.index[unit_label == label])
        rng = _class_rng(seed + 1, label)
        total = 0
        for i in rng.permutation(len(units)):
            u = units[i]
            if total + sizes[u] > cap and total > 0:
                continue
            keep_units.add(u)
            total += sizes[u]
            if total >= cap:
                break
    return df[df[group_column].isin(keep_units)]


def prepare_catalogue(
    df: pd.DataFrame,
    *,
    verify: bool = True,
    dedup: bool = True,
    top_k_classes: int | None = None,
    max_per_class: int | None = None,
    min_per_class: int = 2,
    rare_classes: str = "drop",
    split: Sequence[float] = (0.7, 0.2, 0.1),
    seed: int = 42,
    group_by_product: bool = True,
    keep_existing_split: bool = False,
    report_dir: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    title_colour: str | None = None,
) -> pd.DataFrame:
    """Verify, deduplicate, filter, cap and split a catalogue table (see the module docstring).

    Args:
        df: a reader's table (images resolved).
        verify: decode each image once and drop failures (strongly recommended).
        dedup: drop exact-duplicate images (same bytes), keeping the first row.
        top_k_classes: keep only the k most frequent classes (``None``: all).
        max_per_class: at most this many images per class, whole products sampled (``None``: all).
        min_per_class: classes with fewer split units than this are rare.
        rare_classes: ``"drop"`` rare classes, or merge them into ``"other"``.
        split: (train, val, test) fractions.
        seed: makes sampling and splitting deterministic.
        group_by_product: keep all views of a product in one split (else rows split alone).
        keep_existing_split: keep non-empty ``split`` values and split only the other rows.
        report_dir: where ``skipped.json`` goes (``None``: not written).
        workers: threads for image verification.
        title_colour: a column (e.g. ``colour``) to fill from the titles' colour words, for a colour head
            on a catalogue without colours (``None``: none).

    Raises:
        ValueError: nothing usable remains; the message names the source file(s) and why.
    """
    if rare_classes not in ("drop", "other"):
        raise ValueError(f"rare_classes must be 'drop' or 'other', got {rare_classes!r}")
    sources = _sources(df)
    attrs_report = dict(df.attrs.get("report") or {})
    if title_colour:
        df = add_title_colour(df, str(title_colour))
    table = validate_catalogue(df)
    group = "product_id" if group_by_product else "item_id"
    counts: dict[str, int] = {"input_rows": len(table)}
    images = SkipReport(total=len(table))

    def fail(reason: str) -> None:
        raise ValueError(f"no usable catalogue item from {sources}: {reason}")

    if table.empty:
        fail("the reader returned no rows (check the image directory and the reader report)")
    no_label = table["label"].str.strip() == ""
    counts["no_label"] = int(no_label.sum())
    no_label_items = [
        {"item_id": i, "image_path": p, "reason": "no_label", "detail": "empty label"}
        for i, p in zip(table.loc[no_label, "item_id"], table.loc[no_label, "image_path"], strict=True)
    ]
    table = table[~no_label].reset_index(drop=True)
    if table.empty:
        fail(f"all {counts['input_rows']} rows have an empty label")

    if verify:
        table, images = verify_images(table, workers=workers)
    elif dedup and "content_hash" not in table.columns:
        table = _hash_files(table, images)
    if table.empty:
        fail(f"every image was skipped ({images.summary()})")

    dup_items: list[dict[str, str]] = []
    if dedup:
        first = table.groupby("content_hash", sort=False)["item_id"].transform("first")
        is_dup = table["content_hash"].duplicated()
        for item_id, path, orig in zip(
            table.loc[is_dup, "item_id"], table.loc[is_dup, "image_path"], first[is_dup], strict=True
        ):
            dup_items.append(
                {
                    "item_id": item_id,
                    "image_path": path,
                    "reason": "duplicate",
                    "detail": f"same bytes as {orig}",
                }
            )
        table = table[~is_dup].reset_index(drop=True)
    counts["duplicate"] = len(dup_items)

    if top_k_classes is not None:
        freq = table["label"].value_counts()
        ranked = sorted(freq.items(), key=lambda kv: (-kv[1], kv[0]))
        keep = {label for label, _ in ranked[: int(top_k_classes)]}
        outside = ~table["label"].isin(keep)
        counts["not_in_top_k"] = int(outside.sum())
        table = table[~outside].reset_index(drop=True)

    units_per_class = table.groupby("label")[group].nunique()
    rare = sorted(units_per_class.index[units_per_class < min_per_class])
    is_rare = table["label"].isin(rare)
    counts["rare_class"] = int(is_rare.sum())
    if rare_classes == "other":
        table.loc[is_rare, "label"] = "other"
        counts["merged_into_other"] = counts.pop("rare_class")
        # "other" itself can still be too small to split
        if 0 < table.loc[table["label"] == "other", group].nunique() < min_per_class:
            small = table["label"] == "other"
            counts["rare_class"] = int(small.sum())
            table = table[~small]
    else:
        table = table[~is_rare]
    table = table.reset_index(drop=True)

    if max_per_class is not None:
        before = len(table)
        table = _cap_per_class(table, int(max_per_class), seed, group).reset_index(drop=True)
        counts["over_class_cap"] = before - len(table)

    if table.empty:
        fail(
            f"no class is left after filtering (min_per_class={min_per_class}, "
            f"top_k_classes={top_k_classes}); "
            f"counts: {counts}"
        )

    existing = table["split"].isin(SPLITS) if keep_existing_split else pd.Series(False, index=table.index)
    if (~existing).any():
        todo = table[~existing]
        table.loc[~existing, "split"] = split_catalogue(todo, split, seed=seed, group_column=group).to_numpy()
    counts["rows"] = len(table)
    for name in SPLITS:
        counts[name] = int((table["split"] == name).sum())

    skipped = images.to_dict()
    skipped["source_files"] = sources
    skipped["counts"] = {**skipped["counts"], **{k: v for k, v in counts.items() if k not in ("input_rows",)}}
    # what the reader dropped before prepare saw the table (ids, labels, missing images, bad lines)
    reader_items = [dict(d) for d in attrs_report.get("dropped") or []]
    for item in reader_items:
        skipped["counts"][item["reason"]] = skipped["counts"].get(item["reason"], 0) + 1
    skipped["items"] = reader_items + no_label_items + skipped["items"] + dup_items
    filtered = sum(counts.get(k, 0) for k in ("not_in_top_k", "rare_class", "over_class_cap"))
    skipped["rows_read"] = attrs_report.get("rows_read", counts["input_rows"])
    skipped["dropped"] = len(skipped["items"]) + filtered  # every row not in the catalogue, any reason
    skipped["dropped_classes"] = rare if rare_classes == "drop" else []
    skipped["merged_classes"] = rare if rare_classes == "other" else []
    if report_dir is not None:
        atomic_write_json(Path(report_dir) / "skipped.json", skipped)
    out = validate_catalogue(table)
    attrs_report.pop("dropped", None)  # listed in skipped.json; not carried in every frame's attrs
    out.attrs["report"] = {**attrs_report, "prepare": {**counts, "images": images.to_dict() | {"items": []}}}
    log.info(
        "prepared %s: %d rows in %d classes (train %d / val %d / test %d); skipped: %s, %d duplicates",
        sources,
        len(out),
        out["label"].nunique(),
        counts["train"],
        counts["val"],
        counts["test"],
        images.summary(),
        counts["duplicate"],
    )
    return out
