"""Rebuild a trained classifier from its checkpoint alone, safely.

The checkpoint is the contract between training and everything after it: ``hyper_parameters`` hold the
backbone name, model kwargs, class names and ``data_config``. Rebuilding uses ``pretrained=False`` and
``pretrained_path=None`` (the trained weights replace them anyway), so nothing is downloaded and no file from
the training machine is needed. Checkpoints may come from elsewhere: only ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from imgsearch.models.classifier import ImageClassifier

log = logging.getLogger(__name__)


class CheckpointError(RuntimeError):
    """A file is not a usable imgsearch classifier checkpoint (the message names the file and why)."""


def read_checkpoint(path: str | Path, map_location: Any = "cpu") -> dict[str, Any]:
    """The checkpoint dict at ``path`` (``weights_only=True``), checked for weights and hyperparameters."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle with disallowed globals, random bytes...
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no 'state_dict'")
    hparams = ckpt.get("hyper_parameters")
    if not isinstance(hparams, Mapping) or not hparams:
        raise CheckpointError(
            f"{path} has no 'hyper_parameters'; it was not saved from an ImageClassifier, so the model "
            "cannot be rebuilt from it"
        )
    lacking = [k for k in ("backbone", "num_classes") if k not in hparams]
    if lacking:
        raise CheckpointError(f"{path}: hyper_parameters lack {lacking}")
    return dict(ckpt)


def read_resume_checkpoint(path: str | Path) -> dict[str, Any]:
    """Check a checkpoint to resume training from, the same way as any other: ``weights_only=True``.

    Training then resumes with ``trainer.fit(..., weights_only=True)``: passed explicitly, so that
    ``TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD=1`` in the environment cannot turn a malicious ``last.ckpt``
    into code run at resume. Raises :class:`CheckpointError` with one line (file, cause, fix).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"cannot resume: checkpoint {path} not found; check ckpt_path=")
    if path.stat().st_size == 0:
        raise CheckpointError(
            f"cannot resume from {path}: the file is empty (a run killed while saving?); "
            "resume from another checkpoint of the run or drop ckpt_path="
        )
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        cause = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(
            f"cannot resume from {path}: not a readable checkpoint, or one holding objects other "
            f"than weights ({type(exc).__name__}: {cause[:200]}); "
            "resume from another checkpoint, or drop ckpt_path="
        ) from exc
    if not isinstance(ckpt, Mapping) or not isinstance(ckpt.get("state_dict"), Mapping):
        raise CheckpointError(f"cannot resume from {path}: not a Lightning checkpoint (no 'state_dict')")
    return dict(ckpt)


def load_classifier(path: str | Path, map_location: Any = "cpu") -> ImageClassifier:
    """The :class:`ImageClassifier` stored at ``path``, in eval mode.

    Raises ``FileNotFoundError`` for a missing file and :class:`CheckpointError` when the file is not a
    checkpoint, lacks hyperparameters, or its weights do not fit the model they describe.
    """
    ckpt = read_checkpoint(path, map_location=map_location)
    hparams = dict(ckpt["hyper_parameters"])
    accepted = set(inspect.signature(ImageClassifier.__init__).parameters) - {"self"}
    ignored = sorted(set(hparams) - accepted)
    if ignored:
        log.warning("%s: ignoring unknown hyper_parameters %s", path, ignored)
    kwargs = {k: v for k, v in hparams.items() if k in accepted}
    kwargs.update(pretrained=False, pretrained_path=None)
    try:
        model = ImageClassifier(**kwargs)
    except Exception as exc:
        raise CheckpointError(f"{path}: cannot rebuild the model from its hyper_parameters: {exc}") from exc
    try:
        model.load_state_dict(ckpt["state_dict"], strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{path}: weights do not fit backbone {hparams['backbone']!r}: {exc}") from exc
    if isinstance(map_location, str | torch.device):
        model.to(map_location)
    return model.eval()


def checkpoint_sha256(path: str | Path, chunk_size: int = 1 << 20) -> str:
    """Hex SHA-256 of the checkpoint file: ties an index or report to the exact weights that made it."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
