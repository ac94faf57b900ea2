"""The colour probe's fitting rules and its file (#15, models/colour_probe.py): it learns from labelled rows
only and counts the labels its head does not know, needs enough of them, and its file round-trips, refuses
what is not a probe (random bytes, another format, a pickle with code) and a model with other classes."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from imgsearch.models.colour_probe import (
    MIN_TRAIN_ROWS,
    ColourProbeError,
    FitSettings,
    fit_colour_probe,
    load_colour_probe,
    save_colour_probe,
)
from imgsearch.retrieval import lab_colour

CLASSES = ["Blue", "Red"]


def _data(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Blind head probabilities; Lab histograms whose first or last bin holds the colour."""
    rng = np.random.default_rng(seed)
    labels = ["Red" if i % 2 else "Blue" for i in range(n)]
    hists = rng.random((n, lab_colour.DIM)) * 0.1
    for i, label in enumerate(labels):
        hists[i, -1 if label == "Red" else 0] += 5.0
    return np.full((n, 2), 0.5), hists / hists.sum(1, keepdims=True), labels


def test_fitting_uses_labelled_rows_and_counts_unknown_labels() -> None:
    head, hists, labels = _data(40)
    labels[:4] = ["", None, "Mauve", "Mauve"]
    probe, report = fit_colour_probe("baseColour", CLASSES, head, hists, labels, FitSettings(steps=100))
    assert report.rows == 36 and report.unknown_labels == 2 and report.unknown_examples == ["Mauve"]
    test_head, test_hists, truth = _data(20, seed=1)
    predicted = np.array(CLASSES)[probe.predict(test_head, test_hists).argmax(1)]
    assert (predicted == np.array(truth)).all()


def test_too_few_labelled_rows_is_a_clear_error() -> None:
    head, hists, labels = _data(MIN_TRAIN_ROWS + 5)
    labels[:6] = [""] * 6
    with pytest.raises(
        ColourProbeError, match=f"only {MIN_TRAIN_ROWS - 1} photos.*at least {MIN_TRAIN_ROWS}"
    ):
        fit_colour_probe("baseColour", CLASSES, head, hists, labels)


def test_the_file_round_trips_and_refuses_what_is_not_a_probe(tmp_path: Path) -> None:
    head, hists, labels = _data(30)
    probe, _ = fit_colour_probe("baseColour", CLASSES, head, hists, labels, FitSettings(steps=20))
    path = save_colour_probe(probe, tmp_path / "probe.pt")
    again = load_colour_probe(path)
    assert again.classes == CLASSES and again.info == probe.info
    assert np.allclose(again.predict(head, hists), probe.predict(head, hists))
    with pytest.raises(FileNotFoundError):
        load_colour_probe(tmp_path / "none.pt")
    (tmp_path / "junk.pt").write_bytes(b"\x89PNG junk")
    with pytest.raises(ColourProbeError, match="not a readable colour probe"):
        load_colour_probe(tmp_path / "junk.pt")
    torch.save({"format": "something/else"}, tmp_path / "other.pt")
    with pytest.raises(ColourProbeError, match="not an imgsearch colour probe"):
        load_colour_probe(tmp_path / "other.pt")
    with open(tmp_path / "code.pt", "wb") as fh:  # unpickling this would call print: weights_only refuses
        pickle.dump({"format": print}, fh)
    with pytest.raises(ColourProbeError, match="not a readable colour probe"):
        load_colour_probe(tmp_path / "code.pt")
    record = torch.load(path, weights_only=True)
    record["classes"] = ["Blue", "Red", "Green"]  # weights of 2 classes under a record of 3
    torch.save(record, tmp_path / "mismatch.pt")
    with pytest.raises(ColourProbeError, match="do not fit its record"):
        load_colour_probe(tmp_path / "mismatch.pt")


def test_a_model_with_other_heads_or_classes_is_refused() -> None:
    head, hists, labels = _data(30)
    probe, _ = fit_colour_probe("baseColour", CLASSES, head, hists, labels, FitSettings(steps=5))
    probe.check_model({"baseColour": CLASSES, "gender": ["Men", "Women"]})  # fits
    with pytest.raises(ColourProbeError, match="does not have"):
        probe.check_model({"gender": ["Men", "Women"]})
    with pytest.raises(ColourProbeError, match="fit the probe again"):
        probe.check_model({"baseColour": ["Red", "Blue"]})  # same names, other order: other outputs
    with pytest.raises(ColourProbeError, match="expects 2 head probabilities"):
        probe.predict(np.full((3, 3), 1 / 3), hists[:3])
