"""Search-time options that need no retraining: flip-averaged embeddings and query expansion.

* **Flip averaging** - the vector of an image is the mean of its own and its mirror image's (each
  L2-normalised first, the mean re-normalised): a product photographed facing left or right gets one vector.
* **alpha-QE** (Radenovic et al., "Fine-tuning CNN image retrieval with no human annotation", 2018) - a query
  is replaced by itself plus its top-k gallery neighbours weighted by ``similarity ** alpha``, re-normalised:
  the neighbours' other views of the product pull the query towards them.
* **DBA** (database-side augmentation, the same paper) - every gallery vector gets the same treatment against
  the gallery (its own top-1 is itself, weight 1), so each product's views move towards each other.

All vectors are compared by cosine (inner product of unit vectors); FAISS finds the neighbours.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "alpha_query_expansion",
    "database_augmentation",
    "expand_with",
    "flip_averaged",
    "mean_of_views",
    "unit",
]


def flip_averaged(embed: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor) -> torch.Tensor:
    """Mean of ``embed(images)`` and ``embed(images mirrored left-right)``, each L2-normalised, the mean
    re-normalised."""
    if images.ndim != 4:
        raise ValueError(f"images must be a [B, C, H, W] batch, got shape {tuple(images.shape)}")
    return mean_of_views(embed(images), embed(torch.flip(images, dims=[-1])))


def mean_of_views(own: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
    """The flip-averaged vector from the two views' vectors: each L2-normalised, the mean re-normalised."""
    own, mirrored = F.normalize(own.float(), dim=-1), F.normalize(mirrored.float(), dim=-1)
    return F.normalize(own + mirrored, dim=-1)


def unit(vectors: np.ndarray) -> np.ndarray:
    """Rows L2-normalised (float32, C-contiguous; zero rows stay zero)."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    return np.ascontiguousarray(v / np.maximum(norms, 1e-12), dtype=np.float32)


def _neighbours(queries: np.ndarray, gallery: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    import faiss

    index = faiss.IndexFlatIP(gallery.shape[1])
    index.add(gallery)
    return index.search(queries, min(k, len(gallery)))


def _expand(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int,
    alpha: float,
    exclude_self: bool,
    with_self: bool,
    self_positions: np.ndarray | None = None,
) -> np.ndarray:
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    q, g = unit(queries), unit(gallery)
    if q.ndim != 2 or g.ndim != 2 or q.shape[1] != g.shape[1]:
        raise ValueError(f"queries {q.shape} and gallery {g.shape} must be [N, d] with the same d")
    if exclude_self and len(q) != len(g):
        raise ValueError("exclude_self needs the queries to be the gallery rows, in order")
    if exclude_self:
        self_positions = np.arange(len(q))
    if self_positions is not None:
        self_positions = np.asarray(self_positions, dtype=np.int64)
        if self_positions.shape != (len(q),):
            raise ValueError(
                f"self_positions must hold one gallery position (or -1) per query, got {self_positions.shape}"
            )
    if k == 0 or len(g) == 0:
        return q
    sims, ids = _neighbours(q, g, k + int(self_positions is not None))
    if self_positions is not None:  # a query's own row is not a neighbour of it (it is not its own result)
        own = ids == self_positions[:, None]
        sims, ids = np.where(own, -np.inf, sims), np.where(own, -1, ids)
        order = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        sims, ids = np.take_along_axis(sims, order, 1), np.take_along_axis(ids, order, 1)
    valid = ids >= 0
    return expand_with(q, g[np.where(valid, ids, 0)], valid, alpha, sims=sims, with_self=with_self)


def expand_with(
    queries: np.ndarray,
    neighbours: np.ndarray,
    valid: np.ndarray,
    alpha: float = 3.0,
    *,
    sims: np.ndarray | None = None,
    with_self: bool = True,
) -> np.ndarray:
    """The expansion itself, for neighbours found elsewhere (an index's own search): each unit query plus its
    ``neighbours`` ``[n, k, d]`` (rows where ``valid`` ``[n, k]`` is false are padding) weighted by
    ``max(sim, 0) ** alpha``, each neighbour L2-normalised first, the sum re-normalised; ``sims`` default to
    the cosine of query and neighbour."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    q, nb = unit(queries), np.asarray(neighbours, dtype=np.float32)
    if nb.ndim != 3 or nb.shape[0] != len(q) or nb.shape[2] != q.shape[1] or valid.shape != nb.shape[:2]:
        raise ValueError(f"neighbours {nb.shape} / valid {valid.shape} do not fit queries {q.shape}")
    nb = unit(nb.reshape(-1, nb.shape[2])).reshape(nb.shape)
    if sims is None:
        sims = np.einsum("nd,nkd->nk", q, nb)
    weights = np.where(valid, np.clip(np.where(valid, sims, 0.0), 0.0, None) ** alpha, 0.0)
    expanded = (weights[..., None] * nb).sum(axis=1)
    return unit((q if with_self else 0.0) + expanded)


def alpha_query_expansion(
    queries: np.ndarray,
    gallery: np.ndarray,
    k: int = 2,
    alpha: float = 3.0,
    *,
    exclude_self: bool = False,
    self_positions: np.ndarray | None = None,
) -> np.ndarray:
    """Each query plus its top-``k`` gallery neighbours weighted by ``max(sim, 0) ** alpha``, re-normalised.

    ``exclude_self``: the queries are the gallery rows (leave-one-out), so a query's own row is skipped.
    ``self_positions``: the gallery position of each query that is also a gallery item (-1 for the others),
    skipped as its neighbour - the general form of ``exclude_self``.
    ``k=0`` returns the normalised queries unchanged.
    """
    return _expand(queries, gallery, k, alpha, exclude_self, with_self=True, self_positions=self_positions)


def database_augmentation(vectors: np.ndarray, k: int = 2, alpha: float = 3.0) -> np.ndarray:
    """DBA: every row replaced by the ``sim ** alpha``-weighted sum of its top-``k`` rows (itself first, at
    weight 1), re-normalised. ``k=1`` changes nothing (a row's top-1 is itself)."""
    return _expand(vectors, vectors, k, alpha, exclude_self=False, with_self=False)
