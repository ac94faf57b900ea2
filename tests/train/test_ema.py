"""Weight EMA (``callbacks=[default,ema]``): the saved checkpoint holds the exponential moving average of the
weights seen after each optimizer step (recomputed here from a record of those weights), not the raw ones."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra.core.global_hydra import GlobalHydra
from tests.train_helpers import compose_train, tiny_overrides

from imgsearch.cli.train import train
from imgsearch.models.checkpoint import load_classifier

#: weights after each optimizer step, appended by WeightRecorder (Hydra builds the callback, so a module list)
RECORDED: list[dict[str, torch.Tensor]] = []


class WeightRecorder(L.Callback):
    """Keeps a copy of every trainable weight after each optimizer step."""

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        RECORDED.append({n: p.detach().clone() for n, p in pl_module.named_parameters() if p.requires_grad})


@pytest.fixture(autouse=True)
def _clear_hydra() -> None:
    GlobalHydra.instance().clear()
    RECORDED.clear()


def test_saved_weights_are_the_ema(demo_root: Path, tmp_path: Path) -> None:
    decay = 0.6
    over = [
        *tiny_overrides(demo_root, model="efficientnet_lite0"),
        *("model.pretrained=false", "model.input_size=32", "test=false", "trainer.max_epochs=2"),
        *("model.lr=0.05", "callbacks=[default,ema]", f"callbacks.ema.decay={decay}"),
        f"+callbacks.recorder._target_={__name__}.WeightRecorder",
    ]
    record = train(compose_train(over, tmp_path / "run"))
    assert len(RECORDED) == record["global_step"] == 4
    ema = dict(RECORDED[0])  # the first update copies the weights, later ones move towards them
    for weights in RECORDED[1:]:
        ema = {n: decay * ema[n] + (1 - decay) * w for n, w in weights.items()}
    ckpt = torch.load(record["last_checkpoint"], map_location="cpu", weights_only=True)
    raw = ckpt["current_model_state"]
    moved = 0
    for name, want in ema.items():
        torch.testing.assert_close(ckpt["state_dict"][name], want, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(raw[name], RECORDED[-1][name])  # the raw weights, kept for resuming
        moved += int(not torch.allclose(want, RECORDED[-1][name]))
    assert moved > 0  # the average really differs from the last weights
    # what index/search load is the average
    model = load_classifier(record["last_checkpoint"])
    name = next(iter(ema))
    torch.testing.assert_close(dict(model.named_parameters())[name].detach(), ema[name], rtol=1e-5, atol=1e-6)


def test_the_test_stage_gets_the_average_of_a_weight_averaged_checkpoint(tmp_path: Path) -> None:
    """Lightning would restore the raw weights (``current_model_state``) when ``trainer.test`` loads an EMA
    checkpoint; the test stage must run on the state_dict (the average) that index, eval and serve read."""
    from imgsearch.cli.train import load_averaged_weights

    model = torch.nn.Linear(3, 2)
    average = {k: torch.full_like(v, 1.0) for k, v in model.state_dict().items()}
    raw = {k: torch.full_like(v, -1.0) for k, v in model.state_dict().items()}
    ema_ckpt = tmp_path / "ema.ckpt"
    torch.save({"state_dict": average, "current_model_state": raw, "averaging_state": {}}, ema_ckpt)
    assert load_averaged_weights(model, ema_ckpt) is None  # trainer.test then tests the model as it is
    assert all(torch.equal(v, average[k]) for k, v in model.state_dict().items())

    plain = tmp_path / "plain.ckpt"
    torch.save({"state_dict": raw}, plain)
    assert load_averaged_weights(model, plain) == plain  # left to Lightning, which loads it as usual
    assert all(torch.equal(v, average[k]) for k, v in model.state_dict().items())
    assert load_averaged_weights(model, None) is None
