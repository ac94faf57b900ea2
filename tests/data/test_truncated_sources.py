"""Cut-off source files: records before the cut are kept, the cut is counted and names the file."""

from __future__ import annotations

import gzip
import json
import logging

from imgsearch.data import read_amazon


def test_truncated_json_gz_keeps_the_records_before_the_cut(tmp_path, caplog):
    gz = tmp_path / "meta_Clothing.json.gz"
    lines = [json.dumps({"asin": f"A{i:03d}", "category": ["Clothing", f"c{i % 3}"]}) for i in range(400)]
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write("\n".join(lines) + "\n")
    data = gz.read_bytes()
    gz.write_bytes(data[: len(data) * 2 // 3])  # a download cut at two thirds
    with caplog.at_level(logging.WARNING):
        df = read_amazon(gz)
    report = df.attrs["report"]
    assert report["truncated_files"] == [str(gz)]
    (file_report,) = report["files"]
    assert file_report["truncated"] and file_report["records"] > 100  # what came before the cut
    assert len(df) == file_report["records"]  # every record read before the cut is a catalogue row
    assert set(df["item_id"]) <= {f"A{i:03d}" for i in range(400)} and "A000" in set(df["item_id"])
    assert f"{gz} is truncated" in caplog.text


def test_whole_json_gz_is_not_reported_truncated(tmp_path):
    gz = tmp_path / "meta_ok.json.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write(json.dumps({"asin": "A1", "category": ["Clothing", "Dresses"]}) + "\n")
    df = read_amazon(gz)
    assert df.attrs["report"]["truncated_files"] == [] and len(df) == 1
