"""Placing points on a map fitted without them, without moving the fitted points.

Two uses: maps of more entries than ``--map-sample`` (fitted on a stable sample, the rest placed on
it) and the daily ingest (a day's new entries placed on the published maps). Two methods:

* ``interpolate``: the similarity-weighted mean of the positions of the new point's 15 nearest fitted
  neighbours. This is how umap-learn's ``transform`` starts; milliseconds per thousand points.
* ``transform``: umap-learn's ``transform`` in full, for UMAP maps. It starts from the weighted mean of
  the fuzzy neighbours' positions, then runs UMAP's layout optimisation for the new points against the
  fixed fitted map (pulled towards their neighbours, pushed away from random fitted points). On the
  archive's text map fitted on 4,000 entries with 7,382 placed, it keeps trustworthiness at the full
  fit's level (0.940 against 0.891 interpolated) and 10-NN preservation 0.225 against 0.167, for
  ≈ 0.2 ms a point in one process (``bench/projection_sample.py``). t-SNE maps are interpolated either way: openTSNE's
  ``transform`` needs its own neighbour index.

``--map-placement auto`` (the default) transforms from :data:`TRANSFORM_MIN_POINTS` points and
interpolates fewer: importing umap-learn and compiling its numba functions cost ≈ 6 s, which for the one
entry a day adds made the daily build 14.0 s instead of 8.0 s when measured (15.8 s against 9.4 s in the latest run;
``bench/add_one_day.py``); re-fits put
such points in order later.

Why not ``umap.UMAP.transform`` itself: the build fits UMAP on its shared precomputed k-NN graph, and
such a model has no search index for new points (umap-learn raises). The steps below are umap-learn's
own functions in the order its ``transform`` calls them, fed with neighbours from
:func:`pipeline.neighbors.nearest_fitted`.

The rows are placed in fixed batches of :data:`BATCH_ROWS`, each with its own seed. A batch's result
therefore does not depend on where it runs: in this process, in worker processes, or as a Ray task
with ``--runner ray`` (:meth:`pipeline.executors.Executor.map_batches`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from atlas.encoders.base import l2_normalise
from pipeline.neighbors import EXACT_MAX_PAIRS, fitted_index, nearest_fitted

#: umap-learn's cosine "disconnection distance": neighbours this far count as none (as in its transform).
_DISCONNECTED = 2.0

#: ``auto`` placement transforms this many points or more, and interpolates fewer.
TRANSFORM_MIN_POINTS = 1000
#: Neighbours a new point's position comes from (umap-learn's default n_neighbors).
PLACE_K = 15
#: Optimisation epochs of ``transform``: umap-learn's count for up to 10,000 new points, which every
#: batch is.
TRANSFORM_EPOCHS = 100
#: Rows per batch: large enough to be worth a task, small enough to spread over workers.
BATCH_ROWS = 4096


@dataclass(frozen=True)
class MapPlacement:
    """One map's fitted points and how to place new ones on it. Callable on a batch of vectors and
    the batch's number (its seed); it pickles, so batches can run in other processes or on Ray."""

    fitted: np.ndarray | None  # the fitted points' vectors, L2-normalised (None when ``index`` holds them)
    coords: np.ndarray  # their map positions (2 or 3 columns)
    method: str
    k: int
    seed: int
    min_dist: float
    index: Any = None  # an NN-descent index over the fitted vectors when exact products would be too large

    @classmethod
    def prepare(cls, *, fitted_vectors: np.ndarray, fitted_coords: np.ndarray, method: str, queries: int,
                k: int = PLACE_K, seed: int = 42, min_dist: float = 0.1) -> MapPlacement:
        """``queries``: how many points will be placed (an approximate neighbour index is built once
        when a batch of them against the fitted points would be too many exact similarities). ``k``:
        neighbours per point; for ``transform``, the map's own UMAP ``n_neighbors``."""
        if method not in ("interpolate", "transform"):
            raise ValueError(f"unknown map placement {method!r}; choose interpolate or transform")
        fitted = l2_normalise(np.asarray(fitted_vectors, np.float32))
        k = max(1, min(k, len(fitted)))
        if len(fitted) * min(max(queries, 1), BATCH_ROWS) > EXACT_MAX_PAIRS:
            # the index keeps its own copy of the vectors: ship that one only
            return cls(None, np.ascontiguousarray(fitted_coords, np.float32), method, k, seed, min_dist,
                       fitted_index(fitted, max(k, PLACE_K), seed=seed))
        return cls(fitted, np.ascontiguousarray(fitted_coords, np.float32), method, k, seed, min_dist)

    def __call__(self, vectors: np.ndarray, batch: int) -> np.ndarray:
        if not len(vectors):
            return np.zeros((0, self.coords.shape[1]), np.float32)
        if self.index is not None:
            idx, dist = self.index.query(l2_normalise(np.asarray(vectors, np.float32)), k=self.k)
            idx, sims = idx.astype(np.int64), 1.0 - dist.astype(np.float32)
        else:
            idx, sims = nearest_fitted(self.fitted, vectors, self.k, seed=self.seed, fitted_normalised=True)
        idx = np.where((idx >= 0) & (1.0 - sims < _DISCONNECTED), idx, -1)  # NN-descent may find fewer than k
        if self.method == "interpolate":
            weights = np.where(idx >= 0, np.maximum(sims, 0.0) + 1e-6, 0.0)
            weights /= np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)
            return np.einsum("nk,nkd->nd", weights, self.coords[np.maximum(idx, 0)]).astype(np.float32)
        return self._transform(idx, sims, batch)

    def _transform(self, idx: np.ndarray, sims: np.ndarray, batch: int) -> np.ndarray:
        """umap-learn's ``UMAP.transform`` after its neighbour search (umap-learn 0.5.12), on these
        neighbours (``-1``: none)."""
        import scipy.sparse
        from umap.layouts import optimize_layout_euclidean
        from umap.umap_ import (compute_membership_strengths, find_ab_params, init_graph_transform,
                                make_epochs_per_sample, smooth_knn_dist)

        dists = np.ascontiguousarray(np.clip(1.0 - sims, 0.0, _DISCONNECTED), np.float32)  # cosine, as umap's
        sigmas, rhos = smooth_knn_dist(dists, float(self.k), local_connectivity=0.0)
        rows, cols, vals, _ = compute_membership_strengths(np.ascontiguousarray(idx, np.int32), dists, sigmas, rhos,
                                                           bipartite=True)
        fitted = len(self.coords)
        graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(len(idx), fitted))
        start = graph.tocsr()
        start.eliminate_zeros()
        embedding = init_graph_transform(start, self.coords)
        graph.data[graph.data < graph.data.max() / float(TRANSFORM_EPOCHS)] = 0.0
        graph.eliminate_zeros()
        a, b = find_ab_params(1.0, self.min_dist)
        rng_state = np.random.RandomState([self.seed, batch]).randint(np.iinfo(np.int32).min, np.iinfo(np.int32).max,
                                                                      3).astype(np.int64)
        out = optimize_layout_euclidean(  # umap-learn's transform: repulsion 1, learning rate 1 / 4, 5 negatives
            np.ascontiguousarray(embedding, np.float32), self.coords.copy(), graph.row, graph.col, TRANSFORM_EPOCHS,
            fitted, make_epochs_per_sample(graph.data, TRANSFORM_EPOCHS), a, b, rng_state, gamma=1.0,
            initial_alpha=0.25, negative_sample_rate=5.0, parallel=False, move_other=False,
        )
        return np.asarray(out, np.float32)


def resolve(placement: str, *, map_method: str, points: int) -> str:
    """The method that places ``points`` on a map made by ``map_method`` under the ``placement`` setting."""
    if map_method not in ("umap", "umap3d"):
        return "interpolate"
    if placement == "auto":
        return "transform" if points >= TRANSFORM_MIN_POINTS else "interpolate"
    return placement


def batches(n: int, size: int = BATCH_ROWS) -> list[slice]:
    """The fixed row slices a placement runs in."""
    return [slice(start, min(start + size, n)) for start in range(0, n, size)]
