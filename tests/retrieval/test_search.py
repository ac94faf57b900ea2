"""Index CLI, Searcher, search CLI and eval CLI on a tiny run directory."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from imgsearch.cli.search import main as search_main
from imgsearch.data.images import load_image
from imgsearch.data.schema import read_catalogue
from imgsearch.retrieval.index import IndexCompatibilityError, load_index_dir
from imgsearch.retrieval.search import Searcher, SearchHit
from train_helpers import save_checkpoint

from .conftest import CLASSES, compose


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


def test_searcher_finds_the_item_itself(trained_run, index_dir):
    searcher = Searcher.from_index_dir(index_dir)
    items = searcher.items
    picks = [0, 9, 17]
    images = [load_image(items.image_path.iloc[i]) for i in picks]
    results = searcher.search(images, k=4)
    assert len(results) == 3
    for i, result in zip(picks, results, strict=True):
        top = result.hits[0]
        assert isinstance(top, SearchHit)
        assert top.item_id == items.item_id.iloc[i]
        assert top.score == pytest.approx(1.0, abs=1e-4)  # cosine with itself
        assert [h.rank for h in result.hits] == [1, 2, 3, 4]
        assert result.category in CLASSES and 0.0 < result.probability <= 1.0
        assert top.title == items.title.iloc[i] and top.price == items.price.iloc[i]
        assert set(top.to_dict()) == {
            "rank", "item_id", "product_id", "label", "title", "brand", "price", "image_path", "score"
        }  # fmt: skip
    # k larger than the catalogue: every item once, no padding
    (everything,) = searcher.search(images[:1], k=500)
    assert sorted(h.item_id for h in everything.hits) == sorted(items.item_id)


def test_restrict_to_predicted_returns_only_that_category(index_dir):
    searcher = Searcher.from_index_dir(index_dir)
    images = [load_image(p) for p in searcher.items.image_path.iloc[::5]]
    for result in searcher.search(images, k=10, restrict_to_predicted=True):
        assert result.hits, "the predicted category has items"
        assert {h.label for h in result.hits} == {result.category}


def test_changed_checkpoint_is_refused(trained_run, index_dir, tmp_path):
    from imgsearch.models.classifier import ImageClassifier

    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["checkpoint"]["sha256"] = "0" * 64
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexCompatibilityError, match="changed since the index was built"):
        Searcher.from_index_dir(copy)
    # an explicit checkpoint skips the hash but not the guard: 6x6 pixels give 108-d vectors, not 192-d
    other = ImageClassifier(backbone="svm", num_classes=3, class_names=list(CLASSES), input_size=6)
    ckpt = save_checkpoint(other, tmp_path / "other.ckpt")
    with pytest.raises(IndexCompatibilityError, match="dimension mismatch"):
        Searcher.from_index_dir(copy, checkpoint=ckpt)


def test_search_cli_json(index_dir, capsys):
    items = pd.read_csv(index_dir / "items.csv", dtype=str)
    code = search_main([items.image_path[3], "--index", str(index_dir), "-k", "2", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload[0]["query"] == items.image_path[3]
    assert payload[0]["hits"][0]["item_id"] == items.item_id[3]
    assert len(payload[0]["hits"]) == 2


def test_search_cli_table(index_dir, capsys):
    items = pd.read_csv(index_dir / "items.csv", dtype=str)
    assert search_main([items.image_path[0], "--index", str(index_dir), "-k", "3"]) == 0
    out = capsys.readouterr().out
    assert items.item_id[0] in out and "score" in out


def test_search_cli_unreadable_image_exits_non_zero(index_dir, tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    proc = subprocess.run(
        [sys.executable, "-m", "imgsearch.cli.search", str(bad), "--index", str(index_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert str(bad) in proc.stderr and "cannot read query image" in proc.stderr
    assert proc.stdout == ""
    assert search_main([str(tmp_path / "missing.png"), "--index", str(index_dir)]) == 2
    assert search_main([str(bad), "--index", str(tmp_path)]) == 2


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
