"""Generic CSV / Parquet reader: Kaggle "Fashion Product Images" styles.csv and user tables."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import pytest
from PIL import Image

from imgsearch.data import CATALOGUE_COLUMNS, read_csv_catalogue

FASHION = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "fashion-product-images-small"


@pytest.fixture(scope="module")
def fashion() -> Path:
    if not (FASHION / "styles.csv").is_file() or not (FASHION / "images").is_dir():
        pytest.skip(
            f"Fashion Product Images sample not found at {FASHION} (../shared/realdata is provided in CI)"
        )
    return FASHION


def _expected_ids(csv_path: Path, images: Path) -> dict[str, str]:
    """id -> articleType for the rows whose <id>.jpg exists, computed without the reader."""
    on_disk = {name[:-4] for name in os.listdir(images) if name.endswith(".jpg")}
    with open(csv_path, newline="", encoding="utf-8") as fh:
        return {
            r["id"]: r["articleType"] for r in csv.DictReader(fh) if r["id"] in on_disk and r["articleType"]
        }


def test_real_styles_csv(fashion):
    df = read_csv_catalogue(
        fashion / "styles.csv", fashion / "images", gender_column="gender", source="myntra"
    )
    expected = _expected_ids(fashion / "styles.csv", fashion / "images")
    assert len(expected) > 4000
    assert list(df.columns) == CATALOGUE_COLUMNS
    assert dict(zip(df["item_id"], df["label"], strict=True)) == expected
    assert (df["product_id"] == df["item_id"]).all() and (df["view"] == "main").all()
    first = df.iloc[0]
    assert Path(first["image_path"]) == (fashion / "images" / f"{first['item_id']}.jpg").resolve()
    report = df.attrs["report"]
    assert report["rows_read"] == 44446 and report["bad_lines"] == 0
    assert report["images_resolved"] == len(df) and report["images_missing"] == 44446 - len(df)
    assert set(df["gender"]) <= {"Men", "Women", "Boys", "Girls", "Unisex"}


def test_real_joined_derived_csv_with_titles(fashion):
    path = fashion / "styles_subset_joined.derived.csv"
    df = read_csv_catalogue(
        path, fashion / "images", label_column="subCategory", title_column="productDisplayName"
    )
    expected = _expected_ids(path, fashion / "images")
    assert set(df["item_id"]) == set(expected)
    row = df.set_index("item_id").loc["10000"]
    assert row["title"] == "Palm Tree Girls Sp Jace Sko White Skirts" and row["label"] == "Bottomwear"


def test_malformed_lines_are_skipped_and_counted(fashion, tmp_path):
    lines = (fashion / "styles_subset_joined.derived.csv").read_text(encoding="utf-8").splitlines()[:21]
    # the full Kaggle file has display names with an unquoted comma: one field too many
    lines.insert(5, "99999,Men,Apparel,Topwear,Tshirts,Red,Summer,2012,Casual,Nike Men, Red T-shirt")
    p = tmp_path / "styles.csv"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    df = read_csv_catalogue(p, None, title_column="productDisplayName")
    report = df.attrs["report"]
    assert report["bad_lines"] == 1 and report["bad_line_numbers"] == [6]
    assert len(df) == 20 and "99999" not in set(df["item_id"])
    assert df["image_path"].iloc[0] == f"{df['item_id'].iloc[0]}.jpg"  # no image_dir: relative, unresolved


def _user_table(tmp_path: Path) -> Path:
    imgs = tmp_path / "imgs" / "shoes"
    imgs.mkdir(parents=True)
    Image.new("RGB", (8, 8)).save(imgs / "a1.jpg")
    Image.new("RGB", (8, 8)).save(imgs / "a2.png")
    Image.new("RGB", (8, 8)).save(imgs / "a3.jpg")
    p = tmp_path / "shop.csv"
    p.write_text(
        "sku,file,cat,name,maker,cost,angle\n"
        's1,shoes/a1.jpg,boots,"Boot, leather ""Chelsea""",Acme,"$1,598",front\n'
        "s1,shoes/a2.png,boots,Boot,Acme,1598,side\n"
        "s2,shoes/gone.jpg,bags,Tote,Acme,10,front\n"
        "s3,shoes/a3.jpg,,Unlabelled,Acme,10,front\n",
        encoding="utf-8",
    )
    return p


def test_user_csv_with_quoted_fields_and_configured_columns(tmp_path):
    p = _user_table(tmp_path)
    kw = dict(
        image_column="file",
        image_template="{}",
        label_column="cat",
        product_column="sku",
        title_column="name",
        brand_column="maker",
        price_column="cost",
        view_column="angle",
        source="myshop",
    )
    df = read_csv_catalogue(p, tmp_path / "imgs", **kw)
    assert df["item_id"].tolist() == ["shoes/a1.jpg", "shoes/a2.png"]
    assert df["product_id"].tolist() == ["s1", "s1"] and df["view"].tolist() == ["front", "side"]
    assert df["title"].iloc[0] == 'Boot, leather "Chelsea"'
    assert df["price"].tolist() == [1598.0, 1598.0]
    assert (df["source"] == "myshop").all()
    report = df.attrs["report"]
    assert report["images_missing"] == 1 and report["empty_label"] == 1


def test_parquet_and_any_extension_template(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.new("RGB", (8, 8)).save(folder / "7.webp")
    Image.new("RGB", (8, 8)).save(folder / "8.png")
    p = tmp_path / "t.parquet"
    pd.DataFrame({"id": [7, 8, 9], "kind": ["a", "b", "c"]}).to_parquet(p)
    df = read_csv_catalogue(p, folder, image_template="{}.*", label_column="kind")
    assert df["item_id"].tolist() == ["7", "8"] and df["label"].tolist() == ["a", "b"]
    assert Path(df["image_path"].iloc[0]).name == "7.webp"


def test_unknown_column_is_named(tmp_path):
    p = _user_table(tmp_path)
    with pytest.raises(ValueError, match="articleType"):
        read_csv_catalogue(p, tmp_path, image_column="file")
    with pytest.raises(FileNotFoundError, match=r"missing\.csv"):
        read_csv_catalogue(tmp_path / "missing.csv", tmp_path)


def test_currency_url_and_extra_columns_are_kept_for_cards_and_filters(tmp_path):
    p = _user_table(tmp_path)
    table = p.read_text(encoding="utf-8").splitlines()
    table[0] += ",money,page,colour"
    table[1:] = [line + f",EUR,https://shop.example/{i},red" for i, line in enumerate(table[1:])]
    p.write_text("\n".join(table) + "\n", encoding="utf-8")
    kw = dict(image_column="file", image_template="{}", label_column="cat", product_column="sku")
    df = read_csv_catalogue(p, tmp_path / "imgs", currency_column="money", url_column="page",
                            extra_columns=["colour"], **kw)  # fmt: skip
    assert df["currency"].tolist() == ["EUR", "EUR"]
    assert df["url"].tolist() == ["https://shop.example/0", "https://shop.example/1"]
    assert df["colour"].tolist() == ["red", "red"]
    with pytest.raises(ValueError, match="column 'shade' not found"):
        read_csv_catalogue(p, tmp_path / "imgs", extra_columns=["shade"], **kw)
    p.write_text(p.read_text(encoding="utf-8").replace(",maker,", ",brand,", 1), encoding="utf-8")
    with pytest.raises(ValueError, match="clashes"):  # the table's own "brand" is not the brand column
        read_csv_catalogue(p, tmp_path / "imgs", extra_columns=["brand"], **kw)
