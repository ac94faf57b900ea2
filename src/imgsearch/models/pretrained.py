"""A backbone's pretrained features alone, for indexing a shop's catalogue without training anything.

``PretrainedEmbedder`` answers the part of :class:`~imgsearch.models.classifier.ImageClassifier`'s interface
that embedding, indexing and search use (``predict_step``, ``embed``, ``embedding_dim``, ``data_config``,
``hparams["backbone"]``, ``class_names``), with no classifier: ``probs`` is absent, so an index built this way
predicts no category (the search result's category is ``None``). Its description is recorded in the index
manifest (``model.pretrained``) and rebuilt from there by :func:`from_manifest`, since there is no checkpoint.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

from imgsearch.data.transforms import check_data_config
from imgsearch.models.backbones import create_backbone
from imgsearch.models.weights import EFFICIENTNET_LITE_VARIANTS, efficientnet_lite_weights_file

KINDS = ("features",)


class PretrainedEmbedder(L.LightningModule):
    """Pooled pre-logit features of a pretrained backbone (timm / packaged weights / a local state dict)."""

    def __init__(
        self,
        backbone: str,
        *,
        pretrained: bool = True,
        pretrained_path: str | None = None,
        input_size: int | None = None,
        backbone_kwargs: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.backbone = create_backbone(
            backbone,
            pretrained=pretrained,
            pretrained_path=pretrained_path,
            input_size=input_size,
            **dict(backbone_kwargs or {}),
        )
        check_data_config(self.backbone.data_config)
        self._pretrained = bool(pretrained)
        self.save_hyperparameters(
            {"backbone": str(backbone), "input_size": input_size, "pretrained_path": pretrained_path}
        )
        # not in describe(): the manifest's rebuild passes no kwargs; kept for the ONNX export's cache key
        self.hparams["backbone_kwargs"] = dict(backbone_kwargs or {})
        self.eval()

    @property
    def class_names(self) -> list[str]:
        return []

    @property
    def data_config(self) -> dict[str, Any]:
        return dict(self.backbone.data_config)

    def describe(self) -> dict[str, Any]:
        """What the manifest records to rebuild this model (no weights: they come from the same source)."""
        return {k: self.hparams[k] for k in ("backbone", "input_size", "pretrained_path")}

    def weights_file(self) -> Path | None:
        """The file the weights came from (``pretrained_path``, or the packaged EfficientNet-Lite weights),
        for the ONNX export's cache key; ``None`` when unknown (timm's hub cache, random weights)."""
        if self.hparams.get("pretrained_path"):
            return Path(str(self.hparams["pretrained_path"]))
        variant = str(self.hparams["backbone"]).removeprefix("efficientnet_lite")
        if self._pretrained and variant.isdigit() and int(variant) in EFFICIENTNET_LITE_VARIANTS:
            return efficientnet_lite_weights_file(int(variant))
        return None

    def embed(self, x: torch.Tensor, kind: str = "features") -> torch.Tensor:
        if kind not in KINDS:
            raise ValueError(
                f"a pretrained-only model gives {KINDS} embeddings, not {kind!r} (no classifier)"
            )
        return self.backbone(x)

    def embedding_dim(self, kind: str = "features") -> int:
        if kind not in KINDS:
            raise ValueError(
                f"a pretrained-only model gives {KINDS} embeddings, not {kind!r} (no classifier)"
            )
        return int(self.backbone.num_features)

    def predict_step(self, batch: Any, batch_idx: int = 0) -> dict[str, torch.Tensor | None]:
        images, rows = (batch, None) if isinstance(batch, torch.Tensor) else (batch[0], batch[-1])
        return {"features": self.backbone(images), "probs": None, "row": rows}


def from_manifest(description: Mapping[str, Any]) -> PretrainedEmbedder:
    """Rebuild the model an index was built with from its manifest's ``model.pretrained`` entry."""
    if not description.get("backbone"):
        raise ValueError("the manifest's pretrained model names no backbone")
    return PretrainedEmbedder(
        str(description["backbone"]),
        input_size=description.get("input_size"),
        pretrained_path=description.get("pretrained_path"),
    )
