"""prepare_catalogue (verify, dedup, top-k, cap, rare classes, grouped split) and build_catalogue."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from imgsearch.data import build_catalogue, prepare_catalogue, read_catalogue
from imgsearch.data.prepare import allocate
from imgsearch.data.schema import catalogue_hash, validate_catalogue

# class -> number of products (two views each)
CLASSES = {"dress": 10, "bag": 6, "coat": 3, "hat": 2, "belt": 1}


def _table(root: Path, classes: dict[str, int] = CLASSES) -> pd.DataFrame:
    """A small two-view catalogue of distinct 4x4 PNGs (distinct bytes: no accidental duplicates)."""
    root.mkdir(parents=True, exist_ok=True)
    rows, n = [], 0
    for label, count in classes.items():
        for k in range(count):
            pid = f"{label}{k:02d}"
            for view in ("cutout", "model"):
                n += 1
                path = root / f"{pid}_{view}.png"
                Image.new("RGB", (4, 4), (n % 256, n // 256, 7)).save(path)
                rows.append(
                    {
                        "item_id": f"{pid}_{view}",
                        "product_id": pid,
                        "view": view,
                        "image_path": str(path),
                        "label": label,
                    }
                )
    df = validate_catalogue(pd.DataFrame(rows))
    df.attrs["report"] = {"source_files": [str(root / "listings.csv")]}
    return df


@pytest.fixture
def table(tmp_path) -> pd.DataFrame:
    return _table(tmp_path / "imgs")


def test_allocate():
    assert allocate(10, (0.7, 0.2, 0.1)) == [7, 2, 1]
    assert allocate(3, (0.7, 0.2, 0.1)) == [1, 1, 1]  # every split gets one when possible
    assert allocate(2, (0.7, 0.2, 0.1)) == [1, 1, 0]
    assert allocate(1, (0.7, 0.2, 0.1)) == [1, 0, 0]
    assert allocate(5, (0.8, 0.2, 0.0)) == [4, 1, 0]
    assert sum(allocate(1000, (0.7, 0.2, 0.1))) == 1000


def test_split_is_grouped_stratified_and_deterministic(table):
    a = prepare_catalogue(table, seed=3)
    assert (a.groupby("product_id")["split"].nunique() == 1).all()  # views never leak across splits
    per_class = a.groupby("label")["split"].agg(lambda s: set(s))
    for label in ("dress", "bag", "coat"):  # >= 3 products: one in each split
        assert per_class[label] == {"train", "val", "test"}, label
    dress = a[a["label"] == "dress"].drop_duplicates("product_id")["split"].value_counts()
    assert (dress["train"], dress["val"], dress["test"]) == (7, 2, 1)
    assert set(a["label"]) == {"dress", "bag", "coat", "hat"}  # belt (1 product) < min_per_class=2
    b = prepare_catalogue(table, seed=3)
    assert a["split"].tolist() == b["split"].tolist() and catalogue_hash(a) == catalogue_hash(b)
    c = prepare_catalogue(table, seed=4)
    assert a["split"].tolist() != c["split"].tolist()


def test_split_of_a_class_does_not_depend_on_other_classes(table):
    full = prepare_catalogue(table, seed=1)
    only_dress = prepare_catalogue(table[table["label"] == "dress"], seed=1)
    merged = full[full["label"] == "dress"].set_index("item_id")["split"]
    assert merged.to_dict() == only_dress.set_index("item_id")["split"].to_dict()


def test_ungrouped_split_splits_rows(table):
    df = prepare_catalogue(table, group_by_product=False, min_per_class=1)
    assert (df.groupby("product_id")["split"].nunique() > 1).any()


def test_rare_classes_into_other(table):
    df = prepare_catalogue(table, min_per_class=3, rare_classes="other")
    assert set(df["label"]) == {"dress", "bag", "coat", "other"}
    assert sorted(df.loc[df["label"] == "other", "product_id"].unique()) == ["belt00", "hat00", "hat01"]


def test_top_k_and_cap_sample_whole_products(table, tmp_path):
    df = prepare_catalogue(table, top_k_classes=2, max_per_class=5, seed=0, report_dir=tmp_path / "run")
    assert set(df["label"]) == {"dress", "bag"}
    sizes = df.groupby("label").size()
    assert (sizes <= 5).all() and (sizes == 4).all()  # two whole two-view products fit in 5
    assert (df.groupby("product_id").size() == 2).all()
    again = prepare_catalogue(table, top_k_classes=2, max_per_class=5, seed=0)
    assert sorted(again["item_id"]) == sorted(df["item_id"])
    counts = json.loads((tmp_path / "run" / "skipped.json").read_text())["counts"]
    assert counts["not_in_top_k"] == 2 * (3 + 2 + 1)
    assert counts["over_class_cap"] == 2 * (10 + 6) - 8


def test_duplicates_dropped_across_products(table, tmp_path):
    dup_src = table.loc[table["item_id"] == "bag00_cutout", "image_path"].iloc[0]
    target = table.loc[table["item_id"] == "dress03_model", "image_path"].iloc[0]
    Path(target).write_bytes(Path(dup_src).read_bytes())
    df = prepare_catalogue(table, report_dir=tmp_path)
    skipped = json.loads((tmp_path / "skipped.json").read_text())
    assert skipped["counts"]["duplicate"] == 1
    # the first occurrence in table order (dress03_model comes before bag00_cutout) is kept
    assert "dress03_model" in set(df["item_id"]) and "bag00_cutout" not in set(df["item_id"])
    dup = [i for i in skipped["items"] if i["reason"] == "duplicate"]
    assert dup == [
        {
            "item_id": "bag00_cutout",
            "image_path": dup_src,
            "reason": "duplicate",
            "detail": "same bytes as dress03_model",
        }
    ]
    assert df["content_hash"].is_unique
    assert not prepare_catalogue(table, dedup=False)["content_hash"].is_unique


def test_bad_images_are_reported_in_skipped_json(table, tmp_path):
    Path(table["image_path"].iloc[0]).write_bytes(b"")
    Path(table["image_path"].iloc[1]).unlink()
    Path(table["image_path"].iloc[2]).write_text("not an image")
    df = prepare_catalogue(table, report_dir=tmp_path)
    skipped = json.loads((tmp_path / "skipped.json").read_text())
    assert {k: skipped["counts"][k] for k in ("empty", "missing", "not_an_image")} == {
        "empty": 1,
        "missing": 1,
        "not_an_image": 1,
    }
    assert {i["item_id"] for i in skipped["items"]} == set(table["item_id"].iloc[:3])
    assert len(df) == len(table) - 3 - 2  # 3 bad images, and the belt product is too rare


def test_nothing_usable_names_the_source(table):
    for p in table["image_path"]:
        Path(p).unlink()
    with pytest.raises(ValueError, match=r"listings\.csv.*missing=44"):
        prepare_catalogue(table)


def test_keep_existing_split(table):
    first = prepare_catalogue(table, seed=0)
    pinned = first.copy()
    pinned.loc[pinned["label"] == "dress", "split"] = "test"
    pinned.loc[pinned["label"] != "dress", "split"] = ""
    out = prepare_catalogue(pinned, keep_existing_split=True, seed=0)
    assert (out.loc[out["label"] == "dress", "split"] == "test").all()
    assert set(out.loc[out["label"] == "bag", "split"]) == {"train", "val", "test"}


def test_build_catalogue_end_to_end(tmp_path):
    df = _table(tmp_path / "imgs", {"dress": 4, "bag": 3})
    df[["item_id", "product_id", "view", "image_path", "label"]].assign(
        image_path=df["image_path"].map(lambda p: Path(p).name)
    ).to_csv(tmp_path / "shop.csv", index=False)
    source = {
        "_target_": "imgsearch.data.read_csv_catalogue",
        "path": str(tmp_path / "shop.csv"),
        "image_dir": str(tmp_path / "imgs"),
        "image_column": "image_path",
        "image_template": "{}",
        "item_column": "item_id",
        "product_column": "product_id",
        "view_column": "view",
        "label_column": "label",
    }
    out_dir = tmp_path / "run"
    built = build_catalogue(source, {"split": [0.5, 0.25, 0.25], "seed": 7}, out_dir)
    assert len(built) == 14 and set(built["split"]) == {"train", "val", "test"}
    written = read_catalogue(out_dir / "catalogue.csv")
    assert catalogue_hash(written) == catalogue_hash(built)
    assert json.loads((out_dir / "skipped.json").read_text())["counts"]["train"] == int(
        (built["split"] == "train").sum()
    )

    # an already prepared table as source, used as it is
    again = build_catalogue(
        {"_target_": "imgsearch.data.read_catalogue", "path": str(out_dir / "catalogue.csv")}, None, None
    )
    assert catalogue_hash(again) == catalogue_hash(built)
    with pytest.raises(ValueError, match="_target_"):
        build_catalogue({"path": "x"}, None, None)


def test_build_catalogue_on_the_demo(tmp_path):
    demo = pytest.importorskip("imgsearch.data.demo")
    assert hasattr(demo, "demo_catalogue")
    source = {
        "_target_": "imgsearch.data.demo.demo_catalogue",
        "root": str(tmp_path / "demo"),
        "products_per_class": 3,
        "image_size": 32,
    }
    df = build_catalogue(source, {"seed": 0}, tmp_path / "run")
    assert (df.groupby("product_id")["split"].nunique() == 1).all()
    assert set(df["view"]) == {"cutout", "model"}
    assert df["label"].nunique() >= 10
    assert (df.groupby("label")["split"].nunique() == 3).all()  # 3 products per class: one per split
