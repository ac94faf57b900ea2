"""Leave-one-out product retrieval: every photo queries all the others (the multi-view protocol).

Used where a catalogue has no query/gallery views (``luma-multiview``: 2-4 interchangeable views per product):
each photo must find the other photos of its product among every other photo of the set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from imgsearch.retrieval.metrics import summarize
from imgsearch.retrieval.scoring import search_relevance

log = logging.getLogger(__name__)


def leave_one_out_scores(
    vectors: np.ndarray,
    keys: Sequence[str] | np.ndarray,
    ks: Sequence[int] = (1, 5, 10),
    gallery: np.ndarray | None = None,
) -> dict[str, float]:
    """Mean metrics (``recall@1``, ``MAP@R``, ...), every row querying all other rows; relevant = same key.

    Rows whose key has no other row are left out of the averages (counted in ``queries_without_relevant``).
    ``gallery``: the rows' vectors as searched, when they differ from the query vectors (query expansion,
    DBA: :mod:`imgsearch.retrieval.expansion`); row i is still never its own match.
    """
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    searched = vectors if gallery is None else np.ascontiguousarray(gallery, dtype=np.float32)
    keys = np.asarray([str(k) for k in keys], dtype=object)
    if len(vectors) != len(keys) or searched.shape != vectors.shape:
        raise ValueError(f"{len(vectors)} vectors, {len(searched)} gallery vectors for {len(keys)} keys")
    n = len(vectors)
    scores, kept, _, _, _ = search_relevance(
        vectors, searched, keys, keys, ks=ks, query_self=np.arange(n, dtype=np.int64)
    )
    out = summarize(scores)
    out["queries"] = len(kept)
    out["queries_without_relevant"] = int(n - len(kept))
    return out


def expanded(
    vectors: np.ndarray, dba: int = 0, qe: int = 0, alpha: float = 3.0
) -> tuple[np.ndarray, np.ndarray]:
    """``(queries, gallery)`` for leave-one-out after DBA on the gallery (``dba`` neighbours, itself
    included) and alpha-QE of the queries against it (``qe`` neighbours, never the query's own row); both 0 =
    the vectors as they are."""
    from imgsearch.retrieval.expansion import alpha_query_expansion, database_augmentation

    if not dba and not qe:
        return vectors, vectors
    gallery = database_augmentation(vectors, k=dba, alpha=alpha) if dba else vectors
    queries = alpha_query_expansion(vectors, gallery, k=qe, alpha=alpha, exclude_self=True) if qe else gallery
    return queries, gallery


def embed_rows(
    catalogue: str | Path,
    splits: Sequence[str] | None,
    *,
    checkpoint: str | Path | None = None,
    backbone: str | None = None,
    input_size: int | None = None,
    runtime: str = "auto",
    flip_average: bool = False,
) -> tuple[np.ndarray, pd.DataFrame, list[Any]]:
    """``(features [n, d], the rows they are of, photos that could not be read)`` of a prepared catalogue's
    ``splits`` (all rows for none), by a trained ``checkpoint`` or an untrained ImageNet ``backbone``; the
    photos decoded whole (``draft=False``), as the documented figures were measured."""
    from imgsearch.data.schema import read_catalogue
    from imgsearch.models.checkpoint import load_classifier
    from imgsearch.models.pretrained import PretrainedEmbedder
    from imgsearch.retrieval.embed import embed_catalogue

    if (checkpoint is None) == (backbone is None):
        raise ValueError("give exactly one of checkpoint and backbone")
    table = read_catalogue(catalogue)
    if splits:
        table = table[table["split"].isin(list(splits))]
    table = table.reset_index(drop=True)
    model = (
        load_classifier(checkpoint).eval()
        if checkpoint is not None
        else PretrainedEmbedder(backbone, input_size=input_size)
    )
    found = embed_catalogue(
        model, table, kind="features", num_workers=0, draft=False, runtime=runtime,
        checkpoint=None if checkpoint is None else str(checkpoint), flip_average=flip_average,
        trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False},
    )  # fmt: skip
    if found.skipped:
        log.warning("%d photos could not be read and are left out: %s", len(found.skipped), found.skipped[:5])
    return found.vectors["features"], table.iloc[found.rows].reset_index(drop=True), list(found.skipped)


def with_lab_colour(
    queries: np.ndarray, gallery: np.ndarray, images: Sequence[Any], weight: float
) -> tuple[np.ndarray, np.ndarray]:
    """Both sides with ``sqrt(weight) * lab part`` appended, so the inner product a leave-one-out search
    ranks by is ``cosine + weight * BC(Lab histograms)``, the score of a colour weight on a Lab colour part
    (:mod:`imgsearch.retrieval.colour`), here over every row instead of the top candidates."""
    from imgsearch.retrieval.lab_colour import lab_descriptors, lab_part

    part = np.sqrt(weight) * lab_part(lab_descriptors(images))
    return np.hstack([queries, part]).astype(np.float32), np.hstack([gallery, part]).astype(np.float32)


def main(argv: Sequence[str] | None = None) -> dict[str, float]:
    """``python -m imgsearch.retrieval.leave_one_out --catalogue RUN/catalogue.csv --checkpoint CKPT``."""
    import argparse
    import json

    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalogue", required=True, help="a prepared catalogue.csv (e.g. a run's)")
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument("--checkpoint", help="a trained imgsearch checkpoint")
    group.add_argument("--backbone", help="an untrained ImageNet backbone by registry name")
    parser.add_argument(
        "--splits", nargs="*", default=["test"], help="rows that query each other; none = all"
    )
    parser.add_argument(
        "--input-size", type=int, default=None, help="--backbone only: image side (default: the weights' own)"
    )
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument(
        "--runtime", default="auto", choices=["auto", "torch", "onnx", "onnx-int8"],
        help="auto: ONNX Runtime on a CPU, checked against PyTorch (models/export.py); torch: PyTorch eager",
    )  # fmt: skip
    parser.add_argument("--flip-average", action="store_true", help="mean of each photo and its mirror")
    parser.add_argument("--dba", type=int, default=0, help="database-side augmentation with K neighbours")
    parser.add_argument("--qe", type=int, default=0, help="alpha query expansion with K neighbours")
    parser.add_argument("--alpha", type=float, default=3.0, help="QE/DBA neighbour weight sim**alpha")
    parser.add_argument(
        "--lab-weight", type=float, default=0.0,
        help="score cosine + W * Bhattacharyya coefficient of the photos' foreground Lab histograms: the "
        "ranking of Searcher.search(colour_weight=W) on an index built with colour_part=lab",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.lab_weight < 0:
        parser.error(f"--lab-weight must be >= 0, got {args.lab_weight}")
    if args.checkpoint and args.input_size:
        parser.error("--input-size applies to --backbone; a checkpoint embeds at its trained size")
    torch.set_num_threads(args.threads)
    vectors, kept, skipped = embed_rows(
        args.catalogue, args.splits, checkpoint=args.checkpoint, backbone=args.backbone,
        input_size=args.input_size, runtime=args.runtime, flip_average=args.flip_average,
    )  # fmt: skip
    queries, gallery = expanded(vectors, dba=args.dba, qe=args.qe, alpha=args.alpha)
    if args.lab_weight:
        queries, gallery = with_lab_colour(queries, gallery, kept["image_path"].tolist(), args.lab_weight)
    result = leave_one_out_scores(queries, kept["product_id"].astype(str).to_numpy(), gallery=gallery)
    result["products"] = int(kept["product_id"].nunique())
    result["skipped_photos"] = len(skipped)
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))
    return result


if __name__ == "__main__":
    main()
