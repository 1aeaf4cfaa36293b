"""One exact cosine k-nearest-neighbour graph per embedding, shared by UMAP, t-SNE and clustering.

Exact search is a blocked matrix product on normalised vectors: at archive scale (≈11k × 512) it takes
about a second on two cores and spares us three approximate indexes that would disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atlas.encoders.base import l2_normalise
from atlas.topk import top_k


@dataclass
class KnnGraph:
    """Row ``i`` lists ``i`` itself first, then its neighbours by increasing cosine distance."""

    indices: np.ndarray  # (n, k + 1) int64
    distances: np.ndarray  # (n, k + 1) float32

    @property
    def k(self) -> int:
        return self.indices.shape[1] - 1

    def without_self(self, k: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        k = self.k if k is None else min(k, self.k)
        return self.indices[:, 1 : k + 1], self.distances[:, 1 : k + 1]

    def with_self(self, k: int) -> tuple[np.ndarray, np.ndarray]:
        k = min(k, self.k)
        return self.indices[:, : k + 1], self.distances[:, : k + 1]


def knn_graph(vectors: np.ndarray, k: int, block: int = 2048) -> KnnGraph:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = x.shape[0]
    k = max(1, min(k, n - 1))
    idx = np.empty((n, k + 1), dtype=np.int64)
    dist = np.empty((n, k + 1), dtype=np.float32)
    for start in range(0, n, block):
        sims = x[start : start + block] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = np.inf  # self first, even for duplicate vectors
        idx[start : start + block], top = top_k(sims, k + 1)
        top[:, 0] = 1.0
        dist[start : start + block] = np.clip(1.0 - top, 0.0, 2.0)
    return KnnGraph(idx, dist)


#: Above this many (query × fitted) similarities, :func:`nearest_fitted` uses an approximate index
#: (pynndescent, which umap-learn already uses) instead of exact matrix products.
EXACT_MAX_PAIRS = 200_000_000
#: Queries per exact block (a block's similarity matrix stays under ≈ 400 MB at 25k fitted points).
QUERY_BLOCK = 4096


def nearest_fitted(fitted: np.ndarray, queries: np.ndarray, k: int, *, seed: int = 42) -> tuple[np.ndarray, np.ndarray]:
    """Each query's ``k`` most similar fitted vectors (cosine): (indices, similarities), both (q, k).

    Exact blocked matrix products for a day's entries against the archive; an NN-descent index over the
    fitted vectors when the product would be too large (millions of points against a fitted sample)."""
    a, b = l2_normalise(fitted), l2_normalise(queries)
    k = max(1, min(k, len(a)))
    if len(a) * len(b) <= EXACT_MAX_PAIRS:
        idx = np.empty((len(b), k), np.int64)
        sims = np.empty((len(b), k), np.float32)
        for start in range(0, len(b), QUERY_BLOCK):
            block = b[start:start + QUERY_BLOCK] @ a.T
            idx[start:start + len(block)], sims[start:start + len(block)] = top_k(block, k)
        return idx, sims
    from pynndescent import NNDescent

    index = NNDescent(a, metric="cosine", n_neighbors=max(k, 15), random_state=seed)
    idx, dist = index.query(b, k=k)
    return idx.astype(np.int64), 1.0 - dist.astype(np.float32)
