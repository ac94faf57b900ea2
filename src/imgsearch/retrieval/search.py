"""Search a built index by photo: :class:`Searcher` loads the model and the index once, then answers
``search(images, k)`` with the predicted category and the top-k catalogue items.

The model comes from the checkpoint recorded in the index manifest, verified by its sha256 (so an index is
never queried with weights other than the ones that built it), unless another checkpoint is passed
explicitly; that one is still checked for dimension, backbone and preprocessing
(:func:`~imgsearch.retrieval.index.check_compatible`).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
import threading
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import faiss
import numpy as np
import pandas as pd
import torch
from PIL import Image

from imgsearch.data.images import ImageDecodeError, load_image, to_rgb
from imgsearch.data.schema import validate_catalogue
from imgsearch.data.transforms import PIXEL_SIZE, eval_transform, pixel_transform
from imgsearch.retrieval.colour import (
    CANDIDATE_FACTOR,
    MIN_CANDIDATES,
    colour_source,
    load_colour_part,
    photos_colour_part,
    rerank_by_colour,
)
from imgsearch.retrieval.embed import ATTRIBUTE_KIND_PREFIX, FEATURES, PIXELS
from imgsearch.retrieval.expansion import mean_of_views
from imgsearch.retrieval.filters import ItemFilter
from imgsearch.retrieval.hit_rows import HitRows
from imgsearch.retrieval.hybrid import MemoryText, check_colour_weight, fuse_with_text, known_colour_values
from imgsearch.retrieval.index import (
    SUBSET_MAX,
    IndexCompatibilityError,
    check_compatible,
    group_members,
    load_index_dir,
    prepare_vectors,
    search_batched,
    search_params,
    search_subset,
    search_within_groups,
    set_search_params,
)
from imgsearch.retrieval.live import LiveIndex, is_live
from imgsearch.retrieval.live_attributes import LiveColourParts, new_item_extras, write_colour_parts
from imgsearch.retrieval.locations import resolve_checkpoint_path
from imgsearch.retrieval.text import colour_filter, match_expression

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
    #: the price's currency and the product's page, when the catalogue has them
    currency: str = ""
    url: str = ""

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in (
            "other_views",
            "currency",
            "url",
        ):  # only when there is one: plain answers keep their shape
            if not out[name]:
                del out[name]
        if self.other_views:
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


@dataclass(frozen=True)
class PreparedImage:
    """A decoded photo with its query tensor already made by :meth:`Searcher.prepare`.

    serve prepares photos in its decode threads, so that the one thread that runs batches only stacks
    tensors: resizing and normalising there would serialise ~0.5 ms a photo behind every forward pass.
    ``transform`` is the one that made ``tensor``; a searcher with another transform (a hot reload swapped
    the model) makes its own from ``image``, so a stale tensor is never searched.
    """

    image: Image.Image
    tensor: torch.Tensor
    transform: Any


def _pil(im: Image.Image | PreparedImage) -> Image.Image:
    return im.image if isinstance(im, PreparedImage) else im


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
        live: LiveIndex | None = None,
        runtime_threads: int | None = None,
    ) -> None:
        emb = manifest.get("embedding", {})
        self.kind: str = emb.get("kind", "features")
        self.normalize: bool = bool(emb.get("normalize", True))
        check_compatible(manifest, module, self.kind)
        # A live catalogue's ids are its vector ids, a built index's its positions: ``items`` is indexed by
        # them either way, and every search answers with them.
        self.live = live
        self.index_dir: str | None = None  # set by from_index_dir: where make_live finds the catalogue
        self._image_root: str | os.PathLike[str] | None = None
        self._lock = threading.RLock()
        self.index = index
        self.items = items if live is not None else items.reset_index(drop=True)
        self.manifest = manifest
        self.device = torch.device(device)
        self.module = module.to(self.device).eval() if module is not None else None
        if self.kind == PIXELS:
            self.transform = pixel_transform(int(emb.get("pixel_size") or PIXEL_SIZE))
        else:
            self.transform = eval_transform(module.data_config)
        # the classifier sees what the search vector sees, except on a pixels index; one object, so that a
        # photo prepared once (PreparedImage) serves the colour head's pass too
        self.class_transform = self.transform if self.kind != PIXELS else None
        if self.kind == PIXELS and module is not None:
            self.class_transform = eval_transform(module.data_config)
        # runtime: "torch" | "onnx" | "auto" | an OnnxEmbedder; None here means PyTorch
        self.onnx = None
        if module is not None and self.kind != PIXELS and runtime != "torch":
            from imgsearch.models.export import OnnxEmbedder, select_runtime, wants_gpu

            self.onnx = (
                runtime
                if isinstance(runtime, OnnxEmbedder)
                else select_runtime(
                    module, checkpoint, str(runtime), gpu=wants_gpu(device), threads=runtime_threads
                )
            )
        self._search_params = search_params or (manifest.get("index") or {}).get("search_params")
        # colour part (retrieval/colour.py) and words over a built index's items (retrieval/hybrid.py)
        self.colour_parts: np.ndarray | None = None
        self._colour_base: np.ndarray | None = None  # colour.npy; a live catalogue adds its new items' parts
        self._live_colour: LiveColourParts | None = None
        # the index's colour probe (models/colour_probe.py): tags and new items' predicted colours read it
        self.colour_probe: Any = None
        self._memory_text: Any = None
        self._adopt_items()

    def _adopt_items(self) -> None:
        """Derived lookups of the current item table (again after each live change)."""
        if self.live is not None:
            self.index, self.items = self.live.index, self.live.items
        self._item_positions: pd.Index | None = None
        self._vector_ids: dict[str, int] | None = None  # item id -> vector id, for fusing words
        self._known_colours: tuple[str, list[str]] | None = None  # (colour column, its values)
        self._filter = ItemFilter(self.items)
        self._hit_rows = HitRows(self.items)
        ids = self.items.index.to_numpy(dtype=np.int64)
        self._members_of_label = group_members(self.items["label"].astype(str).to_numpy(dtype=object), ids)
        self._max_views = int(self.items.groupby("product_id").size().max()) if len(self.items) else 1
        set_search_params(self.index, self._search_params)
        self._adopt_colour()

    @property
    def has_colour_part(self) -> bool:
        return self._colour_base is not None

    def _adopt_colour(self) -> None:
        """The colour parts by vector id: the build's, plus (live) those of items added since."""
        if self._colour_base is None or self.live is None:
            self.colour_parts = self._colour_base
            return
        if self._live_colour is None:
            self._live_colour = LiveColourParts(self._colour_base)
        top = int(self.items.index.max()) if len(self.items) else 0
        with self.live.store.transaction(write=False) as conn:
            self.colour_parts = self._live_colour.refresh(conn, top)

    def _sync(self) -> None:
        """See what other processes committed to a live catalogue since the last query."""
        if self.live is not None and self.live.refresh():
            self._adopt_items()

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
        live: bool | None = None,
        mmap: bool = False,
        runtime_threads: int | None = None,
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
            live: open the live catalogue (:mod:`imgsearch.retrieval.live`; ``True`` makes a built index
                live, ready for :meth:`add_items` / :meth:`remove_items`); default: live if it already is.
            mmap: memory-map a built index's codes (serve workers share them; a live catalogue reads its
                own copy), see :mod:`imgsearch.retrieval.mmap_index`.
            runtime_threads: ONNX Runtime's intra-op threads (``None``: every core this process may use).

        Raises:
            FileNotFoundError: index files or the checkpoint are missing.
            IndexCompatibilityError: the checkpoint changed since the index was built, or does not fit it.
        """
        searcher = cls._from_index_dir(
            index_dir, device=device, checkpoint=checkpoint, allow_other_checkpoint=allow_other_checkpoint,
            image_root=image_root, search_params=search_params, runtime=runtime, live=live, mmap=mmap,
            runtime_threads=runtime_threads,
        )  # fmt: skip
        searcher.index_dir, searcher._image_root = str(index_dir), image_root
        searcher._colour_base = load_colour_part(index_dir, searcher.manifest)
        searcher._adopt_colour()
        if searcher.manifest.get("colour_probe"):
            from imgsearch.models.colour_probe import load_index_probe

            heads = getattr(searcher.module, "attribute_classes", None)
            searcher.colour_probe = load_index_probe(index_dir, searcher.manifest, heads)
        if colour_source(searcher.manifest) == "probe" and searcher.colour_probe is None:
            raise IndexCompatibilityError(
                f"{index_dir}: its colour part is read by a colour probe that its manifest does not hold"
            )
        return searcher

    @classmethod
    def _from_index_dir(
        cls,
        index_dir: str | os.PathLike[str],
        *,
        device: str,
        checkpoint: str | os.PathLike[str] | None,
        allow_other_checkpoint: bool,
        image_root: str | os.PathLike[str] | None,
        search_params: str | None,
        runtime: str,
        live: bool | None,
        mmap: bool = False,
        runtime_threads: int | None = None,
    ) -> Searcher:
        from imgsearch.models.checkpoint import checkpoint_sha256, load_classifier

        if live or (live is None and is_live(index_dir)):
            live_index = LiveIndex.open(index_dir, create=True, image_root=image_root)
            index, items, manifest = live_index.index, live_index.items, live_index.manifest
        else:
            live_index = None
            index, items, manifest = load_index_dir(index_dir, image_root=image_root, mmap=mmap)
        recorded = manifest.get("checkpoint") or {}
        module = None
        source = checkpoint
        if checkpoint is not None:
            module = load_classifier(checkpoint, map_location="cpu")
            searcher = cls(
                index, items, manifest, module, device=device, search_params=search_params, live=live_index
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
                       runtime=runtime, checkpoint=checkpoint, live=live_index,
                       runtime_threads=runtime_threads)  # fmt: skip
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
            checkpoint=source, live=live_index, runtime_threads=runtime_threads,
        )  # fmt: skip

    # ------------------------------------------------------------------------------------------ querying

    def prepare(self, image: Image.Image) -> PreparedImage:
        """``image`` with its query tensor made now (thread-safe: the transforms hold no state); a search
        given the result skips that step (see :class:`PreparedImage`)."""
        rgb = to_rgb(image)
        return PreparedImage(rgb, self.transform(rgb), self.transform)

    def _batch(self, images: Sequence[Image.Image | PreparedImage], transform: Any) -> torch.Tensor:
        def one(im: Image.Image | PreparedImage) -> torch.Tensor:
            if isinstance(im, PreparedImage) and im.transform is transform:
                return im.tensor
            return transform(to_rgb(_pil(im)))

        return torch.stack([one(im) for im in images]).to(self.device)

    def embed(self, images: Sequence[Image.Image | PreparedImage]) -> tuple[np.ndarray, np.ndarray | None]:
        """``(query vectors prepared for the index, class probabilities or None)``."""
        vectors, probs, _ = self._embed(images)
        return vectors, probs

    @torch.inference_mode()
    def _embed(
        self, images: Sequence[Image.Image | PreparedImage], colour: bool = False
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """:meth:`embed` plus, with ``colour``, the photos' colour part, from the same forward pass where the
        model gives it (PyTorch; ONNX and pixel indexes run the colour head apart)."""
        probs, colour_query = None, None
        if self.kind == PIXELS:
            vectors = self._batch(images, self.transform).flatten(1)
            if self.module is not None:
                probs = self.module.embed(self._batch(images, self.class_transform), "probs")
        else:
            x = self._batch(images, self.transform)
            pred = self._forward(x)
            vectors, probs = pred[self.kind], pred.get("probs")  # no probs: a pretrained-only export
            head = ATTRIBUTE_KIND_PREFIX + str((self.manifest.get("colour") or {}).get("attribute"))
            if colour and pred.get(head) is not None:
                colour_query = photos_colour_part(
                    self.manifest, pred[head].float().cpu().numpy(), [_pil(im) for im in images],
                    self.colour_probe,
                )  # fmt: skip
            if self.kind == FEATURES and self.manifest.get("flip_average"):  # the index holds flipped means
                # the mirror of the model's input, as the index build makes it (retrieval/embed.py): the
                # same vectors, and no second resize and normalisation of every photo
                vectors = mean_of_views(vectors, self._forward(torch.flip(x, dims=[-1]))[self.kind])
        if colour and colour_query is None:
            colour_query = self._colour_query(images)
        out_probs = None if probs is None else probs.float().cpu().numpy()
        vectors = prepare_vectors(vectors.float().cpu().numpy(), normalize=self.normalize)
        return vectors, out_probs, colour_query

    def _forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The model's outputs for a preprocessed batch, through ONNX Runtime when the searcher has it."""
        if self.onnx is not None:
            return {key: torch.from_numpy(value) for key, value in self.onnx(x).items()}
        return self.module.predict_step(x)

    def _hits(self, scores: np.ndarray, ids: np.ndarray) -> list[SearchHit]:
        scores, ids = np.asarray(scores), np.asarray(ids)
        keep = ids >= 0  # fewer items than k (or than k in the category)
        rows = self._hit_rows.fields(ids[keep])  # column lookups, not a pandas row per hit (hit_rows.py)
        return [
            SearchHit(rank=rank, score=float(score), **row)
            for rank, (score, row) in enumerate(zip(scores[keep], rows, strict=True), start=1)
        ]

    def search(
        self,
        images: Sequence[Image.Image | PreparedImage],
        k: int = 10,
        *,
        restrict_to_predicted: bool = False,
        filters: Mapping[str, Any] | None = None,
        group_by_product: bool = False,
        colour_weight: float = 0.0,
        colour: str | None = None,
        q: str | None = None,
        text_weight: float = 1.0,
        qe: int = 0,
        qe_alpha: float = 3.0,
    ) -> list[SearchResult]:
        """Top-``k`` catalogue items for each image (PIL images, decoded by the caller with
        :func:`imgsearch.data.images.load_image`).

        ``restrict_to_predicted``: classify-then-search, only items of the predicted category.
        ``filters``: metadata conditions (:mod:`imgsearch.retrieval.filters`, e.g. ``{"brand": "Acme",
        "price": (10, 50)}``), applied inside the FAISS search, so ``k`` results come back when ``k`` items
        pass. ``group_by_product``: one slot per product, its best-matching photo, the product's other
        matching photos in ``other_views``.

        Words and colour (:mod:`imgsearch.retrieval.hybrid`): ``colour_weight`` re-weights the index's colour
        part (0 = the colour-blind ranking, exactly); ``colour``: "this, in colour c" (the predicted kind of
        product, items of colour ``c``); ``q``: words fused with the photo ranking by reciprocal rank at
        ``text_weight`` (the photo's weight is 1).

        ``qe``: alpha-QE (:mod:`imgsearch.retrieval.expansion`): the query vector plus its ``qe`` nearest
        items' stored vectors (under the same filters and category), weighted by ``similarity ** qe_alpha``,
        searched again; 0 = off. Cosine indexes only.

        Raises:
            ValueError: ``k < 1``, ``restrict_to_predicted`` without a classifier, or a bad filter;
                :class:`~imgsearch.retrieval.colour.NoColourPartError` for a weight on an index without a
                colour part; :class:`~imgsearch.retrieval.text.TextQueryError` for bad words or an unknown
                colour (its message lists the known ones).
        """
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if not images:
            return []
        weight = check_colour_weight(colour_weight, self.colour_parts)
        if colour is not None:
            filters = {**dict(filters or {}), **self.in_colour_filter(colour)}
            restrict_to_predicted = self.module is not None and bool(self.module.class_names)
        if q is not None:
            match_expression(q)  # bad words fail before the model runs
        if restrict_to_predicted and not (self.module is not None and self.module.class_names):
            raise ValueError("restrict_to_predicted needs a classifier; this index has none")
        self.check_expansion(qe, qe_alpha)
        if weight:  # the colour part from the same forward pass
            vectors, probs, colour_query = self._embed(images, colour=True)
        else:
            (vectors, probs), colour_query = self.embed(images), None
        fetch = max(k * 10, 200) if q is not None else k  # the photo ranking that words fuse with
        options = dict(restrict_to_predicted=restrict_to_predicted, filters=filters, colour_weight=weight,
                       colour_query=colour_query)  # fmt: skip
        if qe:
            vectors = self._expand_queries(
                vectors, probs, qe, float(qe_alpha), restrict_to_predicted, filters
            )
        if q is None:
            return self.search_vectors(vectors, probs, fetch, group_by_product=group_by_product, **options)
        if probs is None:  # the category is the neighbours' vote, which needs the hits
            ranked = [(r.category, r.probability, [h.item_id for h in r.hits])
                      for r in self.search_vectors(vectors, probs, fetch, **options)]  # fmt: skip
        else:  # only the photo ranking's ids: building 200 hits to fuse would cost more than the words
            with self._lock:
                self._sync()
                ranked = self._search_vectors(vectors, probs, fetch, group_by_product=False, exclude_items=(),
                                              ranking_only=True, **options)  # fmt: skip
        return [
            self._fuse_words(c, p, ids, q, k, text_weight, filters, group_by_product) for c, p, ids in ranked
        ]

    def check_expansion(self, qe: int, qe_alpha: float) -> None:
        """Raises ValueError for a bad ``qe`` / ``qe_alpha`` or an index that cannot expand queries."""
        if isinstance(qe, bool) or not isinstance(qe, int | np.integer) or qe < 0:
            raise ValueError(f"qe must be an integer >= 0 (0 = off), got {qe!r}")
        if isinstance(qe_alpha, bool) or not isinstance(qe_alpha, int | float) or not 0 <= qe_alpha < 1e6:
            raise ValueError(f"qe_alpha must be a number >= 0, got {qe_alpha!r}")
        if qe and not (self.normalize and (self.manifest.get("index") or {}).get("metric", "ip") == "ip"):
            raise ValueError(
                "query expansion averages unit vectors, so it needs a cosine index (metric=ip, "
                "normalize=true); this index is not one"
            )

    def _expand_queries(
        self,
        vectors: np.ndarray,
        probs: np.ndarray | None,
        qe: int,
        alpha: float,
        restrict_to_predicted: bool,
        filters: Mapping[str, Any] | None,
    ) -> np.ndarray:
        """alpha-QE with the first ranking's top-``qe`` items' stored vectors (the same filters apply)."""
        from imgsearch.retrieval.expansion import expand_with

        with self._lock:
            self._sync()
            ranked = self._search_vectors(vectors, probs, qe, restrict_to_predicted=restrict_to_predicted,
                                          filters=filters, group_by_product=False, exclude_items=(),
                                          ranking_only=True)  # fmt: skip
            neighbours = np.zeros((len(vectors), qe, vectors.shape[1]), np.float32)
            valid = np.zeros((len(vectors), qe), bool)
            for i, (_, _, ids) in enumerate(ranked):
                for j, vid in enumerate(ids[:qe]):
                    neighbours[i, j], valid[i, j] = self._stored_vector(vid), True
        return expand_with(vectors, neighbours, valid, alpha)

    def _stored_vector(self, vid: int) -> np.ndarray:
        """The indexed vector of vector id ``vid`` (the caller holds the lock)."""
        if self.live is not None:
            return self.live.vector_of(str(self.items.loc[vid, "item_id"]))
        if ivf := _ivf_without_direct_map(self.index):
            ivf.make_direct_map()  # IVF reconstructs by id only with its direct map
        try:
            return self.index.reconstruct(int(vid))
        except RuntimeError as e:  # e.g. an IndexIDMap without stored vectors
            raise ValueError(
                f"this index cannot hand back its stored vectors, so queries cannot be expanded (qe): {e}"
            ) from None

    def in_colour_filter(self, colour: str) -> dict[str, Any]:
        """The filter of "in colour c"; the catalogue's colours are listed once per catalogue state."""
        with self._lock:
            self._sync()
            if self._known_colours is None:
                self._known_colours = known_colour_values(self.items, self.manifest)
            column, known = self._known_colours
        return colour_filter(colour, known, column)

    def _colour_query(self, images: Sequence[Image.Image | PreparedImage]) -> np.ndarray:
        if colour_source(self.manifest) == "lab":  # the pixels alone: no head to run
            return photos_colour_part(self.manifest, None, [_pil(im) for im in images])
        attr = str(self.manifest["colour"]["attribute"])
        with torch.inference_mode():
            probs = self.module.predict_attributes(self._batch(images, self.class_transform))[attr]
        pil = [_pil(im) for im in images]
        return photos_colour_part(self.manifest, probs.float().cpu().numpy(), pil, self.colour_probe)

    def _text_ids(self, q: str, k: int, filters: Mapping[str, Any] | None) -> tuple[np.ndarray, np.ndarray]:
        with self._lock:
            self._sync()
            allowed = self._filter.allowed_ids(filters)
            if self.live is not None:
                return self.live.store.text_search(q, k, allowed)
            if self._memory_text is None:
                self._memory_text = MemoryText(self.items)
            return self._memory_text.text_search(q, k, allowed)

    def _fuse_words(
        self, category: str | None, probability: float | None, image_ranking: Sequence[Any], q: str, k: int,
        text_weight: float, filters: Any, group: bool,
    ) -> SearchResult:  # fmt: skip
        """Words fused with a photo ranking (vector ids, or item ids when they are strings)."""
        with self._lock:
            if self._vector_ids is None:  # once per catalogue state, not per query
                self._vector_ids = dict(
                    zip(self.items["item_id"].astype(str), self.items.index.to_numpy(dtype=np.int64).tolist(),
                        strict=True)
                )  # fmt: skip
            vid = self._vector_ids
        text_ids, _ = self._text_ids(q, max(k * 10, 200), filters)
        image_ids = [int(vid[i]) if isinstance(i, str) else int(i) for i in image_ranking]
        ids, scores = fuse_with_text(image_ids, text_ids, text_weight, k * self._max_views if group else k)
        hits = self._hits(scores, ids)
        return SearchResult(category, probability, group_hits(hits, k) if group else hits)

    def search_text(
        self, q: str, k: int = 10, *, filters: Mapping[str, Any] | None = None, group_by_product: bool = False
    ) -> SearchResult:
        """Words alone: the ``k`` items best matching ``q`` by BM25 (scores: BM25, higher = better)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        ids, scores = self._text_ids(q, k * self._max_views if group_by_product else k, filters)
        hits = self._hits(scores, ids)
        return SearchResult(None, None, group_hits(hits, k) if group_by_product else hits)

    def search_vectors(
        self,
        vectors: np.ndarray,
        probs: np.ndarray | None,
        k: int = 10,
        *,
        restrict_to_predicted: bool = False,
        filters: Mapping[str, Any] | None = None,
        group_by_product: bool = False,
        exclude_items: Sequence[str] = (),
        colour_weight: float = 0.0,
        colour_query: np.ndarray | None = None,
        qe: int = 0,
        qe_alpha: float = 3.0,
    ) -> list[SearchResult]:
        """:meth:`search` for query vectors already embedded (and their class probabilities, or ``None``);
        ``exclude_items`` are never returned (the query item itself, for "more like this")."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        self.check_expansion(qe, qe_alpha)
        if qe:
            vectors = self._expand_queries(
                vectors, probs, qe, float(qe_alpha), restrict_to_predicted, filters
            )
        with self._lock:
            self._sync()
            return self._search_vectors(
                vectors, probs, k, restrict_to_predicted=restrict_to_predicted, filters=filters,
                group_by_product=group_by_product, exclude_items=exclude_items,
                colour_weight=colour_weight, colour_query=colour_query,
            )  # fmt: skip

    def _search_vectors(
        self,
        vectors: np.ndarray,
        probs: np.ndarray | None,
        k: int,
        *,
        restrict_to_predicted: bool,
        filters: Mapping[str, Any] | None,
        group_by_product: bool,
        exclude_items: Sequence[str],
        colour_weight: float = 0.0,
        colour_query: np.ndarray | None = None,
        ranking_only: bool = False,
    ) -> list[Any]:
        n = len(vectors)
        allowed = self._filter.allowed_ids(filters)
        if exclude_items:
            keep = ~self.items["item_id"].astype(str).isin([str(i) for i in exclude_items]).to_numpy()
            if allowed is None:
                allowed = self.items.index.to_numpy(dtype=np.int64)[keep]
            else:
                allowed = np.intersect1d(allowed, self.items.index.to_numpy(dtype=np.int64)[keep])
        categories: list[str | None] = [None] * n
        confidence: list[float | None] = [None] * n
        if probs is not None:
            names = self.module.class_names
            best = probs.argmax(axis=1)
            categories = [names[int(b)] for b in best]
            confidence = [float(probs[i, b]) for i, b in enumerate(best)]
        # with grouping, k products need at most k * (most photos of one product) results
        fetch = k * self._max_views if group_by_product else k
        wanted = fetch
        if colour_weight:  # candidates for the colour re-scoring (retrieval/colour.py)
            fetch = max(fetch * CANDIDATE_FACTOR, MIN_CANDIDATES)
        k_eff = max(1, min(fetch, len(self.items) if allowed is None else len(allowed)))
        dead = self.live.dead if self.live is not None else None
        if restrict_to_predicted:
            members = self._members_of_label
            if allowed is not None:
                # the predicted categories' members that pass the filter: O(members + allowed) per query
                of_label, passing = self._members_of_label, np.asarray(allowed, dtype=np.int64)

                def members(value: Any) -> np.ndarray:
                    return np.intersect1d(of_label(value), passing, assume_unique=True)

            s, ids = search_within_groups(self.index, vectors, k_eff, categories, members)
        elif allowed is not None:
            if len(allowed) == 0:
                s, ids = np.zeros((n, k_eff), np.float32), np.full((n, k_eff), -1)
            else:
                exact = (
                    search_subset(self.index, vectors, k_eff, allowed) if len(allowed) <= SUBSET_MAX else None
                )
                if exact is None:
                    exact = search_batched(
                        self.index, vectors, k_eff, params=search_params(self.index, ids=allowed)
                    )
                s, ids = exact
        else:
            # a live HNSW index keeps removed vectors as tombstones: leave them out inside the search
            params = search_params(self.index, exclude=dead) if dead is not None and len(dead) else None
            s, ids = search_batched(self.index, vectors, k_eff, params=params)
        if colour_weight and colour_query is not None and self.colour_parts is not None:
            lower = (self.manifest.get("index") or {}).get("metric") == "l2"
            s, ids = rerank_by_colour(s, ids, self.colour_parts, colour_query, colour_weight,
                                      min(wanted, k_eff), lower_is_better=lower)  # fmt: skip
        if ranking_only:  # (category, confidence, ranked vector ids) for fusing with words
            return [(categories[i], confidence[i], [int(v) for v in ids[i] if v >= 0]) for i in range(n)]
        results = []
        for i in range(n):
            hits = self._hits(s[i], ids[i])
            if group_by_product:
                hits = group_hits(hits, k)
            if probs is None:  # no classifier (pretrained-only or pixels index): the neighbours' labels vote
                categories[i], confidence[i] = neighbour_vote(hits)
            results.append(SearchResult(categories[i], confidence[i], hits))
        return results

    # ------------------------------------------------------------------------------------------ writing

    def make_live(self) -> LiveIndex:
        """The live catalogue behind this searcher, made live on first use (:mod:`~imgsearch.retrieval.live`).

        Raises:
            ValueError: the searcher was not loaded from an index directory.
        """
        with self._lock:
            if self.live is None:
                if self.index_dir is None:
                    raise ValueError(
                        "only a searcher loaded with Searcher.from_index_dir can change its catalogue"
                    )
                self.live = LiveIndex.open(self.index_dir, create=True, image_root=self._image_root)
                self._adopt_items()
            return self.live

    def add_items(
        self,
        items: pd.DataFrame,
        images: Sequence[Image.Image] | None = None,
        *,
        mode: str = "add",
        batch_size: int = 32,
    ) -> dict[str, Any]:
        """Embed and add catalogue rows (the schema of :mod:`imgsearch.data.schema`; extra columns are kept
        and filterable) in one transaction, without a rebuild.

        Args:
            items: rows with at least ``item_id``, ``image_path`` and ``label``.
            images: their decoded photos, in row order (default: read from ``image_path``; unreadable ones
                are skipped, counted and named in the report, the others still added).
            mode: ``add`` (new ids only), ``update`` (existing ids: photo and metadata replaced) or
                ``upsert``.

        Returns:
            ``{"added": n, "item_ids": [...], "skipped": {item_id: reason}}``.

        Raises:
            ItemStoreError: an id exists (add) or does not (update); ValueError: a row breaks the schema.
        """
        from imgsearch.data.transforms import draft_size_for

        rows = validate_catalogue(items).reset_index(drop=True)
        skipped: dict[str, str] = {}
        if images is None:
            loaded: list[Image.Image] = []
            keep: list[int] = []
            draft = draft_size_for(self.module.data_config) if self.kind != PIXELS else None
            for i, path in enumerate(rows["image_path"].astype(str)):
                try:
                    loaded.append(load_image(path, draft_size=draft))
                    keep.append(i)
                except ImageDecodeError as exc:
                    skipped[str(rows.at[i, "item_id"])] = exc.reason
            if skipped:
                log.warning("add_items: %d unreadable photo(s) skipped: %s", len(skipped), skipped)
            rows, images = rows.iloc[keep].reset_index(drop=True), loaded
        elif len(images) != len(rows):
            raise ValueError(f"{len(rows)} rows but {len(images)} images")
        live = self.make_live()
        if not len(rows):
            return {"added": 0, "item_ids": [], "skipped": skipped}
        parts = [self.embed(images[s : s + batch_size])[0] for s in range(0, len(images), batch_size)]
        # the same model's colour part and predicted columns as the build's items (retrieval/live_attributes)
        rows, colour = new_item_extras(self, rows, images, batch_size)
        on_insert = None if colour is None else functools.partial(_write_colour, parts=colour)
        with self._lock:
            live.add(rows, np.vstack(parts), mode=mode, on_insert=on_insert)
            self._adopt_items()
        return {"added": len(rows), "item_ids": rows["item_id"].astype(str).tolist(), "skipped": skipped}

    def remove_items(self, item_ids: Sequence[str], *, missing_ok: bool = False) -> int:
        """Remove items by id in one transaction; they are never returned again. Returns how many."""
        live = self.make_live()
        with self._lock:
            n = len(live.remove(item_ids, missing_ok=missing_ok))
            self._adopt_items()
        return n

    def update_metadata(self, item_id: str, values: Mapping[str, Any]) -> None:
        """Change an item's metadata (title, price, any column; not its photo) in one transaction."""
        live = self.make_live()
        with self._lock:
            live.set_metadata(item_id, values)
            self._adopt_items()

    def compact(self) -> dict[str, Any]:
        """Write a snapshot of the live catalogue, tombstones removed (see :meth:`LiveIndex.compact`)."""
        live = self.make_live()
        with self._lock:
            snap = live.compact()
            self._adopt_items()
        return {"snapshot": snap.file, "vectors": snap.ntotal, "items": len(self.items)}

    def catalogue(self) -> pd.DataFrame:
        """The item table as it stands now, other processes' committed writes included."""
        with self._lock:
            self._sync()
            return self.items

    def item(self, item_id: str) -> pd.Series:
        """An item's row (its name is its FAISS id). Raises ``KeyError`` for an unknown id."""
        with self._lock:
            self._sync()
            if self._item_positions is None:  # built on first use after a change, not on every write
                self._item_positions = pd.Index(self.items["item_id"].astype(str))
            try:
                position = self._item_positions.get_loc(str(item_id))
            except KeyError:
                raise KeyError(f"item id {item_id!r} is not in the catalogue") from None
            return self.items.iloc[position]

    def similar(
        self,
        item_id: str,
        k: int = 10,
        *,
        filters: Mapping[str, Any] | None = None,
        group_by_product: bool = False,
    ) -> SearchResult:
        """ "More like this": the items nearest to a stored item's own vector, the item itself (and, with
        ``group_by_product``, its product) left out. The category is the item's own label.

        Raises:
            KeyError: unknown item id.
        """
        with self._lock:
            row = self.item(item_id)
            vector = self._stored_vector(int(row.name))
            exclude = [str(item_id)]
            if group_by_product:
                same = self.items["product_id"].astype(str) == str(row["product_id"])
                exclude = self.items.loc[same, "item_id"].astype(str).tolist()
            result = self.search_vectors(
                vector[None, :], None, k, filters=filters, group_by_product=group_by_product,
                exclude_items=exclude,
            )[0]  # fmt: skip
        return SearchResult(str(row["label"]) or None, None, result.hits)


def _write_colour(conn: Any, vector_ids: list[int], *, parts: np.ndarray) -> None:
    write_colour_parts(conn, vector_ids, parts)


def _ivf_without_direct_map(index: faiss.Index) -> Any | None:
    try:
        ivf = faiss.extract_index_ivf(index)
    except RuntimeError:
        return None
    return None if ivf.direct_map.type != faiss.DirectMap.NoMap else ivf
