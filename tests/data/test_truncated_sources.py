"""Cut-off source files: records before the cut are kept, the cut is counted and names the file."""

from __future__ import annotations

import gzip
import json
import logging
from pathlib import Path

import pytest

from imgsearch.data import read_amazon, read_farfetch


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


FARFETCH = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "formats" / "farfetch"


@pytest.fixture()
def farfetch_text() -> str:
    sample = FARFETCH / "products_sample.csv"
    if not sample.is_file():
        pytest.skip(f"real Farfetch sample not found at {sample} (../shared/realdata is provided in CI)")
    return sample.read_bytes().decode("utf-8").rstrip("\r\n")


def _cut_inside_quotes(text: str) -> str:
    last = text.rsplit("\r\n", 1)[1]
    return text[: len(text) - len(last) + last.index('"') + 5]  # 4 characters into the first quoted field


def _cut_mid_row(text: str) -> str:
    last = text.rsplit("\r\n", 1)[1]
    return text[: len(text) - len(last) + len(last) // 3].rstrip(",") + ","  # a third of the row


@pytest.mark.parametrize("cut", [_cut_inside_quotes, _cut_mid_row])
def test_farfetch_listing_cut_at_the_end_is_a_counted_malformed_line(farfetch_text, tmp_path, cut):
    whole = tmp_path / "whole.csv"
    whole.write_text(farfetch_text, encoding="utf-8", newline="")
    cut_file = tmp_path / "cut.csv"
    cut_file.write_text(cut(farfetch_text), encoding="utf-8", newline="")
    n_lines = farfetch_text.count("\r\n") + 1
    full, report = read_farfetch(whole), read_farfetch(cut_file).attrs["report"]
    assert report["bad_lines"] == 1 and report["bad_line_numbers"] == [n_lines]
    assert report["unmatched"] == full.attrs["report"]["unmatched"]  # not counted as an unmatched description
    assert report["rows_read"] == full.attrs["report"]["rows_read"] - 1
