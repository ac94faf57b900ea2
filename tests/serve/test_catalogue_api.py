"""#10 in the web API: writes with the operator's token, filters, grouping, pages, "more like this"."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from imgsearch.retrieval.search import Searcher
from imgsearch.serve.app import create_app
from retrieval_fixtures import index_dir, trained_run  # noqa: F401 - fixtures

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _png(colour, stripe) -> bytes:
    arr = np.full((24, 24, 3), 255, np.uint8)
    arr[stripe : stripe + 4, 2:-2] = colour
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture
def searcher(index_dir, tmp_path):  # noqa: F811
    copy = tmp_path / "index"
    shutil.copytree(index_dir, copy)
    return Searcher.from_index_dir(copy, runtime="torch")


@pytest.fixture
def client(searcher):
    return TestClient(create_app(searcher, top_k=5, write_token=TOKEN, min_confidence=0.2))


def _search(client, data, **params):
    return client.post("/search", files={"file": ("q.png", data, "image/png")}, params=params)


def _add(client, data, headers=AUTH, **metadata):
    return client.post(
        "/items", files={"file": ("p.png", data, "image/png")},
        data={"metadata": json.dumps(metadata)}, headers=headers,
    )  # fmt: skip


def test_writes_need_the_operators_token(client, searcher):
    photo = _png((250, 200, 0), 9)
    before = len(searcher.items)
    assert _add(client, photo, headers={}, item_id="x", label="bags").status_code == 401
    assert (
        _add(client, photo, headers={"Authorization": "Bearer nope"}, item_id="x", label="bags").status_code
        == 401
    )
    assert _add(client, photo, headers={"Authorization": TOKEN}, item_id="x", label="bags").status_code == 401
    some = searcher.items.item_id.iloc[0]
    assert client.delete(f"/items/{some}").status_code == 401
    assert client.patch(f"/items/{some}", data={"metadata": '{"title": "x"}'}).status_code == 401
    assert len(searcher.items) == before and searcher.live is None  # nothing was written
    # no token configured: writes are off, reads are open
    closed = TestClient(create_app(searcher, top_k=5))
    assert _add(closed, photo, item_id="x", label="bags").status_code == 403
    assert closed.get(f"/items/{some}").status_code == 200


def test_add_find_patch_and_delete_an_item(client, searcher):
    photo = _png((250, 200, 0), 9)
    r = _add(client, photo, item_id="sku-1", label="bags", title="Gold bag", price=12.5, currency="EUR",
             url="https://shop.example/sku-1")  # fmt: skip
    assert r.status_code == 201, r.text
    assert r.json()["item"]["title"] == "Gold bag" and "image_path" not in r.json()["item"]
    top = _search(client, photo).json()["results"][0]
    assert (
        top["item_id"] == "sku-1" and top["currency"] == "EUR" and top["url"] == "https://shop.example/sku-1"
    )
    assert client.get("/" + top["image_url"]).content == photo  # the uploaded photo is served back
    assert _add(client, photo, item_id="sku-1", label="bags").status_code == 409  # the id is taken
    # metadata only
    r = client.patch("/items/sku-1", data={"metadata": '{"price": 99, "colour": "gold"}'}, headers=AUTH)
    assert r.status_code == 200 and r.json()["item"]["price"] == 99 and r.json()["item"]["colour"] == "gold"
    # a new photo: the item is found by it, its metadata kept
    new_photo = _png((0, 90, 250), 15)
    r = client.patch("/items/sku-1", files={"file": ("n.png", new_photo, "image/png")}, headers=AUTH)
    assert r.status_code == 200, r.text
    top = _search(client, new_photo).json()["results"][0]
    assert top["item_id"] == "sku-1" and top["title"] == "Gold bag" and top["price"] == 99
    # removed: gone from searches and item routes
    assert client.delete("/items/sku-1", headers=AUTH).json() == {"removed": 1}
    hits = _search(client, new_photo, k=100).json()["results"]
    assert "sku-1" not in {h["item_id"] for h in hits}
    assert client.get("/items/sku-1").status_code == 404
    assert client.delete("/items/sku-1", headers=AUTH).status_code == 404


def test_item_writes_keep_the_upload_limits_and_check_metadata(searcher):
    client = TestClient(create_app(searcher, top_k=5, write_token=TOKEN, max_upload_bytes=2000))
    big = np.random.default_rng(0).integers(0, 255, (80, 80, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "PNG")
    assert _add(client, buf.getvalue(), item_id="big", label="bags").status_code == 413
    r = client.post("/items", files={"file": ("x.png", b"not an image", "image/png")},
                    data={"metadata": '{"item_id": "t", "label": "bags"}'}, headers=AUTH)  # fmt: skip
    assert r.status_code == 415
    small = _png((1, 2, 3), 0)
    assert _add(client, small, item_id="", label="bags").status_code == 400
    r = client.post("/items", files={"file": ("x.png", small, "image/png")},
                    data={"metadata": "[1, 2"}, headers=AUTH)  # fmt: skip
    assert r.status_code == 400 and "JSON" in r.json()["detail"]
    assert _add(client, small, item_id="p", label="bags", image_path="/etc/passwd").status_code == 400
    assert "p" not in set(searcher.items.item_id)


def test_filters_grouping_and_pages(client, searcher):
    photo = Path(searcher.items.image_path.iloc[0]).read_bytes()
    only_shoes = _search(client, photo, k=10, filter="label=shoes").json()["results"]
    assert only_shoes and {h["label"] for h in only_shoes} == {"shoes"}
    assert _search(client, photo, filter="colour=red").status_code == 400  # unknown column
    assert _search(client, photo, filter="title=1:5").status_code == 400  # a range on words
    assert (
        client.get(f"/items/{searcher.items.item_id.iloc[0]}/similar", params={"filter": "x=1"}).status_code
        == 400
    )
    grouped = _search(client, photo, k=6, group="true").json()["results"]
    assert len({h["product_id"] for h in grouped}) == len(grouped) == 6
    assert any(h["other_views"] for h in grouped)  # the products' other photo is listed
    first = _search(client, photo, k=4).json()
    second = _search(client, photo, k=4, offset=4).json()
    both = _search(client, photo, k=8).json()["results"]
    assert [h["item_id"] for h in first["results"] + second["results"]] == [h["item_id"] for h in both]
    assert first["has_more"] and second["offset"] == 4
    last = _search(client, photo, k=10, offset=len(searcher.items) - 2).json()
    assert len(last["results"]) == 2 and not last["has_more"]


def test_more_like_this_and_item_details(client, searcher):
    row = searcher.items.iloc[3]
    r = client.get(f"/items/{row.item_id}/similar", params={"k": 4})
    assert r.status_code == 200
    ids = [h["item_id"] for h in r.json()["results"]]
    assert len(ids) == 4 and row.item_id not in ids
    assert ids == [h.item_id for h in searcher.similar(row.item_id, k=4).hits]
    grouped = client.get(f"/items/{row.item_id}/similar", params={"k": 4, "group": "true"}).json()
    assert row.product_id not in {h["product_id"] for h in grouped["results"]}
    assert client.get("/items/nope/similar").status_code == 404
    item = client.get(f"/items/{row.item_id}").json()
    assert item["title"] == row.title and item["label"] == row.label and "image_path" not in item


def test_low_confidence_is_said(searcher):
    photo = Path(searcher.items.image_path.iloc[0]).read_bytes()
    sure = TestClient(create_app(searcher, min_confidence=0.0))
    unsure = TestClient(create_app(searcher, min_confidence=1.01))
    assert _search(sure, photo).json()["confident"] is True
    body = _search(unsure, photo).json()
    assert body["confident"] is False and body["category"] is not None  # the guess is still given


def test_facets_follow_the_catalogue(client, searcher):
    items = searcher.items
    facets = client.get("/facets").json()
    assert facets["label"] == sorted(set(items["label"].astype(str)), key=str.casefold)
    prices = items["price"].astype(float)
    assert facets["price"] == [prices.min(), prices.max()]
    # a new category written through the API shows up without a restart
    added = _add(client, _png((250, 200, 0), 9), item_id="new-1", label="zz-new-kind", price=99999.0)
    assert added.status_code == 201, added.text
    facets = client.get("/facets").json()
    assert "zz-new-kind" in facets["label"]
    assert facets["price"][1] == 99999.0
