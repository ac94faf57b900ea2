"""#10: a shop indexes its own table with a backbone's pretrained features, no checkpoint and no training."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgsearch.cli.index import build
from imgsearch.cli.inputs import InputError
from imgsearch.data.images import load_image
from imgsearch.retrieval.index import load_index_dir
from imgsearch.retrieval.search import Searcher
from retrieval_fixtures import compose

COLOURS = {"bag": (200, 40, 40), "dress": (40, 160, 40), "hat": (40, 40, 200)}


@pytest.fixture
def shop(tmp_path: Path) -> Path:
    """A shop's CSV: two bags, two dresses, ONE hat (a class far under any min_per_class), a byte-identical
    copy of the first bag under another id, and a row whose image file is corrupt."""
    images = tmp_path / "images"
    images.mkdir()
    rows = []
    rng = np.random.default_rng(0)
    for i, (label, sku) in enumerate(
        [("bag", "b1"), ("bag", "b2"), ("dress", "d1"), ("dress", "d2"), ("hat", "h1")]
    ):
        arr = np.full((40, 40, 3), 255, np.uint8)
        arr[8 + 3 * i : 30 + 2 * i, 6:34] = COLOURS[label]
        arr[rng.integers(0, 40, 30), rng.integers(0, 40, 30)] = 0
        Image.fromarray(arr).save(images / f"{sku}.jpg", quality=95)
        rows.append({"sku": sku, "category": label, "name": f"{label} {sku}"})
    shutil.copy(images / "b1.jpg", images / "b1copy.jpg")
    rows.append({"sku": "b1copy", "category": "bag", "name": "bag b1 again"})
    (images / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    rows.append({"sku": "broken", "category": "bag", "name": "corrupt photo"})
    pd.DataFrame(rows).to_csv(tmp_path / "shop.csv", index=False)
    return tmp_path


def _source(shop: Path) -> list[str]:
    return [
        "data=csv",
        f"data.source.path={shop / 'shop.csv'}",
        f"data.source.image_dir={shop / 'images'}",
        "data.source.image_column=sku",
        "data.source.label_column=category",
        "data.source.title_column=name",
        "embed.num_workers=0",
        "embed.trainer.accelerator=cpu",
    ]


def test_pretrained_index_of_the_whole_shop_table_and_search(shop: Path, tmp_path: Path):
    out = tmp_path / "index"
    cfg = compose(
        "index", ["model=efficientnet_lite0", "model.input_size=64", f"output_dir={out}", *_source(shop)]
    )
    assert build(cfg) == out
    _, items, manifest = load_index_dir(out)
    # every readable row: the lone hat and the byte-identical copy stay findable; the corrupt photo is counted
    assert sorted(items["item_id"]) == ["b1", "b1copy", "b2", "d1", "d2", "h1"]
    assert manifest["catalogue"]["skipped"] == 1
    assert manifest["checkpoint"]["path"] is None
    assert manifest["model"]["pretrained"]["backbone"] == "efficientnet_lite0"
    assert manifest["model"]["class_names"] is None

    searcher = Searcher.from_index_dir(out)  # rebuilt from the manifest: no checkpoint anywhere
    photo = items.loc[items["item_id"] == "h1", "image_path"].iloc[0]
    (result,) = searcher.search([load_image(photo)], k=3)
    assert result.hits[0].item_id == "h1" and result.hits[0].score == pytest.approx(1.0, abs=1e-4)
    # no classifier: the category is the vote of the neighbours' labels, with its share
    labels = [h.label for h in result.hits]
    assert result.category == max(set(labels), key=lambda lab: (labels.count(lab), -labels.index(lab)))
    assert result.probability == pytest.approx(labels.count(result.category) / len(labels))
    with pytest.raises(ValueError, match="needs a classifier"):
        searcher.search([load_image(photo)], k=3, restrict_to_predicted=True)


def test_index_without_a_model_or_with_random_weights_is_refused(shop: Path, tmp_path: Path):
    with pytest.raises(InputError, match=r"needs a model: checkpoint=.*or model=<backbone>"):
        build(compose("index", [f"output_dir={tmp_path / 'a'}", *_source(shop)]))
    with pytest.raises(InputError, match="features would be random"):
        build(compose("index", ["model=resnet50", f"output_dir={tmp_path / 'b'}", *_source(shop)]))
    with pytest.raises(InputError, match="no classifier"):
        build(compose("index", ["model=efficientnet_lite0", "embedding=probs", f"output_dir={tmp_path / 'c'}",
                                *_source(shop)]))  # fmt: skip
    assert not any((tmp_path / d).exists() for d in "abc")
