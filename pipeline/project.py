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

from pipeline.neighbors import KnnGraph

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
    #: How points are put on a fitted map (``pipeline.placement``): entries beyond the fit sample and new
    #: days. Not a fit setting: changing it re-fits nothing, it applies to the next points placed.
    placement: str = "auto"

    def as_dict(self) -> dict:
        return asdict(self) | {"umap_metric": "cosine", "tsne_metric": "cosine", "tsne_init": "pca"}

    def fit_dict(self) -> dict:
        """The settings a published map was fitted with: placing on it needs the same."""
        return {k: v for k, v in self.as_dict().items() if k != "placement"}

    @property
    def knn_k(self) -> int:
        """Neighbours to compute once: enough for t-SNE's 3 × perplexity and for UMAP."""
        return max(self.umap_neighbors, int(3 * self.tsne_perplexity))


def umap_backend() -> str:
    """``cuml`` where RAPIDS cuML is installed and sees a CUDA GPU, else ``umap-learn``.

    cuML's UMAP fits the same model on the GPU (its own optimiser and random streams, and its spectral
    start rather than umap-learn's PCA one, so its maps are not umap-learn's). Checked without importing anything heavy when cuML is absent, which is
    every CPU machine, so the CPU build pays nothing for the check. No GPU was available to test the cuML
    path here: it degrades to umap-learn whenever cuML cannot run."""
    import importlib.util

    if importlib.util.find_spec("cuml") is None:
        return "umap-learn"
    try:
        import cupy

        if cupy.cuda.runtime.getDeviceCount() > 0:
            import cuml.manifold  # noqa: F401

            return "cuml"
    except Exception as exc:  # a CUDA driver or library problem: the CPU fit still works
        log.warning("cuML is installed but cannot run (%s): UMAP maps are fitted with umap-learn on the CPU", exc)
    return "umap-learn"


def umap_map(vectors: np.ndarray, graph: KnnGraph, params: ProjectionParams, n_components: int = 2, *,
             backend: str = "umap-learn") -> np.ndarray:
    """A UMAP map of ``vectors`` from their k-NN ``graph``, with umap-learn or (``backend="cuml"``) cuML."""
    n = vectors.shape[0]
    k = max(2, min(params.umap_neighbors, n - 1))
    idx, dist = graph.with_self(k - 1)
    if backend == "cuml":
        from cuml.manifold import UMAP

        reducer = UMAP(n_components=n_components, n_neighbors=idx.shape[1], min_dist=params.umap_min_dist,
                       metric="cosine", random_state=params.seed)
        knn = (np.ascontiguousarray(idx, np.int64), np.ascontiguousarray(dist, np.float32))
        return np.asarray(reducer.fit_transform(np.asarray(vectors, np.float32), knn_graph=knn), np.float32)
    import umap

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


def vector_drift(old: np.ndarray, new: np.ndarray) -> float:
    """Mean cosine distance between two versions of the same entries' vectors (rows aligned). Row dot
    products and norms by ``einsum``, without normalised copies of either matrix: every daily build
    measures it for each mapped kind, and the copies made it 5× slower (≈ 0.25 s of a one-day build)."""
    a, b = np.asarray(old, np.float32), np.asarray(new, np.float32)
    if not len(a):
        return 0.0
    norms = np.sqrt(np.einsum("ij,ij->i", a, a) * np.einsum("ij,ij->i", b, b))
    cosine = np.einsum("ij,ij->i", a, b) / np.maximum(norms, 1e-24)
    return max(0.0, float(np.mean(1.0 - cosine)))


def fit_sample(n: int, size: int, seed: int) -> np.ndarray | None:
    """Indices (sorted) of the stable random sample a map of ``n`` points is fitted on; None = all."""
    if n <= size:
        return None
    return np.sort(np.random.default_rng(seed).choice(n, size, replace=False))
