"""Issue #15: the foreground Lab colour descriptor (retrieval/lab_colour.py) as a colour part, Myntra photos.

    PYTHONPATH=src python scripts/lab_colour_eval.py --run <train run dir> [--split val|test] [--out f.json]
        [--early early.npz]

The run and the split protocol are those of ``scripts/colour_words_eval.py`` (its embeddings cache is reused):
queries the ``--split`` photos, gallery train (+ val for test), the query never its own match. Rows:

* baseColour accuracy: the vote of the 10 nearest gallery photos by Lab part (Bhattacharyya coefficient);
  the run's colour head; a probe (one hidden layer of 256, ReLU; Adam lr 1e-2, weight decay 1e-3, 300
  full-batch steps, seed 0: chosen on val) trained on the train photos' [Lab part, head part], and, with
  ``--early``, on [Lab part, head part, one early stage's pooled mean + max features] (``b0``..``b4`` in the
  npz, the backbone's stages 1-5 at the run's input size; frozen: a probe, not a trained branch);
* MAP@R of same articleType and of same articleType AND baseColour, plain and classify-then-search, for the
  colour part of ``imgsearch-index colour_lab_share=s`` (``fused_colour_part``) at each share and weight;
* "this photo, in colour c", P@10 within the predicted category + a colour filter on the *probe's* predicted
  colours (no colour column), the protocol of ``colour_words_eval.in_colour_rows``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).parent))
from colour_words_eval import _embed, _map_at_r, emit_report

from imgsearch.retrieval.colour import colour_part, fused_colour_part
from imgsearch.retrieval.embed import ATTRIBUTE_KIND_PREFIX
from imgsearch.retrieval.lab_colour import LabStats, lab_descriptors, lab_part

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
WEIGHTS = (0.0, 1.0, 2.0, 4.0, 8.0, 16.0)


def probe(x: np.ndarray, y: np.ndarray, train: np.ndarray, classes: int) -> np.ndarray:
    """Probabilities of a one-hidden-layer colour probe trained on the ``train`` rows (``y >= 0``)."""
    torch.manual_seed(0)
    xt, yt = torch.tensor(x, dtype=torch.float32), torch.tensor(y)
    net = torch.nn.Sequential(
        torch.nn.Linear(x.shape[1], 256), torch.nn.ReLU(), torch.nn.Linear(256, classes)
    )
    opt = torch.optim.Adam(net.parameters(), 1e-2, weight_decay=1e-3)
    rows = torch.tensor(train[y[train] >= 0])
    for _ in range(300):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xt[rows]), yt[rows]).backward()
        opt.step()
    with torch.no_grad():
        return net(xt).softmax(-1).numpy()


def in_colour_p10(types, colours, pred_type, pred_colour, q, g, fs) -> float:
    gallery_types, gallery_colours = types[g], colours[g]
    counts = pd.crosstab(gallery_types, gallery_colours)
    scores = []
    for i in range(len(q)):
        t = types[q[i]]
        if t not in counts.index:
            continue
        for colour in counts.columns[(counts.loc[t] >= 10).to_numpy()]:
            if colour == colours[q[i]]:
                continue
            relevant = (gallery_types == t) & (gallery_colours == colour)
            s = np.where((pred_colour[g] == colour) & (gallery_types == pred_type[i]), fs[i], -np.inf)
            top = np.argsort(-s, kind="stable")[:10]
            top = top[np.isfinite(s[top])]
            scores.append(float(relevant[top].sum() / 10))
    return float(np.mean(scores))


def load_run(run: Path) -> tuple[Path, pd.DataFrame, dict[str, np.ndarray], dict, np.ndarray]:
    """``(best checkpoint, catalogue, embeddings, class lists, Lab histograms)`` of a run (cached in it)."""
    ckpt = Path(json.loads((run / "metrics.json").read_text())["best_checkpoint"])
    cat, data, classes = _embed(run, ckpt, run / "issue15_embeddings.npz")
    cache = run / "issue15_lab.npy"
    if not cache.is_file():
        stats = LabStats()
        np.save(cache, lab_descriptors(cat["image_path"], stats))
        print(f"lab: {stats}", file=sys.stderr)
    return ckpt, cat, data, classes, np.load(cache)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--split", default="val", choices=("test", "val"))
    p.add_argument("--early", type=Path, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    ckpt, cat, data, classes, hists = load_run(args.run)
    split = cat["split"].to_numpy()
    q = np.flatnonzero(split == args.split)
    g = np.flatnonzero(np.isin(split, ["train"] if args.split == "val" else ["train", "val"]))
    train = np.flatnonzero(split == "train")
    types, colours = cat["label"].to_numpy(), cat["baseColour"].to_numpy()
    colour_classes = classes["baseColour"]
    y = np.array([colour_classes.index(c) if c in colour_classes else -1 for c in colours])
    known = y[q] >= 0
    head_probs = data[ATTRIBUTE_KIND_PREFIX + "baseColour"]
    lab, head = lab_part(hists), colour_part(head_probs)
    names = np.array(colour_classes, dtype=object)

    def accuracy(probs: np.ndarray) -> float:
        return float(np.mean(probs[q][known].argmax(1) == y[q][known]))

    report: dict = {"checkpoint": str(ckpt), "split": args.split, "queries": len(q), "gallery": len(g)}
    top10 = np.argsort(-(lab[q] @ lab[g].T), axis=1)[:, :10]
    votes = np.array([pd.Series(colours[g][row]).mode().iloc[0] for row in top10])
    acc = {"lab_vote_of_10": float(np.mean(votes == colours[q])), "colour_head": accuracy(head_probs)}
    probes = {"probe_lab_head": probe(np.hstack([lab, head]), y, train, len(colour_classes))}
    if args.early is not None:
        early = np.load(args.early)
        for stage in sorted(early.files):
            x = early[stage] / (np.linalg.norm(early[stage], axis=1, keepdims=True) + 1e-12)
            probes[f"probe_lab_head_early_{stage}"] = probe(
                np.hstack([lab, head, 3 * x]), y, train, len(names)
            )
    acc.update({name: accuracy(pr) for name, pr in probes.items()})
    report["baseColour_accuracy"] = acc

    f = data["features"] / np.linalg.norm(data["features"], axis=1, keepdims=True)
    fs = f[q] @ f[g].T
    same_type = types[q][:, None] == types[g][None, :]
    same_both = same_type & (colours[q][:, None] == colours[g][None, :])
    pred_type = np.array(classes["label"], dtype=object)[data["probs"][q].argmax(1)]
    first = 100.0 * (pred_type[:, None] == types[g][None, :])  # classify-then-search: above any score
    grid = {}
    for share in SHARES:
        part = fused_colour_part(head_probs, hists, share)
        cs = part[q] @ part[g].T
        for w in WEIGHTS:
            grid[f"share={share} w={w}"] = {
                "type_map_at_r": _map_at_r(fs + w * cs, same_type),
                "type_and_colour_map_at_r": _map_at_r(fs + w * cs, same_both),
                "restricted_type_map_at_r": _map_at_r(first + fs + w * cs, same_type),
                "restricted_type_and_colour_map_at_r": _map_at_r(first + fs + w * cs, same_both),
            }
    report["colour_part"] = grid
    best = max(probes, key=lambda k: acc[k]) if args.split == "val" else None
    report["in_colour_p10_predicted_colour_filter"] = {
        name: in_colour_p10(types, colours, pred_type, names[pr.argmax(1)], q, g, fs)
        for name, pr in {"colour_head": head_probs, **probes}.items()
        if best is None or name in (best, "colour_head")
    }
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
