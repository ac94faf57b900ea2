"""The index and eval commands end to end: Hydra composition, files written, clear refusals."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from imgsearch.data.schema import read_catalogue
from imgsearch.retrieval.index import load_index_dir
from retrieval_fixtures import CLASSES, compose


def test_index_entry_point_writes_manifest(trained_run, index_dir):
    index, items, manifest = load_index_dir(index_dir)
    catalogue = read_catalogue(trained_run / "catalogue.csv")
    assert items["item_id"].tolist() == catalogue["item_id"].tolist()  # splits: null = every row
    assert index.ntotal == len(catalogue)
    assert manifest["checkpoint"]["path"] == str((trained_run / "checkpoints" / "best.ckpt").resolve())
    assert len(manifest["checkpoint"]["sha256"]) == 64
    assert manifest["model"]["backbone"] == "svm"
    assert manifest["model"]["class_names"] == list(CLASSES)
    assert manifest["embedding"] == {"kind": "features", "dim": 3 * 8 * 8, "normalize": True}
    assert manifest["index"] == {"factory": "Flat", "metric": "ip", "ntotal": len(catalogue)}
    assert manifest["catalogue"]["rows"] == len(catalogue)
    assert manifest["model"]["data_config"]["input_size"] == [3, 8, 8]


def test_eval_entry_point_writes_report(trained_run, tmp_path):
    from imgsearch.cli.evaluate import run

    cfg = compose(
        "eval",
        [
            f"checkpoint={trained_run / 'checkpoints' / 'best.ckpt'}",
            f"output_dir={tmp_path / 'report'}",
            "embed.num_workers=0",
            "embed.trainer.accelerator=cpu",
            "embed.pixel_size=8",
            "samples=2",
            "logger=csv",
            f"paths.output_dir={tmp_path / 'hydra'}",
        ],
    )
    summary = run(cfg)
    report = tmp_path / "report"
    on_disk = json.loads((report / "retrieval.json").read_text())
    assert on_disk["mAP@1"] == pytest.approx(summary["mAP@1"])
    assert set(on_disk["compare"]) == {"embedding", "metric", "classify_first"}
    assert on_disk["checkpoint"]["backbone"] == "svm"
    assert (report / "retrieval.md").read_text().startswith("# Retrieval evaluation")
    assert (report / "retrieval_grid_label.png").stat().st_size > 1000
    assert (report / "retrieval_grid_product.png").stat().st_size > 1000
    logged = pd.read_csv(next((tmp_path / "hydra").rglob("metrics.csv")))
    assert np.isclose(logged["retrieval/label/mAP@1"].dropna().iloc[0], summary["mAP@1"])


def test_index_cli_runs_and_refuses_a_missing_checkpoint(trained_run, tmp_path):
    """The real ``imgsearch-index`` command line (Hydra main); a missing checkpoint is a clear error."""
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    out = tmp_path / "idx"
    base = [
        sys.executable,
        "-m",
        "imgsearch.cli.index",
        f"hydra.run.dir={tmp_path / 'h'}",
        "embed.num_workers=0",
    ]
    proc = subprocess.run(
        [
            *base,
            f"checkpoint={ckpt}",
            f"output_dir={out}",
            "embed.trainer.accelerator=cpu",
            "factory=HNSW32",
            "metric=l2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    _, items, manifest = load_index_dir(out)
    assert manifest["index"]["factory"] == "HNSW32" and manifest["index"]["metric"] == "l2"
    assert len(items) == 24
    from imgsearch.cli.index import build

    cfg = compose("index", [f"checkpoint={tmp_path / 'nope.ckpt'}", f"output_dir={tmp_path / 'idx2'}"])
    with pytest.raises(FileNotFoundError, match=r"checkpoint not found: .*nope\.ckpt"):
        build(cfg)
    assert not (tmp_path / "idx2").exists()
