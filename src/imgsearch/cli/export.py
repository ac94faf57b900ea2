"""``imgsearch-export``: export a checkpoint (or a pretrained-only backbone) to ONNX, checked against PyTorch.

    imgsearch-export outputs/demo/train              # a run directory (its best checkpoint), best, last or a
                                                     # .ckpt -> beside the checkpoint, keyed by its sha256
    imgsearch-export --backbone efficientnet_lite0   # ImageNet weights, no training: features only, into the
                                                     # cache imgsearch-index model=efficientnet_lite0 reads

Index, eval, search and serve export on first use anyway (``runtime=auto``); this command does it ahead of
time (e.g. in a container build) and says how close the export is to PyTorch.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

log = logging.getLogger(__name__)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="imgsearch-export", description=__doc__.splitlines()[0].split(": ", 1)[1]
    )
    p.add_argument(
        "checkpoint", nargs="?", help="a .ckpt, a training run directory, or best / last of the newest run"
    )
    p.add_argument(
        "--backbone", help="instead of a checkpoint: a registered backbone with its pretrained weights"
    )
    p.add_argument(
        "--input-size", type=int, default=None, help="image side for --backbone (default: its own)"
    )
    p.add_argument(
        "--output",
        type=Path,
        default=None,
        help="the .onnx file (default: beside the checkpoint; for --backbone the cache imgsearch-index "
        "model=<backbone> reads, $IMGSEARCH_ONNX_CACHE or ~/.cache/imgsearch/onnx)",
    )
    args = p.parse_args(argv)
    if bool(args.checkpoint) == bool(args.backbone):
        p.error("give a checkpoint or --backbone, not both and not neither")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from imgsearch.models.checkpoint import CheckpointError, checkpoint_sha256, load_classifier
    from imgsearch.models.export import (
        ExportError,
        OnnxEmbedder,
        cached_export_path,
        check_equivalence,
        export_onnx,
    )

    try:
        if args.checkpoint:
            from imgsearch.cli.inputs import resolve_checkpoint
            from imgsearch.utils.config import repo_root

            ckpt = resolve_checkpoint(
                args.checkpoint, runs_root=Path(repo_root()) / "outputs" / "train" / "runs"
            )
            module = load_classifier(ckpt, map_location="cpu")
            sha = checkpoint_sha256(ckpt)
            out = args.output or cached_export_path(ckpt, sha)
        else:
            from imgsearch.models.export import default_cache_dir, pretrained_export_key
            from imgsearch.models.pretrained import PretrainedEmbedder

            # what imgsearch-index model=<backbone> embeds with: features only (no classifier to export)
            module = PretrainedEmbedder(args.backbone, input_size=args.input_size)
            sha = pretrained_export_key(module)
            name = f"{args.backbone}.{sha[:16]}.onnx".replace("/", "_")
            out = args.output or default_cache_dir() / name
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        export_onnx(module, out, source_sha256=sha)
        cosine = check_equivalence(OnnxEmbedder(out), module)
    except (OSError, ValueError, CheckpointError, ExportError) as exc:
        print(f"imgsearch-export: {exc}", file=sys.stderr)
        return 1
    print(f"exported to {out} (least cosine with PyTorch on a probe batch: {cosine:.6f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
