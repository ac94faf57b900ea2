"""The JSON API of imgsearch-serve, through FastAPI's TestClient, over a colour-swatch searcher."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from imgsearch.data import images as images_module
from imgsearch.serve.app import MAX_K, STATIC_DIR, create_app, item_image_url, manifest_facts

from .conftest import COLOURS, ColourSearcher, encode, swatch

MB = 1024 * 1024


@pytest.fixture()
def client(colour_searcher: ColourSearcher) -> TestClient:
    app = create_app(colour_searcher, max_upload_bytes=MB, top_k=5, model_name="colour-means")
    return TestClient(app)


def upload(client: TestClient, data: bytes, name: str = "photo.jpg", mime: str = "image/jpeg", **params):
    return client.post("/search", files={"file": (name, data, mime)}, params=params)


# ---- good photos -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "mime", "kwargs"),
    [
        ("JPEG", "image/jpeg", {"quality": 90}),
        ("PNG", "image/png", {}),
        ("WEBP", "image/webp", {"quality": 90}),
        ("GIF", "image/gif", {}),
        ("BMP", "image/bmp", {}),
    ],
)
def test_good_photo_gets_category_and_ranked_results(client, colour_catalogue, fmt, mime, kwargs):
    photo = encode(swatch((190, 40, 45), seed=99), fmt, **kwargs)
    r = upload(client, photo, name=f"photo.{fmt.lower()}", mime=mime, k=4)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["category"] == "red"
    assert 1 / len(COLOURS) < body["probability"] <= 1.0
    results = body["results"]
    assert [h["rank"] for h in results] == [1, 2, 3, 4]
    # three red swatches exist: they come first, then something else
    assert [h["label"] for h in results[:3]] == ["red"] * 3
    assert results[3]["label"] != "red"
    scores = [h["score"] for h in results]
    assert scores == sorted(scores, reverse=True)
    catalogue = colour_catalogue.set_index("item_id")
    for hit in results:
        row = catalogue.loc[hit["item_id"]]
        assert hit["title"] == row["title"] and hit["brand"] == "Acme" and hit["currency"] == "EUR"
        assert hit["product_id"] == row["product_id"]
        if math.isnan(row["price"]):
            assert hit["price"] is None  # NaN is not JSON: unknown price is null
        else:
            assert hit["price"] == pytest.approx(row["price"])
        assert "image_path" not in hit  # server paths stay on the server


def test_default_k_is_top_k_and_k_is_bounded(client, colour_searcher):
    photo = encode(swatch((40, 60, 200)))
    r = upload(client, photo)
    assert r.status_code == 200
    assert len(r.json()["results"]) == 5
    assert r.json()["category"] == "blue"
    assert colour_searcher.calls[-1] == (1, 6, False)  # one more than shown: whether a next page exists
    for bad_k in (0, -3, MAX_K + 1, "many"):
        r = upload(client, photo, k=bad_k)
        assert r.status_code == 422, (bad_k, r.text)
    assert len(colour_searcher.calls) == 1  # a refused request never reaches the model


def test_restrict_to_predicted_is_passed_to_the_searcher(colour_searcher):
    client = TestClient(create_app(colour_searcher, top_k=6, restrict_to_predicted=True))
    r = upload(client, encode(swatch((30, 170, 60))))
    assert r.status_code == 200
    assert colour_searcher.calls[-1] == (1, 7, True)  # top_k + 1: whether a next page exists
    assert {h["label"] for h in r.json()["results"]} == {"green"}


def test_result_image_urls_serve_the_catalogue_files(client, colour_catalogue):
    r = upload(client, encode(swatch((200, 30, 40))), k=9)
    results = r.json()["results"]
    assert {h["item_id"] for h in results} == set(colour_catalogue["item_id"])
    paths = dict(zip(colour_catalogue["item_id"], colour_catalogue["image_path"], strict=True))
    for hit in results:
        assert hit["image_url"] == item_image_url(hit["item_id"])
        img = client.get("/" + hit["image_url"])
        assert img.status_code == 200, (hit["item_id"], img.text)
        assert img.content == Path(paths[hit["item_id"]]).read_bytes()
        expected = "image/png" if paths[hit["item_id"]].endswith(".png") else "image/jpeg"
        assert img.headers["content-type"] == expected
        assert img.headers["x-content-type-options"] == "nosniff"
    # the id with "/" and " " needed encoding and still found its file
    assert "red%2F2%20a" in item_image_url("red/2 a")


# ---- bad uploads: always a 4xx with a message, never a 500 -------------------------------------


@pytest.mark.parametrize(
    ("data", "mime"),
    [
        (b"hello, this is plain text and not a photo\n" * 5, "image/jpeg"),  # lying header
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n", "application/pdf"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>", "image/svg+xml"),
    ],
)
def test_wrong_type_is_415(client, colour_searcher, data, mime):
    r = upload(client, data, name="not-a-photo.jpg", mime=mime)
    assert r.status_code == 415, r.text
    assert r.json()["reason"] == "unsupported_type"
    assert "not-a-photo.jpg" in r.json()["detail"] and "JPEG" in r.json()["detail"]
    assert colour_searcher.calls == []


def test_real_image_of_an_unaccepted_format_is_415(client):
    tiff = encode(swatch((200, 30, 40)), "TIFF")
    r = upload(client, tiff, name="scan.tif", mime="image/jpeg")
    assert r.status_code == 415
    assert r.json()["reason"] == "unsupported_type"


def test_type_is_judged_by_content_not_by_header(client):
    png = encode(swatch((30, 170, 60)), "PNG")
    r = upload(client, png, name="photo.bin", mime="application/octet-stream")
    assert r.status_code == 200
    assert r.json()["category"] == "green"


def test_oversize_upload_is_413_with_the_limit(colour_searcher):
    limit = 4000
    client = TestClient(create_app(colour_searcher, max_upload_bytes=limit))
    photo = encode(swatch((200, 30, 40), size=96), "PNG")
    assert limit < len(photo) < limit + 64 * 1024  # passes the body guard, caught on the file size
    r = upload(client, photo, name="big.png", mime="image/png")
    assert r.status_code == 413, r.text
    assert r.json()["reason"] == "too_big"
    assert "3.91 KB limit" in r.json()["detail"] and "big.png" in r.json()["detail"]
    # just under the limit is fine
    small = encode(swatch((200, 30, 40), size=24), "JPEG", quality=80)
    assert len(small) <= limit
    assert upload(client, small).status_code == 200
    assert len(colour_searcher.calls) == 1


def test_huge_body_is_refused_before_it_is_read(colour_searcher):
    client = TestClient(create_app(colour_searcher, max_upload_bytes=MB))
    r = upload(client, b"\xff\xd8\xff" + b"\0" * (2 * MB), name="huge.jpg")
    assert r.status_code == 413
    assert r.json() == {
        "detail": "the upload is larger than the 1 MB limit; send a smaller photo",
        "reason": "too_big",
    }


def test_huge_chunked_body_without_length_is_refused(colour_searcher):
    client = TestClient(create_app(colour_searcher, max_upload_bytes=MB))
    sent = 0

    def body():
        nonlocal sent
        yield b'--xx\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n\r\n\xff\xd8\xff'
        for _ in range(64):  # 4 MB in 64 KB chunks
            sent += 1
            yield b"\0" * 65536
        yield b"\r\n--xx--\r\n"

    r = client.post("/search", content=body(), headers={"content-type": "multipart/form-data; boundary=xx"})
    assert r.status_code == 413
    assert r.json()["reason"] == "too_big"
    assert "1 MB limit" in r.json()["detail"]
    assert colour_searcher.calls == []


def test_truncated_jpeg_is_422_with_the_decoder_reason(client, colour_searcher):
    photo = encode(swatch((200, 30, 40), size=64), "JPEG", quality=95)
    r = upload(client, photo[: len(photo) // 2], name="cut.jpg")
    assert r.status_code == 422, r.text
    assert r.json()["reason"] == "truncated"
    assert r.json()["detail"].startswith("'cut.jpg' could not be decoded: truncated")
    assert colour_searcher.calls == []


@pytest.mark.parametrize(
    ("data", "reasons"),
    [
        (b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 20, {"unreadable", "truncated", "not_an_image"}),
        (b"\xff\xd8\xff\xe0" + b"\x13" * 200, {"unreadable", "truncated", "not_an_image"}),
        (b"GIF89a", {"unreadable", "truncated", "not_an_image"}),
    ],
)
def test_corrupt_file_of_a_known_type_is_422(client, data, reasons):
    r = upload(client, data, name="broken")
    assert r.status_code == 422, r.text
    assert r.json()["reason"] in reasons
    assert "'broken' could not be decoded" in r.json()["detail"]


def test_empty_upload_is_400(client):
    r = upload(client, b"", name="empty.jpg")
    assert r.status_code == 400
    assert r.json()["reason"] == "empty"


def test_decompression_bomb_is_422_too_large(client, monkeypatch):
    monkeypatch.setattr(images_module, "MAX_IMAGE_PIXELS", 32 * 32)
    r = upload(client, encode(swatch((200, 30, 40), size=48), "PNG"), name="bomb.png")
    assert r.status_code == 422
    assert r.json()["reason"] == "too_large"


def test_missing_file_field_is_422(client):
    r = client.post("/search", data={"photo": "x"})
    assert r.status_code == 422


# ---- catalogue images: only by id --------------------------------------------------------------


def test_unknown_item_id_is_404(client):
    r = client.get("/items/no-such-item/image")
    assert r.status_code == 404
    assert r.json()["detail"] == "no catalogue item with this id"


@pytest.mark.parametrize(
    "raw_path",
    [
        "/items/%2e%2e/%2e%2e/etc/passwd/image",
        "/items/..%2F..%2F..%2Fetc%2Fpasswd/image",
        "/items/%252e%252e%252fetc%252fpasswd/image",
        "/items//etc/passwd/image",
        "/items/%2Fetc%2Fpasswd/image",
        "/items/red-0%00/image",
        "/items/red-0%2F..%2F..%2Fetc%2Fpasswd/image",
    ],
)
def test_encoded_path_tricks_reach_only_the_id_lookup(client, raw_path):
    r = client.get(raw_path)
    assert r.status_code == 404, (raw_path, r.status_code, r.text[:200])
    assert r.json()["detail"] == "no catalogue item with this id"


@pytest.mark.parametrize(
    "raw_path",
    [
        "/items/../../etc/passwd/image",
        "/items/red-0/../../../etc/passwd",
        "/static/../../../../etc/passwd",
        "/static/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2F..%2Fapp.py",
        "/static/%2e%2e/app.py",
    ],
)
def test_other_path_tricks_are_404(client, raw_path):
    r = client.get(raw_path)
    assert r.status_code == 404, (raw_path, r.status_code, r.text[:200])
    assert "root:" not in r.text and "create_app" not in r.text


def test_catalogue_file_path_used_as_id_is_404(client, colour_catalogue):
    path = colour_catalogue["image_path"].iloc[0]
    r = client.get("/" + item_image_url(path))
    assert r.status_code == 404
    assert r.json()["detail"] == "no catalogue item with this id"


def test_item_whose_file_is_gone_is_404(colour_catalogue, tmp_path):
    items = colour_catalogue.copy()
    gone = tmp_path / "gone.jpg"
    swatch((1, 2, 3)).save(gone)
    items.loc[len(items)] = {**items.iloc[0].to_dict(), "item_id": "gone", "image_path": str(gone)}
    client = TestClient(create_app(ColourSearcher(items)))
    assert client.get("/items/gone/image").status_code == 200
    gone.unlink()
    r = client.get("/items/gone/image")
    assert r.status_code == 404
    assert "missing" in r.json()["detail"]


# ---- health, OpenAPI, page ---------------------------------------------------------------------


def test_health_reports_index_size_and_model(client, colour_catalogue):
    r = client.get("/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok"
    assert body["index_size"] == len(colour_catalogue) == 9
    assert body["model"] == "colour-means"
    assert body["top_k"] == 5 and body["max_upload_bytes"] == MB


def test_openapi_lists_the_routes(client):
    spec = client.get("/openapi.json").json()
    paths = spec["paths"]
    items = {"/items", "/items/{item_id}", "/items/{item_id}/image", "/items/{item_id}/similar"}
    assert set(paths) == {"/search", "/health", "/facets", "/tag", *items}
    assert set(paths["/items/{item_id}"]) == {"get", "patch", "delete"} and set(paths["/items"]) == {"post"}
    search = paths["/search"]["post"]
    assert "multipart/form-data" in search["requestBody"]["content"]
    assert {"200", "400", "413", "415", "422"} <= set(search["responses"])
    k = next(p for p in search["parameters"] if p["name"] == "k")
    assert k["in"] == "query"
    assert client.get("/docs").status_code == 200


def test_page_and_assets_are_served_without_any_cdn(client):
    page = client.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "style-src 'self'" in csp
    assert 'id="file-input"' in page.text and 'id="result-grid"' in page.text
    for name in ("app.js", "style.css"):
        asset = client.get(f"/static/{name}")
        assert asset.status_code == 200
        assert asset.content == (STATIC_DIR / name).read_bytes()
    # nothing on the page loads from another host
    for file in STATIC_DIR.iterdir():
        text = file.read_text()
        urls = re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}", text)
        assert urls == [], (file.name, urls)


def test_create_app_rejects_bad_settings(colour_searcher):
    with pytest.raises(ValueError, match="top_k"):
        create_app(colour_searcher, top_k=0)
    with pytest.raises(ValueError, match="max_upload_bytes"):
        create_app(colour_searcher, max_upload_bytes=0)


def test_searcher_items_need_unique_ids(colour_catalogue):
    items = pd.concat([colour_catalogue, colour_catalogue.iloc[:1]], ignore_index=True)
    with pytest.raises(ValueError, match="item_id"):
        create_app(ColourSearcher(items))


def test_health_facts_come_from_the_index_manifest_without_server_paths(colour_catalogue, tmp_path):
    faiss = pytest.importorskip("faiss")
    from imgsearch.retrieval.index import make_manifest

    index = faiss.IndexFlatIP(4)
    index.add(np.eye(4, dtype="float32")[[0, 1, 2, 3, 0, 1, 2, 3, 0]])
    manifest = make_manifest(
        index=index,
        items=colour_catalogue,
        embedding="features",
        metric="ip",
        normalize=True,
        factory="Flat",
        checkpoint=tmp_path / "secret" / "model.ckpt",
        checkpoint_sha256="0" * 64,
        backbone="efficientnet_lite0",
        data_config={"input_size": [3, 64, 64]},
        class_names=list(COLOURS),
        catalogue_path=tmp_path / "secret" / "catalogue.csv",
    )
    model, facts = manifest_facts(manifest)
    assert model == "efficientnet_lite0"
    assert facts["embedding"] == "features" and facts["dim"] == 4 and facts["metric"] == "ip"
    assert facts["classes"] == 3 and facts["index_factory"] == "Flat"
    client = TestClient(create_app(ColourSearcher(colour_catalogue), model_name=model, details=facts))
    health = client.get("/health")
    assert health.json()["model"] == "efficientnet_lite0"
    assert health.json()["details"]["dim"] == 4
    assert "secret" not in health.text
    assert manifest_facts({}) == ("", {})
