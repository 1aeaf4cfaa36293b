"""Neighbour graph, projections and clustering on small fixed data, judged by quality thresholds."""

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from pipeline import cluster
from pipeline.classify import zero_shot
from pipeline.neighbors import knn_graph
from pipeline.project import ProjectionParams, tsne_map, umap_map


@pytest.fixture(scope="module")
def blobs():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(5, 24)) * 4
    x = np.concatenate([c + rng.normal(size=(60, 24)) for c in centres])
    labels = np.repeat(np.arange(5), 60)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32), labels


def test_knn_graph_is_exact(blobs):
    x, _ = blobs
    g = knn_graph(x, 10, block=37)
    sims = x @ x.T
    np.fill_diagonal(sims, -np.inf)
    brute = np.argsort(-sims, axis=1)[:, :10]
    assert (g.indices[:, 0] == np.arange(len(x))).all()
    idx, dist = g.without_self()
    assert np.array_equal(np.sort(idx, axis=1), np.sort(brute, axis=1))
    assert (np.diff(dist, axis=1) >= -1e-6).all()


def test_top_k_matches_a_full_sort():
    from atlas.topk import top_k

    scores = np.random.default_rng(3).standard_normal((50, 300)).astype(np.float32)
    idx, vals = top_k(scores, 7)
    ref = np.argsort(-scores, axis=1)[:, :7]
    assert idx.dtype == np.int64 and np.array_equal(idx, ref)
    assert np.array_equal(vals, np.take_along_axis(scores, ref, axis=1))
    assert top_k(scores[:, :4], 10)[0].shape == (50, 4)  # k capped at the columns


def test_lof_from_the_knn_graph_matches_scikit_learns_own_search(blobs):
    """The anomaly stage fits LOF on its k-NN graph (precomputed); the scores match a LOF that searches
    the unit vectors itself (Euclidean), up to float32 rounding of the graph's distances."""
    from sklearn.neighbors import LocalOutlierFactor

    from atlas.encoders import l2_normalise
    from pipeline.anomaly import _lof

    x, _ = blobs
    v = l2_normalise(x)
    got = _lof(knn_graph(v, 20), 20)
    ref = -LocalOutlierFactor(n_neighbors=20).fit(v).negative_outlier_factor_
    assert np.allclose(got, ref, rtol=1e-3, atol=1e-3)
    assert np.corrcoef(got, ref)[0, 1] > 0.9999


def test_knn_graph_with_duplicate_vectors_keeps_self_first():
    x = np.ones((6, 4), np.float32) / 2
    g = knn_graph(x, 3)
    assert (g.indices[:, 0] == np.arange(6)).all()


@pytest.mark.parametrize("method", ["umap", "tsne"])
def test_projection_quality(blobs, method):
    x, _ = blobs
    params = ProjectionParams(seed=1)
    g = knn_graph(x, params.knn_k)
    y = umap_map(x, g, params) if method == "umap" else tsne_map(x, g, params)
    assert y.shape == (len(x), 2) and np.isfinite(y).all()
    assert trustworthiness(x, y, n_neighbors=10) > 0.85
    y2 = umap_map(x, g, params) if method == "umap" else tsne_map(x, g, params)
    assert np.allclose(y, y2)  # fixed seed → same map


def test_umap_3d(blobs):
    x, _ = blobs
    g = knn_graph(x, 20)
    assert umap_map(x, g, ProjectionParams(), 3).shape == (len(x), 3)


def test_ward_clusters_recover_blobs_and_get_labels(blobs):
    from sklearn.metrics import adjusted_rand_score

    x, truth = blobs
    labels = cluster.ward_clusters(x, knn_graph(x, 15), 5)
    assert adjusted_rand_score(truth, labels) > 0.9
    titles = [f"Spiral galaxy {i}" if t == 0 else f"Comet tail {i}" for i, t in enumerate(truth)]
    cats = ["Galaxy" if t == 0 else "Comet" for t in truth]
    names = cluster.cluster_labels(labels, titles, cats)
    galaxy_cluster = labels[0]
    assert names[galaxy_cluster].startswith("Galaxy:") and "spiral" in names[galaxy_cluster]


def test_default_cluster_count():
    assert cluster.default_cluster_count(11382) == 38
    assert cluster.default_cluster_count(2) == 1


def test_zero_shot_softmax():
    classes = np.eye(3, dtype=np.float32)
    vecs = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 0.8]], np.float32)
    res = zero_shot(vecs, classes, ["A", "B", "C"], 20.0, ["d1", "d2"])
    assert res.category == ["A", "C"]
    assert res.top3 == [["A", "B", "C"], ["C", "B", "A"]]
    assert np.allclose(res.top3_scores.sum(axis=1), 1.0, atol=1e-5)
    assert (res.confidence > 0.5).all()


def test_ann_index_is_built_for_large_tables_and_searched(tmp_path):
    from lake import vectors

    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dates = [f"d{i:05d}" for i in range(len(x))]
    vectors.write_table(tmp_path, "text", dates, x, titles=dates, years=[2000] * len(x), categories=["c"] * len(x),
                        has_image=[False] * len(x), ann_min_rows=1000)
    table = vectors.open_table(tmp_path, "text")
    assert any(ix.index_type == "IvfPq" for ix in table.list_indices())
    hits = (table.search(x[7]).metric("cosine").nprobes(vectors.ANN_NPROBES).refine_factor(vectors.ANN_REFINE_FACTOR)
            .limit(5).to_list())
    assert hits[0]["date"] == "d00007"


def test_placed_points_sit_among_their_neighbours_and_fitted_ones_do_not_move():
    from pipeline.project import place_points, vector_drift

    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, 16))
    labels = np.repeat(np.arange(3), 40)
    fitted = centres[labels] + 0.05 * rng.normal(size=(120, 16))
    coords = (np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])[labels] + rng.normal(size=(120, 2))).astype(np.float32)
    new = centres[[2, 0]] + 0.05 * rng.normal(size=(2, 16))
    placed = place_points(fitted, coords, new)
    assert placed.shape == (2, 2)
    assert np.linalg.norm(placed[0] - [0.0, 10.0]) < 2 and np.linalg.norm(placed[1] - [0.0, 0.0]) < 2
    # a new point identical to a fitted one lands by that one's cluster, and nothing fitted changes
    again = place_points(fitted, coords, fitted[:1])
    assert np.linalg.norm(again[0] - coords[labels == 0].mean(axis=0)) < 1.5
    assert place_points(fitted, coords, fitted[:0]).shape == (0, 2)
    assert vector_drift(fitted, fitted) < 1e-6 < vector_drift(fitted, fitted + rng.normal(size=fitted.shape))
