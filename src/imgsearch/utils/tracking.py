"""Experiment-tracking helpers: W&B offline-by-default, hyperparameter logging, clean shutdown.

Importing this module registers the ``${imgsearch.wandb_offline:}`` resolver used by
``conf/logger/wandb.yaml``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from lightning.pytorch.loggers import Logger, WandbLogger
from omegaconf import DictConfig, ListConfig, OmegaConf

log = logging.getLogger(__name__)


def wandb_offline() -> bool:
    """Whether W&B should run offline: yes, unless credentials or ``WANDB_MODE`` say otherwise.

    ``WANDB_MODE`` set (online / offline / disabled): return False and let wandb read it. Else
    ``WANDB_API_KEY`` set: online. Else offline, so a run without an account still works and can
    be uploaded later with ``wandb sync``.
    """
    if os.environ.get("WANDB_MODE"):
        return False
    return not os.environ.get("WANDB_API_KEY")


if not OmegaConf.has_resolver("imgsearch.wandb_offline"):
    OmegaConf.register_new_resolver("imgsearch.wandb_offline", wandb_offline)


def config_to_hparams(cfg: DictConfig) -> dict[str, Any]:
    """The resolved run config as plain containers, without Hydra's own node."""
    out: dict[str, Any] = {}
    for key in cfg:
        if key == "hydra":  # Hydra's own node has sweep-only values that a plain run cannot resolve
            continue
        value = cfg[key]
        if isinstance(value, DictConfig | ListConfig):
            value = OmegaConf.to_container(value, resolve=True, throw_on_missing=False)
        out[str(key)] = value
    return out


def log_hyperparameters(loggers: Iterable[Logger], cfg: DictConfig, extra: Mapping[str, Any]) -> None:
    """Send the whole run config (data, model, trainer, ...) plus ``extra`` facts to every logger.

    The LightningModule logs its own hyperparameters too; this adds what it cannot know: the data
    source and preparation, the loader, the trainer, the seed, the catalogue's size and hash.
    """
    hparams = config_to_hparams(cfg)
    hparams["run"] = dict(extra)
    for lg in loggers:
        lg.log_hyperparams(hparams)


def is_wandb(logger: Any) -> bool:
    """Whether ``logger`` writes to W&B (the one place that asks)."""
    return isinstance(logger, WandbLogger)


def finish_wandb(loggers: Iterable[Logger]) -> None:
    """Close the W&B run, if one is open, so the next job of a multirun starts its own."""
    uses_wandb = any(is_wandb(lg) for lg in loggers)
    if not uses_wandb and "wandb" not in sys.modules:
        return
    try:
        import wandb

        if wandb.run is not None:
            wandb.finish()
    except Exception as exc:  # shutting down must never hide the run's real outcome
        log.warning("wandb.finish() failed: %s", exc)


@contextlib.contextmanager
def tracking(loggers: Iterable[Logger]) -> Iterator[list[Logger]]:
    """A command's tracked section (lightning-hydra-template's ``task_wrapper`` idea): whatever happens
    inside, the W&B run is closed on the way out, so a failed job of a sweep does not leak into the next."""
    loggers = list(loggers)
    try:
        yield loggers
    finally:
        finish_wandb(loggers)
