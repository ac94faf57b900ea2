"""Issue #15: the colour probe's probabilities as the index's colour part, Myntra photos.

    PYTHONPATH=src python scripts/probe_colour_part_eval.py --run <train run dir> [--split val|test]
        [--share S --weight W] [--out f.json]

The protocol of ``scripts/lab_colour_eval.py`` (its caches are reused): queries the ``--split`` photos,
gallery train (+ val for test), classify-then-search, MAP@R of same articleType AND baseColour. The colour
part is ``fused_colour_part(p, Lab histograms, s)`` with ``p`` the colour head's probabilities (what an index
holds today) or the probe's (``models/colour_probe.py``, fitted on the train photos). The probe has seen the
train photos' labels, so its reading of them is better than of a shop's unlabelled photo; the gallery's
probe probabilities are therefore also given out of fold (5 folds over the train photos: each photo read by
a probe that never saw it), the honest case. On val the grid of shares and weights is searched; on test only
the setting given (chosen on val) is reported.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
from colour_words_eval import _map_at_r, emit_report
from lab_colour_eval import load_run

from imgsearch.models.colour_probe import fit_colour_probe
from imgsearch.retrieval.colour import fused_colour_part
from imgsearch.retrieval.embed import ATTRIBUTE_KIND_PREFIX

SHARES = (0.0, 0.25, 0.5, 0.75, 1.0)
WEIGHTS = (1.0, 2.0, 4.0, 8.0, 16.0)
FOLDS = 5


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--run", required=True, type=Path)
    p.add_argument("--split", default="val", choices=("test", "val"))
    p.add_argument("--share", type=float, default=None)
    p.add_argument("--weight", type=float, default=None)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    _, cat, data, classes, hists = load_run(args.run)
    split = cat["split"].to_numpy()
    q = np.flatnonzero(split == args.split)
    g = np.flatnonzero(np.isin(split, ["train"] if args.split == "val" else ["train", "val"]))
    train = np.flatnonzero(split == "train")
    types, colours = cat["label"].to_numpy(), cat["baseColour"].astype(str).to_numpy()
    head = data[ATTRIBUTE_KIND_PREFIX + "baseColour"]
    names = classes["baseColour"]

    probe, _ = fit_colour_probe("baseColour", names, head[train], hists[train], list(colours[train]))
    in_sample = probe.predict(head, hists)
    # the train photos re-read by probes that never saw them (val and test photos: unseen by the probe anyway)
    out_of_fold = in_sample.copy()
    rng = np.random.default_rng(0)
    folds = np.array_split(rng.permutation(train), FOLDS)
    for k, held in enumerate(folds):
        fit = np.concatenate([f for j, f in enumerate(folds) if j != k])
        fold_probe, _ = fit_colour_probe("baseColour", names, head[fit], hists[fit], list(colours[fit]))
        out_of_fold[held] = fold_probe.predict(head[held], hists[held])

    f = data["features"] / np.linalg.norm(data["features"], axis=1, keepdims=True)
    fs = f[q] @ f[g].T
    same_type = types[q][:, None] == types[g][None, :]
    same_both = same_type & (colours[q][:, None] == colours[g][None, :])
    pred_type = np.array(classes["label"], dtype=object)[data["probs"][q].argmax(1)]
    first = 100.0 * (pred_type[:, None] == types[g][None, :])
    sources = {"head": head, "probe_in_sample": in_sample, "probe_out_of_fold": out_of_fold}
    grid_s = SHARES if args.share is None else (args.share,)
    grid_w = WEIGHTS if args.weight is None else (args.weight,)
    report: dict = {"split": args.split, "queries": len(q), "gallery": len(g), "rows": {}}
    known = np.isin(colours, names)
    for name, probs in sources.items():
        acc = float(np.mean(np.array(names)[probs[g].argmax(1)][known[g]] == colours[g][known[g]]))
        report["rows"][f"{name} gallery colour accuracy"] = acc
        for share in grid_s:
            part = fused_colour_part(probs, hists, share)
            cs = part[q] @ part[g].T
            for w in grid_w:
                sim = first + fs + w * cs
                report["rows"][f"{name} share={share} w={w}"] = {
                    "type_and_colour_map_at_r": _map_at_r(sim, same_both),
                    "type_map_at_r": _map_at_r(sim, same_type),
                }
    emit_report(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
