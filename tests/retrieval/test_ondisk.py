"""On-disk inverted lists: the same results as the in-memory IVF build, a relocatable directory."""

from __future__ import annotations

import json
import shutil

import faiss
import numpy as np
import pytest
from tests.retrieval.test_build import clustered, write_synthetic_shards

from imgsearch.retrieval.build import build_index_from_shards
from imgsearch.retrieval.index import IndexCompatibilityError, load_index_dir, prepare_vectors, search_batched
from imgsearch.retrieval.ondisk import IVFDATA_FILE


@pytest.mark.parametrize("factory", ["IVF32,Flat", "IVF32,SQ8"])
def test_ondisk_build_searches_like_the_in_memory_build(tmp_path, factory):
    x = clustered(4000, 16)
    items = write_synthetic_shards(tmp_path / "shards", x, shard_rows=900)
    kw = {"factory": factory, "train_sample": 2000}
    mem = build_index_from_shards(tmp_path / "shards", tmp_path / "mem", **kw)
    disk = build_index_from_shards(tmp_path / "shards", tmp_path / "disk", ondisk=True, **kw)
    ref, _, _ = load_index_dir(mem)
    index, got_items, manifest = load_index_dir(disk)
    invlists = faiss.extract_index_ivf(index).invlists
    assert faiss.downcast_InvertedLists(invlists).__class__.__name__ == "OnDiskInvertedLists"
    assert manifest["ondisk"]["bytes"] == (disk / IVFDATA_FILE).stat().st_size > 0
    assert not any(p.name.startswith(".ondisk") for p in disk.iterdir())  # sub-indexes removed
    assert index.ntotal == ref.ntotal == len(x)
    q = prepare_vectors(x[::41], normalize=True)
    for nprobe in (1, 8):
        faiss.extract_index_ivf(index).nprobe = faiss.extract_index_ivf(ref).nprobe = nprobe
        d1, i1 = search_batched(index, q, 10)
        d2, i2 = search_batched(ref, q, 10)
        np.testing.assert_array_equal(i1, i2)  # ids are global rows, as in the one-index build
        np.testing.assert_allclose(d1, d2, rtol=1e-5)
    assert got_items["item_id"].tolist() == items["item_id"].tolist()


def test_moved_ondisk_directory_loads_and_searches(tmp_path):
    x = clustered(3000, 16, seed=1)
    write_synthetic_shards(tmp_path / "shards", x, shard_rows=1000)
    built = build_index_from_shards(tmp_path / "shards", tmp_path / "a", factory="IVF16,Flat", ondisk=True)
    q = prepare_vectors(x[:20], normalize=True)
    index, _, _ = load_index_dir(built)
    want = search_batched(index, q, 5)[1]
    del index
    moved = shutil.move(str(built), str(tmp_path / "elsewhere" / "b"))  # the build path no longer exists
    assert not built.exists()
    index, _, _ = load_index_dir(moved)
    got = search_batched(index, q, 5)[1]
    np.testing.assert_array_equal(got, want)
    assert (got[:, 0] == np.arange(20)).mean() > 0.9  # a vector finds itself


def test_ondisk_refuses_non_ivf_and_checks_its_file(tmp_path):
    x = clustered(1000, 8)
    write_synthetic_shards(tmp_path / "shards", x, shard_rows=500)
    with pytest.raises(ValueError, match="IVF"):
        build_index_from_shards(tmp_path / "shards", tmp_path / "flat", factory="HNSW8", ondisk=True)
    out = build_index_from_shards(tmp_path / "shards", tmp_path / "i", factory="IVF8,Flat", ondisk=True)
    with open(out / IVFDATA_FILE, "r+b") as fh:
        fh.truncate(100)
    with pytest.raises(IndexCompatibilityError, match="truncated"):
        load_index_dir(out)
    (out / IVFDATA_FILE).unlink()
    with pytest.raises(FileNotFoundError, match=IVFDATA_FILE):
        load_index_dir(out)
    assert json.loads((out / "manifest.json").read_text())["ondisk"]["file"] == IVFDATA_FILE
