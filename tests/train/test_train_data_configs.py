"""conf/data/*: each source node drives its reader with the right arguments, on real files where present."""

from __future__ import annotations

from pathlib import Path

import hydra
import pandas as pd
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from imgsearch.data.datamodule import CatalogueDataModule
from imgsearch.data.sources import build_catalogue
from imgsearch.utils.config import config_dir

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"
FORMATS = SHARED / "formats"
FASHION = SHARED / "fashion-product-images-small"


def _data_cfg(name: str, *overrides: str):
    with initialize_config_dir(config_dir=config_dir(), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data={name}", *overrides])
    return cfg.data


@pytest.mark.realdata
def test_farfetch_source_reads_real_listings() -> None:
    csv = FORMATS / "farfetch" / "products_sample.csv"
    if not csv.is_file():
        pytest.skip(f"real Farfetch rows not found at {csv} (../shared/realdata is absent)")
    data = _data_cfg("farfetch", f"data.source.csv_path={csv}", "data.source.image_dir=null")
    df = hydra.utils.instantiate(data.source, _convert_="all")
    assert isinstance(df, pd.DataFrame) and len(df) > 0
    assert set(df["view"]) <= {"cutout", "model"}
    assert df["label"].str.len().gt(0).all()  # unmatched descriptions dropped (unmatched: drop)


@pytest.mark.realdata
def test_amazon_source_reads_real_metadata() -> None:
    meta = FORMATS / "amazon" / "meta_Gift_Cards.json"
    if not meta.is_file():
        pytest.skip(f"real Amazon metadata not found at {meta} (../shared/realdata is absent)")
    data = _data_cfg("amazon", f"data.source.meta_path={meta}", "data.source.image_dir=null")
    df = hydra.utils.instantiate(data.source, _convert_="all")
    assert len(df) > 0 and df["label"].str.len().gt(0).all()
    assert data.prepare.top_k_classes == 20 and data.prepare.max_per_class == 500
    assert list(data.prepare.split) == [0.7, 0.2, 0.1]


@pytest.mark.realdata
def test_fashion_small_builds_a_training_catalogue(tmp_path: Path) -> None:
    if not (FASHION / "styles_subset_joined.derived.csv").is_file():
        pytest.skip(f"Fashion Product Images (small) not found at {FASHION} (../shared/realdata is absent)")
    data = _data_cfg("fashion_small", "data.prepare.verify=false")
    prepare = OmegaConf.to_container(data.prepare, resolve=True)
    df = build_catalogue(data.source, prepare, tmp_path)
    assert (tmp_path / "catalogue.csv").is_file()
    labels = df["label"].value_counts()
    assert {"Tshirts", "Shirts", "Watches"} <= set(labels.index)
    assert labels.min() >= 10  # the rare-classes rule: articleTypes under 10 images are dropped
    raw = pd.read_csv(FASHION / "styles_subset_joined.derived.csv")
    assert raw["articleType"].nunique() > len(labels)  # the long tail really was cut
    # no byte-identical image on both sides of a split (about 1 in 40 images has a twin here)
    assert "content_hash" in df.columns
    assert df["content_hash"].is_unique  # dedup kept one row per image content, so none can leak
    assert set(df["split"]) == {"train", "val", "test"}

    dm = CatalogueDataModule(df, {"input_size": (3, 224, 224), "mean": (0.5,) * 3, "std": (0.5,) * 3},
                             batch_size=4, num_workers=0)  # fmt: skip
    dm.setup("test")
    images, targets, _ = next(iter(dm.test_dataloader()))
    assert images.shape == (4, 3, 224, 224) and targets.max() < len(labels)
