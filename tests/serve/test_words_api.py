"""#15 in the web API: words alone (GET /search?q=), words and colour with a photo (POST /search), tagging
(POST /tag), the colour facet, and every bad query answered 4xx with its reason, never a 500."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from colour_shop import build_colour_shop
from imgsearch.retrieval.search import Searcher
from imgsearch.serve.app import create_app
from imgsearch.serve.batching import BatchConfig

from .conftest import ColourSearcher, encode, swatch


@pytest.fixture(scope="module")
def shop(tmp_path_factory) -> Path:
    return build_colour_shop(tmp_path_factory.mktemp("words_shop"))


@pytest.fixture(scope="module")
def searcher(shop) -> Searcher:
    return Searcher.from_index_dir(shop / "index")


@pytest.fixture(scope="module")
def blind(shop) -> Searcher:
    return Searcher.from_index_dir(shop / "blind")


@pytest.fixture(scope="module")
def client(searcher) -> TestClient:
    return TestClient(create_app(searcher, top_k=8))


def _png(shop: Path, item: str) -> bytes:
    buf = io.BytesIO()
    Image.open(shop / f"{item}.png").save(buf, "PNG")
    return buf.getvalue()


def _photo(client, data: bytes, **params):
    return client.post("/search", files={"file": ("q.png", data, "image/png")}, params=params)


def _ids(body) -> list[str]:
    return [h["item_id"] for h in body["results"]]


def _colours(body) -> list[str]:
    return [h["item_id"].split("-")[1] for h in body["results"]]


def test_words_alone_answer_what_the_searcher_answers(client, searcher):
    r = client.get("/search", params={"q": "red bags", "k": 4})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["category"] is None and body["probability"] is None  # no photo, no predicted category
    assert _ids(body) == [h.item_id for h in searcher.search_text("red bags", k=4).hits]
    assert set(_ids(body)) == {f"bags-red-{b}" for b in range(4)}  # stemmed: bags -> bag
    assert body["has_more"] is True  # other items share a word ("red" shoes): the next page has them
    blue = client.get("/search", params={"q": "shoes", "k": 8, "filter": "baseColour=Blue"}).json()
    assert set(_ids(blue)) == {f"shoes-blue-{b}" for b in range(4)}
    page2 = client.get("/search", params={"q": "red bags", "k": 4, "offset": 4}).json()
    assert not set(_ids(page2)) & set(_ids(body))


@pytest.mark.parametrize("bad", ['"', "*", "x" * 10_000, "", "   ", "a " * 40])
def test_words_with_nothing_to_search_or_too_long_are_400(client, shop, bad):
    for r in (client.get("/search", params={"q": bad}), _photo(client, _png(shop, "bags-red-0"), q=bad)):
        assert r.status_code == 400, r.text
        assert r.json()["reason"] == "bad_query" and r.json()["detail"]


@pytest.mark.parametrize(
    "syntax", ["AND", "red AND", "NEAR(", "NEAR(red", "red NEAR(", '"red', "red*", "OR OR"]
)
def test_fts5_operators_are_searched_as_plain_words_never_a_500(client, syntax):
    # user words are quoted before FTS5 sees them: its operators are words, so there is no syntax to break
    r = client.get("/search", params={"q": syntax})
    assert r.status_code == 200, r.text
    if "red" in syntax:
        assert _ids(r.json()) and all("red" in i for i in _ids(r.json())[:8])


def test_a_colour_weight_moves_the_photos_results_towards_its_colour(client, searcher, shop):
    photo = _png(shop, "bags-red-0")
    plain = _photo(client, photo, k=8).json()
    strong = _photo(client, photo, k=8, colour_weight=10).json()
    assert _colours(strong) == ["red"] * 8 and _colours(plain).count("red") < 8
    expected = searcher.search([Image.open(shop / "bags-red-0.png")], k=8, colour_weight=10.0)[0]
    assert _ids(strong) == [h.item_id for h in expected.hits]
    assert _photo(client, photo, k=8, colour_weight=0).json()["results"] == plain["results"]


def test_a_colour_weight_on_an_index_without_a_colour_part_is_400(blind, shop):
    client = TestClient(create_app(blind))
    r = _photo(client, _png(shop, "bags-red-0"), colour_weight=0.5)
    assert r.status_code == 400 and r.json()["reason"] == "no_colour_part"
    assert "colour_weight must be 0" in r.json()["detail"]
    assert client.get("/facets").json()["colour"] == {
        "weight": False, "column": "baseColour", "values": ["Blue", "Red"]
    }  # fmt: skip
    assert _photo(client, _png(shop, "bags-red-0"), colour_weight=-1).status_code == 422  # out of range


def test_this_in_colour_c_and_an_unknown_colour(client, shop):
    r = _photo(client, _png(shop, "bags-red-1"), k=4, colour="blue")
    assert r.status_code == 200, r.text
    assert _colours(r.json()) == ["blue"] * 4
    assert {h["label"] for h in r.json()["results"]} == {"bags"}  # the photo's kind, in the asked colour
    bad = _photo(client, _png(shop, "bags-red-1"), colour="mauve")
    assert bad.status_code == 400
    assert bad.json()["reason"] == "unknown_colour" and bad.json()["known"] == ["Blue", "Red"]
    assert "known colours: Blue, Red" in bad.json()["detail"]


def test_words_with_a_photo_are_fused(client, searcher, shop):
    r = _photo(client, _png(shop, "shoes-blue-0"), k=3, q="running shoes", text_weight=2)
    assert r.status_code == 200, r.text
    expected = searcher.search(
        [Image.open(shop / "shoes-blue-0.png")], k=3, q="running shoes", text_weight=2.0
    )[0]
    assert _ids(r.json()) == [h.item_id for h in expected.hits]
    assert {h["label"] for h in r.json()["results"]} == {"shoes"}


def test_the_batched_path_takes_words_and_colour_too(searcher, shop):
    with TestClient(create_app(searcher, batching=BatchConfig(max_batch=4, max_wait_ms=1.0))) as client:
        r = _photo(client, _png(shop, "bags-red-0"), k=8, colour_weight=10)
        assert r.status_code == 200, r.text
        assert _colours(r.json()) == ["red"] * 8
        assert _photo(client, _png(shop, "bags-red-0"), q="*").status_code == 400
        assert _photo(client, _png(shop, "bags-red-0"), colour="mauve").status_code == 400


def test_tag_gives_each_attribute_with_its_confidence(client, shop):
    r = client.post("/tag", files={"file": ("q.png", _png(shop, "shoes-red-2"), "image/png")})
    assert r.status_code == 200, r.text
    tags = r.json()["tags"]
    assert set(tags) == {"label", "baseColour"}
    assert tags["baseColour"]["value"] == "Red" and 0.5 < tags["baseColour"]["confidence"] <= 1.0
    assert tags["baseColour"]["low_confidence"] is False
    blue = client.post("/tag", files={"file": ("q.png", _png(shop, "bags-blue-1"), "image/png")}).json()
    assert blue["tags"]["baseColour"]["value"] == "Blue"
    # the category head is all zeros in this model: a coin toss, said as low confidence at 0.6
    unsure = client.post(
        "/tag",
        files={"file": ("q.png", _png(shop, "shoes-red-2"), "image/png")},
        params={"min_confidence": 0.6},
    ).json()
    assert unsure["min_confidence"] == 0.6 and unsure["tags"]["label"]["low_confidence"] is True
    assert unsure["tags"]["label"]["confidence"] == pytest.approx(0.5)


def test_tag_without_attribute_heads_is_409_and_bad_uploads_keep_their_codes(colour_searcher, client):
    no_heads = TestClient(create_app(colour_searcher))
    r = no_heads.post("/tag", files={"file": ("q.png", b"\x89PNG", "image/png")})
    assert r.status_code == 409 and "no attribute heads" in r.json()["detail"]
    assert client.post("/tag", files={"file": ("q.txt", b"hello", "text/plain")}).status_code == 415
    assert client.post("/tag", files={"file": ("q.png", b"", "image/png")}).status_code == 400


def test_facets_say_whether_the_index_can_match_colour(client):
    colour = client.get("/facets").json()["colour"]
    assert colour == {"weight": True, "column": "baseColour", "values": ["Blue", "Red"]}


def test_a_searcher_without_words_or_colour_still_serves_photos(colour_searcher: ColourSearcher):
    client = TestClient(create_app(colour_searcher))
    assert client.get("/facets").json()["colour"] == {"weight": False, "column": None, "values": []}
    assert client.get("/search", params={"q": "red"}).status_code == 501
    photo = {"file": ("q.jpg", encode(swatch((200, 30, 40))), "image/jpeg")}
    assert client.post("/search", files=photo, params={"q": "red"}).status_code == 501
    weighted = client.post("/search", files=photo, params={"colour_weight": 1})
    assert weighted.status_code == 400 and weighted.json()["reason"] == "no_colour_part"
    assert client.post("/search", files=photo).status_code == 200  # the photo alone still works


def test_openapi_lists_words_colour_and_tag(client):
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/search"]) == {"get", "post"} and set(paths["/tag"]) == {"post"}
    post = {p["name"] for p in paths["/search"]["post"]["parameters"]}
    assert {"q", "text_weight", "colour_weight", "colour"} <= post
    assert "q" in {p["name"] for p in paths["/search"]["get"]["parameters"]}
    assert {"200", "409", "415"} <= set(paths["/tag"]["post"]["responses"])
