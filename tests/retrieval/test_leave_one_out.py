"""Leave-one-out product retrieval (the multi-view protocol) and the Luma data config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imgsearch.models.export import CACHE_ENV
from imgsearch.retrieval.leave_one_out import leave_one_out_scores


def test_each_photo_finds_the_other_views_not_itself() -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 16))
    keys = np.repeat([f"p{i}" for i in range(5)], 3)
    close = centres[np.repeat(np.arange(5), 3)] + 0.01 * rng.normal(size=(15, 16))
    perfect = leave_one_out_scores(close, keys)
    assert perfect["recall@1"] == pytest.approx(1.0) and perfect["MAP@R"] == pytest.approx(1.0)
    assert perfect["queries"] == 15  # a query never counts itself as its own match, or this would be trivial
    shuffled = leave_one_out_scores(close, rng.permutation(keys))
    assert shuffled["MAP@R"] < 0.6


def test_a_product_with_one_photo_is_counted_not_scored() -> None:
    vectors = np.eye(3, dtype=np.float32)
    result = leave_one_out_scores(vectors, ["a", "a", "b"])
    assert result["queries"] == 2 and result["queries_without_relevant"] == 1


LUMA = Path(__file__).resolve().parents[2].parent / "shared" / "realdata" / "luma-multiview"


@pytest.mark.skipif(
    not (LUMA / "products.csv").is_file(), reason="../shared/realdata/luma-multiview is absent"
)
def test_luma_config_splits_by_product(tmp_path: Path) -> None:
    from hydra.core.global_hydra import GlobalHydra

    from imgsearch.cli.train import build_run_catalogue
    from train_helpers import compose_train

    GlobalHydra.instance().clear()
    catalogue = build_run_catalogue(
        compose_train(["data=luma", "data.prepare.verify=false"], tmp_path), tmp_path
    )
    assert catalogue["product_id"].nunique() == 149
    splits_per_product = catalogue.groupby("product_id")["split"].nunique()
    assert (splits_per_product == 1).all()  # every view of a product in one split: held-out means unseen
    test_share = (catalogue.groupby("product_id")["split"].first() == "test").mean()
    assert 0.25 < test_share < 0.35


def _demo_catalogue(demo_root: Path, tmp_path: Path, broken: bool = False) -> Path:
    from imgsearch.data.demo import demo_catalogue
    from imgsearch.data.schema import write_catalogue

    table = demo_catalogue(demo_root).head(24).copy()
    table["split"] = "test"
    if broken:  # one photo that cannot be read: left out and counted, the rest still scored
        bad = tmp_path / "broken.jpg"
        bad.write_bytes(b"not a jpeg")
        table.loc[0, "image_path"] = str(bad)
    return write_catalogue(table, tmp_path / "catalogue.csv")


def test_backbone_baseline_scores_the_same_through_either_runtime(
    demo_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The protocol embeds through embed_catalogue, so ``--runtime`` chooses ONNX Runtime or PyTorch like the
    index build; the two give the same vectors, hence the same scores. An unreadable photo is counted."""
    from imgsearch.retrieval.leave_one_out import main

    catalogue = _demo_catalogue(demo_root, tmp_path, broken=True)
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "onnx"))  # this test's own export cache
    common = ["--catalogue", str(catalogue), "--backbone", "efficientnet_lite0", "--input-size", "32"]
    torch_run = main([*common, "--runtime", "torch"])
    onnx_run = main([*common, "--runtime", "onnx"])
    assert torch_run["skipped_photos"] == onnx_run["skipped_photos"] == 1
    assert torch_run["queries"] + torch_run["queries_without_relevant"] == 23
    for key in ("recall@1", "MAP@R"):
        assert onnx_run[key] == pytest.approx(torch_run[key], abs=1e-6)
    # the untrained features find the other view of a product more often than chance (1 in 22)
    assert torch_run["recall@1"] >= 2 / 22
    # and ONNX Runtime did run: the pretrained backbone was exported into this test's cache
    assert list((tmp_path / "onnx").rglob("*.onnx"))


def test_input_size_with_a_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint embeds at the size it was trained at; another size is an error, not a silent no-op."""
    from imgsearch.retrieval.leave_one_out import main

    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text("image_path,product_id,split\n")
    with pytest.raises(SystemExit):
        main(["--catalogue", str(catalogue), "--checkpoint", "x.ckpt", "--input-size", "160"])
    assert "--input-size applies to --backbone" in capsys.readouterr().err
