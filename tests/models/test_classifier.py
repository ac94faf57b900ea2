"""ImageClassifier: one training and validation step per model, policies, losses, embeddings, test outputs."""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import TensorBoardLogger
from torch.utils.data import DataLoader, TensorDataset

from imgsearch.models.backbones import list_backbones
from imgsearch.models.classifier import ImageClassifier

NUM_CLASSES = 3
# The smallest inputs each network accepts (AlexNet's pooling needs ~63 px, Inception-v3 75 px).
INPUT_SIZE = {"svm": 16, "alexnet": 64, "inception_v3": 75}


def _loader(size: int, n: int = 4, seed: int = 0) -> DataLoader:
    gen = torch.Generator().manual_seed(seed)
    images = torch.randn(n, 3, size, size, generator=gen)
    targets = torch.arange(n) % NUM_CLASSES
    return DataLoader(TensorDataset(images, targets, torch.arange(n)), batch_size=n)


def _trainer(tmp_path: Path, **kwargs) -> L.Trainer:
    defaults = dict(
        accelerator="cpu",
        devices=1,
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        enable_model_summary=False,
        logger=False,
        enable_checkpointing=False,
    )
    return L.Trainer(**{**defaults, **kwargs})


@pytest.mark.parametrize("name", sorted(list_backbones()))
def test_every_model_takes_a_training_and_a_validation_step(name: str, tmp_path: Path) -> None:
    """``finetune=head``: the classifier layers move, the frozen feature layers do not."""
    size = INPUT_SIZE.get(name, 32)
    torch.manual_seed(0)
    model = ImageClassifier(
        name,
        NUM_CLASSES,
        input_size=size if name != "inception_v3" else None,
        finetune="head",
        optimizer="sgd",
        momentum=0.0,  # no momentum buffers: VGG's fc6/fc7 are big enough on a 2-core CI box
        lr=0.5,
        scheduler=None,
        loss="hinge" if name == "svm" else "cross_entropy",
    )
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    trainable = {k for k, v in model.named_parameters() if v.requires_grad}
    assert {"head.weight", "head.bias"} <= trainable
    if name in {"alexnet", "vgg16", "vgg16_bn"}:  # the studies' fc6/fc7/fc8
        assert len(trainable) == 6
    else:
        assert trainable == {"head.weight", "head.bias"}

    trainer = _trainer(tmp_path, fast_dev_run=1)
    trainer.fit(model, _loader(size), _loader(size, seed=1))

    metrics = trainer.callback_metrics
    assert math.isfinite(float(metrics["train/loss"])) and math.isfinite(float(metrics["val/loss"]))
    assert 0.0 <= float(metrics["val/acc"]) <= 1.0
    assert {"val/acc_top5", "val/f1_macro", "train/acc"} <= set(metrics)
    for key, value in model.named_parameters():
        changed = not torch.equal(before[key], value.detach())
        if key in {"head.weight"} or (key in trainable and key.endswith("weight")):
            assert changed, f"{key} should have trained"
        if key not in trainable:
            assert not changed, f"{key} is frozen but changed"


def test_finetune_all_trains_the_backbone_and_last_n_only_the_end(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = ImageClassifier("efficientnet_lite0", NUM_CLASSES, input_size=32, finetune="all", lr=0.05)
    first = model.backbone.model.conv_stem.weight.detach().clone()
    _trainer(tmp_path, fast_dev_run=1).fit(model, _loader(32))
    assert not torch.equal(first, model.backbone.model.conv_stem.weight)

    last = ImageClassifier(
        "efficientnet_lite0", NUM_CLASSES, input_size=32, finetune="last_n", finetune_last_n=1
    )
    trainable = {k for k, v in last.named_parameters() if v.requires_grad}
    assert trainable - {"head.weight", "head.bias"}
    # timm groups the final 1x1 conv and its norm with the last stage
    last_stage = ("head.", "backbone.model.blocks.6.", "backbone.model.conv_head.", "backbone.model.bn2.")
    assert all(k.startswith(last_stage) for k in trainable)
    assert "backbone.model.blocks.6.0.conv_pw.weight" in trainable
    assert "backbone.model.blocks.5.0.conv_pw.weight" not in trainable


def test_hinge_loss_linear_svm_separates_easy_classes_and_decays_only_w(tmp_path: Path) -> None:
    """The Amazon baseline: s = Wx + b on raw pixels, multi-class hinge, L2 (weight decay) on W only."""
    torch.manual_seed(0)
    n = 12
    targets = torch.arange(n) % NUM_CLASSES
    images = torch.full((n, 3, 8, 8), -0.5)
    images[torch.arange(n), targets] = 0.5  # class k = bright channel k
    images += 0.05 * torch.randn_like(images)
    loader = DataLoader(TensorDataset(images, targets, torch.arange(n)), batch_size=4, shuffle=True)
    model = ImageClassifier(
        "svm",
        NUM_CLASSES,
        input_size=8,
        loss="hinge",
        optimizer="sgd",
        lr=0.05,
        weight_decay=1e-3,
        scheduler=None,
    )
    assert isinstance(model.criterion, torch.nn.MultiMarginLoss)
    trainer = _trainer(tmp_path, max_epochs=5)
    trainer.fit(model, loader, loader)
    assert float(trainer.callback_metrics["val/acc"]) == 1.0
    assert float(trainer.callback_metrics["val/loss"]) < 0.5
    decays = {
        id(p): group["weight_decay"] for group in trainer.optimizers[0].param_groups for p in group["params"]
    }
    assert decays[id(model.head.weight)] == pytest.approx(1e-3)
    assert decays[id(model.head.bias)] == 0.0


def test_cosine_schedule_with_linear_warmup_per_epoch(tmp_path: Path) -> None:
    lrs: list[float] = []

    class RecordLR(Callback):
        def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
            lrs.append(trainer.optimizers[0].param_groups[0]["lr"])

    base = 0.1
    model = ImageClassifier("svm", NUM_CLASSES, input_size=8, optimizer="sgd", lr=base, warmup_epochs=1)
    _trainer(tmp_path, max_epochs=4, callbacks=[RecordLR()], limit_val_batches=0).fit(model, _loader(8))
    cosine = [base * (1 + math.cos(math.pi * t / 3)) / 2 for t in range(3)]  # T_max = 4 epochs - 1 warmup
    assert lrs == pytest.approx([base / 2, *cosine])


def test_embed_predict_and_dimensions() -> None:
    model = ImageClassifier("efficientnet_lite0", 4, class_names=list("abcd"), input_size=32).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.inference_mode():
        features = model.embed(x, "features")
        probs = model.embed(x, "probs")
        out = model.predict_step((x, torch.zeros(3, dtype=torch.long), torch.tensor([7, 8, 9])), 0)
    assert features.shape == (3, model.embedding_dim("features")) == (3, 1280)
    assert probs.shape == (3, model.embedding_dim("probs")) == (3, 4)
    assert torch.allclose(probs.sum(dim=-1), torch.ones(3))
    assert torch.allclose(probs, model(x).softmax(-1))
    assert torch.equal(out["row"], torch.tensor([7, 8, 9]))
    assert torch.allclose(out["features"], features) and torch.allclose(out["probs"], probs)
    assert model.class_names == ["a", "b", "c", "d"]
    with pytest.raises(ValueError, match="kind"):
        model.embed(x, "pixels")


def test_hparams_are_plain_and_carry_preprocessing() -> None:
    from omegaconf import OmegaConf

    model = ImageClassifier(
        "svm",
        2,
        class_names=OmegaConf.create(["shoe", "bag"]),
        input_size=12,
        backbone_kwargs=OmegaConf.create({}),
    )
    hp = dict(model.hparams)
    assert hp["class_names"] == ["shoe", "bag"] and type(hp["class_names"]) is list
    assert hp["data_config"]["input_size"] == [3, 12, 12]
    assert hp["data_config"]["mean"] == [0.5, 0.5, 0.5]
    assert model.data_config == hp["data_config"]
    with pytest.raises(ValueError, match="class names"):
        ImageClassifier("svm", 3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="loss"):
        ImageClassifier("svm", 3, loss="l1")


def test_test_stage_writes_and_logs_the_confusion_matrix(tmp_path: Path) -> None:
    model = ImageClassifier("svm", NUM_CLASSES, class_names=["boots", "bags", "hats"], input_size=8)
    logger = TensorBoardLogger(tmp_path, name="tb")
    trainer = _trainer(tmp_path, logger=logger)
    results = trainer.test(model, _loader(8, n=6))
    assert {"test/acc", "test/acc_top5", "test/f1_macro", "test/loss"} <= set(results[0])
    path = model.confusion_matrix_path
    assert path == Path(logger.log_dir) / "confusion_matrix.png"
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    events = b"".join(p.read_bytes() for p in Path(logger.log_dir).glob("events.out.tfevents.*"))
    assert b"test/confusion_matrix" in events
