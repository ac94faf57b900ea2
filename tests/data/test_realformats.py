"""Each real-format sample in ../shared/realdata goes through the right reader (imgsearch-data inspect)."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgsearch.data.cli import detect_kind, main, read_any

REALDATA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata"
FORMATS = REALDATA / "formats"

CASES = [
    # file, detected reader, rows the reader returns (counted by hand from the files)
    ("farfetch/products_sample.csv", "farfetch", 178),
    ("amazon/amazon2014_meta_lines_collected.txt", "amazon", 8),
    ("amazon/meta_Gift_Cards.derived.jsonl", "amazon", 10),
    ("amazon/meta_Gift_Cards.json", "amazon", 10),
]


@pytest.mark.realdata
@pytest.mark.parametrize(("rel", "kind", "rows"), CASES)
def test_real_format_detected_and_read(rel, kind, rows, capsys):
    path = FORMATS / rel
    if not path.is_file():
        pytest.skip(f"{path} not found (../shared/realdata is provided in CI)")
    assert detect_kind(path) == kind
    assert len(read_any(path)) == rows
    assert main(["inspect", str(path)]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert f"{rows} images" in out and "reader report" in out


@pytest.mark.realdata
def test_styles_csv_through_cli(capsys):
    styles = REALDATA / "fashion-product-images-small" / "styles_subset_joined.derived.csv"
    if not styles.is_file():
        pytest.skip(f"{styles} not found (../shared/realdata is provided in CI)")
    assert detect_kind(styles) == "csv"
    code = main(
        [
            "inspect",
            str(styles),
            "--image-dir",
            str(styles.parent / "images"),
            "--label-column",
            "masterCategory",
        ]
    )
    assert code == 0
    out = capsys.readouterr().out
    assert "Apparel" in out and "images_resolved" in out


def test_catalogue_csv_detected(tmp_path):
    p = tmp_path / "catalogue.csv"
    p.write_text("item_id,image_path,label,split\na,/x.jpg,dress,train\n")
    assert detect_kind(p) == "catalogue"
    assert read_any(p)["split"].tolist() == ["train"]


def test_cli_errors_are_reported_not_raised(tmp_path, capsys):
    assert main(["inspect", str(tmp_path / "nope.csv"), "--kind", "farfetch"]) == 2


def test_cli_generate_writes_readable_demo(tmp_path):
    pytest.importorskip("imgsearch.data.demo")
    root = tmp_path / "demo"
    code = main(
        ["generate", "--root", str(root), "--seed", "1", "--products-per-class", "2", "--image-size", "32"]
    )
    assert code == 0
    listings = root / "current_farfetch_listings.csv"
    assert detect_kind(listings) == "farfetch"
    df = read_any(listings, image_dir=str(root))
    assert len(df) > 0 and set(df["view"]) == {"cutout", "model"}
    assert all(Path(p).is_file() for p in df["image_path"])
