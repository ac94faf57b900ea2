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


@pytest.mark.parametrize("share", [0.005, 0.5, 1.0])
@pytest.mark.parametrize("factory", ["Flat", "HNSW16", "IDMap2,Flat"])
def test_dense_and_sparse_id_selectors_equal_brute_force(share, factory):
    import faiss

    from imgsearch.retrieval.index import id_selector, search_params, search_subset

    rng = np.random.default_rng(3)
    n, d = 3000, 8
    x = rng.standard_normal((n, d)).astype("float32")
    index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
    if factory.startswith("IDMap2"):
        index.add_with_ids(x, np.arange(n, dtype=np.int64) * 3)  # ids that are not positions
        id_of = np.arange(n) * 3
    else:
        index.add(x)
        id_of = np.arange(n)
    if factory.startswith("HNSW"):
        faiss.downcast_index(index).hnsw.efSearch = 4000  # exhaustive enough to compare exactly
    keep = np.sort(rng.choice(n, max(1, int(share * n)), replace=False))
    sel, bits = id_selector(id_of[keep])
    assert (bits is None) == (share < 0.01)  # sparse: a hash set; dense: a bitmap
    admitted = [i for i in range(3 * n + 64) if sel.is_member(i)]
    assert admitted == id_of[keep].tolist()
    q = rng.standard_normal((5, d)).astype("float32")
    exact = id_of[keep][np.argsort(-(q @ x[keep].T), axis=1)[:, :10]]
    subset = search_subset(index, q, 10, id_of[keep])
    np.testing.assert_array_equal(subset[1][:, : exact.shape[1]], exact)
    assert (subset[1][:, exact.shape[1] :] == -1).all()  # fewer admitted items than k: padded like FAISS
    if factory.startswith("HNSW") and share < 0.01:
        return  # a graph walk through a very selective filter misses items: why search_subset exists
    _, found = index.search(q, 10, params=search_params(index, ids=id_of[keep]))
    np.testing.assert_array_equal(found[:, : exact.shape[1]], exact)


def test_a_selective_filter_on_hnsw_finds_the_exact_top_k(tmp_path):
    rng = np.random.default_rng(5)
    items = _items()
    x = I.prepare_vectors(rng.standard_normal((len(items), D)), normalize=True)
    index = I.build_index(x, factory="HNSW16", metric="ip", normalize=True)
    manifest = {"embedding": {"kind": "pixels", "normalize": True, "pixel_size": 4, "dim": D}}
    searcher = Searcher(index, items, manifest, None)
    brand = str(items["brand"].iloc[0])
    (result,) = searcher.search_vectors(x[:1], None, 5, filters={"brand": brand})
    mask = filter_mask(items, {"brand": brand})
    expected = np.flatnonzero(mask)[np.argsort(-(x[mask] @ x[0]))[:5]]
    assert [h.item_id for h in result.hits] == items["item_id"].iloc[expected].astype(str).tolist()


def test_a_filtered_search_survives_faiss_torch_utils(tmp_path):
    """pytorch-metric-learning's samplers import faiss.contrib.torch_utils, which replaces Index.search with a
    wrapper that takes no params=; a search after a metric-learning training must still filter."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        """
        import faiss, numpy as np
        import faiss.contrib.torch_utils  # noqa: F401  the import that patches every index class
        from imgsearch.retrieval.index import search_batched, search_params
        x = np.random.default_rng(0).standard_normal((200, 8)).astype("float32")
        index = faiss.IndexFlatIP(8)
        index.add(x)
        keep = np.arange(0, 200, 7)
        _, ids = search_batched(index, x[:3], 5, params=search_params(index, ids=keep))
        assert hasattr(index, "search_numpy"), "torch_utils did not patch: the test proves nothing"
        assert set(ids.ravel().tolist()) <= set(keep.tolist()), ids
        print("ok", ids[0].tolist())
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith("ok")
