"""The built-in demo catalogue: deterministic, in the real source formats, and a real retrieval task."""

from __future__ import annotations

import ast
import json
import re
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from imgsearch.data.demo import (
    AMAZON_DIR,
    AMAZON_META,
    CUTOUT_DIR,
    FARFETCH_COLUMNS,
    FARFETCH_CSV,
    MARKER,
    MODEL_DIR,
    SUPPORTED_CATEGORIES,
    demo_catalogue,
    demo_contact_sheet,
    ensure_demo,
    generate_demo,
)
from imgsearch.data.demo.drawing import draw_look

REAL_FARFETCH = (
    Path(__file__).resolve().parents[2].parent / "shared/realdata/formats/farfetch/products_sample.csv"
)
CATS = ["t-shirt", "dress", "sneakers", "bag", "hat"]
PPC = 3
SIZE = 48
PARAMS = {"products_per_class": PPC, "image_size": SIZE, "categories": CATS}
N = len(CATS) * PPC


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return generate_demo(tmp_path_factory.mktemp("demo") / "a", seed=0, **PARAMS)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _pixels(path: Path) -> np.ndarray:
    with Image.open(path) as im:
        return np.asarray(im.convert("RGB"), np.float32)


def _csv(root: Path) -> pd.DataFrame:
    return pd.read_csv(root / FARFETCH_CSV, keep_default_na=False)


def test_same_seed_gives_identical_files_and_pixels(demo: Path, tmp_path: Path) -> None:
    again = generate_demo(tmp_path / "b", seed=0, **PARAMS)
    a, b = _files(demo), _files(again)
    assert sorted(a) == sorted(b)
    assert a[FARFETCH_CSV] == b[FARFETCH_CSV]
    assert a[AMAZON_META] == b[AMAZON_META]
    jpgs = [name for name in a if name.endswith(".jpg")]
    assert len(jpgs) == 3 * N
    for name in jpgs:
        np.testing.assert_array_equal(_pixels(demo / name), _pixels(again / name), err_msg=name)


def test_other_seed_gives_other_catalogue(demo: Path, tmp_path: Path) -> None:
    other = generate_demo(tmp_path / "c", seed=1, **PARAMS)
    a, b = _csv(demo), _csv(other)
    assert set(a["id"]).isdisjoint(set(b["id"]))
    assert (demo / FARFETCH_CSV).read_bytes() != (other / FARFETCH_CSV).read_bytes()
    # compare the drawn cutouts by description order-free: mean colours of the two sets differ
    means_a = sorted(_pixels(p).mean() for p in (demo / CUTOUT_DIR).iterdir())
    means_b = sorted(_pixels(p).mean() for p in (other / CUTOUT_DIR).iterdir())
    assert not np.allclose(means_a, means_b)


def test_product_k_does_not_depend_on_catalogue_size(demo: Path, tmp_path: Path) -> None:
    small = generate_demo(tmp_path / "s", seed=0, products_per_class=1, image_size=SIZE, categories=CATS[:2])
    small_files = {k: v for k, v in _files(small).items() if k.startswith(("cutout-img", "model-img"))}
    assert len(small_files) == 2 * 2
    full = _files(demo)
    for name, data in small_files.items():
        assert full.get(name) == data, name


def test_csv_has_the_real_farfetch_columns(demo: Path) -> None:
    df = _csv(demo)
    assert list(df.columns) == ["Unnamed: 0", *FARFETCH_COLUMNS]
    assert df["Unnamed: 0"].tolist() == list(range(N))
    header = (demo / FARFETCH_CSV).read_text(encoding="utf-8").splitlines()[0]
    if not REAL_FARFETCH.exists():
        pytest.skip(f"real Farfetch sample not found at {REAL_FARFETCH} (../shared/realdata is absent)")
    real_header = REAL_FARFETCH.read_text(encoding="utf-8").splitlines()[0].rstrip("\r")
    assert header == real_header


def test_csv_values_look_like_real_listings(demo: Path) -> None:
    df = _csv(demo)
    assert df["id"].astype(str).str.fullmatch(r"[1-9]\d{7}").all()
    assert df["id"].is_unique
    for _, row in df.iterrows():
        pid = str(row["id"])
        for col in ("images.cutOut", "images.model"):
            m = re.fullmatch(
                r"https://cdn-images\.farfetch-contents\.com/(\d\d)/(\d\d)/(\d\d)/(\d\d)/(\d{8})_(\d+)_300\.jpg",
                row[col],
            )
            assert m is not None, row[col]
            assert "".join(m.groups()[:4]) == pid == m.group(5)
        initial, final = int(row["priceInfo.initialPrice"]), int(row["priceInfo.finalPrice"])
        assert row["priceInfo.formattedFinalPrice"] == f"${final:,}"
        assert row["priceInfo.formattedInitialPrice"] == f"${initial:,}"
        assert bool(row["priceInfo.isOnSale"]) == (final < initial)
        if row["priceInfo.isOnSale"]:
            pct = int(row["priceInfo.discountLabel"].removesuffix("% Off"))
            assert final == round(initial * (100 - pct) / 100)
        else:
            assert row["priceInfo.discountLabel"] == ""
        if row["availableSizes"]:
            sizes = ast.literal_eval(row["availableSizes"])
            assert sizes and all(set(s) == {"scaleId", "size"} for s in sizes)
    assert set(df["gender"]) <= {"women", "men", "unisex"}
    assert set(df["priceInfo.currencyCode"]) == {"USD"}


def test_description_ends_with_the_category_keyword(demo: Path) -> None:
    last_words = Counter(d.split()[-1] for d in _csv(demo)["shortDescription"])
    assert last_words == dict.fromkeys(CATS, PPC)


def test_images_in_kaggle_layout_with_counts(demo: Path) -> None:
    df = _csv(demo)
    cut = {u.rsplit("/", 1)[-1] for u in df["images.cutOut"]}
    mod = {u.rsplit("/", 1)[-1] for u in df["images.model"]}
    assert {p.name for p in (demo / CUTOUT_DIR).iterdir()} == cut
    assert {p.name for p in (demo / MODEL_DIR).iterdir()} == mod
    assert len(cut) == len(mod) == N
    with Image.open(next((demo / CUTOUT_DIR).iterdir())) as im:
        assert (im.format, im.size, im.mode) == ("JPEG", (SIZE, SIZE), "RGB")
    marker = json.loads((demo / MARKER).read_text())
    assert marker["params"] == {"seed": 0, "amazon": True, **PARAMS}
    assert marker["farfetch_images"] == 2 * N


def test_cutout_on_white_and_model_view_differs(demo: Path) -> None:
    df = _csv(demo)
    for _, row in df.iterrows():
        cut = _pixels(demo / CUTOUT_DIR / row["images.cutOut"].rsplit("/", 1)[-1])
        mod = _pixels(demo / MODEL_DIR / row["images.model"].rsplit("/", 1)[-1])
        border = np.concatenate([cut[0], cut[-1], cut[:, 0], cut[:, -1]])
        assert border.min() >= 235, "cutout background must be white"
        assert (cut.mean(axis=2) < 200).mean() > 0.1, "the cutout shows an item"
        assert np.abs(cut - mod).mean() > 20, "model view must not be a copy of the cutout"
        mborder = np.concatenate([mod[0], mod[-1], mod[:, 0], mod[:, -1]])
        assert mborder.std() > 5, "model view has a cluttered background"


def test_amazon_lines_are_python_literals_not_json(demo: Path) -> None:
    lines = (demo / AMAZON_META).read_text(encoding="utf-8").splitlines()
    assert len(lines) == N
    tops = Counter()
    for line in lines:
        rec = ast.literal_eval(line)
        assert isinstance(rec, dict) and {"asin", "title", "categories", "imUrl", "salesRank"} <= set(rec)
        assert repr(rec) == line  # genuine str(dict) output, like the real 2014 files
        with pytest.raises(json.JSONDecodeError):
            json.loads(line)
        assert (demo / AMAZON_DIR / f"{rec['asin']}.jpg").is_file()
        tops[rec["categories"][0][0]] += 1
    assert tops == dict.fromkeys(CATS, PPC)


def test_real_readers_read_the_demo(demo: Path) -> None:
    from imgsearch.data.readers.amazon import read_amazon
    from imgsearch.data.readers.farfetch import read_farfetch

    ff = read_farfetch(demo / FARFETCH_CSV, image_dir=demo)
    assert len(ff) == 2 * N
    assert all(Path(p).is_file() for p in ff["image_path"])
    assert Counter(ff["label"]) == dict.fromkeys(CATS, 2 * PPC)
    assert (ff["label"] == ff["title"].str.split().str[-1]).all()
    assert Counter(ff["view"]) == {"cutout": N, "model": N}

    az = read_amazon(demo / AMAZON_META, image_dir=demo / AMAZON_DIR)
    assert len(az) == N
    assert all(Path(p).is_file() for p in az["image_path"])
    assert Counter(az["label"]) == dict.fromkeys(CATS, PPC)


def test_demo_catalogue_generates_once_and_regenerates_on_new_params(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    small = {"products_per_class": 1, "image_size": 32, "categories": ["hat", "bag"], "amazon": False}
    df = demo_catalogue(root, **small)
    assert len(df) == 4 and set(df["label"]) == {"hat", "bag"}
    assert not (root / AMAZON_META).exists()
    stamp = (root / FARFETCH_CSV).stat().st_mtime_ns
    demo_catalogue(root, **small)
    assert (root / FARFETCH_CSV).stat().st_mtime_ns == stamp, "same parameters must not regenerate"
    df2 = demo_catalogue(root, **{**small, "seed": 5})
    assert json.loads((root / MARKER).read_text())["params"]["seed"] == 5
    assert set(df2["product_id"]).isdisjoint(df["product_id"])
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".demo.lock") == ["demo"], (
        "no temp dirs left"
    )


def test_ensure_demo_refuses_to_replace_foreign_directory(tmp_path: Path) -> None:
    root = tmp_path / "mine"
    root.mkdir()
    (root / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="mine"):
        ensure_demo(root, products_per_class=1, image_size=32, categories=["hat"])
    assert (root / "notes.txt").read_text() == "keep me"


def test_concurrent_callers_share_one_complete_demo(tmp_path: Path) -> None:
    root = tmp_path / "demo"
    kwargs = {"products_per_class": 1, "image_size": 32, "categories": ["scarf", "boots"], "amazon": False}
    errors: list[BaseException] = []

    def call() -> None:
        try:
            ensure_demo(root, **kwargs)
        except BaseException as exc:  # re-raised in the main thread below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(list((root / CUTOUT_DIR).iterdir())) == 2
    assert len(_csv(root)) == 2
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="ballgown"):
        generate_demo("unused", categories=["dress", "ballgown"])
    with pytest.raises(ValueError, match="products_per_class"):
        generate_demo("unused", products_per_class=0)


def test_every_supported_category_has_its_own_silhouette() -> None:
    masks = {}
    for i, cat in enumerate(SUPPORTED_CATEGORIES):
        look = draw_look(cat, np.random.default_rng([0, i]), 32)
        masks[cat] = np.asarray(look.item.getchannel("A")) > 127
        assert masks[cat].mean() > 0.05, cat
    cats = list(masks)
    for i, a in enumerate(cats):
        for b in cats[i + 1 :]:
            iou = (masks[a] & masks[b]).sum() / (masks[a] | masks[b]).sum()
            assert iou < 0.92, f"{a} and {b} are drawn alike (IoU {iou:.2f})"


def test_contact_sheet_grid(tmp_path: Path) -> None:
    out = demo_contact_sheet(tmp_path / "sheet.png", categories=["hat", "bag"], products=2, image_size=32)
    with Image.open(out) as im:
        assert im.size == (4 * 32, 2 * 32)
        arr = np.asarray(im.convert("RGB"), np.float32)
    # columns alternate cutout (white corners) and model (cluttered corners)
    assert arr[0, 0].min() == 255 and arr[0, 32:64].std() > 5
