"""``imgsearch-data``: generate the built-in demo catalogue, or inspect any catalogue source.

Examples::

    imgsearch-data generate --root data/demo --seed 0 --products-per-class 12 --image-size 128
    imgsearch-data inspect data/demo/current_farfetch_listings.csv --image-dir data/demo
    imgsearch-data inspect meta_Clothing_Shoes_and_Jewelry.json.gz
    imgsearch-data inspect outputs/2024-01-01/12-00-00/catalogue.csv
    imgsearch-data inspect styles.csv --kind csv --image-dir images --label-column articleType
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

KINDS = ("auto", "farfetch", "amazon", "catalogue", "csv")


def detect_kind(path: Path) -> str:
    """Which reader a file needs, from its name and (for CSV) its header line."""
    name = path.name.lower()
    if name.endswith((".json", ".json.gz", ".jsonl", ".jsonl.gz", ".txt")):
        return "amazon"
    if name.endswith((".parquet", ".pq")):
        return "csv"
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        header = fh.readline()
    if "images.cutOut" in header and "shortDescription" in header:
        return "farfetch"
    cols = {c.strip().strip('"') for c in header.split(",")}
    if {"item_id", "image_path", "label"} <= cols:
        return "catalogue"
    return "csv"


def read_any(
    path: str | Path, kind: str = "auto", image_dir: str | None = None, **csv_kwargs: Any
) -> pd.DataFrame:
    """Read a Farfetch CSV, Amazon metadata, a catalogue table or a generic CSV."""
    from imgsearch.data import read_amazon, read_catalogue, read_csv_catalogue, read_farfetch

    p = Path(path)
    kind = detect_kind(p) if kind == "auto" else kind
    if kind == "farfetch":
        return read_farfetch(p, image_dir)
    if kind == "amazon":
        return read_amazon(p, image_dir)
    if kind == "catalogue":
        return read_catalogue(p)
    return read_csv_catalogue(p, image_dir, **csv_kwargs)


def _counts_table(title: str, series: pd.Series) -> Any:
    from rich.table import Table

    table = Table(title=title)
    table.add_column(series.name or "value")
    table.add_column("images", justify="right")
    for value, n in series.value_counts().items():
        table.add_row(str(value) if value != "" else "(empty)", str(n))
    return table


def cmd_inspect(args: argparse.Namespace) -> int:
    from rich.console import Console

    console = Console()
    csv_kwargs = {
        k: v
        for k, v in {
            "image_column": args.image_column,
            "image_template": args.image_template,
            "label_column": args.label_column,
        }.items()
        if v is not None
    }
    df = read_any(args.path, args.kind, args.image_dir, **csv_kwargs)
    console.print(
        f"[b]{args.path}[/b]: {len(df)} images, {df['product_id'].nunique()} products, "
        f"{df['label'].nunique()} labels",
        soft_wrap=True,
    )
    for column in ("label", "split", "view"):
        console.print(_counts_table(f"images per {column}", df[column]))
    report = df.attrs.get("report")
    if report:
        console.print("[b]reader report[/b]")
        console.print_json(json.dumps(report, default=str))
    return 0 if len(df) else 1


def cmd_generate(args: argparse.Namespace) -> int:
    from rich.console import Console

    from imgsearch.data.demo import generate_demo

    root = generate_demo(
        args.root, seed=args.seed, products_per_class=args.products_per_class, image_size=args.image_size
    )
    Console().print(f"demo catalogue written to [b]{root}[/b]")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="imgsearch-data", description=__doc__.split("\n\n")[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    gen = sub.add_parser("generate", help="write the built-in demo catalogue (Farfetch + Amazon 2014 layout)")
    gen.add_argument("--root", default="data/demo", help="output folder (default: data/demo)")
    gen.add_argument("--seed", type=int, default=0)
    gen.add_argument("--products-per-class", type=int, default=12)
    gen.add_argument("--image-size", type=int, default=128, help="side of the square images in pixels")
    gen.set_defaults(func=cmd_generate)

    ins = sub.add_parser(
        "inspect", help="read a source and print counts per label / split / view and the report"
    )
    ins.add_argument("path", help="Farfetch CSV, Amazon meta .json[.gz], catalogue.csv or any CSV/Parquet")
    ins.add_argument("--kind", choices=KINDS, default="auto", help="reader to use (default: from the file)")
    ins.add_argument("--image-dir", default=None, help="resolve images under this folder (default: don't)")
    ins.add_argument("--image-column", default=None, help="generic CSV: image id/path column (default: id)")
    ins.add_argument(
        "--image-template", default=None, help="generic CSV: file name template (default: {}.jpg)"
    )
    ins.add_argument("--label-column", default=None, help="generic CSV: label column (default: articleType)")
    ins.set_defaults(func=cmd_inspect)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Console script ``imgsearch-data``."""
    args = build_parser().parse_args(argv)
    from rich.logging import RichHandler

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(show_path=False)],
    )
    try:
        return int(args.func(args))
    except (FileNotFoundError, ValueError) as exc:
        logging.getLogger("imgsearch-data").error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())
