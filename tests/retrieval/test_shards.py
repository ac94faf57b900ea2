"""Embedding to shards: round trip, unreadable images per shard, resume after a kill, two DDP ranks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import imgsearch.retrieval.shards as shards_mod
from imgsearch.data.schema import write_catalogue
from imgsearch.retrieval.embed import embed_catalogue
from imgsearch.retrieval.shards import (
    embed_to_shards,
    iter_shards,
    read_spec,
    shard_paths,
    shard_report,
)

CPU = {"accelerator": "cpu", "enable_progress_bar": False}


def _all(directory: Path) -> tuple[np.ndarray, pd.DataFrame]:
    parts = list(iter_shards(directory))
    return np.concatenate([p.vectors for p in parts]), pd.concat(
        [p.metadata for p in parts], ignore_index=True
    )


def test_shards_round_trip_ids_order_metadata_and_skips(catalogue, pixel_model, tmp_path):
    broken = catalogue.copy()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    broken.loc[3, "image_path"] = str(tmp_path / "bad.png")
    broken.loc[12, "image_path"] = str(tmp_path / "missing.png")
    out = tmp_path / "shards"
    report = embed_to_shards(
        pixel_model, broken, out, shard_rows=5, batch_size=3, num_workers=0, trainer_kwargs=CPU
    )
    # autofaiss / embedding-reader layout: embeddings/*.npy and metadata/*.parquet, one per shard
    assert sorted(p.name for p in (out / "embeddings").iterdir()) == [f"part-{i:06d}.npy" for i in range(5)]
    assert sorted(p.name for p in (out / "metadata").iterdir()) == [f"part-{i:06d}.parquet" for i in range(5)]
    vectors, meta = _all(out)
    keep = [i for i in range(len(broken)) if i not in (3, 12)]
    assert meta["row"].tolist() == keep
    assert meta["item_id"].tolist() == broken["item_id"].iloc[keep].tolist()
    assert meta["title"].tolist() == broken["title"].iloc[keep].tolist()
    want = embed_catalogue(pixel_model, catalogue, kind="features", num_workers=0, trainer_kwargs=CPU)
    np.testing.assert_allclose(vectors, want["features"][keep], rtol=1e-6)
    assert vectors.dtype == np.float32
    # skips are counted in the shard they belong to and summed in one report
    assert report["skipped"] == 2 and report["kept"] == len(keep)
    assert report["skipped_per_shard"] == {"part-000000": 1, "part-000002": 1}
    assert {s["item_id"] for s in report["skipped_items"]} == {broken.item_id[3], broken.item_id[12]}
    assert read_spec(out)["dim"] == pixel_model.embedding_dim("features")


def test_float16_shards(catalogue, pixel_model, tmp_path):
    embed_to_shards(
        pixel_model,
        catalogue,
        tmp_path / "s",
        shard_rows=7,
        dtype="float16",
        num_workers=0,
        trainer_kwargs=CPU,
    )
    vectors, _ = _all(tmp_path / "s")
    want = embed_catalogue(pixel_model, catalogue, kind="features", num_workers=0, trainer_kwargs=CPU)
    assert vectors.dtype == np.float16
    np.testing.assert_allclose(vectors.astype(np.float32), want["features"], rtol=1e-2, atol=1e-3)


def test_normalized_shards_hold_unit_vectors(catalogue, pixel_model, tmp_path):
    embed_to_shards(
        pixel_model,
        catalogue,
        tmp_path / "s",
        shard_rows=10,
        normalize=True,
        num_workers=0,
        trainer_kwargs=CPU,
    )
    vectors, _ = _all(tmp_path / "s")
    want = embed_catalogue(pixel_model, catalogue, kind="features", num_workers=0, trainer_kwargs=CPU)
    unit = want["features"] / np.linalg.norm(want["features"], axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, unit, rtol=1e-5, atol=1e-6)
    assert read_spec(tmp_path / "s")["normalized"] is True


def test_resume_after_a_kill_mid_shard_equals_an_uninterrupted_run(
    catalogue, pixel_model, tmp_path, monkeypatch
):
    ref = tmp_path / "ref"
    embed_to_shards(
        pixel_model, catalogue, ref, shard_rows=5, batch_size=3, num_workers=0, trainer_kwargs=CPU
    )

    out = tmp_path / "killed"
    real = shards_mod.write_shard
    calls = []

    def dies_in_third_shard(directory, index, vectors, metadata, skipped=()):
        calls.append(index)
        if len(calls) == 3:  # half a shard on disk, then the process dies
            npy, _ = shard_paths(directory, index)
            npy.parent.mkdir(parents=True, exist_ok=True)
            (npy.parent / f".{npy.name}.partial.npy").write_bytes(b"\x93NUMPY half")
            raise KeyboardInterrupt("killed")
        return real(directory, index, vectors, metadata, skipped)

    monkeypatch.setattr(shards_mod, "write_shard", dies_in_third_shard)
    with pytest.raises((KeyboardInterrupt, SystemExit, RuntimeError)):
        embed_to_shards(
            pixel_model, catalogue, out, shard_rows=5, batch_size=3, num_workers=0, trainer_kwargs=CPU
        )
    monkeypatch.setattr(shards_mod, "write_shard", real)
    done = {i: shard_paths(out, i)[1].stat().st_mtime_ns for i in (0, 1)}
    assert not shard_paths(out, 2)[1].exists()
    with pytest.raises(ValueError, match="unfinished"):
        shard_report(out)

    rewritten = []
    monkeypatch.setattr(
        shards_mod, "write_shard", lambda d, i, *a, **k: (rewritten.append(i), real(d, i, *a, **k))[1]
    )
    embed_to_shards(
        pixel_model, catalogue, out, shard_rows=5, batch_size=3, num_workers=0, trainer_kwargs=CPU
    )
    assert rewritten == [2, 3, 4]  # finished shards are skipped, not redone
    assert {i: shard_paths(out, i)[1].stat().st_mtime_ns for i in (0, 1)} == done
    (v_ref, m_ref), (v, m) = _all(ref), _all(out)
    np.testing.assert_array_equal(v, v_ref)
    pd.testing.assert_frame_equal(m, m_ref)


def test_rerun_with_another_job_is_refused(catalogue, pixel_model, tmp_path):
    out = tmp_path / "s"
    embed_to_shards(pixel_model, catalogue, out, shard_rows=5, num_workers=0, trainer_kwargs=CPU)
    with pytest.raises(ValueError, match="another job"):
        embed_to_shards(pixel_model, catalogue, out, shard_rows=6, num_workers=0, trainer_kwargs=CPU)


@pytest.mark.slow
def test_two_ddp_cpu_processes_write_the_same_shards_as_one(catalogue, tmp_path):
    cat = tmp_path / "catalogue.csv"
    write_catalogue(catalogue, cat)

    def run(name: str, *extra: str) -> Path:
        out = tmp_path / name
        cmd = [
            sys.executable, "-m", "imgsearch.cli.embed", "checkpoint=null", "embedding=pixels",
            f"catalogue={cat}", "shard_rows=5", "embed.pixel_size=6", "embed.num_workers=0",
            "embed.batch_size=2", "embed.trainer.accelerator=cpu", f"output_dir={out}",
            f"hydra.run.dir={tmp_path / (name + '_run')}", *extra,
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        return out

    one = run("one")
    two = run("two", "embed.trainer.strategy=ddp", "embed.trainer.devices=2")
    # each rank wrote its own shards (rank 1: the odd ones), nothing was gathered into one process
    rank1 = next((tmp_path / "two_run").glob("*_ddp_process_1.log")).read_text()
    assert "GLOBAL_RANK: 1" in rank1
    assert "shard part-000001" in rank1 and "shard part-000003" in rank1 and "part-000002" not in rank1
    (v1, m1), (v2, m2) = _all(one), _all(two)
    np.testing.assert_array_equal(v2, v1)
    pd.testing.assert_frame_equal(m2, m1)
    assert m1["row"].tolist() == list(range(len(catalogue)))
    assert json.loads((two / "shards.json").read_text())["shards"] == 5
