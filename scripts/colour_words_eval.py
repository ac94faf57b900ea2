"""Issue #15's measured table on the shared Myntra photos: colour-aware similarity, attribute tagging, words.

    PYTHONPATH=src python scripts/colour_words_eval.py --run <train run dir> [--split test|val] [--out f.json]

The run must be ``experiment=fashion_small_lite0 'model.attributes=[baseColour,gender,usage,season]'``
(its ``catalogue.csv`` keeps the Myntra columns). Queries are the ``--split`` photos, the gallery the train
photos plus the other held-out split (as ``imgsearch-eval`` does for test: train + val); the query never
counts as its own match. Rows:

* MAP@R, same articleType, at each colour weight (``features . features + w * colour . colour``);
* MAP@R, same articleType AND baseColour, at each weight; both again within the predicted category first
  (classify-then-search, ``restrict_to_predicted``);
* per-attribute accuracy of the heads (baseColour, gender, usage, season) and of the category;
* "this photo, in colour c": for each query and each colour c that the gallery has >= 10 items of the
  query's articleType in, P@10 of (that type AND c) for: the vector + the catalogue's colour filter; the
  vector within the predicted category + the colour filter; the same + colour weight on the one-hot c;
* words: one query "<colour> <articleType>" per pair with >= 5 items over the whole catalogue (every split);
  MAP@R over titles only, and over titles + the model's predicted tags at confidence >= 0.5 (no attribute
  column given): all heads (category, baseColour, gender, usage, season), or the category and colour only.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from imgsearch.data.schema import read_catalogue
from imgsearch.models.checkpoint import load_classifier
from imgsearch.retrieval.colour import colour_part
from imgsearch.retrieval.embed import ATTRIBUTE_KIND_PREFIX, embed_catalogue
from imgsearch.retrieval.metrics import map_at_r
from imgsearch.retrieval.text import create_text_index, text_search

WEIGHTS = (0.0, 0.1, 0.25, 0.5, 1.0, 2.0)
RESTRICTED_WEIGHTS = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0)
MIN_CONFIDENCE = 0.5


def _embed(run: Path, ckpt: Path, cache: Path) -> tuple[pd.DataFrame, dict[str, np.ndarray], dict]:
    catalogue = read_catalogue(run / "catalogue.csv")
    model = load_classifier(ckpt)
    classes = {"label": model.class_names, **model.attribute_classes}
    if cache.is_file():
        data = dict(np.load(cache))
        return catalogue, data, classes
    kinds = ["features", "probs", *(ATTRIBUTE_KIND_PREFIX + a for a in model.attribute_classes)]
    emb = embed_catalogue(model, catalogue, kind=kinds, num_workers=0, runtime="torch")
    assert len(emb) == len(catalogue), "every photo must embed"
    data = {k: emb[k] for k in kinds}
    np.savez(cache, **data)
    return catalogue, data, classes


def _map_at_r(sim: np.ndarray, relevant: np.ndarray) -> float:
    """MAP@R of each row of ``sim`` (queries x gallery) against boolean ``relevant``."""
    order = np.argsort(-sim, axis=1, kind="stable")
    rel = np.take_along_axis(relevant, order, axis=1)
    return float(map_at_r(rel, relevant.sum(axis=1)).mean())


def colour_rows(cat: pd.DataFrame, data: dict, classes: dict, split: str) -> dict:
    other = "val" if split == "test" else "test"
    q = np.flatnonzero(cat["split"].to_numpy() == split)
    g = np.flatnonzero(cat["split"].isin(["train"] if split == "val" else ["train", other]).to_numpy())
    f = data["features"] / np.linalg.norm(data["features"], axis=1, keepdims=True)
    c = colour_part(data[ATTRIBUTE_KIND_PREFIX + "baseColour"])
    types = cat["label"].to_numpy()
    colours = cat["baseColour"].to_numpy()
    same_type = types[q][:, None] == types[g][None, :]
    same_both = same_type & (colours[q][:, None] == colours[g][None, :])
    fs, cs = f[q] @ f[g].T, c[q] @ c[g].T
    out: dict = {"queries": len(q), "gallery": len(g), "weights": {}}
    for w in WEIGHTS:
        sim = fs + w * cs
        out["weights"][str(w)] = {
            "type_map_at_r": _map_at_r(sim, same_type),
            "type_and_colour_map_at_r": _map_at_r(sim, same_both),
        }
    # classify-then-search (restrict_to_predicted): the predicted category's items first, then the same score
    pred = np.array(classes["label"], dtype=object)[data["probs"][q].argmax(1)]
    first = 100.0 * (pred[:, None] == types[g][None, :])  # above any features + w * colour score (w <= 8)
    out["restricted_weights"] = {
        str(w): {
            "type_map_at_r": _map_at_r(first + fs + w * cs, same_type),
            "type_and_colour_map_at_r": _map_at_r(first + fs + w * cs, same_both),
        }
        for w in RESTRICTED_WEIGHTS
    }
    # the neighbour vote of the "today" row, for reference
    top10 = np.argsort(-fs, axis=1)[:, :10]
    votes = [pd.Series(colours[g][row]).mode().iloc[0] for row in top10]
    out["colour_vote_of_10_neighbours_acc"] = float(np.mean(np.array(votes) == colours[q]))
    # attribute accuracy (rows with a value only)
    acc = {}
    for name in classes:
        probs = data["probs"] if name == "label" else data[ATTRIBUTE_KIND_PREFIX + name]
        pred = np.array(classes[name], dtype=object)[probs[q].argmax(1)]
        truth = cat[name].astype(str).to_numpy()[q]
        known = truth != ""
        acc[name] = float(np.mean(pred[known] == truth[known]))
    out["attribute_accuracy"] = acc
    out["in_colour"] = in_colour_rows(types, colours, data, classes, q, g, fs, c)
    return out


def in_colour_rows(types, colours, data, classes, q, g, fs, c) -> dict:
    """P@10 of "this photo, in colour c" (same type AND c) for three ways of asking."""
    colour_classes = classes["baseColour"]
    predicted_type = np.array(classes["label"], dtype=object)[data["probs"][q].argmax(1)]
    gallery_types, gallery_colours = types[g], colours[g]
    counts = pd.crosstab(gallery_types, gallery_colours)
    results: dict[str, list[float]] = {
        "vector_plus_colour_filter": [],
        "category_plus_colour_filter": [],
        "category_plus_predicted_colour_filter": [],
    }
    predicted_colour = np.array(colour_classes, dtype=object)[
        data[ATTRIBUTE_KIND_PREFIX + "baseColour"][g].argmax(1)
    ]
    weighted = {w: [] for w in WEIGHTS[1:]}
    for i in range(len(q)):
        t = types[q[i]]
        if t not in counts.index:
            continue
        for colour in counts.columns[(counts.loc[t] >= 10).to_numpy()]:
            if colour == colours[q[i]] or colour not in colour_classes:
                continue
            relevant = (gallery_types == t) & (gallery_colours == colour)
            in_c = gallery_colours == colour
            for name, allowed in (
                ("vector_plus_colour_filter", in_c),
                ("category_plus_colour_filter", in_c & (gallery_types == predicted_type[i])),
                ("category_plus_predicted_colour_filter",
                 (predicted_colour == colour) & (gallery_types == predicted_type[i])),
            ):  # fmt: skip
                s = np.where(allowed, fs[i], -np.inf)
                top = np.argsort(-s, kind="stable")[:10]
                top = top[np.isfinite(s[top])]
                results[name].append(float(relevant[top].sum() / 10))
            onehot = np.sqrt(c[g][:, colour_classes.index(colour)])  # similarity to the one-hot colour
            allowed = gallery_types == predicted_type[i]
            for w in weighted:
                s = np.where(allowed, fs[i] + w * onehot, -np.inf)
                top = np.argsort(-s, kind="stable")[:10]
                top = top[np.isfinite(s[top])]
                weighted[w].append(float(relevant[top].sum() / 10))
    out = {k: float(np.mean(v)) for k, v in results.items()}
    out["queries"] = len(results["vector_plus_colour_filter"])
    out["category_plus_colour_weight_no_filter"] = {str(w): float(np.mean(v)) for w, v in weighted.items()}
    return out


def words_rows(cat: pd.DataFrame, data: dict, classes: dict) -> dict:
    """MAP@R of "<colour> <type>" queries over titles, and over titles + predicted tags."""
    pairs = cat.groupby(["baseColour", "label"]).size()
    pairs = pairs[(pairs >= 5) & (pairs.index.get_level_values(0) != "")]
    predicted = {}
    for name, values in classes.items():
        probs = data["probs"] if name == "label" else data[ATTRIBUTE_KIND_PREFIX + name]
        tag = np.array(values, dtype=object)[probs.argmax(1)]
        # as imgsearch-index fills a cell: only predictions at the model's min_confidence (0.5) or above
        predicted[name] = np.where(probs.max(1) >= MIN_CONFIDENCE, tag, "")
    out = {"queries": len(pairs), "min_confidence": MIN_CONFIDENCE}
    settings = (
        ("titles", {}),
        ("titles_plus_all_predicted_tags", predicted),
        ("titles_plus_predicted_category_and_colour", {k: predicted[k] for k in ("label", "baseColour")}),
    )
    for setting, columns in settings:
        conn = sqlite3.connect(":memory:", isolation_level=None)
        names = ["title", *columns]
        conn.execute(
            "CREATE TABLE items (vector_id INTEGER PRIMARY KEY, "
            + ", ".join(f'"{n}" TEXT NOT NULL DEFAULT \'\'' for n in names) + ")"
        )  # fmt: skip
        conn.executemany(
            f"INSERT INTO items VALUES (?{', ?' * len(names)})",
            [(i, cat["title"].iloc[i], *(str(columns[n][i]) for n in columns)) for i in range(len(cat))],
        )
        create_text_index(conn)
        scores, p10 = [], []
        for (colour, typ), r in pairs.items():
            relevant = set(np.flatnonzero((cat["baseColour"] == colour) & (cat["label"] == typ)))
            ids, _ = text_search(conn, f"{colour} {typ}", max(int(r), 10))
            rel = np.array([[int(i) in relevant for i in ids[: int(r)]]])
            if rel.shape[1] < int(r):
                rel = np.pad(rel, ((0, 0), (0, int(r) - rel.shape[1])))
            scores.append(float(map_at_r(rel, np.array([int(r)]))[0]))
            p10.append(
                float(np.mean([int(i) in relevant for i in ids[:10]] + [False] * (10 - len(ids[:10]))))
            )
        out[setting] = {"map_at_r": float(np.mean(scores)), "p_at_10": float(np.mean(p10))}
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--checkpoint", type=Path, default=None, help="default: the run's best")
    p.add_argument("--split", default="test", choices=("test", "val"))
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    ckpt = args.checkpoint or Path(json.loads((args.run / "metrics.json").read_text())["best_checkpoint"])
    cat, data, classes = _embed(args.run, ckpt, args.run / "issue15_embeddings.npz")
    report = {"checkpoint": str(ckpt), "split": args.split, **colour_rows(cat, data, classes, args.split)}
    report["words"] = words_rows(cat, data, classes)
    emit_report(report, args.out)
    return 0


def emit_report(report: dict, out: Path | None) -> None:
    """Print the report as JSON and, with ``out``, write it there too."""
    text = json.dumps(report, indent=2)
    print(text)
    if out:
        out.write_text(text + "\n")


if __name__ == "__main__":
    sys.exit(main())
