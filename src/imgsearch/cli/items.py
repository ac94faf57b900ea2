"""``imgsearch-items``: change a built index's catalogue live, by item id, without a rebuild.

    imgsearch-items add     --index DIR --csv new_products.csv       # rows: item_id, image_path, label, ...
    imgsearch-items add     --index DIR --id sku-9 --image p.jpg --label bags --set title="Red tote"
    imgsearch-items update  --index DIR --id sku-9 --image new.jpg   # new photo (and metadata)
    imgsearch-items update  --index DIR --id sku-9 --set price=59    # metadata only, no re-embedding
    imgsearch-items remove  --index DIR sku-9 sku-10
    imgsearch-items similar --index DIR sku-9 -k 5                   # "more like this"
    imgsearch-items show    --index DIR [ID ...]                     # the rows (all: a count)
    imgsearch-items compact --index DIR                              # snapshot; drops HNSW tombstones

Each change is one transaction of the live item table (``<index>/live/items.sqlite``,
:mod:`imgsearch.retrieval.live`): a command killed midway changes nothing. Searches and a running
``imgsearch-serve`` see the change at their next query. Prints a JSON report; bad input exits with 2 and
one line saying why.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2


def _key_values(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"--set {pair!r} must look like column=value")
        out[key.strip()] = value
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="imgsearch-items", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        c = sub.add_parser(name, help=help_text)
        c.add_argument("--index", required=True, help="index directory written by imgsearch-index")
        c.add_argument("--runtime", choices=("auto", "torch", "onnx", "onnx-int8"), default="auto")
        c.add_argument("--device", default="cpu")
        return c

    for name in ("add", "update"):
        c = command(name, f"{name} items (embeds their photos)")
        c.add_argument("--csv", help="a catalogue table (schema of docs/architecture.md): one row an item")
        c.add_argument("--id", dest="item_id", help="one item's id (instead of --csv)")
        c.add_argument("--image", help="its photo")
        c.add_argument("--label", help="its category")
        c.add_argument("--set", action="append", default=[], metavar="COLUMN=VALUE", help="other columns")
    c = command("remove", "remove items by id")
    c.add_argument("ids", nargs="+")
    c.add_argument("--missing-ok", action="store_true", help="ignore ids that are not in the catalogue")
    c = command("similar", "items most like a stored item")
    c.add_argument("item_id")
    c.add_argument("-k", type=int, default=10)
    c.add_argument("--group", action="store_true", help="one result per product")
    c.add_argument("--filter", action="append", default=[], metavar="COLUMN=VALUE")
    c = command("show", "print item rows")
    c.add_argument("ids", nargs="*")
    command("compact", "write a snapshot, tombstones removed")
    return p.parse_args(argv)


def _rows_from_args(args: argparse.Namespace) -> Any:
    import pandas as pd

    from imgsearch.data.schema import read_catalogue

    if args.csv and args.item_id:
        raise ValueError("give --csv or --id, not both")
    if args.csv:
        rows = read_catalogue(args.csv)
        base = Path(args.csv).resolve().parent  # relative image paths are relative to the table
        rows["image_path"] = [
            str(base / p) if p and not Path(p).is_absolute() else p for p in rows.image_path
        ]
        return rows
    if not args.item_id:
        raise ValueError("give --csv FILE or --id ID")
    row = {"item_id": args.item_id, **_key_values(args.set)}
    if args.image:
        row["image_path"] = str(Path(args.image).resolve())
    if args.label is not None:
        row["label"] = args.label
    return pd.DataFrame([row])


def run(args: argparse.Namespace) -> dict[str, Any]:
    from imgsearch.retrieval.filters import parse_filters
    from imgsearch.retrieval.search import Searcher

    searcher = Searcher.from_index_dir(args.index, device=args.device, runtime=args.runtime, live=True)
    if args.command in ("add", "update"):
        rows = _rows_from_args(args)
        if args.command == "update" and "image_path" not in rows.columns:
            # metadata only: the photo and its vector stay
            (values,) = rows.drop(columns="item_id").to_dict("records")
            searcher.update_metadata(str(rows.item_id.iloc[0]), values)
            return {"updated": 1, "item_ids": [str(rows.item_id.iloc[0])], "reembedded": 0}
        if args.command == "update":
            current = {str(i): searcher.item(str(i)) for i in rows.item_id}
            for column in ("label", "product_id", "title", "brand", "price"):  # keep what was not given
                if column not in rows.columns:
                    rows[column] = [current[str(i)][column] for i in rows.item_id]
        elif "label" not in rows.columns:
            raise ValueError("a new item needs --label (its category), or a label column in --csv")
        report = searcher.add_items(rows, mode="add" if args.command == "add" else "update")
        return {("added" if args.command == "add" else "updated"): report["added"], **report}
    if args.command == "remove":
        return {"removed": searcher.remove_items(args.ids, missing_ok=args.missing_ok)}
    if args.command == "similar":
        result = searcher.similar(
            args.item_id, k=args.k, filters=parse_filters(args.filter), group_by_product=args.group
        )
        return {"query_item": args.item_id, **result.to_dict()}
    if args.command == "show":
        if not args.ids:
            return {"items": len(searcher.items), "pending_changes": searcher.live.pending_changes()}
        rows = [searcher.item(i) for i in args.ids]
        return {"items": [{k: (None if v != v else v) for k, v in r.to_dict().items()} for r in rows]}
    return searcher.compact()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from imgsearch.models.checkpoint import CheckpointError
    from imgsearch.retrieval.index import IndexCompatibilityError

    if not (Path(args.index) / "manifest.json").is_file():
        print(f"imgsearch-items: {args.index} is not an index directory (no manifest.json)", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        report = run(args)
    except (FileNotFoundError, IndexCompatibilityError, ValueError, KeyError, CheckpointError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        print(f"imgsearch-items: {message}", file=sys.stderr)
        return EXIT_BAD_INPUT
    json.dump(report, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")
    if report.get("skipped") and not report.get("added"):
        print(f"imgsearch-items: no photo could be read: {report['skipped']}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
