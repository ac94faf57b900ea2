"""What a command starts from: the checkpoint, the catalogue table and the run directory, resolved once.

``checkpoint`` is the one key name every command uses (``ckpt_path`` stays an alias in ``imgsearch-train``,
``--checkpoint`` is the search command's flag). It accepts:

- a checkpoint file;
- ``best`` or ``last``: that checkpoint of the training run ``run`` (a run directory), or of the newest
  training run under ``outputs/train/runs`` when ``run`` is not given;
- a training run directory: its best checkpoint.

A run's best checkpoint is the one its ``metrics.json`` names (``best_checkpoint``); ``last`` is
``checkpoints/last.ckpt``. Relative paths mean what they mean in the caller's working directory. Everything
here fails before the heavy imports, so a typo costs no model loading.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.utils import to_absolute_path
from omegaconf import DictConfig

from imgsearch.utils.summary import METRICS_FILE

log = logging.getLogger(__name__)

CHOICES = ("best", "last")
CATALOGUE_FILE = "catalogue.csv"


class InputError(ValueError):
    """A command's input (checkpoint, run, catalogue) cannot be resolved; the message says why and how."""


def run_dir_of(checkpoint: str | Path) -> Path:
    """The training run directory of a checkpoint (``<run>/checkpoints/x.ckpt`` -> ``<run>``)."""
    path = Path(checkpoint).resolve()
    return path.parent.parent if path.parent.name == "checkpoints" else path.parent


def newest_run(runs_root: str | Path) -> Path:
    """The most recently finished training run under ``runs_root`` (the one whose metrics.json is newest)."""
    root = Path(runs_root)
    finished = sorted(root.glob(f"*/{METRICS_FILE}"), key=lambda p: p.stat().st_mtime)
    if not finished:
        raise InputError(
            f"no finished training run under {root} (no */{METRICS_FILE}); "
            "pass run=<run dir> or checkpoint=<file.ckpt>"
        )
    return finished[-1].parent


def checkpoint_of_run(run_dir: str | Path, which: str = "best") -> Path:
    """``best`` (from the run's metrics.json) or ``last`` checkpoint of a training run directory."""
    run = Path(run_dir)
    if which not in CHOICES:
        raise InputError(f"checkpoint choice must be one of {CHOICES}, got {which!r}")
    last = run / "checkpoints" / "last.ckpt"
    if which == "best":
        metrics = run / METRICS_FILE
        best: Any = None
        if metrics.is_file():
            try:
                best = json.loads(metrics.read_text()).get("best_checkpoint")
            except (OSError, ValueError) as exc:
                raise InputError(f"cannot read {metrics}: {exc}") from exc
        if best:
            path = Path(best)
            path = path if path.is_absolute() else run / path
            # a moved run directory: the recorded absolute path is stale, the file is still beside it
            if not path.is_file() and (run / "checkpoints" / path.name).is_file():
                path = run / "checkpoints" / path.name
            if path.is_file():
                return path
        if last.is_file():
            log.warning("run %s records no usable best checkpoint; using %s", run, last)
            return last
        raise InputError(f"run {run} has no best checkpoint in {METRICS_FILE} and no checkpoints/last.ckpt")
    if not last.is_file():
        raise InputError(f"run {run} has no checkpoints/last.ckpt")
    return last


def resolve_checkpoint(value: Any, run: Any = None, *, runs_root: str | Path | None = None) -> Path | None:
    """The checkpoint file a ``checkpoint=`` value (and optional ``run=``) names; ``None`` for none."""
    if value is None or str(value).strip() in ("", "null", "None"):
        return None
    text = str(value)
    if text in CHOICES:
        if run:
            run_dir = Path(to_absolute_path(str(run)))
            if not run_dir.is_dir():
                raise InputError(f"run directory not found: {run_dir}")
        else:
            if runs_root is None:
                raise InputError(f"checkpoint={text} needs run=<training run directory>")
            run_dir = newest_run(runs_root)
            log.info("checkpoint=%s: newest training run is %s", text, run_dir)
        return checkpoint_of_run(run_dir, text)
    path = Path(to_absolute_path(text))
    if path.is_dir():
        return checkpoint_of_run(path, "best")
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    return path


def default_runs_root(cfg: DictConfig) -> Path | None:
    """Where ``checkpoint=best|last`` looks for training runs: ``<paths.log_dir>/train/runs``."""
    try:
        return Path(str(cfg.paths.log_dir)) / "train" / "runs"
    except Exception:  # configs without a paths node (tests, hand-built configs)
        return None


def resolve_inputs(cfg: DictConfig) -> tuple[Path | None, Path, Path]:
    """``(checkpoint, catalogue, run_dir)`` of an index / eval config."""
    ckpt = resolve_checkpoint(cfg.get("checkpoint"), cfg.get("run"), runs_root=default_runs_root(cfg))
    if cfg.get("catalogue"):
        catalogue = Path(to_absolute_path(str(cfg.catalogue)))
    elif ckpt is not None:
        catalogue = run_dir_of(ckpt) / CATALOGUE_FILE
    else:
        raise InputError("without a checkpoint, say which catalogue to use: catalogue=path/to/catalogue.csv")
    if not catalogue.is_file():
        raise FileNotFoundError(f"catalogue not found: {catalogue}")
    run_dir = run_dir_of(ckpt) if ckpt is not None else catalogue.parent
    return ckpt, catalogue, run_dir


def resume_checkpoint(cfg: DictConfig) -> Path | None:
    """The checkpoint ``imgsearch-train`` resumes from: ``checkpoint=`` or its alias ``ckpt_path=``."""
    new, old = cfg.get("checkpoint"), cfg.get("ckpt_path")
    if new and old and str(new) != str(old):
        raise InputError(f"checkpoint={new} and its alias ckpt_path={old} disagree; give one of them")
    return resolve_checkpoint(new or old, cfg.get("run"), runs_root=default_runs_root(cfg))


def output_dir(cfg: DictConfig, default: Path) -> Path:
    """``output_dir`` from the config (relative to the caller's cwd) or ``default``."""
    return Path(to_absolute_path(str(cfg.output_dir))) if cfg.get("output_dir") else default


def embed_kwargs(cfg: DictConfig) -> dict[str, Any]:
    """The ``embed`` group as keyword arguments of :func:`imgsearch.retrieval.embed.embed_catalogue`
    (its ``trainer`` node is the prediction Trainer's arguments)."""
    from omegaconf import OmegaConf

    node: dict[str, Any] = OmegaConf.to_container(cfg.embed, resolve=True)  # type: ignore[assignment]
    node["trainer_kwargs"] = node.pop("trainer", None) or {}
    return node
