"""The foreground Lab colour descriptor (#15, retrieval/lab_colour.py) and the index colour part that fuses it
with the colour head: the mask drops a packshot's white background but keeps white enclosed by the product,
the histogram is the product's colours, and a colour weight on an index built with ``colour_lab_share`` ranks
the query's colour first even when the model's colour head cannot tell the colours apart."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from colour_shop import blind_colour_model, shop_image, write_shop_catalogue
from imgsearch.retrieval import lab_colour
from imgsearch.retrieval.colour import colour_part, fused_colour_part
from imgsearch.retrieval.search import Searcher
from retrieval_fixtures import compose
from train_helpers import save_checkpoint

RED, BLUE, WHITE = (200, 30, 30), (30, 40, 200), (255, 255, 255)


def _packshot(colour=RED, side: int = 64) -> np.ndarray:
    """A square product of ``colour`` on white, with a white button inside it (enclosed, not background)."""
    arr = np.full((side, side, 3), 255, np.uint8)
    arr[16:48, 16:48] = colour
    arr[28:36, 28:36] = WHITE
    return arr


def test_mask_drops_the_border_white_and_keeps_white_inside_the_product() -> None:
    mask = lab_colour.foreground_mask(lab_colour.to_lab(_packshot()))
    expected = np.zeros((64, 64), bool)
    expected[16:48, 16:48] = True  # the square, its enclosed white button included
    assert np.array_equal(mask, expected)


def test_histogram_describes_the_product_not_the_background() -> None:
    shot = _packshot()
    hist = lab_colour.lab_descriptor(shot)
    lab = lab_colour.to_lab(shot)
    product_only = lab_colour.lab_histogram(lab[16:48, 16:48])
    assert hist.shape == (lab_colour.DIM,) and np.isclose(hist.sum(), 1.0, atol=1e-5)
    assert np.allclose(hist, product_only, atol=1e-6)
    whole = lab_colour.lab_histogram(lab)  # unmasked, the white background dominates
    assert np.linalg.norm(whole - hist) > 0.3


def test_parts_are_unit_rows_and_closer_for_the_same_colour() -> None:
    hists = lab_colour.lab_descriptors([_packshot(RED), _packshot((170, 40, 35)), _packshot(BLUE)])
    parts = lab_colour.lab_part(hists)
    assert np.allclose(np.linalg.norm(parts, axis=1), 1.0, atol=1e-5)
    sim = parts @ parts.T
    assert sim[0, 1] > 0.5 > sim[0, 2]  # a darker red is near red; blue is far


def test_a_white_product_filling_the_frame_falls_back_to_every_pixel_and_is_counted() -> None:
    stats = lab_colour.LabStats()
    white = np.full((32, 32, 3), 250, np.uint8)
    hist = lab_colour.lab_descriptors([white, _packshot()], stats)
    assert stats.photos == 2 and stats.whole_image_fallbacks == 1
    assert np.isclose(hist[0].sum(), 1.0, atol=1e-5)
    with pytest.raises(ValueError, match=r"RGB image \[H, W, 3\]"):
        lab_colour.lab_descriptor(np.zeros((4, 4), np.uint8))


def test_fused_part_is_unit_and_weighs_the_two_similarities_by_the_share() -> None:
    probs = np.array([[0.9, 0.1], [0.2, 0.8]], np.float32)
    hists = lab_colour.lab_descriptors([_packshot(RED), _packshot(BLUE)])
    share = 0.75
    fused = fused_colour_part(probs, hists, share)
    assert fused.shape == (2, 2 + lab_colour.DIM)
    assert np.allclose(np.linalg.norm(fused, axis=1), 1.0, atol=1e-5)
    head, lab = colour_part(probs), lab_colour.lab_part(hists)
    expected = (1 - share) * head[0] @ head[1] + share * lab[0] @ lab[1]
    assert np.isclose(fused[0] @ fused[1], expected, atol=1e-5)
    assert np.array_equal(fused_colour_part(probs, None, 0.0), head)  # share 0: the head's part, as before
    with pytest.raises(ValueError, match="one Lab histogram per photo"):
        fused_colour_part(probs, hists[:1], share)


@pytest.fixture(scope="module")
def blind_head_shop(tmp_path_factory) -> Path:
    """Bags and shoes in red and blue (tests/colour_shop.py's photos), and a model whose colour head gives
    every photo the same probabilities: only the pixels' Lab part can tell red from blue. Indexes built with
    ``colour_lab_share`` 0 (``head/``) and 0.75 (``lab/``)."""
    from imgsearch.cli.index import build

    root = tmp_path_factory.mktemp("lab_shop")
    write_shop_catalogue(root, titles={"bags": "bags", "shoes": "shoes"})
    ckpt = save_checkpoint(blind_colour_model(), root / "checkpoints" / "best.ckpt")
    for name, share in (("head", 0.0), ("lab", 0.75)):
        overrides = [f"checkpoint={ckpt}", f"catalogue={root / 'catalogue.csv'}", f"output_dir={root / name}",
                     "embed.num_workers=0", "embed.trainer.accelerator=cpu", f"colour_lab_share={share}",
                     f"hydra.run.dir={root / 'hydra'}"]  # fmt: skip
        build(compose("index", overrides))
    return root


def _colours(result) -> list[str]:
    return [h.item_id.split("-")[1] for h in result.hits]


def test_index_with_a_lab_share_ranks_the_query_colour_first(blind_head_shop: Path) -> None:
    lab = Searcher.from_index_dir(blind_head_shop / "lab")
    info = lab.manifest["colour"]
    assert info["lab"]["share"] == 0.75 and info["dim"] == 2 + lab_colour.DIM
    assert lab.colour_parts.shape == (16, 2 + lab_colour.DIM)
    for query_item, colour in (("bags-red-0", "red"), ("shoes-blue-2", "blue")):
        query = Image.open(blind_head_shop / f"{query_item}.png")
        plain = lab.search([query], k=8)[0]
        weighted = lab.search([query], k=8, colour_weight=4.0)[0]
        assert _colours(weighted) == [colour] * 8
        assert _colours(plain).count(colour) < 8  # the search vector alone mixes the colours
    # the same model's head-only part cannot: every item's colour part is the same
    head = Searcher.from_index_dir(blind_head_shop / "head")
    assert "lab" not in head.manifest["colour"]
    assert np.allclose(head.colour_parts, head.colour_parts[0])
    weighted = head.search([Image.open(blind_head_shop / "bags-red-0.png")], k=8, colour_weight=4.0)[0]
    assert _colours(weighted).count("red") < 8


def test_added_items_get_the_same_fused_part(blind_head_shop: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "index"
    shutil.copytree(blind_head_shop / "lab", copy)
    searcher = Searcher.from_index_dir(copy, live=True)
    path = shop_image(tmp_path / "new-red.png", 1, "red", "bags")
    new = pd.DataFrame([{"item_id": "new-red", "label": "bags", "title": "Holdall", "image_path": path}])
    assert searcher.add_items(new)["added"] == 1
    vid = int(searcher.item("new-red").name)
    built = int(searcher.item("bags-red-1").name)  # the same photo, indexed at build time
    assert np.allclose(searcher.colour_parts[vid], searcher.colour_parts[built], atol=1e-5)
    weighted = searcher.search([Image.open(path)], k=9, colour_weight=4.0)[0]
    assert _colours(weighted).count("red") == 9


@pytest.fixture(scope="module")
def lab_only_index(blind_head_shop: Path) -> Path:
    """The same shop indexed with ``colour_part=lab``: the colour part is the photos' Lab histograms alone,
    the model's (blind) colour head is not read."""
    from imgsearch.cli.index import build

    root = blind_head_shop
    overrides = [f"checkpoint={root / 'checkpoints' / 'best.ckpt'}", f"catalogue={root / 'catalogue.csv'}",
                 f"output_dir={root / 'lab_only'}", "embed.num_workers=0", "embed.trainer.accelerator=cpu",
                 "colour_part=lab", f"hydra.run.dir={root / 'hydra'}"]  # fmt: skip
    build(compose("index", overrides))
    return root / "lab_only"


def test_lab_only_colour_part_scores_cosine_plus_weight_times_bc(
    blind_head_shop: Path, lab_only_index
) -> None:
    searcher = Searcher.from_index_dir(lab_only_index)
    info = searcher.manifest["colour"]
    assert info["source"] == "lab" and info["attribute"] is None and info["dim"] == lab_colour.DIM
    paths = searcher.items["image_path"].tolist()
    expected_parts = lab_colour.lab_part(lab_colour.lab_descriptors(paths))
    assert np.allclose(searcher.colour_parts, expected_parts, atol=1e-5)
    query = Image.open(blind_head_shop / "bags-red-0.png")
    plain = searcher.search([query], k=16)[0]
    weighted = searcher.search([query], k=16, colour_weight=4.0)[0]
    assert _colours(weighted)[:8] == ["red"] * 8
    assert _colours(plain)[:8] != ["red"] * 8  # the search vector alone mixes the colours
    # every hit's score is its cosine plus 4 x the Bhattacharyya coefficient of the two Lab histograms
    cosine = {h.item_id: h.score for h in plain.hits}
    query_part = lab_colour.lab_part(lab_colour.lab_descriptors([query]))[0]
    row_of = {item: i for i, item in enumerate(searcher.items["item_id"].astype(str))}
    for hit in weighted.hits:
        bc = float(expected_parts[row_of[hit.item_id]] @ query_part)
        assert hit.score == pytest.approx(cosine[hit.item_id] + 4.0 * bc, abs=1e-4)


def test_lab_only_part_follows_live_adds(blind_head_shop: Path, lab_only_index, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "index"
    shutil.copytree(lab_only_index, copy)
    searcher = Searcher.from_index_dir(copy, live=True)
    path = shop_image(tmp_path / "new-blue.png", 2, "blue", "shoes")
    new = pd.DataFrame([{"item_id": "new-blue", "label": "shoes", "title": "Trainer", "image_path": path}])
    assert searcher.add_items(new)["added"] == 1
    vid = int(searcher.item("new-blue").name)
    expected = lab_colour.lab_part(lab_colour.lab_descriptors([path]))[0]
    assert np.allclose(searcher.colour_parts[vid], expected, atol=1e-5)


def test_a_bad_colour_part_choice_is_a_clear_error(blind_head_shop: Path) -> None:
    from imgsearch.cli.index import build
    from imgsearch.cli.inputs import InputError

    root = blind_head_shop
    overrides = [f"checkpoint={root / 'checkpoints' / 'best.ckpt'}", f"catalogue={root / 'catalogue.csv'}",
                 f"output_dir={root / 'bad'}", "colour_part=pixels",
                 f"hydra.run.dir={root / 'hydra'}"]  # fmt: skip
    with pytest.raises(InputError, match="head, probe or lab"):
        build(compose("index", overrides))


def test_leave_one_out_lab_weight_adds_weight_times_bc() -> None:
    from imgsearch.retrieval.leave_one_out import with_lab_colour

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 8)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    shots = [_packshot(RED), _packshot((170, 40, 35)), _packshot(BLUE)]
    queries, gallery = with_lab_colour(vectors, vectors, shots, 2.0)
    lab = lab_colour.lab_part(lab_colour.lab_descriptors(shots))
    assert np.allclose(queries @ gallery.T, vectors @ vectors.T + 2.0 * lab @ lab.T, atol=1e-5)
