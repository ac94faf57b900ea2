"""Check a composed config's values at start-up, so a typo is one line and not a traceback mid-fit.

Hydra composes any value from the command line: ``model.lr=abc`` only failed once the optimizer was
built (87 lines ending in ``TypeError``), ``data.loader.batch_size=0`` inside the DataLoader, and
``data.prepare.split=[0.5,0.5,0.5]`` was rescaled silently. :func:`validate_config` checks the keys
the entry points rely on, when present, and reports every problem at once in one line.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf


class ConfigError(ValueError):
    """One or more config values are unusable; the message names each key, its value and what it needs."""


def _number(value: Any) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    return None


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def positive_number(value: Any) -> str | None:
    v = _number(value)
    return None if v is not None and math.isfinite(v) and v > 0 else "a positive number, e.g. 1e-3"


def non_negative_number(value: Any) -> str | None:
    v = _number(value)
    return None if v is not None and math.isfinite(v) and v >= 0 else "a number >= 0"


def positive_int(value: Any) -> str | None:
    v = _int(value)
    return None if v is not None and v > 0 else "a positive integer"


def non_negative_int_or_null(value: Any) -> str | None:
    if value is None:
        return None
    v = _int(value)
    return None if v is not None and v >= 0 else "an integer >= 0, or null"


def epochs(value: Any) -> str | None:
    if value is None:
        return None
    v = _int(value)
    return None if v is not None and v >= -1 else "an integer >= 0, or -1 for no limit"


def split_fractions(value: Any) -> str | None:
    try:
        fr = [float(x) for x in value]
    except (TypeError, ValueError):
        return "three fractions [train, val, test], e.g. [0.7,0.2,0.1]"
    if len(fr) != 3 or any(not math.isfinite(x) or x < 0 for x in fr):
        return "three fractions >= 0 [train, val, test], e.g. [0.7,0.2,0.1]"
    if not math.isclose(sum(fr), 1.0, abs_tol=1e-6):
        return f"fractions summing to 1 (they sum to {sum(fr):.6g}), e.g. [0.7,0.2,0.1]"
    return None


Rule = tuple[str, Callable[[Any], str | None]]

#: The keys each entry point reads, and what their values must be (checked only where present).
TRAIN_RULES: tuple[Rule, ...] = (
    ("model.lr", positive_number),
    ("model.weight_decay", non_negative_number),
    ("model.momentum", non_negative_number),
    ("model.label_smoothing", non_negative_number),
    ("model.warmup_epochs", non_negative_number),
    ("data.loader.batch_size", positive_int),
    ("data.loader.num_workers", non_negative_int_or_null),
    ("data.prepare.split", split_fractions),
    ("trainer.max_epochs", epochs),
    ("trainer.min_epochs", epochs),
    ("seed", non_negative_int_or_null),
)
EMBED_RULES: tuple[Rule, ...] = (
    ("embed.batch_size", positive_int),
    ("embed.num_workers", non_negative_int_or_null),
    ("embed.pixel_size", positive_int),
    ("search_batch_size", positive_int),
)

_MISSING = object()


def validate_config(cfg: DictConfig, rules: tuple[Rule, ...]) -> None:
    """Raise :class:`ConfigError` listing every key of ``rules`` whose value breaks its rule."""
    problems = []
    for key, rule in rules:
        try:
            value = OmegaConf.select(cfg, key, default=_MISSING, throw_on_missing=False)
        except Exception as exc:  # an interpolation that cannot resolve
            problems.append(f"{key}: {exc}")
            continue
        if value is _MISSING:
            continue
        if OmegaConf.is_config(value):
            value = OmegaConf.to_container(value, resolve=True)
        need = rule(value)
        if need is not None:
            problems.append(f"{key}={value!r} must be {need}")
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))
