"""Farfetch reader on the 90 real listing rows, and the keyword taxonomy's match rule."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from imgsearch.data import CATALOGUE_COLUMNS, read_farfetch
from imgsearch.data.readers.taxonomy import Taxonomy, load_taxonomy

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SAMPLE = SHARED / "realdata" / "formats" / "farfetch" / "products_sample.csv"


@pytest.fixture(scope="module")
def sample() -> Path:
    if not SAMPLE.is_file():
        pytest.skip(f"real Farfetch sample not found at {SAMPLE} (../shared/realdata is provided in CI)")
    return SAMPLE


@pytest.fixture(scope="module")
def listings(sample):
    return read_farfetch(sample)


def _copy(sample: Path, dst: Path, edit=None) -> Path:
    data = sample.read_bytes().decode("utf-8")
    if edit:
        data = edit(data)
    dst.write_bytes(data.encode("utf-8"))
    return dst


def _row(df, product_id: str, view: str = "cutout"):
    hit = df[(df["product_id"] == product_id) & (df["view"] == view)]
    assert len(hit) == 1, f"{product_id}/{view}: {len(hit)} rows"
    return hit.iloc[0]


def test_real_sample_shape(listings, sample):
    assert b"\r\n" in sample.read_bytes()  # the reader really meets CRLF here
    assert list(listings.columns[: len(CATALOGUE_COLUMNS)]) == CATALOGUE_COLUMNS
    # 90 listings, one unmatched description ("Slow Slowly G1") dropped, two views each
    assert listings["product_id"].nunique() == 89
    assert len(listings) == 178
    views = listings.groupby("product_id")["view"].apply(lambda v: tuple(sorted(v)))
    assert set(views) == {("cutout", "model")}
    assert listings["item_id"].is_unique
    assert _row(listings, "14133999", "model")["item_id"] == "14133999_model"
    assert (listings["image_path"] == "").all()  # no image_dir: rows kept, unresolved
    assert (listings["source"] == "farfetch").all()
    for col in ("title", "brand", "image_url", "currency"):
        assert not listings[col].str.contains("\r").any(), col
    report = listings.attrs["report"]
    assert report["rows_read"] == 90 and report["unmatched"] == 1
    assert report["unmatched_examples"] == ["Slow Slowly G1"]


def test_real_sample_metadata(listings):
    bag = _row(listings, "13536955")
    assert bag["price"] == 1598.0 and bag["brand"] == "Chloé" and bag["currency"] == "USD"
    assert bag["title"] == "C-ring embellished shoulder bag"
    assert _row(listings, "13431163")["price"] == 3350.0
    assert _row(listings, "13702721")["title"] == "teddy bear backpack"  # trailing space stripped
    assert _row(listings, "13660872")["gender"] == "unisex"
    assert _row(listings, "13660872")["brand"] == "Calvin Klein Jeans Est. 1978"
    assert _row(listings, "14133999", "model")["image_url"].endswith("/14/13/39/99/14133999_18844509_300.jpg")
    assert _row(listings, "13536955")["url"] == "https://www.farfetch.com/shopping/item-13536955.aspx"


# Checked by reading each description: the item is named by the last noun.
@pytest.mark.parametrize(
    ("product_id", "label"),
    [
        ("14133999", "sneakers"),  # Superstar sneakers
        ("13339723", "bag"),  # purple Angelou mini bracelet bag (not jewellery)
        ("13996602", "sandals"),  # Oak mule sandals (not mules)
        ("13388161", "mules"),  # beige crucified 30 patent leather mules
        ("14024258", "t-shirt"),  # T-shirt with Gucci Tennis
        ("13655657", "t-shirt"),  # Laurier T-Shirt S/S
        ("13245792", "dress"),  # Logo turtleneck metallic dress (not sweater)
        ("13302956", "sweater"),  # turtleneck striped cotton blend jumper
        ("13383921", "coat"),  # Guisley check print ... trench coat
        ("13396522", "coat"),  # PSWL Alphabet Raincoat
        ("13445598", "bag"),  # ... cotton make up pouch
        ("14021575", "wallet"),  # C plaque purse
        ("13940430", "sandals"),  # logo slides
        ("13825891", "swimwear"),  # pleated bandeau bikini
        ("13984383", "trousers"),  # graphic print leggings
        ("13689025", "jewellery"),  # Moon Fever Necklace
        ("13660872", "hat"),  # logo denim cap
        ("13572055", "jeans"),  # Shiloh wide-leg jeans
        ("13434452", "shorts"),  # white houndstooth print tailored shorts
        ("13315719", "shirt"),  # Cloverdale pleat detail printed silk blouse
        ("13831699", "top"),  # logo tank top
        ("13316801", "pumps"),  # nude shiva 85 patent leather pumps
        ("14037815", "boots"),  # pointed sock boots
        ("13361795", "skirt"),  # folded mini skirt
    ],
)
def test_real_sample_labels(listings, product_id, label):
    assert _row(listings, product_id)["label"] == label
    assert _row(listings, product_id, "model")["label"] == label


def test_unmatched_kept_as_other(sample):
    df = read_farfetch(sample, unmatched="other")
    assert df["product_id"].nunique() == 90
    assert _row(df, "13408499")["label"] == "other"  # "Slow Slowly G1" (sunglasses, but says no noun)


def test_no_taxonomy_keeps_every_row_unlabelled(sample):
    df = read_farfetch(sample, taxonomy=None, views=("cutout",))
    assert len(df) == 90 and (df["label"] == "").all() and (df["view"] == "cutout").all()


def test_price_falls_back_to_quoted_formatted_price(sample, tmp_path):
    edited = _copy(sample, tmp_path / "listings.csv", lambda t: t.replace(',1598,"$1,598"', ',,"$1,598"', 1))
    assert ',,"$1,598"' in edited.read_text()
    df = read_farfetch(edited)
    assert _row(df, "13536955")["price"] == 1598.0


def test_duplicate_ids_dropped_and_counted(sample, tmp_path):
    def dup(text: str) -> str:
        lines = text.split("\r\n")
        return "\r\n".join([*lines[:3], lines[2], *lines[3:]])

    df = read_farfetch(_copy(sample, tmp_path / "dup.csv", dup))
    assert df.attrs["report"]["duplicate_ids"] == 1
    assert df["product_id"].nunique() == 89 and df["item_id"].is_unique


def test_malformed_line_counted_with_line_number(sample, tmp_path):
    def bad(text: str) -> str:
        lines = text.split("\r\n")
        return "\r\n".join([*lines[:5], lines[5] + ",extra,fields", *lines[6:]])

    df = read_farfetch(_copy(sample, tmp_path / "bad.csv", bad))
    report = df.attrs["report"]
    assert report["bad_lines"] == 1 and report["bad_line_numbers"] == [6]
    assert df["product_id"].nunique() == 88  # the 89 matched listings minus the bad line


def test_image_dir_keeps_only_resolved_rows(sample, tmp_path, listings):
    root = tmp_path / "farfetch"
    want = listings.head(6)  # 3 products x 2 views
    (root / "cutout-img" / "cutout").mkdir(parents=True)
    (root / "model-img" / "model").mkdir(parents=True)
    for i, row in enumerate(want.itertuples()):
        name = row.image_url.rsplit("/", 1)[-1]
        if row.view == "cutout":
            folder = root / "cutout-img" / "cutout"
        else:  # one model photo flat in the root: the reader also looks there
            folder = root if i == 1 else root / "model-img" / "model"
        Image.new("RGB", (8, 8), "white").save(folder / name)
    # an image of a product that is not in the listings is ignored
    Image.new("RGB", (8, 8)).save(root / "cutout-img" / "cutout" / "99999999_1_300.jpg")
    df = read_farfetch(sample, root)
    assert sorted(df["item_id"]) == sorted(want["item_id"])
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in df["image_path"])
    assert _row(df, want.iloc[1]["product_id"], "model")["image_path"] == str(
        (root / Path(want.iloc[1]["image_url"]).name).resolve()
    )
    report = df.attrs["report"]
    assert report["images"]["cutout"] == {"rows": 89, "resolved": 3, "missing": 86}
    assert report["images"]["model"] == {"rows": 89, "resolved": 3, "missing": 86}


def test_product_view_rule(sample, tmp_path):
    (tmp_path / "cutout").mkdir()
    Image.new("RGB", (8, 8)).save(tmp_path / "cutout" / "13536955.png")
    Image.new("RGB", (8, 8)).save(tmp_path / "cutout" / "14133999.webp")
    df = read_farfetch(sample, tmp_path, image_rule="product_view")
    assert sorted(df["item_id"]) == ["13536955_cutout", "14133999_cutout"]
    with pytest.raises(ValueError, match="image_rule"):
        read_farfetch(sample, tmp_path, image_rule="by_magic")


def test_not_a_farfetch_file_is_named(tmp_path):
    p = tmp_path / "styles.csv"
    p.write_text("id,articleType\n1,Shirts\n")
    with pytest.raises(ValueError, match=r"styles\.csv.*shortDescription"):
        read_farfetch(p)


# ---- taxonomy match rule (synthetic descriptions) -------------------------------------------------


@pytest.fixture(scope="module")
def farfetch_taxonomy() -> Taxonomy:
    return load_taxonomy("farfetch")


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("Leather belt bag", "bag"),  # last noun wins
        ("leather belt", "belt"),
        ("shirt dress", "dress"),
        ("dress shirt", "shirt"),
        ("printed swim shorts", "swimwear"),  # longest keyword at the same end
        ("tailored shorts", "shorts"),
        ("short sleeve dress", "dress"),  # "short" is not "shorts"
        ("cotton sweatshirt", "sweater"),  # whole words: no "shirt" inside "sweatshirt"
        ("logo Tshirt", "t-shirt"),
        ("set of three DRESSES", "dress"),  # case and plural
        ("silk scarves", "scarf"),
        ("square sunglasses", "sunglasses"),
        ("Superstar", None),
        ("", None),
    ],
)
def test_taxonomy_rule(farfetch_taxonomy, text, label):
    assert farfetch_taxonomy.match(text) == label


def test_taxonomy_has_the_issue_categories(farfetch_taxonomy):
    wanted = {
        "dress",
        "skirt",
        "trousers",
        "jeans",
        "shorts",
        "shirt",
        "t-shirt",
        "sweater",
        "jacket",
        "coat",
    }
    wanted |= {"sneakers", "boots", "sandals", "pumps", "bag", "wallet", "belt", "hat", "scarf", "sunglasses"}
    wanted |= {"jewellery"}
    assert set(wanted) <= set(farfetch_taxonomy.names)


def test_taxonomy_from_mapping_path_and_errors(tmp_path):
    tax = load_taxonomy({"categories": {"footwear": ["shoe", "boot"], "bag": ["bag"]}})
    assert tax.match("boot bag") == "bag" and tax.match("bag boots") == "footwear"
    p = tmp_path / "mine.yaml"
    p.write_text("categories:\n  cup: [mug, cup]\n")
    assert load_taxonomy(p).match("Coffee Mugs") == "cup"
    with pytest.raises(ValueError, match="both"):
        Taxonomy({"a": ["top"], "b": ["top"]})
    with pytest.raises(FileNotFoundError, match="no_such_taxonomy"):
        load_taxonomy("no_such_taxonomy")
