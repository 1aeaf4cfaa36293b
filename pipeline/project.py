"""Project stage: 2-D UMAP and t-SNE per embedding and a 3-D UMAP, from the shared k-NN graph.

UMAP (umap-learn) gets the graph as ``precomputed_knn``; t-SNE (openTSNE, FFT-accelerated) gets it
as precomputed neighbours for its perplexity affinities. Seeds are fixed, so a rebuild reproduces the
maps; umap-learn runs single-threaded when seeded, so the build runs maps of different embeddings in
parallel instead.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import asdict, dataclass

import numpy as np

from atlas.encoders.base import l2_normalise
from pipeline.neighbors import KnnGraph, nearest_fitted

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProjectionParams:
    umap_neighbors: int = 15
    umap_min_dist: float = 0.1
    tsne_perplexity: float = 30.0
    seed: int = 42
    #: Maps of more points are fitted on a stable sample of this many and the rest placed on them.
    fit_sample: int = 200_000
    #: t-SNE iterations after early exaggeration (openTSNE's default is 500). On the archive's 11,382 text
    #: vectors 300 keep trustworthiness 0.950 and 10-NN preservation 0.564 against 0.951 and 0.568 at 500,
    #: in 18 s instead of 41 s (late iterations are the slow ones: the FFT grid grows with the map;
    #: ``bench/tsne_iterations.py``). Four such maps were most of a cold build's map time.
    tsne_iterations: int = 300

    def as_dict(self) -> dict:
        return asdict(self) | {"umap_metric": "cosine", "tsne_metric": "cosine", "tsne_init": "pca"}

    @property
    def knn_k(self) -> int:
        """Neighbours to compute once: enough for t-SNE's 3 × perplexity and for UMAP."""
        return max(self.umap_neighbors, int(3 * self.tsne_perplexity))


def umap_map(vectors: np.ndarray, graph: KnnGraph, params: ProjectionParams, n_components: int = 2) -> np.ndarray:
    import umap

    n = vectors.shape[0]
    k = max(2, min(params.umap_neighbors, n - 1))
    idx, dist = graph.with_self(k - 1)
    reducer = umap.UMAP(
        n_components=n_components,
        n_neighbors=idx.shape[1],
        min_dist=params.umap_min_dist,
        metric="cosine",
        random_state=params.seed,
        precomputed_knn=(idx, dist, None),
        init="pca",  # spectral init fails on graphs with duplicate titles (many components)
    )
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*n_jobs value.*")
        warnings.filterwarnings("ignore", message=".*precomputed_knn.*")
        return reducer.fit_transform(vectors).astype(np.float32)


def tsne_map(vectors: np.ndarray, graph: KnnGraph, params: ProjectionParams, n_jobs: int = 1) -> np.ndarray:
    from openTSNE import TSNE, affinity, initialization
    from openTSNE.nearest_neighbors import PrecomputedNeighbors

    n = vectors.shape[0]
    perplexity = min(params.tsne_perplexity, max(2.0, (n - 1) / 3))
    idx, dist = graph.without_self(int(3 * perplexity))
    aff = affinity.PerplexityBasedNN(
        knn_index=PrecomputedNeighbors(idx, dist), perplexity=perplexity, n_jobs=n_jobs,
        random_state=params.seed,
    )
    init = initialization.pca(vectors, random_state=params.seed)
    tsne = TSNE(n_jobs=n_jobs, random_state=params.seed, negative_gradient_method="fft" if n > 500 else "bh",
                n_iter=params.tsne_iterations)
    return np.asarray(tsne.fit(affinities=aff, initialization=init), dtype=np.float32)


#: New entries are placed on existing maps (not re-fitted) while the points placed since the last fit
#: stay under this share of the fitted ones...
PLACE_MAX_SHARE = 0.05
#: ...and the fitted entries' own vectors moved by less than this mean cosine distance since the fit
#: (a retrained alignment head or a new encoder moves them; then the maps are re-fitted).
PLACE_MAX_DRIFT = 0.01
#: Neighbours whose map positions a new point's position is interpolated from.
PLACE_K = 15


def vector_drift(old: np.ndarray, new: np.ndarray) -> float:
    """Mean cosine distance between two versions of the same entries' vectors (rows aligned)."""
    a, b = l2_normalise(old), l2_normalise(new)
    return max(0.0, float(np.mean(1.0 - np.sum(a * b, axis=1)))) if len(a) else 0.0


def place_points(fitted_vectors: np.ndarray, fitted_coords: np.ndarray, new_vectors: np.ndarray,
                 k: int = PLACE_K, *, seed: int = 42) -> np.ndarray:
    """Map positions for new points without moving the fitted ones: the similarity-weighted mean of
    the positions of each new point's ``k`` nearest fitted neighbours (cosine), which is how UMAP's
    own ``transform`` initialises new points (neighbours from :func:`nearest_fitted`)."""
    if not len(new_vectors):
        return np.zeros((0, fitted_coords.shape[1]), np.float32)
    idx, sims = nearest_fitted(fitted_vectors, new_vectors, k, seed=seed)
    weights = np.maximum(sims, 0.0) + 1e-6
    weights /= weights.sum(axis=1, keepdims=True)
    return np.einsum("nk,nkd->nd", weights, fitted_coords[idx]).astype(np.float32)


def fit_sample(n: int, size: int, seed: int) -> np.ndarray | None:
    """Indices (sorted) of the stable random sample a map of ``n`` points is fitted on; None = all."""
    if n <= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
