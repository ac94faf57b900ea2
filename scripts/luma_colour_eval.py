"""Luma product-level retrieval with and without the colour signal (#15): Recall@1 and MAP@R, leave-one-out.

    PYTHONPATH=src python scripts/luma_colour_eval.py --run <luma_supcon_colour run dir> [--out f.json]

Each photo of a split queries every other photo of that split (``imgsearch.retrieval.leave_one_out``, the
protocol of the luma rows in docs/results.md); relevant = the same product (a style in one colour). The
score is ``cos(features) + w * colour similarity`` (the Bhattacharyya coefficient of the colour head's
distributions, as ``Searcher.search(colour_weight=w)``), computed exactly as the inner product of
``[f/|f|, sqrt(w) * colour part]``. ``w`` is chosen on the val products (best MAP@R, ties to the smaller
weight) and reported on the held-out (test) products next to ``w = 0`` (the colour-blind vector of the same
run). Also: the colour head's accuracy on the held-out photos.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

from imgsearch.data.images import load_image
from imgsearch.data.schema import read_catalogue
from imgsearch.data.transforms import eval_transform
from imgsearch.models.checkpoint import load_classifier
from imgsearch.retrieval.colour import colour_part
from imgsearch.retrieval.leave_one_out import leave_one_out_scores

WEIGHTS = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)


def embed(model, paths: list[str], batch_size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """``(features, colour probabilities)`` of each photo, the model's eval preprocessing."""
    transform = eval_transform(model.data_config)
    feats, probs = [], []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([transform(load_image(p)) for p in paths[start : start + batch_size]])
            feats.append(model.embed(batch, "features").float().numpy())
            probs.append(model.predict_attributes(batch)["colour"].float().numpy())
    return np.concatenate(feats), np.concatenate(probs)


def fused(features: np.ndarray, parts: np.ndarray, w: float) -> np.ndarray:
    unit = features / np.linalg.norm(features, axis=1, keepdims=True).clip(1e-12)
    return np.hstack([unit, np.sqrt(w) * parts]).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, required=True)
    parser.add_argument("--checkpoint", type=Path, help="default: RUN/checkpoints/last.ckpt")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    table = read_catalogue(args.run / "catalogue.csv")
    model = load_classifier(args.checkpoint or args.run / "checkpoints" / "last.ckpt").eval()
    classes = list(model.attribute_classes["colour"])
    out: dict = {"weights": {}, "colour_classes": classes}
    scores: dict[str, dict[float, dict]] = {}
    for split in ("val", "test"):
        rows = table[table["split"] == split].reset_index(drop=True)
        feats, probs = embed(model, rows["image_path"].astype(str).tolist())
        parts = colour_part(probs)
        keys = rows["product_id"].astype(str).to_numpy()
        scores[split] = {w: leave_one_out_scores(fused(feats, parts, w), keys) for w in WEIGHTS}
        truth = rows["colour"].astype(str).to_numpy()
        known = truth != ""
        predicted = np.array(classes, dtype=object)[probs.argmax(axis=1)]
        out[f"{split}_colour_accuracy"] = float((predicted[known] == truth[known]).mean())
        out[f"{split}_photos"], out[f"{split}_products"] = len(rows), int(rows["product_id"].nunique())
    best = max(WEIGHTS, key=lambda w: (round(scores["val"][w]["MAP@R"], 6), -w))
    out["chosen_w"] = best
    for split in ("val", "test"):
        out["weights"][split] = {
            str(w): {m: round(float(s[m]), 4) for m in ("recall@1", "MAP@R")}
            for w, s in scores[split].items()
        }
    out["test_without_colour"] = out["weights"]["test"]["0.0"]
    out["test_with_colour"] = out["weights"]["test"][str(best)]
    print(json.dumps(out, indent=1))
    if args.out:
        args.out.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
