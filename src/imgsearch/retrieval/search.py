"""Search a built index by photo: :class:`Searcher` loads the model and the index once, then answers
``search(images, k)`` with the predicted category and the top-k catalogue items.

The model comes from the checkpoint recorded in the index manifest, verified by its sha256 (so an index is
never queried with weights other than the ones that built it), unless another checkpoint is passed
explicitly; that one is still checked for dimension, backbone and preprocessing
(:func:`~imgsearch.retrieval.index.check_compatible`).
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
import pandas as pd
import torch
from PIL import Image

from imgsearch.data.images import to_rgb
from imgsearch.data.schema import optional_price
from imgsearch.data.transforms import PIXEL_SIZE, eval_transform, pixel_transform
from imgsearch.retrieval.embed import PIXELS
from imgsearch.retrieval.filters import allowed_ids
from imgsearch.retrieval.index import (
    IndexCompatibilityError,
    check_compatible,
    group_members,
    load_index_dir,
    prepare_vectors,
    search_batched,
    search_params,
    search_within_groups,
    set_search_params,
)
from imgsearch.retrieval.locations import resolve_checkpoint_path

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
    #: with ``group_by_product``: the item ids of the product's other photos that matched, best first
    other_views: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        if not self.other_views:  # only grouped results carry it; plain answers keep their shape
            del out["other_views"]
        else:
            out["other_views"] = list(self.other_views)
        return out


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


def group_hits(hits: Sequence[SearchHit], k: int) -> list[SearchHit]:
    """One hit per product (its best-ranked photo), the product's other photos in ``other_views``, ranks
    renumbered, at most ``k``."""
    best: dict[str, SearchHit] = {}  # insertion order = rank order of each product's first photo
    others: dict[str, list[str]] = {}
    for h in hits:
        if h.product_id in best:
            others[h.product_id].append(h.item_id)
        else:
            best[h.product_id], others[h.product_id] = h, []
    return [
        dataclasses.replace(hit, rank=r, other_views=tuple(others[p]))
        for r, (p, hit) in enumerate(list(best.items())[:k], start=1)
    ]


def neighbour_vote(hits: Sequence[SearchHit]) -> tuple[str | None, float | None]:
    """``(most common label among the hits, its share)``; ``(None, None)`` when no hit has a label.

    The category of a query on an index without a classifier (built from pretrained features alone): a
    k-nearest-neighbour vote, ties broken by the better-ranked hit.
    """
    labels = [h.label for h in hits if h.label]
    if not labels:
        return None, None
    # most_common keeps first-seen order among equal counts: a tie goes to the better-ranked label
    best, count = Counter(labels).most_common(1)[0]
    return best, count / len(labels)


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
        search_params: str | None = None,
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
            self.transform = pixel_transform(int(emb.get("pixel_size") or PIXEL_SIZE))
        else:
            self.transform = eval_transform(module.data_config)
        self.class_transform = eval_transform(module.data_config) if module is not None else None
        # runtime: "torch" | "onnx" | "auto" | an OnnxEmbedder; None here means PyTorch
        self.onnx = None
        if module is not None and self.kind != PIXELS and runtime != "torch":
            from imgsearch.models.export import OnnxEmbedder, select_runtime, wants_gpu

            self.onnx = (
                runtime
                if isinstance(runtime, OnnxEmbedder)
                else select_runtime(module, checkpoint, str(runtime), gpu=wants_gpu(device))
            )
        self._members_of_label = group_members(self.items["label"].astype(str).to_numpy(dtype=object))
        self._max_views = int(self.items.groupby("product_id").size().max()) if len(self.items) else 1
        set_search_params(self.index, search_params or (manifest.get("index") or {}).get("search_params"))

    @classmethod
    def from_index_dir(
        cls,
        index_dir: str | os.PathLike[str],
        *,
        device: str = "cpu",
        checkpoint: str | os.PathLike[str] | None = None,
        allow_other_checkpoint: bool = False,
        image_root: str | os.PathLike[str] | None = None,
        search_params: str | None = None,
        runtime: str = "torch",
    ) -> Searcher:
        """Load an index directory and its model.

        Args:
            index_dir: written by ``imgsearch-index``.
            device: ``cpu``, ``cuda``, ``cuda:1``, ``mps``.
            checkpoint: use this checkpoint instead of the manifest's path (the compatibility guard
                runs, then its sha256 must be the one recorded: a checkpoint of another run with the
                same backbone fits the index but embeds differently, and its hits are wrong).
            allow_other_checkpoint: accept an explicit checkpoint whose sha256 differs from the
                recorded one, with a warning (e.g. to compare two models against one index).
            search_params: FAISS ParameterSpace string (``nprobe=16``, ``efSearch=128``) instead of the
                manifest's ``index.search_params``.
            image_root: where the catalogue's images are now, when they moved (default: as recorded, or
                beside the index directory as they were when it was built).
            runtime: ``torch``, ``onnx`` or ``auto`` (ONNX Runtime on a CPU), see
                :func:`imgsearch.models.export.select_runtime`.

        Raises:
            FileNotFoundError: index files or the checkpoint are missing.
            IndexCompatibilityError: the checkpoint changed since the index was built, or does not fit it.
        """
        from imgsearch.models.checkpoint import checkpoint_sha256, load_classifier

        index, items, manifest = load_index_dir(index_dir, image_root=image_root)
        recorded = manifest.get("checkpoint") or {}
        module = None
        source = checkpoint
        if checkpoint is not None:
            module = load_classifier(checkpoint, map_location="cpu")
            searcher = cls(
                index, items, manifest, module, device=device, search_params=search_params
            )  # the shape guard first
            want, got = recorded.get("sha256"), checkpoint_sha256(checkpoint)
            if want and got != want:
                msg = (
                    f"checkpoint {checkpoint} is not the one the index {index_dir} was built with (sha256 "
                    f"{got[:12]}... != {want[:12]}...), so its vectors are not comparable with the index's"
                )
                if not allow_other_checkpoint:
                    raise IndexCompatibilityError(
                        f"{msg}; pass the index's checkpoint, rebuild the index with this one, or allow it "
                        "explicitly (--allow-other-checkpoint / allow_other_checkpoint=true)"
                    )
                log.warning("%s; searching with it anyway (allow_other_checkpoint), expect worse hits", msg)
            if runtime == "torch":
                return searcher
            # accepted: only now pay for the export (the guard above ran on PyTorch)
            return cls(index, items, manifest, module, device=device, search_params=search_params,
                       runtime=runtime, checkpoint=checkpoint)  # fmt: skip
        elif recorded.get("path"):
            path = resolve_checkpoint_path(index_dir, manifest)
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
        elif (manifest.get("model") or {}).get("pretrained"):
            from imgsearch.models.pretrained import from_manifest

            module = from_manifest(manifest["model"]["pretrained"])  # indexed without training
        elif manifest.get("embedding", {}).get("kind") != PIXELS:
            raise IndexCompatibilityError(f"the manifest of {index_dir} names no checkpoint; pass one")
        return cls(
            index, items, manifest, module, device=device, search_params=search_params, runtime=runtime,
            checkpoint=source,
        )  # fmt: skip

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
        self,
        images: Sequence[Image.Image],
        k: int = 10,
        *,
        restrict_to_predicted: bool = False,
        filters: Mapping[str, Any] | None = None,
        group_by_product: bool = False,
    ) -> list[SearchResult]:
        """Top-``k`` catalogue items for each image (PIL images, decoded by the caller with
        :func:`imgsearch.data.images.load_image`).

        ``restrict_to_predicted``: classify-then-search, only items of the predicted category.
        ``filters``: metadata conditions (:mod:`imgsearch.retrieval.filters`, e.g. ``{"brand": "Acme",
        "price": (10, 50)}``), applied inside the FAISS search, so ``k`` results come back when ``k`` items
        pass. ``group_by_product``: one slot per product, its best-matching photo, the product's other
        matching photos in ``other_views``.

        Raises:
            ValueError: ``k < 1``, ``restrict_to_predicted`` without a classifier, or a bad filter.
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not images:
            return []
        if restrict_to_predicted and not (self.module is not None and self.module.class_names):
            raise ValueError("restrict_to_predicted needs a classifier; this index has none")
        allowed = allowed_ids(self.items, filters)
        vectors, probs = self.embed(images)
        categories: list[str | None] = [None] * len(images)
        confidence: list[float | None] = [None] * len(images)
        if probs is not None:
            names = self.module.class_names
            best = probs.argmax(axis=1)
            categories = [names[int(b)] for b in best]
            confidence = [float(probs[i, b]) for i, b in enumerate(best)]
        # with grouping, k products need at most k * (most photos of one product) results
        fetch = k * self._max_views if group_by_product else k
        k_eff = min(fetch, self.index.ntotal if allowed is None else max(len(allowed), 1))
        if restrict_to_predicted:
            members = self._members_of_label
            if allowed is not None:
                members = group_members(self.items["label"].astype(str).where(self._allowed_mask(allowed)))
            s, ids = search_within_groups(self.index, vectors, k_eff, categories, members)
        elif allowed is not None:
            if len(allowed) == 0:
                s, ids = np.zeros((len(images), k_eff), np.float32), np.full((len(images), k_eff), -1)
            else:
                params = search_params(self.index, ids=allowed)
                s, ids = search_batched(self.index, vectors, k_eff, params=params)
        else:
            s, ids = search_batched(self.index, vectors, k_eff)
        results = []
        for i in range(len(images)):
            hits = self._hits(s[i], ids[i])
            if group_by_product:
                hits = group_hits(hits, k)
            if probs is None:  # no classifier (pretrained-only or pixels index): the neighbours' labels vote
                categories[i], confidence[i] = neighbour_vote(hits)
            results.append(SearchResult(categories[i], confidence[i], hits))
        return results

    def _allowed_mask(self, allowed: np.ndarray) -> np.ndarray:
        mask = np.zeros(len(self.items), dtype=bool)
        mask[allowed] = True
        return mask
