"""Leave-one-out product retrieval (the multi-view protocol) and the Luma data config."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

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


def test_backbone_baseline_embeds_at_the_requested_input_size() -> None:
    """``--input-size`` sets the untrained baseline's eval size; without it the weights' own size is used."""
    from imgsearch.retrieval.leave_one_out import _PooledFeatures

    assert _PooledFeatures("efficientnet_lite0").data_config["input_size"] == (3, 224, 224)
    assert _PooledFeatures("efficientnet_lite0", input_size=160).data_config["input_size"] == (3, 160, 160)


def test_input_size_with_a_checkpoint_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A checkpoint embeds at the size it was trained at; another size is an error, not a silent no-op."""
    from imgsearch.retrieval.leave_one_out import main

    catalogue = tmp_path / "catalogue.csv"
    catalogue.write_text("image_path,product_id,split\n")
    with pytest.raises(SystemExit):
        main(["--catalogue", str(catalogue), "--checkpoint", "x.ckpt", "--input-size", "160"])
    assert "--input-size applies to --backbone" in capsys.readouterr().err
