"""Search a built index by photo: :class:`Searcher` loads the model and the index once, then answers
``search(images, k)`` with the predicted category and the top-k catalogue items.

The model comes from the checkpoint recorded in the index manifest, verified by its sha256 (so an index is
never queried with weights other than the ones that built it), unless another checkpoint is passed
explicitly; that one is still checked for dimension, backbone and preprocessing
(:func:`~imgsearch.retrieval.index.check_compatible`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import faiss
import numpy as np
import pandas as pd
import torch
from PIL import Image

from imgsearch.data.images import to_rgb
from imgsearch.data.schema import optional_price
from imgsearch.retrieval.embed import PIXELS, model_transform, pixel_transform
from imgsearch.retrieval.index import (
    IndexCompatibilityError,
    check_compatible,
    load_index_dir,
    prepare_vectors,
    search_batched,
    search_params,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SearchHit:
    """One catalogue item found for a query; ``score`` is the index's inner product (higher = closer) or
    squared L2 distance (lower = closer), see the manifest's ``index.metric``."""

    rank: int
    item_id: str
    product_id: str
    label: str
    title: str
    brand: str
    price: float | None
    image_path: str
    score: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class SearchResult:
    """Predicted category (``None`` without a classifier) and the hits of one query image."""

    category: str | None
    probability: float | None
    hits: list[SearchHit] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "category": self.category,
            "probability": self.probability,
            "hits": [h.to_dict() for h in self.hits],
        }


class Searcher:
    """A model and a FAISS index, loaded once; thread-compatible for read-only searching.

    Attributes:
        index: the FAISS index. ``items``: its catalogue rows in index order. ``manifest``: the index
        manifest. ``module``: the classifier (``None`` for a ``pixels`` index built without one).
    """

    def __init__(
        self,
        index: faiss.Index,
        items: pd.DataFrame,
        manifest: dict[str, Any],
        module: Any | None,
        *,
        device: str = "cpu",
        runtime: Any = "torch",
        checkpoint: str | os.PathLike[str] | None = None,
    ) -> None:
        emb = manifest.get("embedding", {})
        self.kind: str = emb.get("kind", "features")
        self.normalize: bool = bool(emb.get("normalize", True))
        check_compatible(manifest, module, self.kind)
        self.index = index
        self.items = items.reset_index(drop=True)
        self.manifest = manifest
        self.device = torch.device(device)
        self.module = module.to(self.device).eval() if module is not None else None
        if self.kind == PIXELS:
            self.transform = pixel_transform(int(emb.get("pixel_size") or 32))
        else:
            self.transform = model_transform(module.data_config)
        self.class_transform = model_transform(module.data_config) if module is not None else None
        # runtime: "torch" | "onnx" | "auto" | an OnnxEmbedder; None here means PyTorch
        self.onnx = None
        if module is not None and self.kind != PIXELS and runtime != "torch":
            from imgsearch.models.export import OnnxEmbedder, select_runtime, wants_gpu

            self.onnx = (
                runtime
                if isinstance(runtime, OnnxEmbedder)
                else select_runtime(module, checkpoint, str(runtime), gpu=wants_gpu(device))
            )
        self._labels = self.items["label"].astype(str).to_numpy(dtype=object)
        self._by_label: dict[str, np.ndarray] = {}

    @classmethod
    def from_index_dir(
        cls,
        index_dir: str | os.PathLike[str],
        *,
        device: str = "cpu",
        checkpoint: str | os.PathLike[str] | None = None,
        runtime: str = "torch",
    ) -> Searcher:
        """Load an index directory and its model.

        Args:
            index_dir: written by ``imgsearch-index``.
            device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
            checkpoint: use this checkpoint instead of the manifest's (no sha256 check, but the
                compatibility guard still runs).
            runtime: ``torch``, ``onnx`` or ``auto`` (ONNX Runtime on a CPU), see
                :func:`imgsearch.models.export.select_runtime`.

        Raises:
            FileNotFoundError: index files or the checkpoint are missing.
            IndexCompatibilityError: the checkpoint changed since the index was built, or does not fit it.
        """
        from imgsearch.models.checkpoint import checkpoint_sha256, load_classifier

        index, items, manifest = load_index_dir(index_dir)
        recorded = manifest.get("checkpoint") or {}
        module = None
        source = checkpoint
        if checkpoint is not None:
            module = load_classifier(checkpoint, map_location="cpu")
        elif recorded.get("path"):
            path = Path(recorded["path"])
            if not path.is_file():
                raise FileNotFoundError(
                    f"the index {index_dir} was built with checkpoint {path}, which does not exist here; "
                    "pass the checkpoint explicitly (checkpoint=...)"
                )
            want = recorded.get("sha256")
            if want:
                got = checkpoint_sha256(path)
                if got != want:
                    raise IndexCompatibilityError(
                        f"checkpoint {path} changed since the index was built (sha256 {got[:12]}... != "
                        f"{want[:12]}...); rebuild the index or pass the checkpoint explicitly"
                    )
            module = load_classifier(path, map_location="cpu")
            source = path
        elif manifest.get("embedding", {}).get("kind") != PIXELS:
            raise IndexCompatibilityError(f"the manifest of {index_dir} names no checkpoint; pass one")
        return cls(index, items, manifest, module, device=device, runtime=runtime, checkpoint=source)

    # ------------------------------------------------------------------------------------------ querying

    def _batch(self, images: Sequence[Image.Image], transform: Any) -> torch.Tensor:
        return torch.stack([transform(to_rgb(im)) for im in images]).to(self.device)

    @torch.inference_mode()
    def embed(self, images: Sequence[Image.Image]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(query vectors prepared for the index, class probabilities or None)``."""
        probs = None
        if self.kind == PIXELS:
            vectors = self._batch(images, self.transform).flatten(1)
            if self.module is not None:
                probs = self.module.embed(self._batch(images, self.class_transform), "probs")
        elif self.onnx is not None:
            out = self.onnx(self._batch(images, self.transform))
            vectors, probs = torch.from_numpy(out[self.kind]), torch.from_numpy(out["probs"])
        else:
            pred = self.module.predict_step(self._batch(images, self.transform))
            vectors, probs = pred[self.kind], pred["probs"]
        out_probs = None if probs is None else probs.float().cpu().numpy()
        return prepare_vectors(vectors.float().cpu().numpy(), normalize=self.normalize), out_probs

    def _ids_of(self, label: str) -> np.ndarray:
        if label not in self._by_label:
            self._by_label[label] = np.flatnonzero(self._labels == label)
        return self._by_label[label]

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[SearchHit]:
        hits = []
        for score, i in zip(scores, ids, strict=True):
            if i < 0:
                continue  # fewer items than k (or than k in the category)
            row = self.items.iloc[int(i)]
            hits.append(
                SearchHit(
                    rank=len(hits) + 1,
                    item_id=str(row["item_id"]),
                    product_id=str(row["product_id"]),
                    label=str(row["label"]),
                    title=str(row["title"]),
                    brand=str(row["brand"]),
                    price=optional_price(row["price"]),
                    image_path=str(row["image_path"]),
                    score=float(score),
                )
            )
        return hits

    def search(
        self, images: Sequence[Image.Image], k: int = 10, *, restrict_to_predicted: bool = False
    ) -> list[SearchResult]:
        """Top-``k`` catalogue items for each image (PIL images, decoded by the caller with
        :func:`imgsearch.data.images.load_image`).

        ``restrict_to_predicted``: classify-then-search, only items of the predicted category.

        Raises:
            ValueError: ``k < 1``, or ``restrict_to_predicted`` without a classifier.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not images:
            return []
        if restrict_to_predicted and self.module is None:
            raise ValueError("restrict_to_predicted needs a classifier; this index has none")
        vectors, probs = self.embed(images)
        categories: list[str | None] = [None] * len(images)
        confidence: list[float | None] = [None] * len(images)
        if probs is not None:
            names = self.module.class_names
            best = probs.argmax(axis=1)
            categories = [names[int(b)] for b in best]
            confidence = [float(probs[i, b]) for i, b in enumerate(best)]
        k_eff = min(k, self.index.ntotal)
        results = []
        if restrict_to_predicted:
            for i, cat in enumerate(categories):
                allowed = self._ids_of(cat)
                if len(allowed) == 0:
                    results.append(SearchResult(cat, confidence[i], []))
                    continue
                params = search_params(self.index, ids=allowed)
                s, ids = search_batched(self.index, vectors[i : i + 1], k_eff, params=params)
                results.append(SearchResult(cat, confidence[i], self._hits(s[0], ids[0])))
            return results
        s, ids = search_batched(self.index, vectors, k_eff)
        return [
            SearchResult(categories[i], confidence[i], self._hits(s[i], ids[i])) for i in range(len(images))
        ]
