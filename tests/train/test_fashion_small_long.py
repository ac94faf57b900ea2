"""``experiment=fashion_small_lite0_long`` (issue #9, chosen on the Myntra val photos in docs/results.md): the
``fashion_small_lite0`` recipe with 15 epochs, the last 5 of 7 stages and RandAugment, nothing else changed,
so the results table's baseline row stays reproducible beside it."""

from __future__ import annotations

from pathlib import Path

import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import OmegaConf
from tests.train_helpers import compose_train, tiny_overrides

from imgsearch.cli.train import train
from imgsearch.models.classifier import ImageClassifier
from imgsearch.utils.config import config_dir

#: what the long recipe changes, and nothing else (the docs' ablation row names exactly these)
CHANGED = {
    "task_name", "tags", "model.finetune_last_n", "model.val_retrieval", "trainer.max_epochs",
    "data.loader.train_augment.auto_augment",
}  # fmt: skip


def _flat(cfg: dict, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for key, value in cfg.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def _composed(experiment: str) -> dict[str, object]:
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={experiment}"])
    return _flat(OmegaConf.to_container(cfg, resolve=False))


def test_long_recipe_differs_from_the_lite0_recipe_only_in_epochs_and_stages() -> None:
    base, long = _composed("fashion_small_lite0"), _composed("fashion_small_lite0_long")
    differ = {k for k in base.keys() | long.keys() if base.get(k) != long.get(k)}
    assert differ == CHANGED
    assert (base["trainer.max_epochs"], long["trainer.max_epochs"]) == (3, 15)
    assert (base["model.finetune_last_n"], long["model.finetune_last_n"]) == (3, 5)
    assert long["model.finetune"] == "last_n" and long["model.input_size"] == 128
    assert long["data.source.label_column"] == "articleType"
    assert long["data.loader.train_augment.auto_augment"] == "rand-m7-mstd0.5"


def test_long_recipe_trains_the_last_five_stages_only(demo_root: Path, tmp_path: Path) -> None:
    GlobalHydra.instance().clear()
    over = [
        "experiment=fashion_small_lite0_long",
        "data=demo",
        *tiny_overrides(demo_root, model="efficientnet_lite0"),
        *("model.input_size=32", "model.lr=0.05", "test=false", "trainer.max_epochs=1"),
    ]
    cfg = compose_train(over, tmp_path / "run")
    record = train(cfg)
    assert record["global_step"] == 2
    assert "val/map_at_r" in record  # the recipe logs the search vector's val retrieval
    trained = torch.load(record["last_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    # the packaged ImageNet weights the run started from
    start = ImageClassifier("efficientnet_lite0", 2, pretrained=True, input_size=32).state_dict()
    moved = {}
    for stage in range(7):
        names = [n for n in trained if f".blocks.{stage}." in n and n.endswith(".weight") and n in start]
        assert names, f"no weights found for stage {stage}"
        moved[stage] = any(not torch.equal(trained[n], start[n]) for n in names)
    assert moved == {0: False, 1: False, 2: True, 3: True, 4: True, 5: True, 6: True}


def test_lite1_recipe_is_the_long_recipe_on_lite1_only() -> None:
    """``experiment=fashion_small_lite1_long``: the backbone is the one change, so the ablation row that chose
    it (Lite0 -> Lite1, all else equal) is what the experiment trains."""
    long, lite1 = _composed("fashion_small_lite0_long"), _composed("fashion_small_lite1_long")
    differ = {k for k in long.keys() | lite1.keys() if long.get(k) != lite1.get(k)}
    assert differ == {"task_name", "tags", "model.backbone"}
    assert (long["model.backbone"], lite1["model.backbone"]) == ("efficientnet_lite0", "efficientnet_lite1")
    assert lite1["model.input_size"] == 128 and lite1["trainer.max_epochs"] == 15
