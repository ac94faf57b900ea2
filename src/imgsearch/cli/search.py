"""``imgsearch-search``: find the catalogue items most similar to one or more photos.

    imgsearch-search photo.jpg --index outputs/demo/index
    imgsearch-search a.jpg b.png --index DIR -k 5 --json            # JSON on stdout
    imgsearch-search a.jpg --index DIR --restrict                   # only the predicted category
    imgsearch-search a.jpg --index DIR --filter brand=Acme --filter price=10:50 --group
    imgsearch-search a.jpg --index DIR --colour red        # this, in red; --colour-weight 0.5; -q "linen"
    imgsearch-search a.jpg --index DIR --qe 1 --qe-alpha 1  # alpha-QE (docs/retrieval.md)

Prints the predicted category and the top-k items (id, title, brand, price, image path, score). An image
that cannot be read stops the command with a message naming it and a non-zero exit status (2).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import Any

EXIT_BAD_INPUT = 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="imgsearch-search", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", help="query image files")
    p.add_argument("--index", required=True, help="index directory written by imgsearch-index")
    p.add_argument("-k", type=int, default=10, help="results per image (default 10)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--restrict", action="store_true", help="search only the predicted category")
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, mps (default cpu)")
    p.add_argument("--checkpoint", default=None, help="use this checkpoint instead of the manifest's")
    p.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="COLUMN=VALUE",
        help="only items with this metadata: brand=Acme, label=bags|shoes (any of), price=10:50 (range); "
        "repeat for several (all must hold)",
    )
    p.add_argument("--group", action="store_true", help="one result per product (its best photo)")
    p.add_argument("-q", "--words", default=None, help="words fused with the photo ranking (text search)")
    p.add_argument("--text-weight", type=float, default=1.0, help="the words' fusion weight (photo: 1)")
    p.add_argument("--colour", default=None, help='"this, in colour c": the predicted kind, in this colour')
    p.add_argument(
        "--colour-weight",
        type=float,
        default=0.0,
        help="weight of the index's colour part (0 = colour-blind)",
    )
    p.add_argument(
        "--qe", type=int, default=0, help="alpha-QE: expand the query with its N nearest items (0 = off)"
    )
    p.add_argument("--qe-alpha", type=float, default=3.0, help="alpha-QE's weight exponent (default 3)")
    p.add_argument(
        "--search-params", default=None, help="FAISS ParameterSpace string: nprobe=16, efSearch=128"
    )
    p.add_argument(
        "--allow-other-checkpoint",
        action="store_true",
        help="accept a --checkpoint other than the one the index was built with (a warning, worse hits)",
    )
    p.add_argument(
        "--runtime",
        choices=("auto", "torch", "onnx", "onnx-int8"),
        default="auto",
        help="auto: ONNX Runtime on a CPU (exported once, checked against PyTorch), PyTorch on a GPU",
    )
    args = p.parse_args(argv)
    if args.k < 1:
        p.error("-k must be at least 1")
    return args


def _print_tables(paths: Sequence[str], results: Sequence[Any], metric: str) -> None:
    from rich.console import Console
    from rich.table import Table

    # piped output (a file, another program) is not cut to 80 columns
    console = Console(width=None if sys.stdout.isatty() else 240)
    for path, result in zip(paths, results, strict=True):
        head = f"{path}"
        if result.category is not None:
            head += f" -> {result.category} ({result.probability:.1%})"
        table = Table(title=head, title_justify="left")
        for col in ("#", "item_id", "product_id", "label", "title", "brand", "price", "score", "image"):
            table.add_column(
                col,
                justify="right" if col in ("#", "price", "score") else "left",
                overflow="fold",
                no_wrap=col in ("item_id", "product_id"),
            )
        for h in result.hits:
            price = "" if h.price is None else f"{h.price:g}"
            table.add_row(
                str(h.rank),
                h.item_id,
                h.product_id,
                h.label,
                h.title,
                h.brand,
                price,
                f"{h.score:.4f}",
                h.image_path,
            )
        console.print(table)
    console.print(
        f"scores: {'inner product (higher = closer)' if metric == 'ip' else 'squared L2 (lower = closer)'}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from pathlib import Path

    from imgsearch.data.images import ImageDecodeError, load_image

    # Read every query first: a bad file fails fast, before the model is loaded.
    images = []
    for path in args.images:
        try:
            images.append(load_image(path))
        except ImageDecodeError as exc:
            print(f"imgsearch-search: cannot read query image {path}: {exc.reason}"
                  + (f" ({exc.detail})" if exc.detail else ""), file=sys.stderr)  # fmt: skip
            return EXIT_BAD_INPUT
    if not (Path(args.index) / "manifest.json").is_file():
        print(f"imgsearch-search: {args.index} is not an index directory (no manifest.json)", file=sys.stderr)
        return EXIT_BAD_INPUT

    from imgsearch.models.checkpoint import CheckpointError
    from imgsearch.retrieval.filters import parse_filters
    from imgsearch.retrieval.index import IndexCompatibilityError
    from imgsearch.retrieval.search import Searcher

    try:
        filters = parse_filters(args.filter)
        searcher = Searcher.from_index_dir(
            args.index,
            device=args.device,
            checkpoint=args.checkpoint,
            allow_other_checkpoint=args.allow_other_checkpoint,
            search_params=args.search_params,
            runtime=args.runtime,
        )
        results = searcher.search(
            images,
            k=args.k,
            restrict_to_predicted=args.restrict,
            filters=filters,
            group_by_product=args.group,
            colour_weight=args.colour_weight,
            colour=args.colour,
            q=args.words,
            text_weight=args.text_weight,
            qe=args.qe,
            qe_alpha=args.qe_alpha,
        )
    except (FileNotFoundError, IndexCompatibilityError, ValueError, CheckpointError) as exc:
        print(f"imgsearch-search: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        payload = [{"query": p, **r.to_dict()} for p, r in zip(args.images, results, strict=True)]
        json.dump(payload, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_tables(args.images, results, searcher.manifest.get("index", {}).get("metric", "ip"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
