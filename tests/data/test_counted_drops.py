"""Every row a reader or prepare drops is in skipped.json with its reason; bad inputs are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from imgsearch.data import read_csv_catalogue
from imgsearch.data.prepare import prepare_catalogue


def _shop(tmp_path: Path) -> Path:
    """Two classes of 3 good rows, and one row for each reason the reader drops."""
    imgs = tmp_path / "imgs"
    imgs.mkdir()
    (tmp_path / "outside.jpg").parent.mkdir(exist_ok=True)
    colours = {"a": (200, 30, 40), "b": (30, 170, 60), "c": (40, 60, 200)}
    for i, (name, colour) in enumerate([(f"{c}{k}", col) for c, col in colours.items() for k in range(3)]):
        Image.new("RGB", (16, 16), (colour[0], colour[1], (colour[2] + 20 * i) % 256)).save(
            imgs / f"{name}.jpg"
        )
    Image.new("RGB", (16, 16), (1, 2, 3)).save(tmp_path / "outside.jpg")
    rows = [f"{n},{n}.jpg,{'boots' if n[0] == 'a' else 'bags'}" for n in ("a0", "a1", "a2", "b0", "b1", "b2")]
    rows += [
        "c0,c0.jpg,",  # empty label
        "a0,c1.jpg,boots",  # duplicate id
        ",c2.jpg,bags",  # empty id
        "x9,gone.jpg,bags",  # no such image
        "x8,../outside.jpg,bags",  # an image outside the image directory
    ]
    p = tmp_path / "shop.csv"
    p.write_text("sku,file,cat\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return p


def _read(tmp_path: Path, **kw):
    return read_csv_catalogue(
        _shop(tmp_path), tmp_path / "imgs", image_column="file", image_template="{}", label_column="cat",
        item_column="sku", **kw,
    )  # fmt: skip


def test_every_reader_drop_is_in_skipped_json_by_reason(tmp_path):
    df = _read(tmp_path)
    assert sorted(df["item_id"]) == ["a0", "a1", "a2", "b0", "b1", "b2"]
    prepare_catalogue(df, split=(0.5, 0.5, 0.0), min_per_class=1, report_dir=tmp_path / "run")
    skipped = json.loads((tmp_path / "run" / "skipped.json").read_text())
    counts = skipped["counts"]
    assert {
        k: counts[k] for k in ("empty_label", "duplicate_id", "empty_id", "image_missing")
    } == dict.fromkeys(("empty_label", "duplicate_id", "empty_id", "image_missing"), 1)
    assert counts["outside_image_root"] == 1
    assert skipped["rows_read"] == 11 and skipped["dropped"] == 5
    outside = [i for i in skipped["items"] if i["reason"] == "outside_image_root"]
    assert len(outside) == 1 and outside[0]["item_id"] == "x8" and "../outside.jpg" in outside[0]["detail"]


def test_image_roots_are_configurable(tmp_path):
    df = _read(tmp_path, image_roots=[tmp_path])  # the parent holds outside.jpg too
    assert "x8" in set(df["item_id"])
    assert df.attrs["report"]["images_outside_roots"] == 0


def test_missing_image_directory_is_named(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=r"image directory not found: .*nope.*data\.source\.image_dir="
    ):
        read_csv_catalogue(_shop(tmp_path), tmp_path / "nope", image_column="file", image_template="{}")


def test_non_utf8_csv_is_one_line_naming_the_file_and_the_option(tmp_path):
    p = tmp_path / "latin.csv"
    p.write_bytes("id,articleType\n1,Café\n".encode("latin-1") + b"\xff" * 2000 + b"\n")
    with pytest.raises(ValueError) as info:
        read_csv_catalogue(p, None)
    message = str(info.value)
    assert str(p) in message and "encoding=" in message and "\n" not in message and len(message) < 300
    df = read_csv_catalogue(p, None, encoding="latin-1")
    assert df["item_id"].iloc[0] == "1"
