"""CatalogueDataModule: preprocessing from the model's timm data config, bad images, sampling."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from PIL import Image

from imgsearch.data import dataset as dataset_mod
from imgsearch.data.datamodule import CatalogueDataModule, default_num_workers
from imgsearch.data.dataset import CatalogueDataset, collate_skip_none
from imgsearch.data.transforms import build_transforms, draft_size_for

GREY = 128  # every test image is a flat colour, so any resize/crop keeps the pixel value


def _timm_config(name: str) -> dict:
    return timm.data.resolve_data_config(pretrained_cfg=timm.get_pretrained_cfg(name).to_dict())


def _catalogue(
    tmp_path: Path, n_per_split: int = 4, labels=("bag", "dress"), size=(40, 30), fmt="PNG"
) -> pd.DataFrame:
    rows = []
    for split in ("train", "val", "test"):
        for i in range(n_per_split):
            label = labels[i % len(labels)]
            path = tmp_path / f"{split}_{i}.{fmt.lower()}"
            Image.new("RGB", size, (GREY, GREY, GREY)).save(path, fmt)
            rows.append({"item_id": f"{split}{i}", "image_path": str(path), "label": label, "split": split})
    return pd.DataFrame(rows)


@pytest.mark.parametrize(
    ("name", "side"),
    [("inception_v3", 299), ("resnet50", 224), ("efficientnet_lite0", 224)],
)
def test_batches_follow_the_model_data_config(tmp_path: Path, name: str, side: int) -> None:
    cfg = _timm_config(name)
    dm = CatalogueDataModule(_catalogue(tmp_path), cfg, batch_size=3, num_workers=0, train_augment="none")
    dm.setup("fit")
    images, targets, rows = next(iter(dm.train_dataloader()))
    assert images.shape == (3, 3, side, side)
    expected = (GREY / 255.0 - torch.tensor(cfg["mean"])) / torch.tensor(cfg["std"])
    per_channel = images.mean(dim=(0, 2, 3))
    torch.testing.assert_close(per_channel, expected.float(), atol=2e-3, rtol=0)
    assert targets.dtype == torch.int64 and rows.dtype == torch.int64
    # eval loaders use the same config
    val_images, _, _ = next(iter(dm.val_dataloader()))
    assert val_images.shape[1:] == (3, side, side)


def test_inception_gets_its_own_normalisation_not_imagenet(tmp_path: Path) -> None:
    # timm's inception_v3 (tv_in1k) uses mean/std 0.5: a grey 128 pixel lands near 0, not near 0.1
    inc = CatalogueDataModule(_catalogue(tmp_path), _timm_config("inception_v3"), num_workers=0)
    res = CatalogueDataModule(_catalogue(tmp_path), _timm_config("resnet50"), num_workers=0)
    inc.setup("test")
    res.setup("test")
    x_inc = next(iter(inc.test_dataloader()))[0]
    x_res = next(iter(res.test_dataloader()))[0]
    assert abs(float(x_inc.mean()) - (128 / 255 - 0.5) / 0.5) < 1e-2
    assert abs(float(x_res[:, 0].mean()) - (128 / 255 - 0.485) / 0.229) < 1e-2


def test_input_size_override_and_training_augmentation_keep_the_shape(tmp_path: Path) -> None:
    cfg = {**_timm_config("resnet50"), "input_size": (3, 64, 64)}
    dm = CatalogueDataModule(
        _catalogue(tmp_path),
        cfg,
        batch_size=4,
        num_workers=0,
        train_augment={"hflip": 0.5, "scale": [0.3, 1.0], "re_prob": 0.25, "auto_augment": "rand-m5-mstd0.5"},
    )
    dm.setup("fit")
    images, _, _ = next(iter(dm.train_dataloader()))
    assert images.shape == (4, 3, 64, 64)
    train_tf, eval_tf = build_transforms(cfg, {"re_prob": 0.25})
    assert "RandomErasing" in repr(train_tf) and "RandomErasing" not in repr(eval_tf)
    # 'none' trains on the eval transform
    train_none, eval_none = build_transforms(cfg, "none")
    assert train_none is eval_none


def test_class_names_are_sorted_labels_and_targets_index_them(tmp_path: Path) -> None:
    df = _catalogue(tmp_path, labels=("skirt", "bag", "hat"))
    dm = CatalogueDataModule(df, _timm_config("resnet50"), batch_size=12, num_workers=0, train_augment="none")
    assert dm.class_names == ["bag", "hat", "skirt"]
    assert dm.num_classes == 3
    dm.setup("test")
    _, targets, rows = next(iter(dm.test_dataloader()))
    for t, r in zip(targets.tolist(), rows.tolist(), strict=True):
        assert dm.class_names[t] == dm.catalogue.loc[r, "label"]
        assert dm.catalogue.loc[r, "split"] == "test"


def test_catalogue_can_be_a_csv_path(tmp_path: Path) -> None:
    df = _catalogue(tmp_path)
    csv = tmp_path / "catalogue.csv"
    df.to_csv(csv, index=False)
    dm = CatalogueDataModule(csv, _timm_config("resnet50"), num_workers=0)
    assert len(dm.rows("train")) == 4 and dm.class_names == ["bag", "dress"]


def test_bad_image_is_skipped_and_counted(tmp_path: Path) -> None:
    df = _catalogue(tmp_path, n_per_split=4)
    train = df[df["split"] == "train"]
    bad = Path(train.iloc[1]["image_path"])
    bad.write_bytes(b"not an image at all")  # went bad after the catalogue was verified
    dm = CatalogueDataModule(df, {**_timm_config("resnet50"), "input_size": 32}, batch_size=4, num_workers=0)
    dm.setup("fit")
    loader = dm._loader("train", shuffle=False, batch_size=4)
    images, _, rows = next(iter(loader))
    assert images.shape[0] == 3
    bad_row = int(dm.rows("train").index[1])
    assert bad_row not in rows.tolist()
    assert dm.skipped["train"] == 1


def test_skips_in_worker_processes_reach_the_main_process(tmp_path: Path) -> None:
    df = _catalogue(tmp_path, n_per_split=4)
    for p in df[df["split"] == "val"]["image_path"].iloc[:2]:
        Path(p).write_bytes(b"")
    dm = CatalogueDataModule(df, {**_timm_config("resnet50"), "input_size": 32}, batch_size=2, num_workers=1)
    dm.setup("fit")
    batches = list(dm.val_dataloader())
    assert batches[0] is None  # both items of the first batch were bad
    assert batches[1][0].shape[0] == 2
    assert dm.skipped["val"] == 2


def test_collate_drops_nones() -> None:
    a = (torch.zeros(3, 2, 2), 1, 7)
    out = collate_skip_none([None, a, None, a])
    assert out[0].shape == (2, 3, 2, 2)
    assert out[2].tolist() == [7, 7]
    assert collate_skip_none([None, None]) is None


def test_large_jpegs_are_decoded_at_draft_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    df = _catalogue(tmp_path, n_per_split=2, size=(1024, 768), fmt="JPEG")
    cfg = {**_timm_config("efficientnet_lite0"), "input_size": (3, 64, 64)}  # crop_pct 0.875
    assert draft_size_for(cfg) == (74, 74)
    seen: list[tuple] = []
    real = dataset_mod.load_image

    def spy(path, *, draft_size=None):
        im = real(path, draft_size=draft_size)
        seen.append((draft_size, im.size))
        return im

    monkeypatch.setattr(dataset_mod, "load_image", spy)
    dm = CatalogueDataModule(df, cfg, batch_size=2, num_workers=0)
    dm.setup("test")
    images = next(iter(dm.test_dataloader()))[0]
    assert images.shape == (2, 3, 64, 64)
    # 1024x768 drafted by 1/8 is 128x96: at least 74 on both sides, far fewer pixels to decode
    assert seen and all(d == (74, 74) and s == (128, 96) for d, s in seen)
    no_draft = CatalogueDataModule(df, cfg, num_workers=0, draft=False)
    assert no_draft.draft_size is None


def test_balanced_sampling_evens_out_classes(tmp_path: Path) -> None:
    rows = []
    img = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(img)
    for i in range(100):
        rows.append(
            {"item_id": f"t{i}", "image_path": str(img), "label": "a" if i < 90 else "b", "split": "train"}
        )
    df = pd.DataFrame(rows)
    dm = CatalogueDataModule(
        df, _timm_config("resnet50"), batch_size=10, num_workers=0, balanced_sampling=True
    )
    ds = dm._dataset("train")
    sampler = dm._balanced_sampler(ds)
    torch.manual_seed(0)
    drawn = Counter(ds.targets[i] for _ in range(20) for i in sampler)
    share_b = drawn[1] / sum(drawn.values())
    assert 0.4 < share_b < 0.6  # 10% of rows, about half of the draws
    plain = Counter(ds.targets)
    assert plain[1] / len(ds) == pytest.approx(0.1)
    loader = dm.train_dataloader()
    assert loader.sampler.__class__.__name__ == "WeightedRandomSampler"


def test_worker_default_and_predict_splits(tmp_path: Path) -> None:
    df = _catalogue(tmp_path)
    dm = CatalogueDataModule(df, _timm_config("resnet50"), predict_splits=["val", "test"])
    assert dm.num_workers == default_num_workers() >= 1
    dm_pred = CatalogueDataModule(df, _timm_config("resnet50"), predict_splits=["test"], num_workers=0)
    dm_pred.setup("predict")
    rows = np.concatenate([b[2].numpy() for b in dm_pred.predict_dataloader()])
    assert sorted(rows.tolist()) == dm_pred.rows("test").index.tolist()
    with pytest.raises(ValueError, match="predict_splits"):
        CatalogueDataModule(df, _timm_config("resnet50"), predict_splits=["holdout"])


def test_missing_split_is_a_clear_error(tmp_path: Path) -> None:
    df = _catalogue(tmp_path)
    df = df[df["split"] != "val"]
    dm = CatalogueDataModule(df, _timm_config("resnet50"), num_workers=0)
    with pytest.raises(ValueError, match="no 'val' rows"):
        dm.setup("fit")


def test_unknown_labels_get_minus_one(tmp_path: Path) -> None:
    df = _catalogue(tmp_path)
    ds = CatalogueDataset(df, {"bag": 0}, lambda im: torch.zeros(1))
    assert set(ds.targets) == {0, -1}


@pytest.mark.parametrize(("backbone", "side", "mean"), [("inception_v3", 299, 0.5), ("resnet50", 224, 0.485)])
def test_model_data_config_drives_the_batches(tmp_path: Path, backbone: str, side: int, mean: float) -> None:
    from imgsearch.models.classifier import ImageClassifier

    model = ImageClassifier(backbone, num_classes=2, pretrained=False)
    dm = CatalogueDataModule(_catalogue(tmp_path), model.data_config, batch_size=2, num_workers=0)
    dm.setup("test")
    images, _, _ = next(iter(dm.test_dataloader()))
    assert images.shape == (2, 3, side, side)
    assert dm.data_config["mean"][0] == pytest.approx(mean)
    with torch.no_grad():
        assert model.eval()(images).shape == (2, 2)  # the model accepts what the loader gives it
