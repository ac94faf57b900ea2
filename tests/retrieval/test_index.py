"""FAISS index: exact top-k vs numpy brute force, approximate factories, atomic directory, manifest guard."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from imgsearch.data.schema import validate_catalogue
from imgsearch.retrieval import index as I


def _vectors(n: int = 200, dim: int = 24, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)


def _items(n: int) -> pd.DataFrame:
    return validate_catalogue(
        pd.DataFrame(
            {
                "item_id": [f"i{j}" for j in range(n)],
                "product_id": [f"p{j // 2}" for j in range(n)],
                "image_path": [f"/img/{j}.jpg" for j in range(n)],
                "label": [["shoes", "bags", "dresses"][j % 3] for j in range(n)],
            }
        )
    )


def _brute_force(gallery: np.ndarray, queries: np.ndarray, k: int, metric: str, normalize: bool):
    g, q = gallery.astype(np.float64), queries.astype(np.float64)
    if normalize:
        g = g / np.linalg.norm(g, axis=1, keepdims=True)
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    if metric == "ip":
        s = q @ g.T
        order = np.argsort(-s, axis=1, kind="stable")[:, :k]
    else:
        s = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
        order = np.argsort(s, axis=1, kind="stable")[:, :k]
    return np.take_along_axis(s, order, axis=1), order


@pytest.mark.parametrize("metric", ["ip", "l2"])
@pytest.mark.parametrize("normalize", [True, False])
def test_flat_topk_equals_numpy_brute_force(metric, normalize):
    gallery, queries = _vectors(300, 24, 1), _vectors(37, 24, 2)
    index = I.build_index(gallery, factory="Flat", metric=metric, normalize=normalize)
    q = I.prepare_vectors(queries, normalize=normalize)
    scores, ids = I.search_batched(index, q, 7, batch_size=10)  # several batches, one partial
    want_scores, want_ids = _brute_force(gallery, queries, 7, metric, normalize)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("factory", ["HNSW32", "IVF8,PQ8x4", "IVF8,Flat", "PCA16,IVF4,Flat"])
@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_approximate_factories_build_and_find_the_item_itself(factory, metric):
    gallery = _vectors(600, 32, 3)
    index = I.build_index(gallery, factory=factory, metric=metric, normalize=True, train_sample=400)
    assert index.ntotal == 600
    q = I.prepare_vectors(gallery[:50], normalize=True)
    params = I.search_params(index, nprobe=8, ef_search=64)
    _, ids = I.search_batched(index, q, 5, params=params)
    assert ids.shape == (50, 5)
    # an item is its own nearest neighbour, also through compression (PQ) for almost all queries
    assert (ids[:, 0] == np.arange(50)).mean() >= 0.8
    assert ((ids >= 0) & (ids < 600)).all()


@pytest.mark.parametrize("factory", ["Flat", "HNSW32", "IVF8,Flat", "PCA16,IVF4,Flat"])
def test_id_selector_restricts_results(factory):
    gallery = _vectors(400, 32, 4)
    index = I.build_index(gallery, factory=factory, metric="ip")
    allowed = np.arange(1, 400, 3)
    params = I.search_params(index, ids=allowed, nprobe=8)
    _, ids = I.search_batched(index, I.prepare_vectors(gallery[:20], normalize=True), 6, params=params)
    found = ids[ids >= 0]
    assert found.size > 0
    assert np.isin(found, allowed).all()
    if factory == "Flat":  # exact search: identical to brute force over the allowed subset
        _, want = _brute_force(gallery[allowed], gallery[:20], 6, "ip", True)
        np.testing.assert_array_equal(ids, allowed[want])


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="zero vectors"):
        I.build_index(np.zeros((0, 8), np.float32))
    with pytest.raises(ValueError, match="unknown metric"):
        I.build_index(_vectors(10, 8), metric="cosine")
    with pytest.raises(ValueError, match="index_factory"):
        I.build_index(_vectors(10, 8), factory="NotAnIndex")
    with pytest.raises(ValueError, match="training"):
        I.build_index(_vectors(10, 8), factory="IVF64,Flat")
    with pytest.raises(ValueError, match="NaN"):
        I.build_index(np.full((3, 8), np.nan, np.float32))
    index = I.build_index(_vectors(10, 8))
    with pytest.raises(ValueError, match="dimension"):
        I.search_batched(index, _vectors(2, 9), 3)


def _manifest(index, items, **overrides):
    kwargs = dict(
        index=index,
        items=items,
        embedding="features",
        metric="ip",
        normalize=True,
        factory="Flat",
        checkpoint=None,
        checkpoint_sha256="abc",
        backbone="efficientnet_lite0",
        data_config={"input_size": (3, 64, 64), "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2)},
        class_names=["bags", "dresses", "shoes"],
    )
    kwargs.update(overrides)
    return I.make_manifest(**kwargs)


def test_save_and_load_round_trip(tmp_path):
    vectors = _vectors(12, 8)
    items = _items(12)
    index = I.build_index(vectors)
    manifest = _manifest(index, items)
    out = I.save_index_dir(tmp_path / "idx", index, items, manifest)
    assert sorted(p.name for p in out.iterdir()) == ["index.faiss", "items.csv", "manifest.json"]
    index2, items2, manifest2 = I.load_index_dir(out)
    assert index2.ntotal == 12 and index2.d == 8
    assert items2["item_id"].tolist() == items["item_id"].tolist()
    assert items2["image_path"].tolist() == items["image_path"].tolist()  # absolute again after loading
    # saving adds where the images are (#10: relocatable index directories), nothing else
    rel = os.path.relpath("/img", out.resolve())
    assert manifest2 == {
        **manifest,
        "catalogue": {**manifest["catalogue"], "image_root": {"path": "/img", "relative_to_index": rel}},
    }
    assert (out / "items.csv").read_text().count("/img/") == 0  # stored relative to that root
    assert manifest2["embedding"] == {"kind": "features", "dim": 8, "normalize": True}
    assert manifest2["model"]["data_config"]["input_size"] == [3, 64, 64]
    q = I.prepare_vectors(vectors[:3], normalize=True)
    np.testing.assert_array_equal(I.search_batched(index2, q, 1)[1][:, 0], [0, 1, 2])


def test_interrupted_build_leaves_previous_index_intact(tmp_path):
    target = tmp_path / "idx"
    index = I.build_index(_vectors(12, 8))
    items = _items(12)
    I.save_index_dir(target, index, items, _manifest(index, items))
    before = {p.name: p.read_bytes() for p in target.iterdir()}

    bigger = I.build_index(_vectors(20, 8, seed=5))
    bigger_items = _items(20)
    import faiss

    real_write = faiss.write_index

    def write_then_crash(idx, path):
        real_write(idx, path)  # a partial new directory exists when the crash happens
        raise KeyboardInterrupt("simulated crash mid-build")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(faiss, "write_index", write_then_crash)
        with pytest.raises(KeyboardInterrupt):
            I.save_index_dir(target, bigger, bigger_items, _manifest(bigger, bigger_items))

    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    index2, items2, _ = I.load_index_dir(target)
    assert index2.ntotal == 12 and len(items2) == 12
    assert [p.name for p in tmp_path.iterdir()] == ["idx"]  # no temp directory left behind


def test_save_refuses_size_mismatch(tmp_path):
    index = I.build_index(_vectors(12, 8))
    with pytest.raises(ValueError, match="12 vectors"):
        I.save_index_dir(tmp_path / "idx", index, _items(11), _manifest(index, _items(12)))
    assert not (tmp_path / "idx").exists()


def test_load_detects_broken_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match="not an index directory"):
        I.load_index_dir(tmp_path)
    index = I.build_index(_vectors(12, 8))
    items = _items(12)
    out = I.save_index_dir(tmp_path / "idx", index, items, _manifest(index, items))
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["embedding"]["dim"] = 9
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(I.IndexCompatibilityError, match="dimension"):
        I.load_index_dir(out)


class _Model(SimpleNamespace):
    """Stand-in with the attributes of ImageClassifier that the guard reads."""

    def embedding_dim(self, kind):
        return self.dims[kind]


def _model(**overrides):
    attrs = dict(
        dims={"features": 8, "probs": 3},
        hparams={"backbone": "efficientnet_lite0"},
        data_config={"input_size": (3, 64, 64), "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2)},
        class_names=["bags", "dresses", "shoes"],
    )
    attrs.update(overrides)
    return _Model(**attrs)


def test_manifest_guard():
    index = I.build_index(_vectors(12, 8))
    manifest = _manifest(index, _items(12))
    I.check_compatible(manifest, _model(), "features")  # matching model: no error
    with pytest.raises(I.IndexCompatibilityError, match=r"dimension mismatch.*8-d.*16-d"):
        I.check_compatible(manifest, _model(dims={"features": 16}), "features")
    with pytest.raises(I.IndexCompatibilityError, match=r"backbone 'efficientnet_lite0'.*'resnet18'"):
        I.check_compatible(manifest, _model(hparams={"backbone": "resnet18"}), "features")
    changed = {"input_size": (3, 96, 96), "mean": (0.5, 0.5, 0.5), "std": (0.2, 0.2, 0.2)}
    with pytest.raises(
        I.IndexCompatibilityError,
        match=r"preprocessing mismatch.*input_size: index \[3, 64, 64\] vs model \[3, 96, 96\]",
    ):
        I.check_compatible(manifest, _model(data_config=changed), "features")
    with pytest.raises(I.IndexCompatibilityError, match="'features' embeddings but 'probs'"):
        I.check_compatible(manifest, _model(), "probs")
    with pytest.raises(I.IndexCompatibilityError, match="needs a model"):
        I.check_compatible(manifest, None, "features")


def test_search_within_groups_equals_brute_force_per_group():
    # classify-then-search (eval and Searcher share this one function): each query sees only its group
    rng = np.random.default_rng(3)
    gallery = rng.standard_normal((60, 8)).astype(np.float32)
    queries = rng.standard_normal((9, 8)).astype(np.float32)
    g_groups = np.array(["a", "b", "c"] * 20, dtype=object)
    q_groups = np.array(["a", "b", "c", "a", "b", "c", "a", "zzz", "b"], dtype=object)
    index = I.build_index(gallery, factory="Flat", metric="ip", normalize=False)
    scores, ids = I.search_within_groups(index, queries, 5, q_groups, I.group_members(g_groups), batch_size=2)
    for i, grp in enumerate(q_groups):
        members = np.flatnonzero(g_groups == grp)
        if len(members) == 0:
            assert (ids[i] == -1).all()
            continue
        want = members[np.argsort(-(gallery[members] @ queries[i]), kind="stable")[:5]]
        assert ids[i].tolist() == want.tolist()
        np.testing.assert_allclose(scores[i], gallery[want] @ queries[i], rtol=1e-5)


def test_moved_index_directory_finds_its_images(tmp_path):
    shop = tmp_path / "shop"
    (shop / "photos").mkdir(parents=True)
    items = _items(4)
    items["image_path"] = [str(shop / "photos" / f"{j}.jpg") for j in range(4)]
    for p in items["image_path"]:
        Path(p).write_bytes(b"x")
    index = I.build_index(_vectors(4, 8))
    I.save_index_dir(shop / "index", index, items, _manifest(index, items))

    # the index directory moved alone: the recorded absolute root still holds the images
    shutil.copytree(shop / "index", tmp_path / "elsewhere" / "index")
    _, moved, _ = I.load_index_dir(tmp_path / "elsewhere" / "index")
    assert moved["image_path"].tolist() == items["image_path"].tolist()

    # index and images moved together: found beside the index as they were
    shutil.move(str(shop), str(tmp_path / "shop2"))
    _, both, manifest = I.load_index_dir(tmp_path / "shop2" / "index")
    assert both["image_path"].tolist() == [str(tmp_path / "shop2" / "photos" / f"{j}.jpg") for j in range(4)]
    assert all(Path(p).is_file() for p in both["image_path"])
    # the folders serve may stream from moved with them (#13's confinement keeps working)
    assert manifest["catalogue"]["image_roots"] == [str(tmp_path / "shop2" / "photos")]

    # images somewhere else entirely: an explicit root at load time
    _, over, _ = I.load_index_dir(tmp_path / "shop2" / "index", image_root="/mnt/images")
    assert over["image_path"].tolist() == [f"/mnt/images/{j}.jpg" for j in range(4)]


def test_index_files_are_readable_by_group_and_others(tmp_path):
    old = os.umask(0o022)
    try:
        index = I.build_index(_vectors(4, 8))
        out = I.save_index_dir(tmp_path / "idx", index, _items(4), _manifest(index, _items(4)))
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    assert {p.name: p.stat().st_mode & 0o777 for p in out.iterdir()} == {
        "index.faiss": 0o644,
        "items.csv": 0o644,
        "manifest.json": 0o644,
    }
