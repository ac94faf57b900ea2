"""The retrieval neck through index and search, and checkpoints from before the neck."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgsearch.data.images import load_image
from imgsearch.data.schema import write_catalogue
from imgsearch.models.classifier import ImageClassifier
from imgsearch.retrieval.index import load_index_dir
from imgsearch.retrieval.search import Searcher
from retrieval_fixtures import CLASSES, compose, make_catalogue
from train_helpers import save_checkpoint

# Hyper-parameters the neck/metric-loss work added; a checkpoint written before it has none of them.
NEW_HPARAMS = ("embedding_dim", "metric_loss", "metric_loss_kwargs", "metric_weight", "ce_weight",
               "metric_num_classes", "loss_lr")  # fmt: skip


def _index(run: Path, ckpt: Path) -> Path:
    from imgsearch.cli.index import build

    cfg = compose(
        "index",
        [
            f"checkpoint={ckpt}",
            "embed.num_workers=0",
            "embed.trainer.accelerator=cpu",
            f"hydra.run.dir={run / 'hydra'}",
        ],
    )
    return build(cfg)


def _search_self(index_dir: Path) -> list[tuple[str, str, float]]:
    searcher = Searcher.from_index_dir(index_dir)
    items = searcher.items
    results = searcher.search([load_image(items.image_path.iloc[i]) for i in (0, 7)], k=3)
    return [
        (items.item_id.iloc[i], r.hits[0].item_id, r.hits[0].score)
        for i, r in zip((0, 7), results, strict=True)
    ]


def test_checkpoint_without_neck_still_indexes_and_searches(tmp_path: Path) -> None:
    run = tmp_path / "old"
    write_catalogue(make_catalogue(run / "images"), run / "catalogue.csv")
    model = ImageClassifier("svm", len(CLASSES), class_names=list(CLASSES), input_size=8)
    ckpt = save_checkpoint(model.eval(), run / "checkpoints" / "best.ckpt")
    raw = torch.load(ckpt, weights_only=True)
    for key in NEW_HPARAMS:  # make it exactly what an older imgsearch wrote
        raw["hyper_parameters"].pop(key)
    assert not any(k.startswith(("neck.", "metric_loss.")) for k in raw["state_dict"])
    torch.save(raw, ckpt)
    _, _, manifest = load_index_dir(_index(run, ckpt))
    assert manifest["embedding"]["dim"] == 3 * 8 * 8  # pooled features: what the old model indexed
    for query, top, score in _search_self(run / "index"):
        assert top == query and score == pytest.approx(1.0, abs=1e-4)


def test_neck_is_the_indexed_vector(tmp_path: Path) -> None:
    run = tmp_path / "neck"
    write_catalogue(make_catalogue(run / "images"), run / "catalogue.csv")
    model = ImageClassifier("svm", len(CLASSES), class_names=list(CLASSES), input_size=8, embedding_dim=12,
                            metric_loss="arcface", metric_num_classes=6)  # fmt: skip
    ckpt = save_checkpoint(model.eval(), run / "checkpoints" / "best.ckpt")
    assert torch.load(ckpt, weights_only=True)["hyper_parameters"]["embedding_dim"] == 12
    index, _, manifest = load_index_dir(_index(run, ckpt))
    assert manifest["embedding"]["dim"] == 12 and index.d == 12
    for query, top, score in _search_self(run / "index"):
        assert top == query and score == pytest.approx(1.0, abs=1e-4)
