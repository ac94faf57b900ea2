"""#10: live changes through the Searcher (real photos, the pixel model) and the imgsearch-items command."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgsearch.cli.items import main as items_main
from imgsearch.data.images import load_image
from imgsearch.retrieval.search import Searcher
from imgsearch.retrieval.store import ItemStoreError


@pytest.fixture
def live_copy(index_dir, tmp_path):
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    return copy


def _photo(path, colour, stripe):
    arr = np.full((24, 24, 3), 255, np.uint8)
    arr[stripe : stripe + 4, 2:-2] = colour
    Image.fromarray(arr).save(path)
    return path


def test_added_photo_is_found_removed_is_gone_also_after_reload(live_copy, tmp_path):
    searcher = Searcher.from_index_dir(live_copy, live=True)
    before = len(searcher.items)
    photo = _photo(tmp_path / "new.png", (250, 200, 0), 9)
    rows = pd.DataFrame([{"item_id": "sku-new", "image_path": str(photo), "label": "bags", "title": "Gold"}])
    report = searcher.add_items(rows)
    assert report["added"] == 1 and report["skipped"] == {}
    (result,) = searcher.search([load_image(photo)], k=3)
    assert result.hits[0].item_id == "sku-new" and result.hits[0].title == "Gold"
    assert result.hits[0].score == pytest.approx(1.0, abs=1e-4)
    # a second process (a fresh Searcher) sees it; removing it there hides it here at the next query
    other = Searcher.from_index_dir(live_copy)
    assert other.live is not None and "sku-new" in set(other.items.item_id)
    assert other.remove_items(["sku-new"]) == 1
    (after,) = searcher.search([load_image(photo)], k=len(searcher.items) + 5)
    assert "sku-new" not in {h.item_id for h in after.hits} and len(after.hits) == before
    assert searcher.compact()["items"] == before
    reloaded = Searcher.from_index_dir(live_copy)
    assert "sku-new" not in set(reloaded.items.item_id) and len(reloaded.items) == before


def test_unreadable_photos_are_skipped_and_counted_the_rest_added(live_copy, tmp_path):
    searcher = Searcher.from_index_dir(live_copy, live=True)
    good = _photo(tmp_path / "good.png", (0, 0, 0), 3)
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    rows = pd.DataFrame(
        [
            {"item_id": "ok", "image_path": str(good), "label": "shoes"},
            {"item_id": "broken", "image_path": str(bad), "label": "shoes"},
            {"item_id": "missing", "image_path": str(tmp_path / "nope.png"), "label": "shoes"},
        ]
    )
    report = searcher.add_items(rows)
    assert report["added"] == 1 and set(report["skipped"]) == {"broken", "missing"}
    assert "ok" in set(searcher.items.item_id) and "broken" not in set(searcher.items.item_id)


def test_similar_leaves_out_the_item_and_with_grouping_its_product(live_copy):
    searcher = Searcher.from_index_dir(live_copy)
    row = searcher.items.iloc[0]
    result = searcher.similar(row.item_id, k=5)
    assert result.category == row.label
    assert row.item_id not in {h.item_id for h in result.hits} and len(result.hits) == 5
    grouped = searcher.similar(row.item_id, k=5, group_by_product=True)
    assert row.product_id not in {h.product_id for h in grouped.hits}
    with pytest.raises(KeyError, match="not in the catalogue"):
        searcher.similar("no-such-item")
    # the same on the live catalogue, where ids are vector ids
    live = Searcher.from_index_dir(live_copy, live=True)
    assert [h.item_id for h in live.similar(row.item_id, k=5).hits] == [h.item_id for h in result.hits]


def test_items_command_add_update_show_remove(live_copy, tmp_path, capsys):
    photo = _photo(tmp_path / "cli.png", (10, 200, 10), 12)
    args = ["--index", str(live_copy), "--runtime", "torch"]
    assert items_main(["add", *args, "--id", "c1", "--image", str(photo), "--label", "dresses",
                       "--set", "title=Green", "--set", "colour=green"]) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out)["added"] == 1
    assert items_main(["update", *args, "--id", "c1", "--set", "price=42.5"]) == 0
    capsys.readouterr()
    assert items_main(["show", *args, "c1"]) == 0
    (row,) = json.loads(capsys.readouterr().out)["items"]
    assert row["price"] == 42.5 and row["colour"] == "green" and row["title"] == "Green"
    assert items_main(["similar", *args, "c1", "-k", "2"]) == 0
    assert len(json.loads(capsys.readouterr().out)["hits"]) == 2
    assert items_main(["remove", *args, "c1"]) == 0
    assert json.loads(capsys.readouterr().out) == {"removed": 1}
    # bad input: one line, exit 2, nothing changed
    assert items_main(["remove", *args, "c1"]) == 2
    assert "not in the catalogue" in capsys.readouterr().err
    assert (
        items_main(["add", *args, "--id", "c2", "--image", str(tmp_path / "none.png"), "--label", "x"]) == 2
    )
    assert "no photo could be read" in capsys.readouterr().err
    assert items_main(["add", *args, "--id", "c3", "--image", str(photo)]) == 2
    assert "needs --label" in capsys.readouterr().err


def test_adding_an_existing_id_is_refused(live_copy, tmp_path):
    searcher = Searcher.from_index_dir(live_copy, live=True)
    taken = searcher.items.item_id.iloc[0]
    photo = _photo(tmp_path / "x.png", (1, 2, 3), 0)
    with pytest.raises(ItemStoreError, match="already in the catalogue"):
        searcher.add_items(pd.DataFrame([{"item_id": taken, "image_path": str(photo), "label": "bags"}]))
