"""Amazon reader on real 2014 (Python-literal) and 2018 (JSON) metadata records."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from PIL import Image

from imgsearch.data import prepare_catalogue, read_amazon

AMAZON = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "formats" / "amazon"
LINES_2014 = AMAZON / "amazon2014_meta_lines_collected.txt"
JSONL_2018 = AMAZON / "meta_Gift_Cards.derived.jsonl"
ARRAY_2018 = AMAZON / "meta_Gift_Cards.json"


@pytest.fixture(scope="module")
def real() -> Path:
    if not (LINES_2014.is_file() and JSONL_2018.is_file() and ARRAY_2018.is_file()):
        pytest.skip(f"real Amazon samples not found under {AMAZON} (../shared/realdata is provided in CI)")
    return AMAZON


def _by_id(df):
    return df.set_index("item_id")


def test_2014_literal_dicts(real):
    df = read_amazon(LINES_2014)
    rows = _by_id(df)
    assert len(df) == 8 and df.attrs["report"]["files"][0]["format"] == "2014"
    assert (df["view"] == "main").all() and (df["product_id"] == df["item_id"]).all()
    assert rows.loc["0000191639", "label"] == "Toys & Games"  # top level of the first category path
    assert rows.loc["0006428320", "label"] == "Musical Instruments"
    assert rows.loc["0132793040", "label"] == "Electronics"
    assert rows.loc["B0000CDBQT", "label"] == "Grocery & Gourmet Food"
    assert rows.loc["0000191639", "price"] == 37.12 and rows.loc["0000191639", "brand"] == "Dr. Seuss"
    assert rows.loc["B0000CDBQT", "title"].startswith("Chef Paul Prudhomme's")  # a double-quoted title with '
    assert rows.loc["0000143561", "image_url"] == ""  # the .gif "no image" placeholder is no image
    assert rows.loc["0005069491", "image_url"].endswith("51z4JDBCnAL._SY300_.jpg")
    assert df.attrs["report"]["placeholder_images"] == 1


def test_2014_malformed_lines_counted_with_line_numbers(real, tmp_path):
    lines = LINES_2014.read_text(encoding="utf-8").splitlines()
    bad = [
        *lines[:3],
        "{'asin': 'B00BROKEN1', 'title': 'cut off",
        *lines[3:],
        '{"asin": "not a literal dict", true}',
    ]
    p = tmp_path / "meta_Broken.json"
    p.write_text("\n".join(bad) + "\n", encoding="utf-8")
    df = read_amazon(p)
    file_report = df.attrs["report"]["files"][0]
    assert len(df) == 8
    assert file_report["malformed"] == 2 and file_report["malformed_lines"] == [4, 10]
    assert df.attrs["report"]["malformed"] == 2
    assert "B00BROKEN1" not in set(df["item_id"])
    assert _by_id(df).loc["0000143561", "meta_line"] == "5"  # line numbers of good records shift too


def test_2014_gzip_and_glob(real, tmp_path):
    gz = tmp_path / "meta_Toys.json.gz"
    with gzip.open(gz, "wt", encoding="utf-8") as fh:
        fh.write(LINES_2014.read_text(encoding="utf-8"))
    (tmp_path / "meta_Cards.json").write_bytes(JSONL_2018.read_bytes())
    assert read_amazon(gz)["item_id"].tolist() == read_amazon(LINES_2014)["item_id"].tolist()
    both = read_amazon(str(tmp_path / "meta_*.json*"))
    assert len(both) == 18
    assert sorted(f["format"] for f in both.attrs["report"]["files"]) == ["2014", "2018"]
    assert len(read_amazon([gz, tmp_path / "meta_Cards.json"])) == 18
    with pytest.raises(FileNotFoundError, match="meta_Nothing"):
        read_amazon(tmp_path / "meta_Nothing.json")


def test_2018_json_lines(real):
    df = read_amazon(JSONL_2018)
    rows = _by_id(df)
    assert len(df) == 10 and df.attrs["report"]["files"][0]["format"] == "2018"
    assert set(df["label"]) == {"Gift Cards"}
    assert rows.loc["B001H53QE4", "price"] == 1250.0  # "$1,250.00"
    assert rows.loc["B002BSHDJK", "price"] == 29.99
    # high-resolution URL, not the 38x50 thumbnail
    assert (
        rows.loc["B001GXRQW0", "image_url"]
        == "https://images-na.ssl-images-amazon.com/images/I/317ZQtCvFzL.jpg"
    )
    assert (df["image_url"] != "").sum() == 5  # only 5 of the 10 records have images
    assert not df["label"].str.contains("<").any()


def test_2018_html_debris_and_main_cat_fallback(tmp_path):
    p = tmp_path / "meta_X.json"
    p.write_text(
        '{"asin": "A1", "category": ["</span></span></span>", "Clothing, Shoes &amp; Jewelry"]}\n'
        '{"asin": "A2", "category": [], "main_cat": "<img src=\\"a.png\\" alt=\\"AMAZON FASHION\\"/>"}\n'
        '{"asin": "A3", "category": [], "main_cat": ""}\n'
    )
    df = read_amazon(p)
    assert _by_id(df).loc["A1", "label"] == "Clothing, Shoes & Jewelry"
    assert _by_id(df).loc["A2", "label"] == "AMAZON FASHION"
    assert "A3" not in set(df["item_id"]) and df.attrs["report"]["no_label"] == 1


def test_2018_array_wrapped_same_as_lines(real):
    a, b = read_amazon(ARRAY_2018), read_amazon(JSONL_2018)
    assert a["item_id"].tolist() == b["item_id"].tolist()
    assert a["label"].tolist() == b["label"].tolist()
    assert a["image_url"].tolist() == b["image_url"].tolist()
    assert a.attrs["report"]["malformed"] == 0


def test_images_by_asin_and_by_url_name(real, tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "0000191639.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "0005069491.jpg")
    df = read_amazon(LINES_2014, tmp_path)
    assert sorted(df["item_id"]) == ["0000191639", "0005069491"]
    report = df.attrs["report"]
    assert report["images_resolved"] == 2 and report["images_missing"] == 6
    assert _by_id(df).loc["0000191639", "image_path"] == str((tmp_path / "0000191639.png").resolve())

    urls = tmp_path / "by_url"
    urls.mkdir()
    Image.new("RGB", (8, 8)).save(urls / "41azbt38OgL.jpg")  # B002BSHDJK
    Image.new("RGB", (8, 8)).save(urls / "31T+QmXRSBL.jpg")  # B001H53QE4: URL has %2B
    df = read_amazon(JSONL_2018, urls, image_rule="url_name")
    assert sorted(df["item_id"]) == ["B001H53QE4", "B002BSHDJK"]


def test_file_without_usable_record_stops_prepare_with_its_name(tmp_path):
    p = tmp_path / "meta_Garbage.json"
    p.write_text("this is not\nmetadata at all\n")
    df = read_amazon(p)
    assert len(df) == 0 and df.attrs["report"]["malformed"] == 2
    with pytest.raises(ValueError, match=r"meta_Garbage\.json"):
        prepare_catalogue(df)
