"""Running a command's task: known log noise quietened first, and the project's own input errors (a bad
config value, an unreadable checkpoint) ended as the one line they carry (cause, file, fix), not a
traceback. lightning-hydra-template's ``task_wrapper`` idea, for the three Hydra commands."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from omegaconf import DictConfig

from imgsearch.utils.quiet import quiet_known_noise

T = TypeVar("T")


def run_task(task: Callable[[DictConfig], T], cfg: DictConfig) -> T:
    from imgsearch.cli.inputs import InputError
    from imgsearch.models.checkpoint import CheckpointError
    from imgsearch.utils.validate import ConfigError

    quiet_known_noise()
    try:
        return task(cfg)
    except (ConfigError, CheckpointError, InputError) as exc:
        raise SystemExit(str(exc)) from None  # the message names the key or file, the cause and the fix
