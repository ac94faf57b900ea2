"""Small Lightning callbacks the training configs use (``conf/callbacks/``)."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from imgsearch.utils.tracking import is_wandb

log = logging.getLogger(__name__)


class ChannelsLast(L.Callback):
    """Put the model in channels-last memory format (``trainer=gpu``).

    Convolutions pick the memory format of their weights, so converting the module is enough:
    inputs follow at the first convolution. Pays off with mixed precision on tensor cores.
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        pl_module.to(memory_format=torch.channels_last)


class LogSamplePredictions(L.Callback):
    """Log the first test batch's images with their true and predicted class to W&B.

    Does nothing unless a ``WandbLogger`` is attached. Needs the module's ``class_names`` and
    ``data_config`` (to undo the normalisation for display).
    """

    def __init__(self, num_samples: int = 16) -> None:
        self.num_samples = int(num_samples)

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if batch_idx != 0 or batch is None or self.num_samples <= 0 or not trainer.is_global_zero:
            return
        wandb_loggers = [lg for lg in trainer.loggers if is_wandb(lg)]
        if not wandb_loggers:
            return
        try:
            images, targets = batch[0][: self.num_samples], batch[1][: self.num_samples]
            with torch.no_grad():
                preds = pl_module(images).argmax(dim=1)
            cfg = getattr(pl_module, "data_config", {}) or {}
            mean = torch.tensor(cfg.get("mean", (0.0, 0.0, 0.0)), device=images.device).view(1, -1, 1, 1)
            std = torch.tensor(cfg.get("std", (1.0, 1.0, 1.0)), device=images.device).view(1, -1, 1, 1)
            shown = (images.float() * std + mean).clamp(0, 1).cpu()
            names = list(getattr(pl_module, "class_names", None) or [])

            def name(i: int) -> str:
                return names[i] if 0 <= i < len(names) else str(i)

            captions = [
                f"true: {name(int(t))} / pred: {name(int(p))}" for t, p in zip(targets, preds, strict=True)
            ]
            for lg in wandb_loggers:
                lg.log_image(key="test/samples", images=list(shown), caption=captions)
        except Exception as exc:  # a display nicety must never fail the test stage
            log.warning("could not log sample predictions to W&B: %s", exc)
