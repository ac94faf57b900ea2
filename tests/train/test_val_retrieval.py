"""Checkpoint choice by retrieval: ``val/map_at_r`` and ``val/recall_at_1`` of the epoch's val vectors equal
a brute-force computation written here from the definitions (Musgrave et al. 2020), and
``optimized_metric=val/map_at_r`` makes the best checkpoint the best epoch by it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from tests.train_helpers import compose_train, tiny_overrides

from imgsearch.cli.train import train
from imgsearch.data.images import load_image
from imgsearch.data.schema import read_catalogue
from imgsearch.data.transforms import eval_transform
from imgsearch.models.checkpoint import load_classifier
from imgsearch.models.val_retrieval import leave_one_out_accuracy


@pytest.fixture(autouse=True)
def _clear_hydra() -> None:
    GlobalHydra.instance().clear()


def embed_rows(model, image_paths: list[str]) -> np.ndarray:
    """The model's features of each photo with a plain loop: an independent check of the training-time
    val retrieval (which embeds through the datamodule's val loader)."""
    transform = eval_transform(model.data_config)
    with torch.inference_mode():
        batch = torch.stack([transform(load_image(p)) for p in image_paths])
        return model.embed(batch, "features").float().numpy()


def brute_force(vectors: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    """(MAP@R, Recall@1) by sorting the full cosine matrix: each row queries all others."""
    unit = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = unit @ unit.T
    aps, hits = [], []
    for i in range(len(unit)):
        others = [j for j in np.argsort(-sims[i], kind="stable") if j != i]
        rel = np.array([labels[j] == labels[i] for j in others])
        r = int(rel.sum())
        if r == 0:
            continue
        precision = np.cumsum(rel[:r]) / np.arange(1, r + 1)
        aps.append(float((precision * rel[:r]).sum() / r))
        hits.append(float(rel[0]))
    return float(np.mean(aps)), float(np.mean(hits))


def test_val_retrieval_metrics_equal_a_brute_force_computation() -> None:
    gen = torch.Generator().manual_seed(0)
    labels = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 3, 4, 4])  # label 3 has one photo: left out
    vectors = torch.randn(len(labels), 8, generator=gen) + 0.8 * torch.randn(5, 8, generator=gen)[labels]
    got = leave_one_out_accuracy(vectors, labels)
    map_r, r1 = brute_force(vectors.numpy(), labels.numpy())
    assert 0.0 < map_r < 1.0 and 0.0 < r1 < 1.0  # a case where ranks matter
    assert got is not None
    assert got["map_at_r"] == pytest.approx(map_r, abs=1e-6)
    assert got["recall_at_1"] == pytest.approx(r1, abs=1e-6)


def test_no_label_with_two_photos_gives_no_score() -> None:
    assert leave_one_out_accuracy(torch.randn(4, 3), torch.arange(4)) is None


def _logged(run_dir: Path, name: str) -> list[float]:
    rows = list(csv.DictReader((run_dir / "csv" / "metrics.csv").open()))
    return [float(r[name]) for r in rows if r.get(name)]


def test_checkpoint_chosen_by_logged_val_map_at_r(demo_root: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    over = [
        *tiny_overrides(demo_root, model="efficientnet_lite0"),
        *("model.pretrained=false", "model.input_size=32", "model.embedding_dim=16", "test=false"),
        *("loss=supcon", "labels=product", "model.val_retrieval=true", "optimized_metric=val/map_at_r"),
        *("trainer.max_epochs=3", "trainer.limit_val_batches=1.0", "logger=csv"),
    ]
    record = train(compose_train(over, run))
    logged = _logged(run, "val/map_at_r")
    assert len(logged) == 3
    # the last epoch's logged value is what the last weights score, computed independently
    catalogue = read_catalogue(run / "catalogue.csv")
    val = catalogue[catalogue["split"] == "val"]
    model = load_classifier(record["last_checkpoint"]).eval()
    vectors = embed_rows(model, val["image_path"].astype(str).tolist())
    map_r, r1 = brute_force(vectors, val["product_id"].astype(str).to_numpy())
    assert record["val/map_at_r"] == pytest.approx(map_r, abs=1e-4)
    assert record["val/recall_at_1"] == pytest.approx(r1, abs=1e-4)
    assert logged[-1] == pytest.approx(map_r, abs=1e-4)
    # ModelCheckpoint monitored it: the best checkpoint holds the best epoch
    assert record["optimized_metric"]["name"] == "val/map_at_r"
    assert record["optimized_metric"]["value"] == pytest.approx(max(logged), abs=1e-6)
    best_epoch = int(np.argmax(logged))
    ckpt = torch.load(record["best_checkpoint"], map_location="cpu", weights_only=True)
    assert ckpt["epoch"] == best_epoch
