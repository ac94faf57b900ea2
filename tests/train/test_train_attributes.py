"""Attribute heads through ``imgsearch-train``: each configured column gets a softmax head trained with the
category, the checkpoint carries the classes, tags come out with confidences and a low-confidence state, and
a column the catalogue lacks is a clear error."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from tests.train_helpers import compose_train, tiny_overrides

from imgsearch.cli.train import build_run_catalogue, train
from imgsearch.data.attributes import UNKNOWN_ATTRIBUTE, attribute_classes_of, attribute_targets
from imgsearch.models.attributes import tags_from_probs
from imgsearch.models.checkpoint import load_classifier


@pytest.fixture(autouse=True)
def _clear_hydra() -> None:
    GlobalHydra.instance().clear()


def _over(demo_root: Path) -> list[str]:
    return [
        *tiny_overrides(demo_root, model="efficientnet_lite0"),
        "model.pretrained=false", "model.input_size=32", "test=true",
        "model.attributes=[gender,view]", "model.min_confidence=0.9",
    ]  # fmt: skip


def test_attribute_heads_train_a_step_through_hydra(demo_root: Path, tmp_path: Path) -> None:
    cfg = compose_train(_over(demo_root), tmp_path / "run")
    record = train(cfg)
    assert record["global_step"] == 2
    for name in ("gender", "view"):
        assert 0.0 <= record[f"test/{name}_acc"] <= 1.0
    assert np.isfinite(record["train/attr_loss"])
    catalogue = build_run_catalogue(cfg, tmp_path / "other")
    model = load_classifier(record["last_checkpoint"] or record["best_checkpoint"])
    assert model.attribute_classes == attribute_classes_of(catalogue, ["gender", "view"])
    assert model.attribute_classes["view"] == ["cutout", "model"]
    with torch.inference_mode():
        probs = model.eval().predict_attributes(torch.rand(4, 3, 32, 32))
    assert set(probs) == {"label", "gender", "view"}
    assert probs["gender"].shape == (4, len(model.attribute_classes["gender"]))
    assert torch.allclose(probs["view"].sum(dim=-1), torch.ones(4), atol=1e-5)
    pred = model.predict_step(torch.rand(2, 3, 32, 32))
    assert pred["attr:view"].shape == (2, 2)


def test_attribute_loss_changes_the_training(demo_root: Path, tmp_path: Path) -> None:
    """Same seed and data, shared heads: their loss is summed into the step's loss, so the weights differ."""
    base = [o for o in _over(demo_root) if not o.startswith("model.attributes")]
    weights = {}
    for name, extra in [
        ("plain", []),
        (
            "attrs",
            ["model.attributes=[gender,view]", "model.attribute_weight=5", "model.attribute_detach=false"],
        ),
    ]:
        GlobalHydra.instance().clear()
        record = train(compose_train([*base, *extra, "test=false"], tmp_path / name))
        model = load_classifier(record["last_checkpoint"] or record["best_checkpoint"])
        weights[name] = model.head.weight.detach().clone()
    assert not torch.allclose(weights["plain"], weights["attrs"])


def test_tags_have_confidences_and_a_low_confidence_state() -> None:
    probs = {"colour": np.array([[0.95, 0.05], [0.55, 0.45]]), "label": np.array([[0.2, 0.8], [0.6, 0.4]])}
    classes = {"colour": ["red", "blue"], "label": ["shoe", "bag"]}
    tags = tags_from_probs(probs, classes, min_confidence=0.7)
    assert tags[0]["colour"].value == "red" and tags[0]["colour"].confidence == pytest.approx(0.95)
    assert not tags[0]["colour"].low_confidence
    assert tags[1]["colour"].low_confidence and tags[1]["label"].low_confidence
    assert tags[0]["label"].value == "bag" and not tags[0]["label"].low_confidence
    with pytest.raises(ValueError, match="3 classes"):
        tags_from_probs(probs, {**classes, "colour": ["a", "b", "c"]}, 0.5)


def test_unknown_attribute_values_are_ignored_targets(demo_root: Path, tmp_path: Path) -> None:
    cfg = compose_train(tiny_overrides(demo_root), tmp_path / "run")
    catalogue = build_run_catalogue(cfg, tmp_path / "run")
    catalogue.loc[catalogue.index[0], "gender"] = ""
    classes = attribute_classes_of(catalogue, ["gender"])
    targets = attribute_targets(catalogue, classes)
    assert targets[0] == [UNKNOWN_ATTRIBUTE]
    assert all(0 <= t[0] < len(classes["gender"]) for t in targets[1:])


def test_attribute_the_catalogue_lacks_is_a_clear_error(demo_root: Path, tmp_path: Path) -> None:
    cfg = compose_train([*tiny_overrides(demo_root), "model.attributes=[baseColour]"], tmp_path / "run")
    with pytest.raises(ValueError, match=r"attribute 'baseColour' is not a catalogue column.*extra_columns"):
        train(cfg)
    cfg = compose_train([*tiny_overrides(demo_root), "model.attributes=[source]"], tmp_path / "run2")
    with pytest.raises(ValueError, match="'source' has 1 distinct value"):
        train(cfg)


@pytest.mark.parametrize("detach", [False, True])
def test_detached_heads_leave_the_search_features_untouched(detach: bool) -> None:
    """The backbone's gradient of a training step with attribute targets equals the one with every target
    unknown (no attribute loss) exactly when the heads are detached."""
    from imgsearch.models.classifier import ImageClassifier

    torch.manual_seed(0)
    model = ImageClassifier(
        "efficientnet_lite0", 2, input_size=32, attributes=["colour"], dropout=0.0,
        attribute_classes={"colour": ["blue", "red", "white"]}, attribute_detach=detach,
    )  # fmt: skip
    model.eval()  # BatchNorm in eval mode: the two steps see the same statistics
    images, targets = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 0, 1])

    def backbone_grad(colours: list[int]) -> torch.Tensor:
        model.zero_grad()
        batch = (images, targets, torch.arange(4), targets, torch.tensor([[c] for c in colours]))
        model.training_step(batch, 0).backward()
        return torch.cat([p.grad.flatten() for p in model.backbone.parameters() if p.grad is not None])

    with_attrs, without = backbone_grad([0, 1, 2, 1]), backbone_grad([-1, -1, -1, -1])
    assert torch.allclose(with_attrs, without) is detach


def test_a_colour_head_learns_from_the_titles_colour_words(demo_root: Path, tmp_path: Path) -> None:
    """The demo has no colour field; ``data.prepare.title_colour=colour`` reads it from the titles."""
    base = [o for o in _over(demo_root) if not o.startswith("model.attributes")]
    with pytest.raises(ValueError, match="not a catalogue column"):
        train(compose_train([*base, "model.attributes=[colour]"], tmp_path / "none"))
    GlobalHydra.instance().clear()
    cfg = compose_train(
        [*base, "model.attributes=[colour]", "data.prepare.title_colour=colour"], tmp_path / "run"
    )
    record = train(cfg)
    assert 0.0 <= record["test/colour_acc"] <= 1.0
    catalogue = build_run_catalogue(cfg, tmp_path / "other")
    model = load_classifier(record["last_checkpoint"] or record["best_checkpoint"])
    assert model.attribute_classes["colour"] == sorted(set(catalogue["colour"]) - {""})
    assert len(model.attribute_classes["colour"]) >= 2
