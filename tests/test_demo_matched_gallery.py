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
