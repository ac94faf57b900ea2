"""One LightningModule for every study model: backbone by name, a linear classification layer on top.

Batches are ``(images, targets, row_index)`` as yielded by ``CatalogueDataModule``. The hyperparameters
saved into the checkpoint are plain Python values only (no OmegaConf containers, no tuples), so a checkpoint
loads with ``torch.load(weights_only=True)`` and carries its preprocessing (``data_config``) and class names.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, ListConfig, OmegaConf
from timm.optim import create_optimizer_v2, param_groups_weight_decay
from torch import nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassF1Score

from imgsearch.data.attributes import UNKNOWN_ATTRIBUTE
from imgsearch.data.transforms import check_data_config
from imgsearch.models.backbones import create_backbone
from imgsearch.models.losses import MetricLoss, build_metric_loss
from imgsearch.models.plots import confusion_matrix_figure, save_figure
from imgsearch.models.val_retrieval import leave_one_out_accuracy
from imgsearch.utils.tracking import is_wandb

log = logging.getLogger(__name__)

EMBEDDING_KINDS = ("features", "probs")
LOSSES = ("cross_entropy", "hinge")
SCHEDULERS = ("cosine", "none")
#: ``predict_step`` keys of the attribute heads' probabilities: ``attr:<column>``
ATTRIBUTE_KIND_PREFIX = "attr:"


def check_attributes(
    attributes: Sequence[str] | None, attribute_classes: Mapping[str, Sequence[str]] | None
) -> dict[str, list[str]]:
    """The attribute heads to build, ``{name: class names}`` in ``attributes`` order; a clear error when a
    configured attribute has no classes (``imgsearch-train`` fills them in from the catalogue)."""
    names = [str(a) for a in to_plain(attributes or [], where="attributes")]
    classes = {str(k): [str(v) for v in vs] for k, vs in to_plain(attribute_classes or {}).items()}
    if not names:
        names = list(classes)
    missing = [n for n in names if len(classes.get(n, [])) < 2]
    if missing:
        raise ValueError(
            f"attribute(s) {missing} need attribute_classes (at least 2 class names each); imgsearch-train "
            "fills them in from the catalogue"
        )
    return {n: classes[n] for n in names}


def to_plain(value: Any, *, where: str = "value") -> Any:
    """``value`` as plain Python containers/scalars (what ``torch.load(weights_only=True)`` accepts).

    Hydra hands OmegaConf containers to ``__init__``; saved as they are they would make the checkpoint
    unloadable without trusting pickled classes.
    """
    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, Mapping):
        return {str(k): to_plain(v, where=f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v, where=f"{where}[{i}]") for i, v in enumerate(value)]
    if hasattr(value, "item") and getattr(value, "ndim", None) == 0:  # numpy / torch scalars
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{where}: {type(value).__name__} cannot be stored in a safe checkpoint")


def _stage_metrics(num_classes: int, prefix: str) -> MetricCollection:
    return MetricCollection(
        {
            "acc": MulticlassAccuracy(num_classes, top_k=1, average="micro"),
            "acc_top5": MulticlassAccuracy(num_classes, top_k=min(5, num_classes), average="micro"),
            "f1_macro": MulticlassF1Score(num_classes, average="macro"),
        },
        prefix=prefix,
    )


class ImageClassifier(L.LightningModule):
    """Backbone (``create_backbone``) + linear layer, with train/val/test metrics and embeddings.

    ``finetune``: ``all`` | ``head`` (only the classifier layers: AlexNet/VGG fc6/fc7/fc8, otherwise the
    final linear layer) | ``last_n`` (the last ``finetune_last_n`` blocks plus the head). ``loss``:
    ``cross_entropy`` or ``hinge`` (multi-class hinge; with ``backbone="svm"`` this is the linear SVM
    s = Wx + b, the L2 penalty on W being the optimiser's weight decay, which timm does not apply to biases).
    ``data_config`` is only passed when restoring from a checkpoint: the preprocessing the model was trained
    with.

    Retrieval: ``embedding_dim`` adds a neck (Linear to ``embedding_dim``, BatchNorm) on the pooled features;
    its L2-normalised output is the ``features`` vector. ``None`` (checkpoints from before the neck) keeps the
    pooled features. ``metric_loss`` (see :mod:`imgsearch.models.losses`) trains that vector with a
    pytorch-metric-learning loss on the batch's metric labels (products or categories, 4th batch element,
    else the class targets), added to ``ce_weight`` x cross-entropy at ``metric_weight``; its own parameters
    (centres/proxies) learn at ``loss_lr`` (default ``lr``). ``metric_num_classes``: distinct metric labels.

    Attributes: ``attributes`` names catalogue columns (``baseColour``, ``gender``...) the model predicts
    beside the category, each with its own softmax head on the pooled features; ``attribute_classes`` holds
    each one's class names (filled in by ``imgsearch-train`` from the catalogue). Their cross-entropies
    (rows with an unknown value left out) are summed and added at ``attribute_weight``; a prediction whose
    top probability is under ``min_confidence`` is reported as low-confidence (see
    :mod:`imgsearch.models.attributes`). ``attribute_detach`` (default): the heads read the pooled features
    without back-propagating into them, so the search vector is the category-only one; ``False`` shares them
    (better tags, a worse search vector: docs/results.md).

    ``val_retrieval``: also log ``val/map_at_r`` and ``val/recall_at_1``, the val photos querying each other
    by their ``features`` vectors, relevant = same metric label (4th batch element, else the category; see
    :mod:`imgsearch.models.val_retrieval`), so a checkpoint can be chosen by retrieval.
    """

    def __init__(
        self,
        backbone: str,
        num_classes: int,
        class_names: list[str] | None = None,
        pretrained: bool = False,
        pretrained_path: str | None = None,
        input_size: int | None = None,
        finetune: str = "all",
        finetune_last_n: int = 0,
        dropout: float = 0.0,
        optimizer: str = "adamw",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        momentum: float = 0.9,
        scheduler: str | None = "cosine",
        warmup_epochs: int = 0,
        loss: str = "cross_entropy",
        label_smoothing: float = 0.0,
        backbone_kwargs: dict | None = None,
        data_config: dict | None = None,
        embedding_dim: int | None = None,
        metric_loss: str | None = None,
        metric_loss_kwargs: dict | None = None,
        metric_weight: float = 1.0,
        ce_weight: float = 1.0,
        metric_num_classes: int | None = None,
        loss_lr: float | None = None,
        attributes: list[str] | None = None,
        attribute_classes: dict[str, list[str]] | None = None,
        attribute_weight: float = 1.0,
        min_confidence: float = 0.5,
        attribute_detach: bool = True,
        val_retrieval: bool = False,
    ) -> None:
        super().__init__()
        num_classes = int(num_classes)
        if num_classes < 2:
            raise ValueError(f"num_classes must be at least 2, got {num_classes}")
        class_names = [str(c) for c in to_plain(class_names)] if class_names is not None else None
        if class_names is None:
            class_names = [str(i) for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(f"{len(class_names)} class names for num_classes={num_classes}")
        if loss not in LOSSES:
            raise ValueError(f"loss {loss!r} unknown; use one of {LOSSES}")
        if (scheduler or "none") not in SCHEDULERS:
            raise ValueError(f"scheduler {scheduler!r} unknown; use one of {SCHEDULERS} or null")
        backbone_kwargs = to_plain(backbone_kwargs or {}, where="backbone_kwargs")
        metric_loss_kwargs = to_plain(metric_loss_kwargs or {}, where="metric_loss_kwargs")
        if embedding_dim is not None and int(embedding_dim) < 1:
            raise ValueError(f"embedding_dim must be positive or null, got {embedding_dim}")
        if metric_loss is None and float(ce_weight) <= 0:
            raise ValueError("ce_weight must be > 0 without a metric_loss: nothing would train")
        attribute_classes = check_attributes(attributes, attribute_classes)
        if not 0.0 <= float(min_confidence) <= 1.0:
            raise ValueError(f"min_confidence must be within [0, 1], got {min_confidence}")

        self.save_hyperparameters()
        # save_hyperparameters keeps the raw arguments; replace them by their plain forms (see to_plain).
        for key in list(self.hparams):
            self.hparams[key] = to_plain(self.hparams[key], where=key)
        self.hparams["class_names"] = class_names
        self.hparams["backbone_kwargs"] = backbone_kwargs
        self.hparams["metric_loss_kwargs"] = metric_loss_kwargs
        self.hparams["attributes"] = list(attribute_classes) or None
        self.hparams["attribute_classes"] = attribute_classes or None

        self.backbone = create_backbone(
            backbone,
            pretrained=pretrained,
            pretrained_path=pretrained_path,
            drop_rate=dropout,
            input_size=input_size,
            **backbone_kwargs,
        )
        resolved = data_config if data_config is not None else self.backbone.data_config
        check_data_config(resolved)
        self.hparams["data_config"] = to_plain(dict(resolved), where="data_config")

        self.head = nn.Linear(self.backbone.num_features, num_classes)
        # The neck is what retrieval compares; the classifier keeps reading the pooled features, so the
        # category head is unchanged and an old checkpoint (no neck) loads exactly as before.
        self.neck: nn.Module | None = None
        if embedding_dim is not None:
            self.neck = nn.Sequential(
                nn.Linear(self.backbone.num_features, int(embedding_dim)), nn.BatchNorm1d(int(embedding_dim))
            )
        # One head per attribute on the pooled features, like the category head: the neck stays the
        # retrieval vector, trained only by the metric loss and the category
        self.attribute_heads = nn.ModuleDict(
            {
                name: nn.Linear(self.backbone.num_features, len(values))
                for name, values in attribute_classes.items()
            }
        )
        self.attribute_metrics = nn.ModuleDict(
            {
                f"{stage}_acc": nn.ModuleDict(
                    {
                        name: MulticlassAccuracy(len(values), average="micro", ignore_index=UNKNOWN_ATTRIBUTE)
                        for name, values in attribute_classes.items()
                    }
                )
                for stage in ("train", "val", "test")
            }
        )
        self.metric_loss: MetricLoss | None = None
        if metric_loss is not None:
            size = int(embedding_dim) if embedding_dim is not None else self.backbone.num_features
            self.metric_loss = build_metric_loss(metric_loss, size, metric_num_classes, **metric_loss_kwargs)
        self.trainable_backbone_params = self.backbone.apply_finetune(finetune, finetune_last_n)
        self.criterion: nn.Module = (
            nn.CrossEntropyLoss(label_smoothing=label_smoothing)
            if loss == "cross_entropy"
            else nn.MultiMarginLoss()
        )
        self.train_metrics = _stage_metrics(num_classes, "train/")
        self.val_metrics = _stage_metrics(num_classes, "val/")
        self.test_metrics = _stage_metrics(num_classes, "test/")
        self.test_confmat = MulticlassConfusionMatrix(num_classes)
        self.confusion_matrix_path: Path | None = None
        # (features, metric labels) of the current validation epoch, for val/map_at_r (val_retrieval)
        self._val_vectors: list[tuple[torch.Tensor, torch.Tensor]] = []

    # ------------------------------------------------------------------------------------------ properties

    @property
    def class_names(self) -> list[str]:
        return list(self.hparams["class_names"])

    @property
    def attribute_classes(self) -> dict[str, list[str]]:
        """``{attribute: class names}`` of the attribute heads (empty without attributes)."""
        return {k: list(v) for k, v in (self.hparams.get("attribute_classes") or {}).items()}

    @property
    def min_confidence(self) -> float:
        return float(self.hparams.get("min_confidence", 0.5))

    @property
    def data_config(self) -> dict[str, Any]:
        """timm data config (``input_size``, ``mean``, ``std``, ``interpolation``, ``crop_pct``,
        ``crop_mode``): feed it to ``timm.data.create_transform(**data_config)``."""
        return dict(self.hparams["data_config"])

    # ------------------------------------------------------------------------------------------- inference

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, num_classes]``."""
        return self.head(self.backbone(x))

    def _retrieval_vector(self, pooled: torch.Tensor) -> torch.Tensor:
        """The ``features`` vector: the L2-normalised neck output, or the pooled features without a neck."""
        if self.neck is None:
            return pooled
        return F.normalize(self.neck(pooled), dim=-1)

    def embed(self, x: torch.Tensor, kind: str = "features") -> torch.Tensor:
        """``features``: the retrieval vector (L2-normalised neck output ``[B, embedding_dim]``, or pooled
        pre-logits ``[B, num_features]`` without a neck); ``probs``: softmax ``[B, num_classes]``.

        Runs in the module's current mode; call ``eval()`` (and ``torch.inference_mode``) for retrieval.
        """
        if kind not in EMBEDDING_KINDS:
            raise ValueError(f"embedding kind {kind!r} unknown; use one of {EMBEDDING_KINDS}")
        features = self.backbone(x)
        return self._retrieval_vector(features) if kind == "features" else self.head(features).softmax(dim=-1)

    def embedding_dim(self, kind: str = "features") -> int:
        if kind not in EMBEDDING_KINDS:
            raise ValueError(f"embedding kind {kind!r} unknown; use one of {EMBEDDING_KINDS}")
        if kind == "probs":
            return int(self.hparams["num_classes"])
        dim = self.hparams.get("embedding_dim")
        return int(dim) if dim is not None else self.backbone.num_features

    def predict_attributes(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """``{"label": category probs, attribute: its probs}``, each ``[B, classes]`` (softmax)."""
        pooled = self.backbone(x)
        return {"label": self.head(pooled).softmax(dim=-1), **self._attribute_probs(pooled)}

    def _attribute_probs(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        return {name: head(pooled).softmax(dim=-1) for name, head in self.attribute_heads.items()}

    @staticmethod
    def _unpack(batch: Any) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """``(images, targets, rows)``; also accepts a bare image tensor or ``(images, rows)`` for predict."""
        if isinstance(batch, torch.Tensor):
            return batch, None, None
        # 4th: metric labels, 5th: attribute targets (CatalogueDataset)
        if isinstance(batch, Sequence) and len(batch) in (3, 4, 5):
            return batch[0], batch[1], batch[2]
        if isinstance(batch, Sequence) and len(batch) == 2:
            return batch[0], None, batch[1]
        raise TypeError("expected a batch (images, targets, row_index), (images, row_index) or images")

    def predict_step(self, batch: Any, batch_idx: int = 0) -> dict[str, torch.Tensor | None]:
        images, _, rows = self._unpack(batch)
        features = self.backbone(images)
        return {
            "features": self._retrieval_vector(features),
            "probs": self.head(features).softmax(dim=-1),
            "row": rows,
            **{f"{ATTRIBUTE_KIND_PREFIX}{k}": v for k, v in self._attribute_probs(features).items()},
        }

    # ------------------------------------------------------------------------------------------- training

    def _shared_step(self, batch: Any, metrics: MetricCollection, stage: str) -> torch.Tensor | None:
        if batch is None:  # every image of the batch failed to load; CatalogueDataset counted and logged them
            return None  # Lightning skips the optimizer step for a None loss
        images, targets, _ = self._unpack(batch)
        if targets is None:
            raise TypeError(f"{stage} batches must be (images, targets, row_index)")
        pooled = self.backbone(images)
        logits = self.head(pooled)
        loss = self.criterion(logits, targets)
        if stage == "val" and self.hparams.get("val_retrieval"):
            labels = batch[3] if len(batch) >= 4 else targets
            self._val_vectors.append((self._retrieval_vector(pooled.detach()).float().cpu(), labels.cpu()))
        if stage == "train" and self.metric_loss is not None:
            metric_targets = batch[3] if len(batch) >= 4 else targets
            embeddings = self.neck(pooled) if self.neck is not None else pooled
            metric = self.metric_loss(embeddings, metric_targets)
            self.log("train/metric_loss", metric, on_step=True, on_epoch=True, batch_size=len(images))
            self.log("train/ce_loss", loss, on_step=True, on_epoch=True, batch_size=len(images))
            loss = float(self.hparams["ce_weight"]) * loss + float(self.hparams["metric_weight"]) * metric
        if self.attribute_heads and len(batch) == 5:
            # detached: the heads learn on the features without changing them, so the search vector stays
            # what the category alone trains (docs/results.md measures the cost of sharing them)
            attr_in = pooled.detach() if self.hparams.get("attribute_detach") else pooled
            attr_loss = self._attribute_loss(attr_in, batch[4], stage, len(images))
            loss = loss + float(self.hparams.get("attribute_weight", 1.0)) * attr_loss
        metrics.update(logits.detach(), targets)
        on_step = stage == "train"
        self.log(f"{stage}/loss", loss, on_step=on_step, on_epoch=True, prog_bar=True, batch_size=len(images),
                 sync_dist=not on_step)  # fmt: skip
        self.log_dict(
            metrics, on_step=False, on_epoch=True, prog_bar=stage != "train", batch_size=len(images)
        )
        if stage == "test":
            self.test_confmat.update(logits.detach().argmax(dim=-1), targets)
        return loss

    def _attribute_loss(
        self, pooled: torch.Tensor, targets: torch.Tensor, stage: str, n: int
    ) -> torch.Tensor:
        """Sum of the attribute heads' cross-entropies; logs each one's accuracy as ``<stage>/<name>_acc``."""
        total = pooled.new_zeros(())
        for j, (name, head) in enumerate(self.attribute_heads.items()):
            logits = head(pooled)
            target = targets[:, j]
            if bool((target != UNKNOWN_ATTRIBUTE).any()):  # all unknown: cross_entropy would be NaN
                total = total + F.cross_entropy(logits, target, ignore_index=UNKNOWN_ATTRIBUTE)
            metric = self.attribute_metrics[f"{stage}_acc"][name]
            metric.update(logits.detach(), target)
            self.log(f"{stage}/{name}_acc", metric, on_step=False, on_epoch=True, batch_size=n)
        self.log(
            f"{stage}/attr_loss",
            total,
            on_step=False,
            on_epoch=True,
            batch_size=n,
            sync_dist=stage != "train",
        )
        return total

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        return self._shared_step(batch, self.train_metrics, "train")

    def validation_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        return self._shared_step(batch, self.val_metrics, "val")

    def on_validation_epoch_start(self) -> None:
        self._val_vectors = []

    def on_validation_epoch_end(self) -> None:
        if not self.hparams.get("val_retrieval") or not self._val_vectors:
            return
        vectors = torch.cat([v for v, _ in self._val_vectors])
        labels = torch.cat([lbl for _, lbl in self._val_vectors])
        self._val_vectors = []
        scores = leave_one_out_accuracy(vectors, labels)
        if scores is None:
            if not self.trainer.sanity_checking:
                log.warning("val/map_at_r not logged: no val label has two photos in %d photos", len(labels))
            return
        # per rank under DDP (each rank's share of the val photos)
        for name, value in scores.items():
            self.log(f"val/{name}", value, prog_bar=name == "map_at_r")

    def test_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        return self._shared_step(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        matrix = self.test_confmat.compute().cpu()  # every rank must join the sync
        self.test_confmat.reset()
        # trainer.log_dir is a broadcast under DDP: every rank must ask it, or rank 0 waits for a gone peer
        out_dir = Path(self.trainer.log_dir or self.trainer.default_root_dir)
        if not self.trainer.is_global_zero:
            return
        fig = confusion_matrix_figure(matrix, self.class_names)
        self.confusion_matrix_path = save_figure(fig, out_dir / "confusion_matrix.png")
        log.info("confusion matrix written to %s", self.confusion_matrix_path)
        for logger in self.loggers:
            if is_wandb(logger):
                logger.log_image(key="test/confusion_matrix", images=[str(self.confusion_matrix_path)])
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure("test/confusion_matrix", fig, global_step=self.global_step)

    # ------------------------------------------------------------------------------------------ optimiser

    def _param_groups(self, _: nn.Module) -> list[dict[str, Any]]:
        """timm's weight-decay groups for the network, plus one for the metric loss's centres/proxies.

        Proxies start random and must move fast (ProxyAnchor's authors use 100x the backbone's rate); weight
        decay would pull them to the origin, so they get none.
        """
        hp = self.hparams
        network = nn.ModuleList(
            [m for m in (self.backbone, self.neck, self.head, self.attribute_heads) if m is not None]
        )
        groups = param_groups_weight_decay(network, weight_decay=float(hp["weight_decay"]))
        loss_params = (
            [p for p in self.metric_loss.parameters() if p.requires_grad] if self.metric_loss else []
        )
        if loss_params:
            lr = hp.get("loss_lr")
            groups.append(
                {"params": loss_params, "lr": float(lr if lr is not None else hp["lr"]), "weight_decay": 0.0}
            )
        return groups

    def configure_optimizers(self) -> Any:
        hp = self.hparams
        # timm skips parameters with requires_grad=False and keeps biases/norms out of weight decay.
        opt = str(hp["optimizer"]).lower()
        if opt in ("sgd", "nesterov") and not hp["momentum"]:
            opt = "momentum"  # timm's "sgd" is Nesterov, which torch refuses without momentum: plain SGD then
        optimizer = create_optimizer_v2(
            self,
            opt=opt,
            lr=hp["lr"],
            weight_decay=hp["weight_decay"],
            momentum=hp["momentum"],
            param_group_fn=self._param_groups,
        )
        if (hp["scheduler"] or "none") == "none":
            return optimizer
        max_epochs = self.trainer.max_epochs
        if max_epochs is not None and max_epochs > 0:
            interval, total, warmup = "epoch", max_epochs, int(hp["warmup_epochs"])
        else:  # training bounded by max_steps: schedule per step, warmup converted to steps
            interval, total = "step", max(1, int(self.trainer.estimated_stepping_batches))
            per_epoch = self.trainer.num_training_batches
            per_epoch = int(per_epoch) if per_epoch not in (None, float("inf")) else 0
            warmup = int(hp["warmup_epochs"]) * per_epoch
        warmup = min(max(warmup, 0), total - 1)
        cosine = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, total - warmup))
        if warmup > 0:
            ramp = torch.optim.lr_scheduler.LinearLR(
                optimizer, start_factor=1.0 / (warmup + 1), total_iters=warmup
            )
            scheduler: Any = torch.optim.lr_scheduler.SequentialLR(
                optimizer, [ramp, cosine], milestones=[warmup]
            )
        else:
            scheduler = cosine
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": interval}}
