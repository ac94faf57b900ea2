"""``imgsearch-tag``: tag photos with what a trained model predicts: category and each attribute head.

    imgsearch-tag photo.jpg --checkpoint outputs/train/runs/<run>/checkpoints/last.ckpt
    imgsearch-tag a.jpg b.png --index outputs/demo/index --json     # the index's checkpoint

Prints, per photo, each head (``label`` = the category, then the ``model.attributes`` the model was trained
with) with its value, its confidence and ``low`` when the confidence is under ``--min-confidence`` (default:
the model's ``min_confidence``). The colour comes from a colour probe (``imgsearch-colour-probe``) when one
is given with ``--colour-probe`` or held by the ``--index``. An unreadable photo or a missing checkpoint
stops with a message and exit status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="imgsearch-tag", description=__doc__.split("\n\n")[0])
    p.add_argument("images", nargs="+", help="photo files")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help="a trained classifier (.ckpt)")
    source.add_argument("--index", help="an index directory: tag with the checkpoint it was built with")
    p.add_argument(
        "--colour-probe", default=None, help="a colour probe file (default: the --index's, if any)"
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--min-confidence", type=float, default=None, help="low-confidence threshold (0..1)")
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    if args.min_confidence is not None and not 0.0 <= args.min_confidence <= 1.0:
        p.error("--min-confidence must be within 0..1")
    return args


def _checkpoint_of(args: argparse.Namespace) -> tuple[Path, Path | None]:
    """``(checkpoint, colour probe file or None)``."""
    probe = Path(args.colour_probe) if args.colour_probe else None
    if args.checkpoint:
        return Path(args.checkpoint), probe
    from imgsearch.models.colour_probe import index_probe_path
    from imgsearch.retrieval.index import MANIFEST_FILE
    from imgsearch.retrieval.locations import resolve_checkpoint_path

    path = Path(args.index) / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{args.index} is not an index directory (no {MANIFEST_FILE})")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    if not (manifest.get("checkpoint") or {}).get("path"):
        raise ValueError(f"the index {args.index} was built without a trained checkpoint; pass --checkpoint")
    return resolve_checkpoint_path(args.index, manifest), probe or index_probe_path(args.index, manifest)


def tag_files(
    paths: Sequence[str],
    checkpoint: str | Path,
    *,
    min_confidence: float | None = None,
    batch_size: int = 32,
    colour_probe: str | Path | None = None,
) -> list[dict[str, Any]]:
    """``[{"image": path, "tags": {head: {"value", "confidence", "low_confidence"}}}]`` for each photo.

    Raises:
        imgsearch.data.images.ImageDecodeError: a photo cannot be read (before the model is loaded).
        FileNotFoundError / CheckpointError: the checkpoint is missing or not a classifier.
        ColourProbeError: the colour probe is unreadable or was fitted to another model's head.
    """
    import torch

    from imgsearch.data.images import load_image, to_rgb
    from imgsearch.data.transforms import eval_transform
    from imgsearch.models.attributes import CATEGORY, tags_from_probs
    from imgsearch.models.checkpoint import load_classifier
    from imgsearch.models.colour_probe import load_colour_probe, probe_colour_probs

    images = [to_rgb(load_image(p)) for p in paths]  # a bad file fails before the model is loaded
    model = load_classifier(checkpoint, map_location="cpu").eval()
    probe = load_colour_probe(colour_probe) if colour_probe else None
    if probe is not None:
        probe.check_model(model.attribute_classes)
    transform = eval_transform(model.data_config)
    threshold = float(model.min_confidence if min_confidence is None else min_confidence)
    classes = {CATEGORY: model.class_names, **model.attribute_classes}
    out: list[dict[str, Any]] = []
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        with torch.inference_mode():
            probs = model.predict_attributes(torch.stack([transform(im) for im in chunk]))
        tags = tags_from_probs(probe_colour_probs(probe, probs, chunk), classes, threshold)
        for path, row in zip(paths[start : start + batch_size], tags, strict=True):
            out.append({"image": str(path), "tags": {k: t.as_dict() for k, t in row.items()}})
    return out


def _print_tables(results: Sequence[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 240)
    for result in results:
        table = Table(title=result["image"], title_justify="left")
        for col in ("attribute", "value", "confidence", ""):
            table.add_column(col, justify="right" if col == "confidence" else "left")
        for name, tag in result["tags"].items():
            flag = "low" if tag["low_confidence"] else ""
            table.add_row(name, tag["value"], f"{tag['confidence']:.3f}", flag)
        console.print(table)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    from imgsearch.data.images import ImageDecodeError
    from imgsearch.models.checkpoint import CheckpointError

    try:
        ckpt, probe = _checkpoint_of(args)
        results = tag_files(
            args.images, ckpt, min_confidence=args.min_confidence, batch_size=max(1, args.batch_size),
            colour_probe=probe,
        )  # fmt: skip
    except ImageDecodeError as exc:
        detail = f" ({exc.detail})" if exc.detail else ""
        print(f"imgsearch-tag: cannot read image {exc.path}: {exc.reason}{detail}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except (FileNotFoundError, CheckpointError, ValueError) as exc:
        print(f"imgsearch-tag: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        _print_tables(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
