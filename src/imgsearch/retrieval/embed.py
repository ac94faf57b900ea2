"""Embed catalogue images with ``lightning.Trainer.predict`` (one code path for CPU, one GPU or many).

Kinds: ``features`` (the classifier's pooled pre-logits) and ``probs`` (its softmax) come from one
forward pass of an :class:`~imgsearch.models.classifier.ImageClassifier`; ``pixels`` (the image resized to
``pixel_size`` x ``pixel_size``, flattened, values in [0, 1]) is the no-model baseline.

Images are read through :class:`~imgsearch.data.dataset.CatalogueDataset` (the guarded decoder); an image
that cannot be read is left out, counted and logged, and :attr:`Embeddings.rows` says which catalogue rows
the vectors belong to, so vectors and ids never drift apart.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader

from imgsearch.data.datamodule import default_num_workers
from imgsearch.data.dataset import CatalogueDataset, collate_skip_none
from imgsearch.data.transforms import PIXEL_SIZE, draft_size_for, eval_transform, pixel_transform
from imgsearch.retrieval.expansion import mean_of_views
from imgsearch.utils.progress import is_terminal

try:  # private in Lightning 2.x; without it the spawn guard is skipped, nothing else changes
    from lightning.pytorch.strategies.launchers import _MultiProcessingLauncher
except ImportError:  # pragma: no cover
    _MultiProcessingLauncher = ()

log = logging.getLogger(__name__)

MODEL_KINDS: tuple[str, ...] = ("features", "probs")
ATTRIBUTE_KIND_PREFIX = "attr:"  # the classifier's predict_step keys of its attribute heads
PIXELS = "pixels"
FEATURES = "features"  # the retrieval vector, the kind flip averaging applies to
KINDS: tuple[str, ...] = (*MODEL_KINDS, PIXELS)


@dataclass
class Embeddings:
    """Vectors of the readable rows of a catalogue, in catalogue order.

    Attributes:
        vectors: kind -> float32 ``[n_kept, dim]``.
        rows: int64 ``[n_kept]``: positions (0-based) of those rows in the embedded table.
        item_ids: ``item_id`` of each kept row.
        skipped: ``{"item_id", "image_path"}`` of each row whose image could not be read.
    """

    vectors: dict[str, np.ndarray]
    rows: np.ndarray
    item_ids: list[str]
    skipped: list[dict[str, str]] = field(default_factory=list)

    def __getitem__(self, kind: str) -> np.ndarray:
        try:
            return self.vectors[kind]
        except KeyError:
            raise KeyError(f"no {kind!r} embeddings; computed: {sorted(self.vectors)}") from None

    def __len__(self) -> int:
        return len(self.rows)


def prediction_trainer_kwargs(trainer_kwargs: Mapping[str, Any] | None) -> dict[str, Any]:
    """``lightning.Trainer`` arguments of a prediction pass: no logger, checkpoints or summary, the caller's
    settings (devices, strategy, precision, ...) on top."""
    kwargs: dict[str, Any] = {
        "accelerator": "auto",
        "devices": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_model_summary": False,
        # Lightning's bar in a log file is a wall of "0.00it/s"; the caller can still ask for it
        "enable_progress_bar": is_terminal(),
    }
    kwargs.update(dict(trainer_kwargs or {}))
    return kwargs


class _Embedder(L.LightningModule):
    """Wraps a classifier (or nothing, for pixels) so ``Trainer.predict`` yields the requested kinds."""

    def __init__(
        self, module: L.LightningModule | None, kinds: Sequence[str], flip_average: bool = False
    ) -> None:
        super().__init__()
        self.inner = module
        self.kinds = tuple(kinds)
        self.flip_average = bool(flip_average)

    def predict_step(self, batch: Any, batch_idx: int = 0) -> dict[str, torch.Tensor] | None:
        if batch is None:  # every image of the batch was unreadable (collate_skip_none)
            return None
        images, _, rows = batch
        out: dict[str, torch.Tensor] = {"row": rows}
        if self.inner is None:
            out[PIXELS] = images.flatten(1)
        else:
            pred = self.inner.predict_step(batch, batch_idx)
            out.update({k: pred[k] for k in self.kinds})
            if self.flip_average and FEATURES in self.kinds:
                mirrored = self.inner.predict_step((torch.flip(images, dims=[-1]), None, rows), batch_idx)
                out[FEATURES] = mean_of_views(pred[FEATURES], mirrored[FEATURES])
        return out


class _Collect(BasePredictionWriter):
    """Keeps each batch's outputs on the CPU as numpy (float32 even under bf16 / fp16 precision)."""

    def __init__(self) -> None:
        super().__init__(write_interval="batch")
        self.parts: list[dict[str, np.ndarray]] = []

    def write_on_batch_end(
        self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx
    ):
        if prediction is None:
            return
        part = {}
        for key, value in prediction.items():
            value = value.detach().to("cpu")
            part[key] = value.long().numpy() if key == "row" else value.float().numpy()
        self.parts.append(part)


def _gather(parts: list[dict[str, np.ndarray]]) -> list[dict[str, np.ndarray]]:
    """Under DDP each process predicted a shard: every process gets all of them."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return parts
    world = torch.distributed.get_world_size()
    if world == 1:
        return parts
    gathered: list[Any] = [None] * world
    torch.distributed.all_gather_object(gathered, parts)
    return [p for rank_parts in gathered for p in rank_parts]


def merge_parts(
    parts: list[dict[str, np.ndarray]], kinds: Sequence[str], n_rows: int
) -> dict[str, np.ndarray]:
    """Concatenate batch outputs, order them by catalogue row, drop repeated rows (DDP pads shards)."""
    if not parts:
        return {"row": np.zeros(0, dtype=np.int64)} | {k: np.zeros((0, 0), dtype=np.float32) for k in kinds}
    rows = np.concatenate([p["row"] for p in parts]).astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n_rows):
        raise RuntimeError(f"prediction returned row {rows.min()}..{rows.max()} outside 0..{n_rows - 1}")
    rows_sorted, first = np.unique(rows, return_index=True)
    out = {"row": rows_sorted}
    for kind in kinds:
        out[kind] = np.ascontiguousarray(np.concatenate([p[kind] for p in parts])[first], dtype=np.float32)
    return out


def embed_catalogue(
    module: L.LightningModule | None,
    df: pd.DataFrame,
    *,
    kind: str | Sequence[str] = "features",
    batch_size: int = 64,
    num_workers: int | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    pixel_size: int = PIXEL_SIZE,
    draft: bool = True,
    runtime: Any = "torch",
    checkpoint: str | None = None,
    flip_average: bool = False,
) -> Embeddings:
    """Embed every row of ``df`` (a catalogue table) with ``Trainer.predict``.

    Args:
        module: the trained classifier; ``None`` only for ``kind="pixels"``.
        df: catalogue rows; vectors come back in this order, minus unreadable images.
        kind: ``features``, ``probs``, ``pixels``, or several model kinds (one forward pass).
        batch_size: images per batch (per device).
        num_workers: dataloader processes; ``None`` = the cores this process may use when the model runs
            on a GPU, and none on a CPU-only machine (there the forward pass already uses every core, and
            ``make bench`` measured 2 workers at 0.89x of the bare forward against 1.13x for 0 workers).
        trainer_kwargs: extra ``lightning.Trainer`` arguments (``accelerator``, ``devices``, ``precision``,
            ``strategy``...). Default: one device (``accelerator="auto"``), no logger, progress bar on.
        pixel_size: side of the ``pixels`` baseline's image.
        draft: let the JPEG decoder shrink large images towards the input size (as training does).
        runtime: ``torch`` (``Trainer.predict``), ``onnx`` / ``auto`` (ONNX Runtime on a CPU, see
            :func:`imgsearch.models.export.select_runtime`; falls back to PyTorch with a logged reason), or an
            already checked :class:`~imgsearch.models.export.OnnxEmbedder`.
        checkpoint: the module's checkpoint file, where its ONNX export is cached.
        flip_average: ``features`` = the normalised mean of each image's and its mirror image's vectors
            (:func:`imgsearch.retrieval.expansion.flip_averaged`); queries should be embedded the same way.

    Returns:
        :class:`Embeddings`.

    Raises:
        ValueError: unknown kind, ``pixels`` mixed with model kinds, or a model kind without a module.
    """
    kinds = (kind,) if isinstance(kind, str) else tuple(kind)
    # attr:<column>: an attribute head's probabilities (models/classifier.py; outputs of the ONNX export too)
    unknown = [k for k in kinds if k not in KINDS and not k.startswith(ATTRIBUTE_KIND_PREFIX)]
    if unknown or not kinds:
        raise ValueError(f"unknown embedding kind(s) {unknown or kinds}; use {KINDS}")
    if PIXELS in kinds and len(kinds) > 1:
        raise ValueError("embed 'pixels' in a call of its own: it uses a different preprocessing")
    if PIXELS not in kinds and module is None:
        raise ValueError(f"embedding kind(s) {kinds} need a model")

    table = df.reset_index(drop=True)  # CatalogueDataset reports rows by index label: make them positions
    if PIXELS in kinds:
        transform, draft_size, wrapped = pixel_transform(pixel_size), (pixel_size, pixel_size), None
    else:
        transform, draft_size, wrapped = (
            eval_transform(module.data_config),
            draft_size_for(module.data_config),
            module,
        )
    classes = list(getattr(module, "class_names", []) or [])
    dataset = CatalogueDataset(
        table, {c: i for i, c in enumerate(classes)}, transform, draft_size=draft_size if draft else None
    )
    if num_workers is None:
        workers = default_num_workers() if torch.cuda.is_available() else 0
    else:
        workers = int(num_workers)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=collate_skip_none,
        pin_memory=torch.cuda.is_available(),
    )
    engine = _resolve_runtime(
        runtime, None if PIXELS in kinds else module, checkpoint, trainer_kwargs, calibration=lambda: loader
    )
    missing = [k for k in kinds if engine is not None and k not in getattr(engine, "outputs", kinds)]
    if missing:
        # an export from before the attribute heads were exported, say: PyTorch gives every kind
        log.info("the ONNX export %s has no output %s: embedding with PyTorch", engine.path, missing)
        engine = None
    if engine is not None:
        parts = [_onnx_part(engine, batch, kinds, flip_average) for batch in loader if batch is not None]
        return _finish(merge_parts(parts, kinds, len(table)), table)
    collector = _Collect()
    kwargs = prediction_trainer_kwargs(trainer_kwargs)
    kwargs["callbacks"] = [*list(kwargs.get("callbacks") or []), collector]
    trainer = L.Trainer(**kwargs)
    if isinstance(getattr(trainer.strategy, "launcher", None), _MultiProcessingLauncher):
        # spawn/fork workers fill their own copies of the collector; this process would get no vectors
        raise ValueError(
            f"strategy {type(trainer.strategy).__name__} with a spawn/fork launcher cannot return embeddings "
            "to this process; use strategy='ddp' (one process per device, started by Lightning or torchrun)"
        )
    embedder = _Embedder(wrapped, kinds, flip_average=flip_average).eval()
    trainer.predict(embedder, dataloaders=loader, return_predictions=False)

    return _finish(merge_parts(_gather(collector.parts), kinds, len(table)), table)


def _resolve_runtime(
    runtime: Any,
    module: L.LightningModule | None,
    checkpoint: str | None,
    trainer_kwargs: Any,
    calibration: Any = None,
) -> Any:
    """An :class:`~imgsearch.models.export.OnnxEmbedder` to embed with, or ``None`` for Trainer.predict.

    ``calibration``: a callable giving the catalogue's batches, the photos ``runtime=onnx-int8`` calibrates
    on (its first :data:`~imgsearch.models.quantize.CALIBRATION_IMAGES`) when no INT8 graph is cached."""
    if module is None or runtime is None or runtime == "torch":
        return None
    if not isinstance(runtime, str):
        return runtime  # an embedder the caller already checked
    from imgsearch.models.export import select_runtime, wants_gpu

    photos = None
    if calibration is not None:
        from imgsearch.models.quantize import calibration_batches

        photos = lambda: calibration_batches(calibration())  # noqa: E731 - read only when quantising
    return select_runtime(
        module, checkpoint, runtime, gpu=wants_gpu(trainer_kwargs=trainer_kwargs), calibration=photos
    )


def _onnx_part(
    engine: Any, batch: Any, kinds: Sequence[str], flip_average: bool = False
) -> dict[str, np.ndarray]:
    images, _, rows = batch
    out = engine(images)
    part = {"row": rows.long().numpy()} | {k: out[k].astype(np.float32, copy=False) for k in kinds}
    if flip_average and FEATURES in kinds:
        mirrored = np.asarray(engine(torch.flip(images, dims=[-1]))[FEATURES], dtype=np.float32)
        part[FEATURES] = mean_of_views(torch.from_numpy(part[FEATURES]), torch.from_numpy(mirrored)).numpy()
    return part


def _finish(merged: dict[str, np.ndarray], table: pd.DataFrame) -> Embeddings:
    rows = merged.pop("row")
    kept = np.zeros(len(table), dtype=bool)
    kept[rows] = True
    skipped = [
        {"item_id": str(r.item_id), "image_path": str(r.image_path)}
        for r in table.loc[~kept, ["item_id", "image_path"]].itertuples()
    ]
    if skipped:
        log.warning(
            "embedding skipped %d of %d images that could not be read, e.g. %s",
            len(skipped),
            len(table),
            ", ".join(s["image_path"] for s in skipped[:3]),
        )
    return Embeddings(
        vectors=merged,
        rows=rows,
        item_ids=table["item_id"].astype(str).to_numpy()[rows].tolist(),
        skipped=skipped,
    )
