"""``imgsearch-tag`` and the index build's predicted attribute columns, with a raw-pixel classifier that has
attribute heads (its predictions are arbitrary: these tests check what is reported and where it goes)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from imgsearch.cli.tag import main as tag_main
from imgsearch.data.schema import write_catalogue
from retrieval_fixtures import CLASSES, compose, make_catalogue
from train_helpers import save_checkpoint

COLOURS = ["blue", "green", "red"]
COLOUR_OF = {"bags": "red", "dresses": "green", "shoes": "blue"}


@pytest.fixture(scope="module")
def attr_run(tmp_path_factory) -> Path:
    """A run directory whose checkpoint predicts ``colour`` and ``view`` beside the category."""
    from imgsearch.models.classifier import ImageClassifier

    run = tmp_path_factory.mktemp("attr_run")
    catalogue = make_catalogue(run / "images")
    catalogue["colour"] = catalogue["label"].map(COLOUR_OF)
    write_catalogue(catalogue, run / "catalogue.csv")
    model = ImageClassifier(
        backbone="svm", num_classes=len(CLASSES), class_names=list(CLASSES), input_size=8,
        attributes=["colour", "view"], attribute_classes={"colour": COLOURS, "view": ["cutout", "model"]},
        min_confidence=0.6,
    )  # fmt: skip
    save_checkpoint(model.eval(), run / "checkpoints" / "best.ckpt")
    return run


def _photos(run: Path) -> list[str]:
    return sorted(str(p) for p in (run / "images").glob("*_cutout.png"))[:3]


def test_tag_prints_each_head_with_confidence_and_low_state(attr_run: Path, capsys) -> None:
    ckpt = attr_run / "checkpoints" / "best.ckpt"
    photos = _photos(attr_run)
    assert tag_main([*photos, "--checkpoint", str(ckpt), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert [r["image"] for r in out] == photos
    for result in out:
        assert set(result["tags"]) == {"label", "colour", "view"}
        assert result["tags"]["colour"]["value"] in COLOURS
        assert result["tags"]["label"]["value"] in CLASSES
        for tag in result["tags"].values():
            assert 0.0 <= tag["confidence"] <= 1.0
            assert tag["low_confidence"] == (tag["confidence"] < 0.6)  # the model's min_confidence
    # a threshold of 1 makes every tag low-confidence, 0 none
    assert tag_main([photos[0], "--checkpoint", str(ckpt), "--json", "--min-confidence", "1"]) == 0
    assert all(t["low_confidence"] for t in json.loads(capsys.readouterr().out)[0]["tags"].values())
    assert tag_main([photos[0], "--checkpoint", str(ckpt), "--json", "--min-confidence", "0"]) == 0
    assert not any(t["low_confidence"] for t in json.loads(capsys.readouterr().out)[0]["tags"].values())


def test_tag_bad_inputs_exit_2_with_a_message(attr_run: Path, tmp_path: Path, capsys) -> None:
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not an image")
    ckpt = attr_run / "checkpoints" / "best.ckpt"
    assert tag_main([str(bad), "--checkpoint", str(ckpt)]) == 2
    assert "cannot read image" in capsys.readouterr().err
    assert tag_main([_photos(attr_run)[0], "--checkpoint", str(tmp_path / "none.ckpt")]) == 2
    assert "none.ckpt" in capsys.readouterr().err
    assert tag_main([_photos(attr_run)[0], "--index", str(tmp_path)]) == 2
    assert "not an index directory" in capsys.readouterr().err


def test_index_fills_empty_attribute_cells_with_flagged_predictions(attr_run: Path, tmp_path: Path) -> None:
    from imgsearch.cli.index import build
    from imgsearch.retrieval.index import load_index_dir

    catalogue = pd.read_csv(attr_run / "catalogue.csv", dtype=str, keep_default_na=False)
    untagged = catalogue["item_id"].str.startswith("bags")
    catalogue.loc[untagged, "colour"] = ""  # a shop that never tagged its bags
    table = tmp_path / "shop.csv"
    write_catalogue(catalogue, table)
    out = tmp_path / "index"
    cfg = compose(
        "index",
        [
            f"checkpoint={attr_run / 'checkpoints' / 'best.ckpt'}", f"catalogue={table}", f"output_dir={out}",
            "embed.num_workers=0", "embed.trainer.accelerator=cpu", "attribute_min_confidence=0",
            f"hydra.run.dir={tmp_path / 'hydra'}",
        ],
    )  # fmt: skip
    assert build(cfg) == out
    _, items, manifest = load_index_dir(out)
    items = items.set_index("item_id")
    bags = items.index.str.startswith("bags")
    assert (items.loc[bags, "colour_predicted"] == "true").all()
    assert items.loc[bags, "colour"].isin(COLOURS).all()
    assert (items.loc[bags, "colour_confidence"].astype(float) > 0).all()
    # the shop's own values are kept and not flagged
    assert (items.loc[~bags, "colour"] == items.loc[~bags, "label"].map(COLOUR_OF)).all()
    assert (items.loc[~bags, "colour_predicted"] == "").all()
    info = manifest["predicted_attributes"]["columns"]
    assert info["colour"]["filled"] == int(bags.sum()) and info["colour"]["catalogue_values_kept"] == int(
        (~bags).sum()
    )
    assert info["view"]["filled"] == 0  # every row has its view
    # a threshold of 1 fills nothing: the cells stay empty and are counted
    kept = [o for o in cfg.hydra.overrides.task if not o.startswith(("attribute_min", "output_dir"))]
    cfg = compose("index", [*kept, "attribute_min_confidence=1", f"output_dir={tmp_path / 'strict'}"])
    build(cfg)
    _, strict, manifest = load_index_dir(tmp_path / "strict")
    assert (strict.loc[strict["item_id"].str.startswith("bags"), "colour"] == "").all()
    assert manifest["predicted_attributes"]["columns"]["colour"]["low_confidence_left_empty"] == int(
        bags.sum()
    )
