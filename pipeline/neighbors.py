"""One exact cosine k-nearest-neighbour graph per embedding, shared by UMAP, t-SNE, clustering and the
anomaly detectors.

Exact search is a blocked matrix product on normalised vectors: at archive scale (≈11k × 512) it takes
about a second on two cores and spares us three approximate indexes that would disagree. Builds keep
each kind's graph in the lake's cache (:func:`cached_knn_graph`); a build that adds a day's entries
extends it exactly (the new rows against all, the old rows against the new) instead of recomputing
11k × 11k similarities per kind.
"""

from __future__ import annotations

import hashlib
import logging
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from atlas.encoders.base import l2_normalise
from atlas.topk import top_k

log = logging.getLogger(__name__)


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

    def truncated(self, k: int) -> "KnnGraph":
        """The same graph with each row's ``k`` nearest neighbours (a view when ``k`` is smaller)."""
        return self if k >= self.k else KnnGraph(self.indices[:, : k + 1], self.distances[:, : k + 1])


def _rows_graph(x: np.ndarray, rows: np.ndarray, k: int, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Graph rows (self first) of the vectors at positions ``rows`` against all of ``x``."""
    idx = np.empty((len(rows), k + 1), dtype=np.int64)
    dist = np.empty((len(rows), k + 1), dtype=np.float32)
    for start in range(0, len(rows), block):
        part = rows[start : start + block]
        sims = x[part] @ x.T
        sims[np.arange(len(part)), part] = np.inf  # self first, even for duplicate vectors
        idx[start : start + block], top = top_k(sims, k + 1)
        top[:, 0] = 1.0
        dist[start : start + block] = np.clip(1.0 - top, 0.0, 2.0)
    return idx, dist


def knn_graph(vectors: np.ndarray, k: int, block: int = 2048) -> KnnGraph:
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = x.shape[0]
    k = max(1, min(k, n - 1))
    return KnnGraph(*_rows_graph(x, np.arange(n), k, block))


def extend_graph(graph: KnnGraph, old_rows: np.ndarray, vectors: np.ndarray, block: int = 2048, *,
                 changed: np.ndarray | None = None) -> KnnGraph:
    """The exact graph of all ``vectors`` from ``graph``, the graph of the earlier vectors of
    ``vectors[old_rows]`` (its indices count in ``old_rows`` order), at the same ``k``.

    ``changed`` marks the old rows whose vectors are not the ones ``graph`` was made of. New and changed
    rows get their neighbours from all rows, and so does an old row that had a changed row among its
    neighbours (its list may have lost one to a row beyond it); any other old row keeps its list unless a
    new or changed row is nearer than its farthest neighbour. Equal to :func:`knn_graph` of ``vectors`` up
    to the order of exact ties and last-bit rounding of the similarities."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n, k = x.shape[0], graph.k
    old_rows = np.asarray(old_rows, dtype=np.int64)
    changed = np.zeros(len(old_rows), bool) if changed is None else np.asarray(changed, bool)
    stale = changed | changed[graph.indices].any(axis=1)  # positions in the old graph
    new_rows = np.setdiff1d(np.arange(n), old_rows)
    fresh_rows = np.union1d(new_rows, old_rows[changed])  # vectors the kept lists never met
    idx = np.empty((n, k + 1), dtype=np.int64)
    dist = np.empty((n, k + 1), dtype=np.float32)
    redo = np.union1d(new_rows, old_rows[stale])
    if len(redo):
        idx[redo], dist[redo] = _rows_graph(x, redo, k, block)
    kept = np.flatnonzero(~stale)
    rows = old_rows[kept]
    old_idx, old_dist = old_rows[graph.indices[kept]], graph.distances[kept].copy()
    if len(fresh_rows):
        for start in range(0, len(rows), block):  # the kept rows against the new and changed ones, merged
            part = slice(start, start + block)
            cand = np.clip(1.0 - x[rows[part]] @ x[fresh_rows].T, 0.0, 2.0).astype(np.float32)
            merged_idx = np.concatenate([old_idx[part], np.broadcast_to(fresh_rows, cand.shape)], axis=1)
            merged_dist = np.concatenate([old_dist[part], cand], axis=1)
            merged_dist[:, 0] = -1.0  # self stays first, even beside a duplicate
            order = np.argsort(merged_dist, axis=1, kind="stable")[:, : k + 1]
            old_idx[part] = np.take_along_axis(merged_idx, order, axis=1)
            old_dist[part] = np.take_along_axis(merged_dist, order, axis=1)
        old_dist[:, 0] = 0.0
    idx[rows], dist[rows] = old_idx, old_dist
    return KnnGraph(idx, dist)


def row_digests(vectors: np.ndarray) -> np.ndarray:
    """A 16-byte digest of each row's exact float32 bytes: what tells a stored graph's rows are unchanged."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    return np.array([hashlib.blake2b(row.tobytes(), digest_size=16).digest() for row in x], dtype="S16")


def kept_rows(kept_keys: list[str], keys: list[str]) -> np.ndarray | None:
    """Where each row a kept model was made of (named by ``kept_keys``) is among today's rows ``keys``,
    or None when one of them left (or a key repeats): such a model cannot be kept."""
    where = {key: i for i, key in enumerate(keys)}
    rows = np.array([where.get(key, -1) for key in kept_keys], dtype=np.int64)
    return rows if (rows >= 0).all() and len(np.unique(rows)) == len(rows) else None


#: Above this share of new and changed rows a cached graph is recomputed rather than extended: the merge
#: of the old rows grows with their number, and a build that changes that much is no daily ingest.
EXTEND_MAX_NEW_SHARE = 0.25


def cached_knn_graph(vectors: np.ndarray, k: int, *, keys: list[str], store: Path | None) -> KnnGraph:
    """:func:`knn_graph` of ``vectors`` (rows named by ``keys``, e.g. dates), reusing the graph kept at
    ``store`` by the last build: extended (:func:`extend_graph`) when no kept row left and the new and
    changed rows are few (a day whose new picture moves a few dozen entries' aligned and multimodal
    vectors), else recomputed. The graph written back keeps the larger of ``k`` and the kept one's ``k``."""
    x = np.ascontiguousarray(vectors, dtype=np.float32)
    n = len(x)
    k = max(1, min(k, n - 1))
    if store is None:
        return knn_graph(x, k)
    digests = row_digests(x)
    graph, reused = None, "recomputed"
    kept = _load_graph(store)
    if kept is not None and kept["k"] >= k and kept["k"] <= n - 1:
        old_rows = kept_rows(kept["keys"], keys)
        if old_rows is not None:
            changed = digests[old_rows] != kept["digests"]
            if (n - len(old_rows) + int(changed.sum())) / max(n, 1) <= EXTEND_MAX_NEW_SHARE:
                old = KnnGraph(kept["indices"], kept["distances"])
                same = len(old_rows) == n and not changed.any()  # the same rows, maybe in another order
                in_order = same and np.array_equal(old_rows, np.arange(n))
                graph = old if in_order else extend_graph(old, old_rows, x, changed=changed)
                reused = "reused" if same else (f"extended by {n - len(old_rows)} rows, "
                                                f"{int(changed.sum())} changed")
    if graph is None:
        graph = knn_graph(x, max(k, kept["k"]) if kept is not None else k)
    if reused != "reused":
        _save_graph(store, graph, keys, digests)
    log.debug("k-NN graph %s: %s (%d rows, k=%d)", store.name, reused, n, graph.k)
    return graph.truncated(k)


def _load_graph(store: Path) -> dict | None:
    try:
        with np.load(store, allow_pickle=False) as f:
            return {"k": int(f["indices"].shape[1] - 1), "keys": f["keys"].tolist(), "digests": f["digests"],
                    "indices": f["indices"], "distances": f["distances"]}
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # absent or unreadable: recompute
        return None


def _save_graph(store: Path, graph: KnnGraph, keys: list[str], digests: np.ndarray) -> None:
    from lake import atomic

    atomic.write_npz(store, {"keys": np.array(keys, dtype=str), "digests": digests, "indices": graph.indices,
                             "distances": graph.distances})


#: Above this many (query × fitted) similarities, :func:`nearest_fitted` uses an approximate index
#: (pynndescent, which umap-learn already uses) instead of exact matrix products.
EXACT_MAX_PAIRS = 200_000_000
#: Queries per exact block, at most...
QUERY_BLOCK = 4096
#: ...and fewer when a block's similarity matrix would pass this many entries (200 MB of float32): each
#: worker placing a batch holds one.
BLOCK_MAX_SIMS = 50_000_000


def nearest_fitted(fitted: np.ndarray, queries: np.ndarray, k: int, *, seed: int = 42,
                   fitted_normalised: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Each query's ``k`` most similar fitted vectors (cosine): (indices, similarities), both (q, k).

    Exact blocked matrix products for a day's entries against the archive; an NN-descent index over the
    fitted vectors when the product would be too large (millions of points against a fitted sample;
    :class:`pipeline.placement.MapPlacement` builds one :func:`fitted_index` for all its batches instead).
    ``fitted_normalised``: the caller normalised ``fitted`` once already."""
    a, b = (fitted if fitted_normalised else l2_normalise(fitted)), l2_normalise(queries)
    k = max(1, min(k, len(a)))
    if len(a) * len(b) <= EXACT_MAX_PAIRS:
        idx = np.empty((len(b), k), np.int64)
        sims = np.empty((len(b), k), np.float32)
        rows = max(1, min(QUERY_BLOCK, BLOCK_MAX_SIMS // max(len(a), 1)))
        for start in range(0, len(b), rows):
            block = b[start:start + rows] @ a.T
            idx[start:start + len(block)], sims[start:start + len(block)] = top_k(block, k)
        return idx, sims
    idx, dist = fitted_index(a, k, seed=seed).query(b, k=k)
    return idx.astype(np.int64), 1.0 - dist.astype(np.float32)


def fitted_index(fitted: np.ndarray, k: int, *, seed: int = 42) -> Any:
    """An NN-descent index (cosine) over ``fitted``; it pickles, so batches placed in other processes
    (or on Ray) share the one built once."""
    from pynndescent import NNDescent

    index = NNDescent(fitted, metric="cosine", n_neighbors=max(k, 15), random_state=seed)
    index.prepare()
    return index
