"""imgsearch-embed -> imgsearch-index shards=... -> Searcher: the same index as the direct path."""

from __future__ import annotations

import json

import numpy as np

from imgsearch.cli.embed import embed
from imgsearch.cli.index import build
from imgsearch.data.images import load_image
from imgsearch.retrieval.index import load_index_dir
from imgsearch.retrieval.search import Searcher
from retrieval_fixtures import compose


def test_embed_then_index_from_shards_equals_the_direct_index(trained_run, index_dir, tmp_path):
    ckpt = trained_run / "checkpoints" / "best.ckpt"
    common = ["embed.num_workers=0", "embed.trainer.accelerator=cpu", f"hydra.run.dir={tmp_path / 'hydra'}"]
    over = [f"checkpoint={ckpt}", "shard_rows=7", f"output_dir={tmp_path / 's'}", *common]
    report = embed(compose("embed_shards", over))
    assert report["shards"] == 4 and report["skipped"] == 0
    out = build(compose("index", [f"shards={tmp_path / 's'}", f"output_dir={tmp_path / 'ix'}", *common]))
    index, items, manifest = load_index_dir(out)
    ref_index, ref_items, ref_manifest = load_index_dir(index_dir)
    got, want = index.reconstruct_n(0, index.ntotal), ref_index.reconstruct_n(0, ref_index.ntotal)
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert items["item_id"].tolist() == ref_items["item_id"].tolist()
    for key in ("embedding", "model", "checkpoint"):
        # the checkpoint's path relative to each index directory differs: the two indexes live apart
        mine = {k: v for k, v in manifest[key].items() if k != "relative_to_index"}
        assert mine == {k: v for k, v in ref_manifest[key].items() if k != "relative_to_index"}, key
    assert manifest["catalogue"]["image_roots"] == ref_manifest["catalogue"]["image_roots"]
    assert manifest["catalogue"]["items_sha256"] == ref_manifest["catalogue"]["items_sha256"]
    # the search command's loader accepts it: the checkpoint hash in shards.json matches
    searcher = Searcher.from_index_dir(out)
    row = 5
    hit = searcher.search([load_image(items.image_path.iloc[row])], k=1)[0].hits[0]
    assert hit.item_id == items.item_id.iloc[row]
    assert (
        json.loads((tmp_path / "s" / "shards.json").read_text())["checkpoint_sha256"]
        == (manifest["checkpoint"]["sha256"])
    )


def test_index_from_shards_with_lists_on_disk_serves_like_the_in_memory_one(trained_run, tmp_path):
    """``ondisk=true``: index.ivfdata beside index.faiss; the Searcher (search / serve) gives the same hits
    as the in-memory build of the same factory, also after the directory moved."""
    import shutil

    ckpt = trained_run / "checkpoints" / "best.ckpt"
    common = ["embed.num_workers=0", "embed.trainer.accelerator=cpu", f"hydra.run.dir={tmp_path / 'hydra'}"]
    embed(
        compose(
            "embed_shards", [f"checkpoint={ckpt}", "shard_rows=7", f"output_dir={tmp_path / 's'}", *common]
        )
    )
    idx = [f"shards={tmp_path / 's'}", "factory='IVF2,Flat'", "train_sample=1000", *common]
    mem = build(compose("index", [*idx, f"output_dir={tmp_path / 'mem'}"]))
    disk = build(compose("index", [*idx, "ondisk=true", f"output_dir={tmp_path / 'disk'}"]))
    assert (disk / "index.ivfdata").is_file() and not (mem / "index.ivfdata").exists()
    moved = shutil.move(str(disk), str(tmp_path / "moved"))
    a, b = Searcher.from_index_dir(mem), Searcher.from_index_dir(moved)
    assert json.loads((tmp_path / "moved" / "manifest.json").read_text())["ondisk"]["file"] == "index.ivfdata"
    _, items, _ = load_index_dir(mem)
    photos = [load_image(p) for p in items.image_path.iloc[[0, 5, 11]]]
    for ra, rb in zip(a.search(photos, k=5), b.search(photos, k=5), strict=True):
        assert [h.item_id for h in rb.hits] == [h.item_id for h in ra.hits]
        np.testing.assert_allclose([h.score for h in rb.hits], [h.score for h in ra.hits], rtol=1e-5)
