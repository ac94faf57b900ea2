"""The demo catalogue's Amazon 2014-style metadata file: one Python ``str(dict)`` per line, like the real
release (read with ``ast.literal_eval``, not ``json``), with the optional keys sometimes missing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

AMAZON_META = "meta_Demo.json"
AMAZON_DIR = "amazon-img"
_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_ALNUM_MIXED = _ALNUM + "abcdefghijklmnopqrstuvwxyz"


def _asin(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        asin = "B0" + "".join(rng.choice(list(_ALNUM), 8))
        if asin not in used:
            used.add(asin)
            return asin


def _amazon_record(
    row: dict[str, Any], category: str, asin: str, related: list[str], rng: np.random.Generator
) -> dict:
    """A 2014-style record; like the real files, optional keys are sometimes missing."""
    title = str(row["shortDescription"]).strip()
    rec: dict[str, Any] = {"asin": asin}
    if rng.random() < 0.4:
        rec["description"] = f"{title[0].upper()}{title[1:]} by {row['brand.name']}. It's a demo product."
    rec["title"] = f"{row['brand.name']} {title[0].upper()}{title[1:]}"
    if rng.random() < 0.85:
        rec["price"] = round(float(row["priceInfo.finalPrice"]) * float(rng.uniform(0.3, 0.6)), 2)
    rec["salesRank"] = {"Clothing, Shoes & Jewelry": int(rng.integers(1_000, 900_000))}
    rec["imUrl"] = (
        "http://ecx.images-amazon.com/images/I/"
        + "".join(rng.choice(list(_ALNUM_MIXED), 11))
        + "._SY300_.jpg"
    )
    if rng.random() < 0.8:
        rec["brand"] = row["brand.name"]
    paths = [[category, str(row["gender"]).capitalize()]]
    if rng.random() < 0.3:  # the label is the top level of the FIRST path; later paths are noise
        paths.append(["Clothing, Shoes & Jewelry", str(row["gender"]).capitalize()])
    rec["categories"] = paths
    if related and rng.random() < 0.7:
        rec["related"] = (
            {"also_viewed": related[:4], "also_bought": related[4:6]}
            if len(related) > 4
            else {"also_viewed": related}
        )
    return rec


def write_amazon(root: Path, seed: int, rows: list[dict], cats: list[str], cutouts: list[bytes]) -> None:
    rng = np.random.default_rng([seed, 11])
    used: set[str] = set()
    asins = [_asin(rng, used) for _ in rows]
    by_cat: dict[str, list[str]] = {}
    for asin, cat in zip(asins, cats, strict=True):
        by_cat.setdefault(cat, []).append(asin)
    lines = []
    for row, cat, asin, image in zip(rows, cats, asins, cutouts, strict=True):
        related = [a for a in by_cat[cat] if a != asin][:6]
        lines.append(str(_amazon_record(row, cat, asin, related, rng)))
        (root / AMAZON_DIR / f"{asin}.jpg").write_bytes(image)
    (root / AMAZON_META).write_text("\n".join(lines) + "\n", encoding="utf-8")
