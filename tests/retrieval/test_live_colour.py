"""#15 on a live catalogue: items added after the build get their colour part and predicted attribute
columns from the same model, so a colour weight and "in colour c" keep working through adds, removes,
compaction and a reload (tests/colour_shop.py: the colour head reads red minus blue from the pixels)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from colour_shop import build_colour_shop, shop_image
from imgsearch.retrieval.colour import colour_part
from imgsearch.retrieval.search import Searcher


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return build_colour_shop(tmp_path_factory.mktemp("live_colour_shop"))


@pytest.fixture
def live_copy(shop, tmp_path) -> Path:
    copy = tmp_path / "index"
    shutil.copytree(shop / "index", copy)
    return copy


def _new_items(tmp_path: Path) -> pd.DataFrame:
    # untagged: no baseColour given, as a shop's new photos often come
    return pd.DataFrame(
        [
            {"item_id": f"new-{colour}", "label": "bags", "title": "Weekend Holdall", "baseColour": "",
             "image_path": shop_image(tmp_path / f"new-{colour}.png", 1, colour, "bags")}
            for colour in ("red", "blue")
        ]
    )  # fmt: skip


def _ids(result) -> list[str]:
    return [h.item_id for h in result.hits]


def test_added_items_get_their_colour_part_and_predicted_colour(shop, live_copy, tmp_path):
    searcher = Searcher.from_index_dir(live_copy, live=True)
    other = Searcher.from_index_dir(live_copy)  # another process's view, opened before the add
    assert searcher.add_items(_new_items(tmp_path))["added"] == 2
    model = searcher.module.eval()
    for colour in ("red", "blue"):
        vid = int(searcher.item(f"new-{colour}").name)
        image = Image.open(tmp_path / f"new-{colour}.png")
        probs = model.predict_attributes(searcher._batch([image], searcher.class_transform))["baseColour"]
        assert np.allclose(searcher.colour_parts[vid], colour_part(probs.detach().numpy())[0], atol=1e-5)
        row = searcher.item(f"new-{colour}")
        assert row["baseColour"] == colour.title() and row["baseColour_predicted"] == "true"
        assert 0.5 < float(row["baseColour_confidence"]) <= 1.0
    query = Image.open(shop / "bags-red-0.png")
    for s in (searcher, other):
        (strong,) = s.search([query], k=9, colour_weight=10.0)
        assert "new-red" in _ids(strong) and "new-blue" not in _ids(strong)
        assert all("red" in i for i in _ids(strong))
        # "in colour c" finds the new item through its predicted colour
        (in_blue,) = s.search([query], k=5, colour="Blue")
        assert "new-blue" in _ids(in_blue) and all("blue" in i for i in _ids(in_blue))


def test_colour_weight_survives_removes_updates_compaction_and_reload(shop, live_copy, tmp_path):
    searcher = Searcher.from_index_dir(live_copy, live=True)
    searcher.add_items(_new_items(tmp_path))
    query = Image.open(shop / "bags-red-0.png")
    assert searcher.remove_items(["bags-red-1", "new-red"]) == 2
    # the blue newcomer's photo becomes red: a new vector id, a new colour part, a new predicted colour
    red_photo = shop_image(tmp_path / "repainted.png", 2, "red", "bags")
    row = {"item_id": "new-blue", "label": "bags", "title": "Weekend Holdall", "baseColour": "",
           "image_path": red_photo}  # fmt: skip
    searcher.add_items(pd.DataFrame([row]), mode="update")
    assert searcher.item("new-blue")["baseColour"] == "Red"
    (before,) = searcher.search([query], k=8, colour_weight=10.0)
    searcher.compact()
    (after,) = searcher.search([query], k=8, colour_weight=10.0)
    reloaded = Searcher.from_index_dir(live_copy)
    (again,) = reloaded.search([query], k=8, colour_weight=10.0)
    for result in (before, after, again):
        ids = _ids(result)
        assert "bags-red-1" not in ids and "new-red" not in ids
        assert "new-blue" in ids and all(("red" in i) or i == "new-blue" for i in ids)
    assert _ids(after) == _ids(before) == _ids(again)
    assert [h.score for h in again.hits] == pytest.approx([h.score for h in before.hits])
