"""Build Lightning callbacks and loggers from their Hydra config groups (as lightning-hydra-template does)."""

from __future__ import annotations

import logging
from typing import Any

import hydra
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger
from omegaconf import DictConfig

log = logging.getLogger(__name__)


def instantiate_group(node: DictConfig | None, kind: str) -> list[Any]:
    """Instantiate every ``_target_`` entry of a callbacks/logger group (``null`` entries are off)."""
    if not node:
        return []
    if not isinstance(node, DictConfig):
        raise TypeError(
            f"{kind} config must be a mapping of name -> {{_target_: ...}}, got {type(node).__name__}"
        )
    objects = []
    for name, sub in node.items():
        if sub is None:
            continue
        if not isinstance(sub, DictConfig) or "_target_" not in sub:
            raise ValueError(f"{kind}.{name} has no _target_; every entry must name the class to build")
        log.info("instantiating %s.%s <%s>", kind, name, sub._target_)
        objects.append(hydra.utils.instantiate(sub))
    return objects


def instantiate_callbacks(cfg: DictConfig) -> list[Callback]:
    """The ``callbacks`` group of a command's config."""
    return instantiate_group(cfg.get("callbacks"), "callbacks")


def instantiate_loggers(cfg: DictConfig) -> list[Logger]:
    """The ``logger`` group of a command's config."""
    return instantiate_group(cfg.get("logger"), "logger")
