"""Progress over the whole catalogue across ranks, and the unreadable images of all ranks in one report."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from imgsearch.data.schema import write_catalogue
from imgsearch.retrieval.shard_progress import GlobalProgress
from imgsearch.retrieval.shards import REPORT_FILE, embed_to_shards, write_shard

CPU = {"accelerator": "cpu", "enable_progress_bar": False}


def _shard(directory, index: int, shard_rows: int, total: int) -> None:
    rows = np.arange(index * shard_rows, min((index + 1) * shard_rows, total))
    meta = pd.DataFrame({"row": rows, "item_id": rows.astype(str), "image_path": "", "label": ""})
    write_shard(directory, index, np.zeros((len(rows), 4), np.float32), meta)


def test_progress_counts_the_shards_of_every_rank_against_the_global_total(tmp_path):
    # 10 rows in shards of 3: [3, 3, 3, 1]; shard 0 was finished by a killed run, before this one started
    _shard(tmp_path, 0, 3, 10)
    p = GlobalProgress(tmp_path, total_rows=10, shard_rows=3, rank=0, min_interval=0)
    assert p.start_done == 3
    time.sleep(0.05)
    _shard(tmp_path, 2, 3, 10)  # published by another rank
    _shard(tmp_path, 3, 3, 10)  # the short last shard
    (tmp_path / "metadata" / ".part-000001.parquet.tmp").write_bytes(b"")  # being written: not done
    s = p.state(in_flight=2)  # this rank holds 2 rows of its unfinished shard 1
    assert s["done"] == 3 + 3 + 1 + 2 and s["total"] == 10
    assert s["items_per_s"] > 0  # only this run's work: 6 items since the start
    assert s["eta_s"] == pytest.approx((10 - s["done"]) / s["items_per_s"])
    assert p.update(in_flight=2, shard_done="part-000003")["done"] == s["done"]
    p.close()


def test_the_last_line_counts_shards_another_rank_published_after_rank_0_finished(tmp_path, caplog):
    p = GlobalProgress(tmp_path, total_rows=10, shard_rows=5, rank=0, min_interval=0)
    with caplog.at_level("INFO", logger="imgsearch.retrieval.shard_progress"):
        _shard(tmp_path, 0, 5, 10)
        p.update(shard_done="part-000000")  # rank 0's own, and last, shard
        _shard(tmp_path, 1, 5, 10)  # rank 1 publishes later
        assert p.finish()["done"] == 10
    lines = [r.getMessage() for r in caplog.records if "embedded by all ranks" in r.getMessage()]
    assert lines[0].startswith("catalogue: 5 / 10") and lines[-1].startswith("catalogue: 10 / 10")
    other = GlobalProgress(tmp_path, total_rows=10, shard_rows=5, rank=1, min_interval=0)
    caplog.clear()
    with caplog.at_level("INFO", logger="imgsearch.retrieval.shard_progress"):
        assert other.finish()["done"] == 10
    assert not caplog.records  # only rank 0 writes the catalogue line


def test_report_file_holds_the_summed_skips(catalogue, pixel_model, tmp_path):
    broken = catalogue.copy()
    broken.loc[[1, 8], "image_path"] = str(tmp_path / "missing.png")
    out = tmp_path / "shards"
    report = embed_to_shards(
        pixel_model, broken, out, shard_rows=5, batch_size=3, num_workers=0, trainer_kwargs=CPU
    )
    on_disk = json.loads((out / REPORT_FILE).read_text())
    assert on_disk == json.loads(json.dumps(report))
    assert on_disk["skipped"] == 2 and on_disk["kept"] + on_disk["skipped"] == on_disk["rows"] == len(broken)
    assert on_disk["skipped_per_shard"] == {"part-000000": 1, "part-000001": 1}


@pytest.mark.slow
def test_two_ddp_ranks_skips_are_summed_in_one_report(catalogue, tmp_path):
    broken = catalogue.copy()
    (tmp_path / "bad.png").write_bytes(b"not an image")
    # shard 0 (rows 0-4) goes to rank 0, shard 1 (rows 5-9) to rank 1, shard 3 to rank 1
    broken.loc[[2, 6, 16], "image_path"] = str(tmp_path / "bad.png")
    cat = tmp_path / "catalogue.csv"
    write_catalogue(broken, cat)
    out, run = tmp_path / "shards", tmp_path / "run"
    cmd = [
        sys.executable, "-m", "imgsearch.cli.embed", "checkpoint=null", "embedding=pixels",
        f"catalogue={cat}", "shard_rows=5", "embed.pixel_size=6", "embed.num_workers=0",
        "embed.batch_size=2", "embed.trainer.accelerator=cpu", f"output_dir={out}",
        f"hydra.run.dir={run}", "embed.trainer.strategy=ddp", "embed.trainer.devices=2",
    ]  # fmt: skip
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rank1 = next(run.glob("*_ddp_process_1.log")).read_text()
    assert "shard part-000001: 4 vectors, 1 unreadable skipped" in rank1  # rank 1 counted its own skips
    report = json.loads((out / REPORT_FILE).read_text())
    assert report["skipped"] == 3
    assert report["skipped_per_shard"] == {"part-000000": 1, "part-000001": 1, "part-000003": 1}
    assert {s["item_id"] for s in report["skipped_items"]} == set(broken.item_id[[2, 6, 16]])
    # rank 0's progress line is about the whole catalogue, both ranks' shards
    logs = "".join(p.read_text() for p in run.glob("*.log"))
    # the last line is written after every rank has published, whichever rank ended last
    assert f"{len(broken)} / {len(broken)} items embedded by all ranks (100.0%)" in logs
