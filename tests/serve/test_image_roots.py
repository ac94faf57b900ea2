"""Serve streams item images only from under the index's recorded image roots."""

from __future__ import annotations

import pandas as pd
from fastapi.testclient import TestClient

from imgsearch.retrieval.locations import image_roots
from imgsearch.serve.app import create_app, image_roots_of

from .conftest import ColourSearcher, swatch


def test_image_roots_are_the_fewest_folders_holding_every_image(tmp_path):
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "c").mkdir()
    items = pd.DataFrame(
        {
            "image_path": [
                str(tmp_path / "a" / "x.jpg"),
                str(tmp_path / "a" / "b" / "y.jpg"),
                str(tmp_path / "c" / "z.jpg"),
            ]
        }
    )
    assert image_roots(items) == [str((tmp_path / "a").resolve()), str((tmp_path / "c").resolve())]


def test_item_path_outside_the_roots_is_404(colour_catalogue, tmp_path):
    outside = tmp_path / "outside" / "secret.png"
    outside.parent.mkdir()
    swatch((1, 2, 3)).save(outside)
    items = colour_catalogue.copy()
    items.loc[len(items)] = {**items.iloc[0].to_dict(), "item_id": "doctored", "image_path": str(outside)}
    roots = image_roots(colour_catalogue)
    assert not any(str(outside).startswith(r) for r in roots)
    confined = TestClient(create_app(ColourSearcher(items), image_roots=roots))
    assert confined.get("/items/doctored/image").status_code == 404
    first = items.iloc[0]["item_id"]
    assert confined.get(f"/items/{first}/image").status_code == 200
    # without recorded roots (an index older than them) the path is trusted, as before
    assert TestClient(create_app(ColourSearcher(items))).get("/items/doctored/image").status_code == 200


def test_roots_come_from_the_manifest():
    assert image_roots_of({"catalogue": {"image_roots": ["/data/img"]}}) == ["/data/img"]
    assert image_roots_of({"catalogue": {}}) is None
