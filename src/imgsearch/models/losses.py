"""Metric-learning losses by name, all from pytorch-metric-learning (none written by hand here).

``build_metric_loss(name, embedding_size, num_classes, **kwargs)`` returns a :class:`MetricLoss`: an
``nn.Module`` mapping ``(embeddings, labels)`` to a scalar, with the miner the loss is usually paired with
(MultiSimilarity + its miner). Classification-style losses (ArcFace, SubCenterArcFace, CosFace) and
ProxyAnchor own parameters (class centres / proxies) that need their own learning rate: the classifier puts
:meth:`MetricLoss.parameters` into a separate optimiser group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from pytorch_metric_learning import losses, miners
from torch import nn

#: Losses that need the number of classes (they learn one centre/proxy per class).
_NEEDS_CLASSES = ("arcface", "subcenter_arcface", "cosface", "proxy_anchor")


def _arcface(size: int, classes: int, **kw: Any) -> tuple[nn.Module, nn.Module | None]:
    return losses.ArcFaceLoss(num_classes=classes, embedding_size=size, **kw), None


def _subcenter_arcface(size: int, classes: int, **kw: Any) -> tuple[nn.Module, nn.Module | None]:
    return losses.SubCenterArcFaceLoss(num_classes=classes, embedding_size=size, **kw), None


def _cosface(size: int, classes: int, **kw: Any) -> tuple[nn.Module, nn.Module | None]:
    return losses.CosFaceLoss(num_classes=classes, embedding_size=size, **kw), None


def _proxy_anchor(size: int, classes: int, **kw: Any) -> tuple[nn.Module, nn.Module | None]:
    return losses.ProxyAnchorLoss(num_classes=classes, embedding_size=size, **kw), None


def _multi_similarity(size: int, classes: int, **kw: Any) -> tuple[nn.Module, nn.Module | None]:
    # The miner keeps the informative pairs the loss was designed for (Wang et al. 2019).
    epsilon = float(kw.pop("miner_epsilon", 0.1))
    return losses.MultiSimilarityLoss(**kw), miners.MultiSimilarityMiner(epsilon=epsilon)


def _supcon(size: int, classes: int, **kw: Any) -> tuple[nn.Module, nn.Module | None]:
    return losses.SupConLoss(**kw), None


_BUILDERS: dict[str, Callable[..., tuple[nn.Module, nn.Module | None]]] = {
    "arcface": _arcface,
    "subcenter_arcface": _subcenter_arcface,
    "cosface": _cosface,
    "proxy_anchor": _proxy_anchor,
    "multi_similarity": _multi_similarity,
    "supcon": _supcon,
}

METRIC_LOSSES = tuple(_BUILDERS)


class MetricLoss(nn.Module):
    """A pytorch-metric-learning loss (and optional miner) behind one ``(embeddings, labels)`` call."""

    def __init__(self, name: str, loss: nn.Module, miner: nn.Module | None = None) -> None:
        super().__init__()
        self.name = name
        self.loss = loss
        self.miner = miner

    def forward(self, embeddings: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        # pml computes in the embeddings' dtype; under AMP the margins need float32 to stay stable.
        embeddings = embeddings.float()
        pairs = self.miner(embeddings, labels) if self.miner is not None else None
        return self.loss(embeddings, labels, pairs)


def build_metric_loss(
    name: str, embedding_size: int, num_classes: int | None = None, **kwargs: Any
) -> MetricLoss:
    """The metric loss ``name`` (one of :data:`METRIC_LOSSES`) for ``embedding_size``-d embeddings.

    ``num_classes``: how many distinct metric labels the training split has (products or categories);
    required by the losses that learn a centre/proxy per class. ``kwargs`` go to the pml loss constructor
    (e.g. ``margin``, ``scale``; ``miner_epsilon`` for multi_similarity's miner).
    """
    if name not in _BUILDERS:
        raise ValueError(f"metric loss {name!r} unknown; use one of {METRIC_LOSSES}")
    if name in _NEEDS_CLASSES and (num_classes is None or int(num_classes) < 2):
        raise ValueError(
            f"metric loss {name!r} learns one centre per label and needs metric_num_classes >= 2 "
            f"(got {num_classes}); imgsearch-train sets it from the training split"
        )
    loss, miner = _BUILDERS[name](int(embedding_size), int(num_classes or 0), **kwargs)
    return MetricLoss(name, loss, miner)
