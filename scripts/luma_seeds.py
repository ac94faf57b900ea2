"""Luma recipes compared over several seeded product splits, not the one split's 13 val products.

Each seed draws a new split by product (``data.prepare.seed`` follows ``seed``) and new training randomness;
each run is scored by the leave-one-out protocol (``imgsearch.retrieval.leave_one_out``) on its val products
(the choice: the mean over seeds) and on its held-out products (reported), plain, with DBA and with the
foreground Lab colour at several weights (``SEARCHES``). A run already
trained (its ``last.ckpt`` exists) is scored again, not retrained. Usage::

    PYTHONPATH=src python scripts/luma_seeds.py --out RUNS --seeds 42 7 123 \\
        --recipe default=experiment=luma_supcon \\
        --recipe lite1_224=experiment=luma_supcon,model=efficientnet_lite1,model.input_size=224
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
from pathlib import Path

import numpy as np

#: name -> (DBA neighbours, Lab colour weight): the leave-one-out search options scored per run
SEARCHES: dict[str, tuple[int, float]] = {
    "plain": (0, 0.0),
    "dba3": (3, 0.0),
    **{f"lab{w:g}": (0, w) for w in (0.25, 0.5, 0.75, 1.0, 1.5, 2.0)},
    "lab1+dba3": (3, 1.0),
}


def _train(run: Path, overrides: list[str], seed: int) -> Path:
    ckpt = run / "checkpoints" / "last.ckpt"
    if not ckpt.exists():
        cmd = ["imgsearch-train", *overrides, f"seed={seed}", "logger=none", f"hydra.run.dir={run}"]
        print("+", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return ckpt


def _score_run(run: Path, ckpt: Path, results: dict, name: str, seed: int, save) -> None:
    from imgsearch.retrieval.lab_colour import lab_descriptors, lab_part
    from imgsearch.retrieval.leave_one_out import embed_rows, expanded, leave_one_out_scores

    for split in ("val", "test"):
        todo = [s for s in SEARCHES if f"{name}|{seed}|{s}|{split}" not in results]
        if not todo:
            continue
        vectors, kept, _ = embed_rows(run / "catalogue.csv", [split], checkpoint=ckpt)
        lab = lab_part(lab_descriptors(kept["image_path"].tolist()))
        keys = kept["product_id"].astype(str).to_numpy()
        for search in todo:
            dba, weight = SEARCHES[search]
            queries, gallery = expanded(vectors, dba=dba)
            if weight:  # the inner product becomes cosine + weight * BC(Lab): leave_one_out --lab-weight
                queries, gallery = (np.hstack([v, np.sqrt(weight) * lab]) for v in (queries, gallery))
            results[f"{name}|{seed}|{search}|{split}"] = leave_one_out_scores(queries, keys, gallery=gallery)
        save()


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", type=Path, required=True, help="runs go to OUT/<recipe>/seed_<s>")
    p.add_argument("--seeds", type=int, nargs="+", default=[42, 7, 123])
    p.add_argument("--recipe", action="append", required=True, help="NAME=override,override,...")
    args = p.parse_args(argv)
    results_path = args.out / "results.json"
    results = json.loads(results_path.read_text()) if results_path.exists() else {}

    def save() -> None:  # a stopped sweep keeps what it scored
        tmp = results_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(results, indent=1))
        os.replace(tmp, results_path)

    for spec in args.recipe:
        name, _, overrides = spec.partition("=")
        for seed in args.seeds:
            run = args.out / name / f"seed_{seed}"
            ckpt = _train(run, overrides.split(","), seed)
            _score_run(run, ckpt, results, name, seed, save)
    print("| recipe | search | seeds | val Recall@1 | val MAP@R | held-out Recall@1 | held-out MAP@R |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for spec in args.recipe:
        name = spec.partition("=")[0]
        for search in SEARCHES:
            cells = []
            for split in ("val", "test"):
                for metric in ("recall@1", "MAP@R"):
                    vals = [results[f"{name}|{s}|{search}|{split}"][metric] for s in args.seeds]
                    cells.append(f"{np.mean(vals):.3f} ({' / '.join(f'{v:.3f}' for v in vals)})")
            print(f"| {name} | {search} | {len(args.seeds)} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
