"""Checkpoints: safe round trip through a real Trainer, and clear errors for files that are not ours."""

from __future__ import annotations

import hashlib
import pickle
from pathlib import Path

import lightning as L
import pytest
import torch
from omegaconf import OmegaConf
from torch.utils.data import DataLoader, TensorDataset

from imgsearch.models.checkpoint import CheckpointError, checkpoint_sha256, load_classifier
from imgsearch.models.classifier import ImageClassifier


def _loader(n: int = 6, size: int = 32) -> DataLoader:
    gen = torch.Generator().manual_seed(0)
    images = torch.randn(n, 3, size, size, generator=gen)
    return DataLoader(TensorDataset(images, torch.arange(n) % 3, torch.arange(n)), batch_size=3)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[ImageClassifier, Path]:
    """A BatchNorm model trained two steps (warmup + cosine schedule), saved by Lightning's checkpointing."""
    root = tmp_path_factory.mktemp("ckpt")
    torch.manual_seed(0)
    model = ImageClassifier(
        "efficientnet_lite0",
        3,
        class_names=OmegaConf.create(["boots", "bags", "hats"]),  # as Hydra passes them
        input_size=32,
        finetune="last_n",
        finetune_last_n=2,
        warmup_epochs=1,
        lr=0.01,
    )
    trainer = L.Trainer(
        accelerator="cpu",
        max_epochs=2,
        limit_train_batches=1,
        limit_val_batches=1,
        default_root_dir=root,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(model, _loader(), _loader())
    path = Path(trainer.checkpoint_callback.last_model_path or trainer.checkpoint_callback.best_model_path)
    assert path.is_file()
    return model.eval(), path


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_same_model(trained) -> None:
    model, path = trained
    raw = torch.load(path, map_location="cpu", weights_only=True)
    hp = raw["hyper_parameters"]
    assert hp["backbone"] == "efficientnet_lite0"
    assert hp["class_names"] == ["boots", "bags", "hats"]
    assert hp["data_config"]["input_size"] == [3, 32, 32]
    assert raw["global_step"] == 2

    restored = load_classifier(path)
    assert not restored.training
    assert restored.class_names == ["boots", "bags", "hats"]
    assert restored.data_config == model.data_config
    x = torch.randn(4, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(restored(x), model(x))
        assert torch.equal(restored.embed(x, "features"), model.embed(x, "features"))
    # the fine-tuning policy is part of the model description too
    assert [n for n, p in restored.named_parameters() if p.requires_grad] == [
        n for n, p in model.named_parameters() if p.requires_grad
    ]


def test_load_never_needs_the_pretrained_source(tmp_path: Path) -> None:
    """A model trained from a local weights file reloads after that file is gone."""
    weights = tmp_path / "init.pth"
    torch.save(ImageClassifier("timm/mobilenetv3_small_050", 2).backbone.model.state_dict(), weights)
    model = ImageClassifier(
        "timm/mobilenetv3_small_050", 2, pretrained_path=str(weights), input_size=32
    ).eval()
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(tmp_path / "model.ckpt")
    weights.unlink()
    restored = load_classifier(tmp_path / "model.ckpt")
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        assert torch.equal(restored(x), model(x))


def test_missing_and_unreadable_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"absent\.ckpt"):
        load_classifier(tmp_path / "absent.ckpt")
    (tmp_path / "noise.ckpt").write_bytes(b"\x00\x01 not a checkpoint")
    with pytest.raises(CheckpointError, match=r"noise\.ckpt is not a readable checkpoint"):
        load_classifier(tmp_path / "noise.ckpt")


class _Payload:
    def __reduce__(self):  # what a malicious pickle does: run code when loaded
        return (print, ("this must never run",))


def test_pickled_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with open(tmp_path / "evil.ckpt", "wb") as fh:
        pickle.dump({"state_dict": {}, "hyper_parameters": {"x": _Payload()}}, fh)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_classifier(tmp_path / "evil.ckpt")
    assert "this must never run" not in capsys.readouterr().out


def test_structural_problems_are_reported(tmp_path: Path, trained) -> None:
    _, path = trained
    good = torch.load(path, map_location="cpu", weights_only=True)

    torch.save({"weights": good["state_dict"]}, tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="no 'state_dict'"):
        load_classifier(tmp_path / "plain.pt")

    torch.save({"state_dict": good["state_dict"]}, tmp_path / "nohp.ckpt")
    with pytest.raises(CheckpointError, match="no 'hyper_parameters'"):
        load_classifier(tmp_path / "nohp.ckpt")

    other = dict(good, hyper_parameters={**good["hyper_parameters"], "num_classes": 5, "class_names": None})
    torch.save(other, tmp_path / "mismatch.ckpt")
    with pytest.raises(CheckpointError, match=r"mismatch\.ckpt: weights do not fit"):
        load_classifier(tmp_path / "mismatch.ckpt")

    broken = dict(good, hyper_parameters={**good["hyper_parameters"], "backbone": "resnet5O"})
    torch.save(broken, tmp_path / "unknown.ckpt")
    with pytest.raises(CheckpointError, match="cannot rebuild"):
        load_classifier(tmp_path / "unknown.ckpt")


def test_checkpoint_sha256_streams_the_whole_file(trained) -> None:
    _, path = trained
    expected = hashlib.sha256(path.read_bytes()).hexdigest()
    assert checkpoint_sha256(path) == expected
    assert checkpoint_sha256(path, chunk_size=4097) == expected
