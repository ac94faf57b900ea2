"""``imgsearch-colour-probe``: fit a colour probe (models/colour_probe.py) to a trained model's colour head.

    imgsearch-colour-probe outputs/train/runs/<run>            # its best checkpoint and catalogue.csv
    imgsearch-colour-probe run.ckpt --catalogue shop.csv --attribute baseColour --out probe.pt
    imgsearch-index checkpoint=... colour_probe=<run>/colour_probe.pt   # tags and predicted colours use it

The model stays frozen: its colour head's probabilities and the photos' foreground Lab histograms of the
``--fit-split`` rows that carry a colour label train the probe (seconds on a CPU), and the ``--val-split``
rows, when there are any, say how the probe compares with the head alone. Writes the probe and a JSON report
beside it (``<out>.json``). Bad input (no such head, too few labelled photos, an unreadable checkpoint) stops
with one line and exit status 2; unreadable photos are skipped and counted in the report.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

EXIT_BAD_INPUT = 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    from imgsearch.models.colour_probe import FitSettings

    d = FitSettings()
    p = argparse.ArgumentParser(
        prog="imgsearch-colour-probe", description=__doc__.split("\n\n")[0].split(": ", 1)[1]
    )
    p.add_argument("checkpoint", help="a .ckpt or a training run directory (its best checkpoint)")
    p.add_argument("--catalogue", default=None, help="labelled photos (default: the run's catalogue.csv)")
    p.add_argument(
        "--attribute", default=None, help="the colour head (default: the first named like a colour)"
    )
    p.add_argument("--out", type=Path, default=None, help="probe file (default: <run dir>/colour_probe.pt)")
    p.add_argument("--fit-split", default="train", help="catalogue split the probe learns from")
    p.add_argument("--val-split", default="val", help="split it is compared with the head on ('' = none)")
    p.add_argument("--hidden", type=int, default=d.hidden)
    p.add_argument("--steps", type=int, default=d.steps)
    p.add_argument("--lr", type=float, default=d.lr)
    p.add_argument("--weight-decay", type=float, default=d.weight_decay)
    p.add_argument("--seed", type=int, default=d.seed)
    p.add_argument("--batch-size", type=int, default=64, help="photos a forward pass of the model")
    args = p.parse_args(argv)
    if args.hidden < 1 or args.steps < 1 or args.lr <= 0 or args.weight_decay < 0 or args.batch_size < 1:
        p.error("--hidden, --steps and --batch-size must be >= 1, --lr > 0 and --weight-decay >= 0")
    return args


def _head_and_lab(
    module: Any, rows: Any, attribute: str, batch_size: int
) -> tuple[np.ndarray, np.ndarray, Any, list]:
    """``(head probabilities, Lab histograms, the readable rows, the skipped ones)`` of ``rows``."""
    from imgsearch.retrieval.embed import ATTRIBUTE_KIND_PREFIX, embed_catalogue
    from imgsearch.retrieval.lab_colour import lab_descriptors

    emb = embed_catalogue(
        module, rows, kind=ATTRIBUTE_KIND_PREFIX + attribute, batch_size=batch_size,
        trainer_kwargs={"enable_progress_bar": False},
    )  # fmt: skip
    kept = rows.iloc[emb.rows].reset_index(drop=True)
    return emb[ATTRIBUTE_KIND_PREFIX + attribute], lab_descriptors(kept["image_path"]), kept, emb.skipped


def fit(args: argparse.Namespace) -> dict[str, Any]:
    """Fit, save and report; returns the report written beside the probe."""
    from imgsearch.cli.inputs import CATALOGUE_FILE, resolve_checkpoint, run_dir_of
    from imgsearch.data.schema import read_catalogue
    from imgsearch.models.checkpoint import checkpoint_sha256, load_classifier
    from imgsearch.models.colour_probe import FitSettings, fit_colour_probe, save_colour_probe
    from imgsearch.retrieval.colour import colour_head
    from imgsearch.utils.atomic import atomic_write_json

    ckpt = resolve_checkpoint(args.checkpoint)
    catalogue = Path(args.catalogue) if args.catalogue else run_dir_of(ckpt) / CATALOGUE_FILE
    if not catalogue.is_file():
        raise FileNotFoundError(f"catalogue not found: {catalogue}")
    module = load_classifier(ckpt, map_location="cpu").eval()
    heads = dict(getattr(module, "attribute_classes", None) or {})
    attribute = colour_head(heads, args.attribute)
    if attribute is None:
        raise ValueError(
            f"{ckpt} has no colour head (its heads: {list(heads) or 'none'}); train with "
            "model.attributes=[baseColour,...] or name one with --attribute"
        )
    table = read_catalogue(catalogue)
    if attribute not in table.columns:
        raise ValueError(f"{catalogue} has no {attribute!r} column to learn colours from")
    labelled = table[attribute].fillna("").astype(str).str.strip() != ""
    fit_rows = table[labelled & (table["split"] == args.fit_split)].reset_index(drop=True)
    if fit_rows.empty:
        raise ValueError(f"{catalogue}: no {args.fit_split!r} rows with a {attribute!r} label")
    settings = FitSettings(args.hidden, args.steps, args.lr, args.weight_decay, args.seed)
    probs, hists, kept, skipped = _head_and_lab(module, fit_rows, attribute, args.batch_size)
    probe, fitted = fit_colour_probe(
        attribute, heads[attribute], probs, hists, list(kept[attribute]), settings
    )
    report: dict[str, Any] = {
        "checkpoint": str(ckpt),
        "checkpoint_sha256": checkpoint_sha256(ckpt),
        "catalogue": str(catalogue),
        "attribute": attribute,
        "classes": len(heads[attribute]),
        "fit": {
            "split": args.fit_split,
            "rows": fitted.rows,
            "unreadable_photos": len(skipped),
            "unknown_labels": fitted.unknown_labels,
            "unknown_examples": fitted.unknown_examples,
            "settings": fitted.settings,
        },
    }
    val_rows = (
        table[labelled & (table["split"] == args.val_split)].reset_index(drop=True)
        if args.val_split
        else None
    )
    if val_rows is not None and not val_rows.empty:
        vprobs, vhists, vkept, vskipped = _head_and_lab(module, val_rows, attribute, args.batch_size)
        truth = vkept[attribute].astype(str).to_numpy()
        names = np.array(probe.classes, dtype=object)
        known = np.isin(truth, names)
        accuracy = {  # on the rows whose label the head knows; the others are counted
            "head": float(np.mean(names[vprobs.argmax(1)][known] == truth[known])) if known.any() else None,
            "probe": float(np.mean(names[probe.predict(vprobs, vhists).argmax(1)][known] == truth[known]))
            if known.any() else None,
        }  # fmt: skip
        report["val"] = {
            "split": args.val_split,
            "rows": int(known.sum()),
            "unknown_labels": int((~known).sum()),
            "unreadable_photos": len(vskipped),
            "accuracy": accuracy,
        }
        probe.info["val_accuracy"] = accuracy
    probe.info.update(checkpoint_sha256=report["checkpoint_sha256"], catalogue=str(catalogue))
    out = args.out or run_dir_of(ckpt) / "colour_probe.pt"
    save_colour_probe(probe, out)
    report["probe"] = str(out)
    atomic_write_json(Path(str(out) + ".json"), report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    from imgsearch.cli.inputs import InputError
    from imgsearch.models.checkpoint import CheckpointError

    try:
        report = fit(args)
    except (FileNotFoundError, InputError, CheckpointError, ValueError) as exc:  # ColourProbeError too
        print(f"imgsearch-colour-probe: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    rows = report["fit"]["rows"]
    line = f"colour probe for {report['attribute']!r} written to {report['probe']} ({rows} photos"
    val = report.get("val")
    if val and val["accuracy"]["head"] is not None:
        acc = val["accuracy"]
        line += f"; {val['split']} accuracy: head {acc['head']:.3f}, probe {acc['probe']:.3f}"
        line += f" on {val['rows']} photos"
    print(line + ")")
    return 0


if __name__ == "__main__":
    sys.exit(main())
