"""Product retrieval on a demo run, on a gallery of a fixed size, so that demos of different sizes compare.

``imgsearch-eval 'relevance=[product]'`` searches every cutout of the catalogue; a demo with twice
the products has twice the distractors, so its mAP@1 is not comparable with a smaller demo's. This
script draws ``--queries`` val products (their model photos are the queries) and a gallery of their
cutouts plus cutouts of ``--train`` train and ``--test`` test products (the defaults are the make-up
of the 100-products-a-class demo's full gallery: 240 val + 720 train + 240 test cutouts), ``--draws``
times, and prints mAP@1 (one relevant cutout per query, so mAP@1 = MAP@R = recall@1) over the draws,
and once over every cutout as a check against ``imgsearch-eval``. For that every-cutout search it also
says what the misses have in common with the query (``errors``: the split of the wrong nearest cutout, and
whether it shares the query's category, colour and pattern, read back from the generator's titles), and
how the queries whose look (category, colour, pattern) another gallery product shares fare. With
``--lab-weights``, the search score becomes ``cos(features) + w * BC(Lab)`` (the photos' foreground Lab
histograms, what an index built with ``colour_part=lab`` searches with ``colour_weight=w``): ``w`` is chosen
on the val queries (every cutout; ties to the smaller) and the test queries are scored at 0 and at it. With
``--head-weights``, the same for the model's colour head (``sqrt`` of its probabilities, an index's
``colour_part=head``), for a run trained with one (e.g. ``data.prepare.title_colour=colour
'model.attributes=[colour]'``). Usage::

    PYTHONPATH=src python scripts/demo_matched_gallery.py --run RUN [--checkpoint RUN/checkpoints/last.ckpt]
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from pathlib import Path

import numpy as np

from imgsearch.data.demo.catalogue import PATTERN_WORDS
from imgsearch.data.schema import read_catalogue
from imgsearch.data.title_colour import colour_of_title
from imgsearch.models.checkpoint import load_classifier
from imgsearch.retrieval.colour import colour_head, colour_part
from imgsearch.retrieval.embed import ATTRIBUTE_KIND_PREFIX, embed_catalogue
from imgsearch.retrieval.expansion import unit
from imgsearch.retrieval.lab_colour import lab_descriptors, lab_part


def top1(vectors: np.ndarray, cutout: dict[str, int], model: dict[str, int], queries, gallery) -> float:
    """Share of ``queries`` (product ids) whose model photo's nearest cutout in ``gallery`` is its own."""
    g = np.array([cutout[p] for p in gallery])
    q = np.array([model[p] for p in queries])
    best = np.asarray(gallery)[(vectors[q] @ vectors[g].T).argmax(1)]
    return float(np.mean(best == np.asarray(queries)))


def look_from_title(title: str) -> tuple[str, str]:
    """``(colour, pattern)`` of a demo product, read back from the title the generator wrote for it
    (``""`` for a title without a colour word)."""
    return colour_of_title(title), next(
        (p for p, w in PATTERN_WORDS.items() if w and w in title.lower()), "solid"
    )


def error_breakdown(
    vectors: np.ndarray, pid: np.ndarray, view: np.ndarray, split: np.ndarray, label: np.ndarray,
    title: np.ndarray, query_split: str = "val",
) -> dict:  # fmt: skip
    """The ``query_split`` model photos searched against every cutout: how many miss, and what the wrong
    nearest cutout shares with the query; top-1 with and without a look twin in the gallery."""
    g = np.flatnonzero(view == "cutout")
    q = np.flatnonzero((view == "model") & (split == query_split))
    looks = [(label[i], *look_from_title(str(title[i]))) for i in range(len(pid))]
    scores = vectors[q] @ vectors[g].T
    best = g[scores.argmax(1)]
    miss = pid[best] != pid[q]
    own = {p: j for j, p in enumerate(pid[g])}
    rank = np.array([(scores[k] > scores[k, own[pid[i]]]).sum() for k, i in enumerate(q)])
    counts = Counter(looks[i] for i in g)
    twin = np.array([counts[looks[i]] > 1 for i in q], dtype=bool)
    wq, wb = q[miss], best[miss]
    shares = {
        name: int(sum(looks[a][k] == looks[b][k] for a, b in zip(wq, wb, strict=True)))
        for k, name in enumerate(("category", "colour", "pattern"))
    }
    shares["all_three"] = int(sum(looks[a] == looks[b] for a, b in zip(wq, wb, strict=True)))
    ranks = {"2": (1, 1), "3-5": (2, 4), "6-10": (5, 9), ">10": (10, len(g))}

    def top1_of(rows: np.ndarray) -> dict:
        return {"queries": int(rows.sum()), "top1": float(1 - miss[rows].mean()) if rows.any() else None}

    return {
        "queries": len(q),
        "misses": int(miss.sum()),
        "wrong_cutout_split": {s: int((split[wb] == s).sum()) for s in ("train", "val", "test")},
        "miss_shares": shares,
        "own_cutout_rank_of_misses": {
            k: int(((rank >= lo) & (rank <= hi)).sum()) for k, (lo, hi) in ranks.items()
        },
        "with_look_twin": top1_of(twin),
        "without_look_twin": top1_of(~twin),
    }


def colour_weight_choice(
    features: np.ndarray, part: np.ndarray, cutout: dict[str, int], model: dict[str, int],
    products: dict[str, list[str]], weights: list[float],
) -> dict:  # fmt: skip
    """Every-cutout mAP@1 of the val queries at each weight of a colour ``part`` (unit rows: Lab histograms
    or a colour head's, square-rooted), the weight chosen on them (ties to the smaller), and the test
    queries' mAP@1 at 0 and at that weight."""
    gallery = sorted(cutout)

    def at(w: float, split: str) -> float:
        v = np.hstack([features, np.sqrt(w) * part])  # inner product = cos + w * Bhattacharyya
        return top1(v, cutout, model, products[split], gallery)

    val = {float(w): at(w, "val") for w in sorted(weights)}
    chosen = max(val, key=lambda w: (val[w], -w))
    return {"val": {str(w): m for w, m in val.items()}, "chosen": chosen,
            "test_at_0": at(0.0, "test"), "test_at_chosen": at(chosen, "test")}  # fmt: skip


def _weights(text: str, flag: str) -> list[float]:
    try:
        out = sorted({0.0, *(float(w) for w in text.split(",") if w.strip())})
    except ValueError:
        raise SystemExit(f"{flag}: numbers separated by commas, got {text!r}") from None
    if any(w < 0 for w in out):
        raise SystemExit(f"{flag} must be >= 0, got {text!r}")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run", type=Path, required=True, help="a demo training run (its catalogue.csv)")
    p.add_argument("--checkpoint", type=Path, default=None, help="default: RUN/checkpoints/last.ckpt")
    p.add_argument("--queries", type=int, default=240)
    p.add_argument("--train", type=int, default=720)
    p.add_argument("--test", type=int, default=240)
    p.add_argument("--draws", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--lab-weights", default="", help="comma-separated Lab colour weights, e.g. 0,0.25,0.5,1")
    p.add_argument("--head-weights", default="", help="comma-separated colour-head weights")
    args = p.parse_args(argv)
    weights = {
        "lab": _weights(args.lab_weights, "--lab-weights"),
        "head": _weights(args.head_weights, "--head-weights"),
    }
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
    module = load_classifier(ckpt)
    wants_head = len(weights["head"]) > 1
    head = colour_head(module.attribute_classes) if wants_head else None
    if wants_head and head is None:
        raise SystemExit(
            f"--head-weights: {ckpt} has no colour head (attributes: {module.attribute_classes})"
        )
    kinds = ["features", *([ATTRIBUTE_KIND_PREFIX + head] if head else [])]
    emb = embed_catalogue(module, cat, kind=kinds, num_workers=0)
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
        "errors": error_breakdown(f, pid, view, split, cat["label"].astype(str).to_numpy(),
                                  cat["title"].astype(str).fillna("").to_numpy()),
        "matched": {"queries": args.queries, "gallery": sum(wanted.values()), "draws": args.draws,
                    "map_at_1_mean": float(np.mean(scores)), "map_at_1_sd": float(np.std(scores))},
    }  # fmt: skip
    if len(weights["lab"]) > 1:
        lab = lab_part(lab_descriptors(cat["image_path"].astype(str)))
        report["lab"] = colour_weight_choice(f, lab, cutout, model, products, weights["lab"])
    if head:
        part = colour_part(emb.vectors[ATTRIBUTE_KIND_PREFIX + head])
        report["head"] = {
            "attribute": head,
            **colour_weight_choice(f, part, cutout, model, products, weights["head"]),
        }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
