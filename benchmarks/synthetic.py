"""Clustered, L2-normalised vectors shaped like real image embeddings, generated chunk by chunk.

Real CNN embeddings are not uniform noise (on which every ANN index looks bad) nor a few tight
blobs (on which every index looks perfect): they sit near a low-dimensional subspace with a decaying
spectrum and form many clusters (products, styles, categories). The generator draws a mixture of
Gaussians in a ``rank``-dimensional latent space whose axis scales decay as ``j**-0.5``, maps it
into ``dim`` dimensions through a random orthonormal basis, adds a little isotropic noise and
L2-normalises. Chunks are seeded independently, so a 1M x 1280 gallery (5 GB of float32) never
has to exist in memory as one array: indexes are filled chunk by chunk and chunk ``i`` can be
generated again later, bit for bit.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np


@dataclass
class ClusteredEmbeddings:
    dim: int
    n_clusters: int = 1000
    rank: int = 64
    n_classes: int = 50
    cluster_spread: float = 0.6
    noise: float = 0.02
    seed: int = 0
    _basis: np.ndarray = field(init=False, repr=False)
    _centers: np.ndarray = field(init=False, repr=False)
    _scales: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        rng = np.random.default_rng([self.seed, 0])
        rank = min(self.rank, self.dim)
        q, _ = np.linalg.qr(rng.standard_normal((self.dim, rank)))
        self._basis = q.T.astype(np.float32)  # (rank, dim), orthonormal rows
        self._scales = (np.arange(1, rank + 1, dtype=np.float32) ** -0.5).astype(np.float32)
        self._centers = (rng.standard_normal((self.n_clusters, rank)) * self._scales).astype(np.float32)

    def cluster_label(self, cluster: np.ndarray) -> np.ndarray:
        """Category of a cluster: ``n_classes`` categories, each a union of clusters (styles of a class)."""
        return (cluster % self.n_classes).astype(np.int64)

    def sample(self, n: int, stream: int, chunk: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """``n`` vectors and their cluster ids from the independent stream ``(seed, stream, chunk)``."""
        rng = np.random.default_rng([self.seed, 1 + stream, chunk])
        cluster = rng.integers(0, self.n_clusters, size=n)
        latent = self._centers[cluster] + rng.standard_normal((n, self._basis.shape[0]), dtype=np.float32) * (
            self.cluster_spread * self._scales
        )
        x = latent @ self._basis
        x += rng.standard_normal((n, self.dim), dtype=np.float32) * self.noise
        x /= np.linalg.norm(x, axis=1, keepdims=True)
        return np.ascontiguousarray(x, dtype=np.float32), cluster

    def gallery_chunks(self, n: int, chunk_size: int = 20_000) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The gallery (stream 0) in chunks; the same ``n`` and ``chunk_size`` give the same vectors."""
        for i, start in enumerate(range(0, n, chunk_size)):
            yield self.sample(min(chunk_size, n - start), stream=0, chunk=i)

    def gallery(self, n: int, chunk_size: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
        xs, cs = zip(*self.gallery_chunks(n, chunk_size), strict=True)
        return np.concatenate(xs), np.concatenate(cs)

    def queries(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Fresh draws from the same mixture (stream 1): queries are never gallery items."""
        return self.sample(n, stream=1)

    def train_sample(self, n: int) -> np.ndarray:
        """Training sample for IVF/PQ from the same distribution as the gallery (stream 2)."""
        return self.sample(n, stream=2)[0]
