"""``CatalogueDataModule``: train/val/test/predict dataloaders over a prepared catalogue table.

Preprocessing comes from the model's timm data config (``input_size``, ``mean``, ``std``,
``interpolation``, ``crop_pct``, ``crop_mode``), never from hard-coded ImageNet values, so a
299-pixel InceptionV3 (mean/std 0.5) and a 224-pixel ResNet50 each get their own input. The same
config is stored in the checkpoint, so indexing and search preprocess exactly as training did.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import pandas as pd
import torch
from torch.utils.data import DataLoader, WeightedRandomSampler

from imgsearch.data.attributes import attribute_classes_of, attribute_targets
from imgsearch.data.dataset import CatalogueDataset, collate_skip_none
from imgsearch.data.metric_labels import metric_label_column, metric_label_names
from imgsearch.data.schema import SPLITS, read_catalogue, validate_catalogue
from imgsearch.data.transforms import build_transforms, draft_size_for, normalise_data_config
from imgsearch.utils.config import to_plain_container

log = logging.getLogger(__name__)


def class_names_of(catalogue: pd.DataFrame) -> list[str]:
    """The classes a model trained on ``catalogue`` predicts: its sorted distinct labels."""
    return sorted({str(x) for x in catalogue["label"].tolist()})


def default_num_workers() -> int:
    """The CPU cores this process may use (respects affinity masks set by SLURM / taskset)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class CatalogueDataModule(L.LightningDataModule):
    """Dataloaders over the ``train`` / ``val`` / ``test`` rows of a prepared catalogue.

    Args:
        catalogue: the prepared table (DataFrame) or the path of its ``catalogue.csv``.
        data_config: the model's timm data config (``ImageClassifier.data_config``).
        batch_size: per process (per GPU under DDP).
        eval_batch_size: for val/test/predict; defaults to ``batch_size``.
        num_workers: dataloader processes; ``None`` = the cores this process may use.
        pin_memory: ``None`` = pin when CUDA is available.
        persistent_workers: keep workers between epochs (ignored with ``num_workers=0``).
        train_augment: ``timm.data.create_transform`` training options, ``None`` for the
            defaults, ``"none"`` for no augmentation (see :func:`build_transforms`).
        balanced_sampling: draw training items with probability inversely proportional to their
            class's frequency (a ``WeightedRandomSampler``, one epoch = as many draws as rows).
        predict_splits: rows that ``predict_dataloader`` yields; ``None`` = every row.
        draft: let the JPEG decoder shrink large images towards the input size (much faster).
        drop_last: drop the last incomplete training batch; ``None`` = when there is more than
            one batch (a batch of one breaks BatchNorm in training mode).
        metric_labels: ``category`` | ``product``: training items also carry this metric label
            (see :mod:`imgsearch.data.metric_labels`); ``None`` = no metric label.
        m_per_class: draw training batches with ``m_per_class`` photos of each metric label (the
            category without ``metric_labels``), pytorch-metric-learning's ``MPerClassSampler``, so
            every batch holds positive pairs; ``batch_size`` must be a multiple of it.
        attributes: catalogue columns the model also predicts (``baseColour``, ``gender``...): train/val/test
            items carry their class indices as a 5th element (see :mod:`imgsearch.data.attributes`);
            ``attribute_classes`` holds each one's classes (the model's), ``None`` = from this catalogue.
        eval_metric_labels: ``category`` | ``product``: val/test items also carry this label, indexed over
            their own split's values (held-out products are not the training ones), for the model's
            validation retrieval metrics (``val/map_at_r``); ``None`` = none.

    Under DDP nothing needs doing here: Lightning puts a ``DistributedSampler`` (or wraps the
    weighted sampler) around the training loader.
    """

    def __init__(
        self,
        catalogue: pd.DataFrame | str | os.PathLike[str],
        data_config: Mapping[str, Any],
        *,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        persistent_workers: bool = False,
        train_augment: Mapping[str, Any] | str | bool | None = None,
        balanced_sampling: bool = False,
        predict_splits: Sequence[str] | None = None,
        draft: bool = True,
        drop_last: bool | None = None,
        metric_labels: str | None = None,
        m_per_class: int | None = None,
        attributes: Sequence[str] | None = None,
        attribute_classes: Mapping[str, Sequence[str]] | None = None,
        eval_metric_labels: str | None = None,
    ) -> None:
        super().__init__()
        if isinstance(catalogue, str | os.PathLike):
            table = read_catalogue(Path(catalogue))
        else:
            table = validate_catalogue(catalogue)
        # row_index of every sample = position in this table
        self.catalogue = table.reset_index(drop=True)
        if self.catalogue.empty:
            raise ValueError("the catalogue has no rows")
        self.data_config = normalise_data_config(data_config)
        self.class_names = class_names_of(self.catalogue)
        self.class_to_idx = {c: i for i, c in enumerate(self.class_names)}
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.eval_batch_size = int(eval_batch_size or batch_size)
        self.num_workers = default_num_workers() if num_workers is None else int(num_workers)
        self.pin_memory = torch.cuda.is_available() if pin_memory is None else bool(pin_memory)
        self.persistent_workers = bool(persistent_workers) and self.num_workers > 0
        self.balanced_sampling = bool(balanced_sampling)
        splits = list(to_plain_container(predict_splits)) if predict_splits is not None else None
        if splits is not None and (bad := sorted(set(splits) - set(SPLITS))):
            raise ValueError(f"predict_splits must be among {SPLITS}, got {bad}")
        self.predict_splits = splits
        self.drop_last = drop_last
        self.train_transform, self.eval_transform = build_transforms(self.data_config, train_augment)
        self.draft_size = draft_size_for(self.data_config) if draft else None
        self.datasets: dict[str, CatalogueDataset] = {}
        self.metric_labels = metric_labels
        self.metric_label_names = (
            metric_label_names(self.catalogue, metric_labels) if metric_labels is not None else None
        )
        self.m_per_class = int(m_per_class) if m_per_class else None
        self.eval_metric_column = metric_label_column(eval_metric_labels) if eval_metric_labels else None
        names = list(to_plain_container(attributes)) if attributes else []
        if attribute_classes is not None:
            given = {str(k): [str(v) for v in vs] for k, vs in to_plain_container(attribute_classes).items()}
            self.attribute_classes: dict[str, list[str]] = {n: given[n] for n in names or given}
        else:
            self.attribute_classes = attribute_classes_of(self.catalogue, names) if names else {}
        if self.m_per_class is not None:
            if self.m_per_class < 2:
                raise ValueError(f"m_per_class must be >= 2 (a positive pair), got {m_per_class}")
            if self.batch_size % self.m_per_class:
                raise ValueError(
                    f"batch_size {self.batch_size} is not a multiple of m_per_class {m_per_class}"
                )
            if self.balanced_sampling:
                raise ValueError("balanced_sampling and m_per_class are two samplers; choose one")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def rows(self, split: str) -> pd.DataFrame:
        """The catalogue rows of one split (index = position in the whole catalogue)."""
        return self.catalogue[self.catalogue["split"] == split]

    def _dataset(self, name: str) -> CatalogueDataset:
        if name not in self.datasets:
            if name == "predict":
                rows = (
                    self.catalogue
                    if self.predict_splits is None
                    else self.catalogue[self.catalogue["split"].isin(self.predict_splits)]
                )
            else:
                rows = self.rows(name)
            if rows.empty:
                raise ValueError(
                    f"the catalogue has no '{name}' rows (split counts: "
                    f"{self.catalogue['split'].value_counts().to_dict()}); was it prepared with a split?"
                )
            tf = self.train_transform if name == "train" else self.eval_transform
            metric_targets = None
            if name == "train" and self.metric_label_names is not None:
                index = {v: i for i, v in enumerate(self.metric_label_names)}
                column = metric_label_column(str(self.metric_labels))
                metric_targets = [index[str(v)] for v in rows[column].tolist()]
            elif name in ("val", "test") and self.eval_metric_column is not None:
                values = rows[self.eval_metric_column].astype(str).tolist()
                index = {v: i for i, v in enumerate(sorted(set(values)))}
                metric_targets = [index[v] for v in values]
            attr_targets = (
                attribute_targets(rows, self.attribute_classes)
                if self.attribute_classes and name != "predict"
                else None
            )
            self.datasets[name] = CatalogueDataset(
                rows,
                self.class_to_idx,
                tf,
                draft_size=self.draft_size,
                metric_targets=metric_targets,
                attribute_targets=attr_targets,
            )
        return self.datasets[name]

    def setup(self, stage: str | None = None) -> None:
        wanted = {
            "fit": ("train", "val"),
            "validate": ("val",),
            "test": ("test",),
            "predict": ("predict",),
            None: ("train", "val", "test"),
        }[stage]
        for name in wanted:
            self._dataset(name)

    @property
    def skipped(self) -> dict[str, int]:
        """Images skipped at load time so far, per dataset (bad files found after preparation)."""
        return {name: ds.skipped for name, ds in self.datasets.items()}

    def _loader(self, name: str, *, shuffle: bool, batch_size: int) -> DataLoader:
        ds = self._dataset(name)
        sampler = None
        drop_last = False
        if name == "train":
            if self.balanced_sampling:
                sampler = self._balanced_sampler(ds)
                shuffle = False
            elif self.m_per_class is not None:
                sampler = self._m_per_class_sampler(ds, batch_size)
                shuffle = False
            drop_last = len(ds) > batch_size if self.drop_last is None else self.drop_last
        return DataLoader(
            ds,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.persistent_workers,
            collate_fn=collate_skip_none,
            drop_last=drop_last,
        )

    def _m_per_class_sampler(self, ds: CatalogueDataset, batch_size: int) -> Any:
        from pytorch_metric_learning.samplers import MPerClassSampler

        labels = ds.metric_targets if ds.metric_targets is not None else ds.targets
        m = int(self.m_per_class or 0)
        if len(set(labels)) * m < batch_size:
            raise ValueError(
                f"m_per_class={m} with {len(set(labels))} training labels fills at most "
                f"{len(set(labels)) * m} photos, fewer than batch_size={batch_size}"
            )
        # One epoch = about as many draws as rows, rounded down to whole batches (the sampler's own rule).
        length = max(batch_size, len(ds) - len(ds) % batch_size)
        return MPerClassSampler(labels, m, batch_size=batch_size, length_before_new_iter=length)

    @staticmethod
    def _balanced_sampler(ds: CatalogueDataset) -> WeightedRandomSampler:
        targets = torch.tensor(ds.targets)
        counts = torch.bincount(targets[targets >= 0])
        weights = torch.zeros(len(targets), dtype=torch.double)
        known = targets >= 0
        weights[known] = 1.0 / counts[targets[known]].double()
        return WeightedRandomSampler(weights, num_samples=len(ds), replacement=True)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, batch_size=self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False, batch_size=self.eval_batch_size)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False, batch_size=self.eval_batch_size)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("predict", shuffle=False, batch_size=self.eval_batch_size)
