"""#10: metadata filters inside the FAISS search, one slot per product, search-time parameters."""

from __future__ import annotations

import faiss
import numpy as np
import pandas as pd
import pytest

from imgsearch.data.schema import validate_catalogue
from imgsearch.retrieval import index as I
from imgsearch.retrieval.filters import FilterError, filter_mask, parse_filter
from imgsearch.retrieval.search import Searcher

N, D = 300, 16


def _items() -> pd.DataFrame:
    rng = np.random.default_rng(1)
    return validate_catalogue(
        pd.DataFrame(
            {
                "item_id": [f"i{j}" for j in range(N)],
                "product_id": [f"p{j // 3}" for j in range(N)],  # three photos a product
                "image_path": [f"/img/{j}.jpg" for j in range(N)],
                "label": rng.choice(["bags", "shoes", "dresses"], N),
                "brand": rng.choice(["Acme", "Bolt", "Cirrus"], N),
                "price": rng.uniform(1, 100, N).round(2),
            }
        )
    )


def _searcher(factory: str = "Flat", search_params: str | None = None) -> tuple[Searcher, np.ndarray]:
    rng = np.random.default_rng(2)
    vectors = I.prepare_vectors(rng.standard_normal((N, D)).astype(np.float32), normalize=True)
    items = _items()
    index = I.build_index(vectors, factory=factory, metric="ip", normalize=True)
    manifest = I.make_manifest(index=index, items=items, embedding="pixels", metric="ip", normalize=True,
                               factory=factory, checkpoint=None, checkpoint_sha256=None, backbone=None,
                               data_config=None, pixel_size=4, search_params=search_params)  # fmt: skip
    return Searcher(index, items, manifest, None), vectors


def _query(searcher: Searcher, q: np.ndarray) -> None:
    searcher.embed = lambda images: (q[: len(images)], None)  # the vectors, not photos, are under test


def test_parse_filter_forms():
    assert parse_filter("brand=Acme") == ("brand", "Acme")
    assert parse_filter("label=bags|shoes") == ("label", ["bags", "shoes"])
    assert parse_filter("price=10:50") == ("price", (10.0, 50.0))
    assert parse_filter("price=:50") == ("price", (None, 50.0))
    for bad in ("brand", "=x", "price=a:b"):
        with pytest.raises(FilterError):
            parse_filter(bad)
    with pytest.raises(FilterError, match="unknown filter column 'colour'"):
        filter_mask(_items(), {"colour": "red"})


@pytest.mark.parametrize("factory", ["Flat", "HNSW32"])
def test_filtered_search_equals_brute_force_and_returns_k(factory: str):
    searcher, vectors = _searcher(factory, "efSearch=256" if factory != "Flat" else None)
    rng = np.random.default_rng(3)
    q = I.prepare_vectors(rng.standard_normal((5, D)).astype(np.float32), normalize=True)
    _query(searcher, q)
    filters = {"brand": "acme", "price": (10.0, 60.0)}  # about 1/3 x 1/2 of the items
    results = searcher.search([None] * 5, k=10, filters=filters)
    items = _items()
    ok = np.flatnonzero((items["brand"] == "Acme") & items["price"].between(10, 60))
    assert len(ok) > 10
    for i, res in enumerate(results):
        want = ok[np.argsort(-(vectors[ok] @ q[i]), kind="stable")[:10]]
        assert len(res.hits) == 10
        assert [h.item_id for h in res.hits] == [f"i{j}" for j in want]


def test_group_by_product_gives_one_slot_per_product():
    searcher, vectors = _searcher()
    q = vectors[[7]]  # item i7 itself, product p2
    _query(searcher, q)
    (plain,) = searcher.search([None], k=12)
    (grouped,) = searcher.search([None], k=5, group_by_product=True)
    products = [h.product_id for h in grouped.hits]
    assert len(grouped.hits) == 5 and len(set(products)) == 5
    assert grouped.hits[0].item_id == "i7" and [h.rank for h in grouped.hits] == [1, 2, 3, 4, 5]
    # each product's slot is its best photo in the plain ranking, the others listed after it
    first_seen = list(dict.fromkeys(h.product_id for h in plain.hits))
    assert products == first_seen[:5]
    for hit in grouped.hits:
        same = [h.item_id for h in plain.hits if h.product_id == hit.product_id]
        assert hit.item_id == same[0] and list(hit.other_views) == same[1:]


def test_search_params_from_the_manifest_hold_under_a_filter():
    searcher, _ = _searcher("IVF8,Flat", "nprobe=4")
    assert faiss.extract_index_ivf(searcher.index).nprobe == 4
    params = I.search_params(searcher.index, ids=np.arange(10))
    # a selector's parameter object must not fall back to nprobe=1
    inner = params.index_params if isinstance(params, faiss.SearchParametersPreTransform) else params
    assert faiss.downcast_index(faiss.extract_index_ivf(searcher.index)) is not None and inner.nprobe == 4
    with pytest.raises(ValueError, match="do not apply"):
        I.set_search_params(searcher.index, "efSearch=10")
