"""Product retrieval on a demo run, on a gallery of a fixed size, so that demos of different sizes compare.

``imgsearch-eval 'relevance=[product]'`` searches every cutout of the catalogue; a demo with twice
the products has twice the distractors, so its mAP@1 is not comparable with a smaller demo's. This
script draws ``--queries`` val products (their model photos are the queries) and a gallery of their
cutouts plus cutouts of ``--train`` train and ``--test`` test products (the defaults are the make-up
of the 100-products-a-class demo's full gallery: 240 val + 720 train + 240 test cutouts), ``--draws``
times, and prints mAP@1 (one relevant cutout per query, so mAP@1 = MAP@R = recall@1) over the draws,
and once over every cutout as a check against ``imgsearch-eval``. Usage::

    PYTHONPATH=src python scripts/demo_matched_gallery.py --run RUN [--checkpoint RUN/checkpoints/last.ckpt]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from imgsearch.data.schema import read_catalogue
from imgsearch.models.checkpoint import load_classifier
from imgsearch.retrieval.embed import embed_catalogue
from imgsearch.retrieval.expansion import unit


def top1(vectors: np.ndarray, cutout: dict[str, int], model: dict[str, int], queries, gallery) -> float:
    """Share of ``queries`` (product ids) whose model photo's nearest cutout in ``gallery`` is its own."""
    g = np.array([cutout[p] for p in gallery])
    q = np.array([model[p] for p in queries])
    best = np.asarray(gallery)[(vectors[q] @ vectors[g].T).argmax(1)]
    return float(np.mean(best == np.asarray(queries)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a demo training run (its catalogue.csv)")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: RUN/checkpoints/last.ckpt")
    p.add_argument("--queries", type=int, default=240)
    p.add_argument("--train", type=int, default=720)
    p.add_argument("--test", type=int, default=240)
    p.add_argument("--draws", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    ckpt = args.checkpoint or args.run / "checkpoints" / "last.ckpt"
    cat = read_catalogue(args.run / "catalogue.csv")
    pid = cat["product_id"].astype(str).to_numpy()
    view, split = cat["view"].to_numpy(), cat["split"].to_numpy()
    cutout = {x: i for i, (x, v) in enumerate(zip(pid, view, strict=True)) if v == "cutout"}
    model = {x: i for i, (x, v) in enumerate(zip(pid, view, strict=True)) if v == "model"}
    products = {
        s: sorted({x for x, sp in zip(pid, split, strict=True) if sp == s}) for s in ("train", "val", "test")
    }
    wanted = {"val": args.queries, "train": args.train, "test": args.test}
    for s, n in wanted.items():  # before the model is loaded and every photo embedded
        if n > len(products[s]):
            flag = "queries" if s == "val" else s
            raise SystemExit(f"--{flag} {n}: the run has {len(products[s])} {s} products")
    emb = embed_catalogue(load_classifier(ckpt), cat, kind="features", num_workers=0)
    if len(emb.rows) != len(cat):
        raise SystemExit(f"{len(cat) - len(emb.rows)} photos did not embed; the gallery would be incomplete")
    f = unit(emb.vectors["features"])
    rng = np.random.default_rng(args.seed)
    scores = []
    for _ in range(args.draws):
        q = list(rng.choice(products["val"], args.queries, replace=False))
        g = q + [x for s in ("train", "test") for x in rng.choice(products[s], wanted[s], replace=False)]
        scores.append(top1(f, cutout, model, q, g))
    report = {
        "products": {s: len(v) for s, v in products.items()},
        "every_cutout": {"queries": len(products["val"]), "gallery": len(cutout),
                         "map_at_1": top1(f, cutout, model, products["val"], sorted(cutout))},
        "matched": {"queries": args.queries, "gallery": sum(wanted.values()), "draws": args.draws,
                    "map_at_1_mean": float(np.mean(scores)), "map_at_1_sd": float(np.std(scores))},
    }  # fmt: skip
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
