"""scripts/demo_matched_gallery.py: a query counts only when its own cutout is the nearest in the gallery."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

_SPEC = importlib.util.spec_from_file_location(
    "demo_matched_gallery", Path(__file__).resolve().parents[1] / "scripts" / "demo_matched_gallery.py"
)
script = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(script)


def test_top1_counts_own_cutout_first_and_depends_on_the_gallery():
    # rows 0-2: cutouts of a, b, c; rows 3-5: their model photos; b's model photo is nearer c's cutout
    v = np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 0.1, 0], [0, 0.6, 0.8], [0, 0, 1]], dtype=np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    cutout, model = {"a": 0, "b": 1, "c": 2}, {"a": 3, "b": 4, "c": 5}
    assert script.top1(v, cutout, model, ["a", "b", "c"], ["a", "b", "c"]) == 2 / 3
    # without c's cutout in the gallery, b finds its own
    assert script.top1(v, cutout, model, ["a", "b"], ["a", "b"]) == 1.0


def test_more_queries_than_val_products_is_a_clear_error_before_any_model_is_loaded(tmp_path):
    rows = [
        f"{p}_{v},{p},{v},/nowhere/{p}_{v}.jpg,hats,{split}"
        for p, split in (("1", "train"), ("2", "val"), ("3", "test"))
        for v in ("cutout", "model")
    ]
    (tmp_path / "catalogue.csv").write_text(
        "item_id,product_id,view,image_path,label,split\n" + "\n".join(rows) + "\n"
    )
    # no checkpoint exists: the count is checked first
    with pytest.raises(SystemExit, match=r"--queries 2: the run has 1 val products"):
        script.main(["--run", str(tmp_path), "--queries", "2", "--train", "1", "--test", "1"])


@pytest.mark.parametrize(
    ("title", "look"),
    [
        ("Ada sky blue striped mini cotton dress", ("sky blue", "stripes")),
        ("navy polka-dot wool scarf", ("navy", "dots")),
        ("Blue leather boots", ("blue", "solid")),
        ("gold-tone hoop jewellery", ("gold", "solid")),
        ("ivory ombré silk skirt", ("ivory", "gradient")),
        ("unnamed thing", ("", "solid")),
    ],
)
def test_look_is_read_back_from_the_generators_titles(title, look):
    assert script.look_from_title(title) == look


def test_error_breakdown_says_what_a_miss_shares_with_its_query():
    # three val products a, b, c (cutout and model photo each) and one train product t; b's model photo is
    # nearest t's cutout (same category and colour, other pattern), the others find their own
    pid = np.array(["a", "a", "b", "b", "c", "c", "t", "t"])
    view = np.array(["cutout", "model"] * 4)
    split = np.array(["val"] * 6 + ["train"] * 2)
    label = np.array(["dress"] * 2 + ["boots"] * 2 + ["hat"] * 2 + ["boots"] * 2)
    title = np.array(
        ["red dress"] * 2 + ["navy striped boots"] * 2 + ["red hat"] * 2 + ["navy check boots"] * 2
    )
    v = np.eye(8, dtype=np.float32)
    v[1] = v[0] + 0.1 * v[2]
    v[3] = v[6] + 0.5 * v[2]  # b's model photo: t's cutout first, its own second
    v[5] = v[4]
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    out = script.error_breakdown(v, pid, view, split, label, title)
    assert out["queries"] == 3 and out["misses"] == 1
    assert out["wrong_cutout_split"] == {"train": 1, "val": 0, "test": 0}
    assert out["miss_shares"] == {"category": 1, "colour": 1, "pattern": 0, "all_three": 0}
    assert out["own_cutout_rank_of_misses"] == {"2": 1, "3-5": 0, "6-10": 0, ">10": 0}
    # no two gallery products share a whole look here
    assert out["with_look_twin"] == {"queries": 0, "top1": None}
    assert out["without_look_twin"]["queries"] == 3
    assert out["without_look_twin"]["top1"] == pytest.approx(2 / 3)


def test_lab_weight_is_chosen_on_val_and_test_scored_at_zero_and_at_it():
    # val products a, b; test products c, d. By features alone b's and d's model photos are nearer another
    # cutout; their colour (the Lab part) matches their own cutout, so a colour weight puts them right
    cutout = {"a": 0, "b": 1, "c": 2, "d": 3}
    model = {"a": 4, "b": 5, "c": 6, "d": 7}
    f = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 0, 2, 2]]  # b's photo looks like a, d's like c
    lab = np.eye(4, dtype=np.float32)[[0, 1, 2, 3, 0, 1, 2, 3]]
    products = {"train": [], "val": ["a", "b"], "test": ["c", "d"]}
    out = script.colour_weight_choice(f, lab, cutout, model, products, [0.0, 0.5, 2.0, 4.0])
    assert out["val"]["0.0"] == 0.5  # a finds its cutout, b finds a's
    # 0.5 < 1 cannot overturn a full feature match; 2 and 4 both put b right: the smaller is chosen
    assert out["val"]["0.5"] == 0.5 and out["val"]["2.0"] == 1.0 and out["val"]["4.0"] == 1.0
    assert out["chosen"] == 2.0
    assert out["test_at_0"] == 0.5 and out["test_at_chosen"] == 1.0


@pytest.mark.parametrize("weights", ["0.5,x", "-1"])
def test_bad_lab_weights_are_refused_before_anything_is_read(tmp_path, weights):
    with pytest.raises(SystemExit, match="--lab-weights"):
        script.main(["--run", str(tmp_path), "--lab-weights", weights])


def test_bad_head_weights_are_refused_before_anything_is_read(tmp_path):
    with pytest.raises(SystemExit, match="--head-weights"):
        script.main(["--run", str(tmp_path), "--head-weights", "1,two"])


def test_head_weights_on_a_model_without_a_colour_head_is_a_clear_error(tmp_path, monkeypatch):
    rows = [
        f"{p}_{v},{p},{v},/nowhere/{p}_{v}.jpg,hats,{split}"
        for p, split in (("1", "train"), ("2", "val"), ("3", "test"))
        for v in ("cutout", "model")
    ]
    (tmp_path / "catalogue.csv").write_text(
        "item_id,product_id,view,image_path,label,split\n" + "\n".join(rows) + "\n"
    )

    from types import SimpleNamespace

    monkeypatch.setattr(script, "load_classifier", lambda path: SimpleNamespace(attribute_classes={}))
    with pytest.raises(SystemExit, match=r"--head-weights: .* has no colour head"):
        script.main(
            ["--run", str(tmp_path), "--queries", "1", "--train", "1", "--test", "1", "--head-weights", "1"]
        )
