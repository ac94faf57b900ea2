"""With seed set, a run resumed from last.ckpt ends where the uninterrupted run ends."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgsearch.cli.train import train
from train_helpers import compose_train, tiny_overrides

pytestmark = pytest.mark.usefixtures("forget_hydra_config")

KEYS = ("val/acc", "val/loss", "train/loss", "test/acc")


def _final(record: dict) -> tuple[dict, dict]:
    weights = torch.load(record["last_checkpoint"], map_location="cpu", weights_only=True)["state_dict"]
    return {k: record[k] for k in KEYS if k in record}, weights


def _runs(demo_root: Path, tmp_path: Path, extra: list[str]) -> tuple[tuple[dict, dict], tuple[dict, dict]]:
    over = [*tiny_overrides(demo_root), "seed=7", "model.dropout=0.5", *extra]
    whole = train(compose_train([*over, "trainer.max_epochs=3"], tmp_path / "whole"))
    first = train(compose_train([*over, "trainer.max_epochs=1"], tmp_path / "first"))
    resumed = train(
        compose_train(
            [*over, "trainer.max_epochs=3", f"ckpt_path={first['last_checkpoint']}"], tmp_path / "res"
        )
    )
    assert resumed["global_step"] == whole["global_step"]
    return _final(whole), _final(resumed)


def test_resumed_run_ends_with_the_uninterrupted_metrics_and_weights(demo_root, tmp_path):
    (whole_metrics, whole_weights), (res_metrics, res_weights) = _runs(demo_root, tmp_path, [])
    assert res_metrics == pytest.approx(whole_metrics)
    for name, tensor in whole_weights.items():
        assert torch.equal(tensor, res_weights[name]), name


def test_without_the_rng_callback_the_resumed_run_drifts(demo_root, tmp_path):
    """The control: the test above can fail, since without the saved RNG state the weights differ."""
    (_, whole_weights), (_, res_weights) = _runs(demo_root, tmp_path, ["~callbacks.rng_state"])
    assert any(not torch.equal(t, res_weights[n]) for n, t in whole_weights.items())
