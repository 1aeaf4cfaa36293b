"""Neighbour graph, projections and clustering on small fixed data, judged by quality thresholds."""

import datetime as dt
import logging
import math
import sys

import numpy as np
import pytest
from sklearn.manifold import trustworthiness

from lake.filters import Filters
from pipeline import cluster
from pipeline.classify import zero_shot
from pipeline.neighbors import cached_knn_graph, extend_graph, knn_graph
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


@pytest.mark.parametrize("rows,torch_loaded", [(3, True), (400, True), (400, False)],
                         ids=["numpy (small)", "torch (large)", "numpy (large, torch not loaded)"])
def test_top_k_matches_a_full_sort(rows, torch_loaded, monkeypatch):
    import torch  # noqa: F401 (loaded: a large block takes torch's path)

    from atlas.topk import NUMPY_MAX_SCORES, NUMPY_MAX_SCORES_WITHOUT_TORCH, top_k

    if not torch_loaded:  # a process that never imported torch (the build's worker) selects with numpy
        monkeypatch.delitem(sys.modules, "torch")
    scores = np.random.default_rng(3).standard_normal((rows, 300)).astype(np.float32)
    assert (scores.size <= NUMPY_MAX_SCORES) == (rows == 3) and scores.size <= NUMPY_MAX_SCORES_WITHOUT_TORCH
    scores[0, 5] = np.inf  # the k-NN graphs put each row's own column first this way
    idx, vals = top_k(scores, 7)
    ref = np.argsort(-scores, axis=1)[:, :7]
    assert idx.dtype == np.int64 and np.array_equal(idx, ref) and idx[0, 0] == 5
    assert np.array_equal(vals, np.take_along_axis(scores, ref, axis=1))
    assert top_k(scores[:, :4], 10)[0].shape == (rows, 4)  # k capped at the columns
    assert np.array_equal(top_k(scores[:, :4], 10)[0], np.argsort(-scores[:, :4], axis=1))
    assert top_k(scores, 0)[0].shape == (rows, 0)


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


def test_an_extended_graph_equals_the_graph_computed_from_scratch(blobs):
    """A day's new rows, interleaved among the old ones: extending the old rows' graph gives the graph
    of all rows, neighbours and distances."""
    x, _ = blobs
    rng = np.random.default_rng(4)
    new = np.sort(rng.choice(len(x), 17, replace=False))
    old_rows = np.setdiff1d(np.arange(len(x)), new)
    rng.shuffle(old_rows)  # the old graph's rows in another order than today's
    got = extend_graph(knn_graph(x[old_rows], 12), old_rows, x, block=41)
    want = knn_graph(x, 12)
    assert np.array_equal(got.indices, want.indices)
    assert np.allclose(got.distances, want.distances, atol=1e-6)
    # old rows that gained a new neighbour exist, so the merge is exercised, not just the new rows
    assert np.isin(got.indices[old_rows, 1:], new).any()


def test_extending_keeps_self_first_beside_a_duplicate_newcomer(blobs):
    x, _ = blobs
    both = np.concatenate([x[:30], x[:1]])  # the newcomer repeats row 0
    got = extend_graph(knn_graph(x[:30], 5), np.arange(30), both)
    assert (got.indices[:, 0] == np.arange(31)).all() and (got.distances[:, 0] == 0).all()
    assert 30 in got.indices[0, 1:] and 0 in got.indices[30, 1:]


def test_the_cached_graph_is_extended_reused_or_recomputed_as_the_rows_say(blobs, tmp_path, caplog):
    """Kept between builds: added or changed rows → extended; nothing new → reused; rows removed or too
    many changed → recomputed; every answer equals the graph from scratch, and a smaller k is a slice of
    the kept graph."""
    import logging

    x, _ = blobs
    keys = [f"d{i:03d}" for i in range(len(x))]
    store = tmp_path / "knn" / "text.npz"
    caplog.set_level(logging.DEBUG, logger="pipeline.neighbors")

    def check(vectors, names, k, says):
        caplog.clear()
        got = cached_knn_graph(vectors, k, keys=names, store=store)
        want = knn_graph(vectors, k)
        assert np.array_equal(got.indices, want.indices) and np.allclose(got.distances, want.distances, atol=1e-6)
        assert says in caplog.text, caplog.text

    check(x[:280], keys[:280], 15, "recomputed")
    check(x, keys, 15, "extended by 20 rows, 0 changed")
    check(x, keys, 15, "reused")
    check(x, keys, 8, "reused")  # the kept k = 15 graph, sliced
    changed = x.copy()
    changed[5] = 0.5 * (x[6] + x[7])  # (not a copy of a row: the order of exact ties is not compared)
    check(changed, keys, 15, "extended by 0 rows, 1 changed")  # one row's vector changed: its neighbours' lists too
    check(x, keys, 15, "extended by 0 rows, 1 changed")  # … and back
    moved = np.concatenate([x, x[:3] + 0.05])
    moved[10:40] = x[40:70] + 0.01  # a day's new rows and 30 changed ones (a tenth: a picture's dozens of aligned rows)
    check(moved, [*keys, "e0", "e1", "e2"], 15, "extended by 3 rows, 30 changed")
    check(x, keys, 15, "recomputed")  # rows removed
    check(x[::-1], keys[::-1], 15, "reused")  # the same rows in another order: re-indexed
    check(x[5:], keys[5:], 15, "recomputed")  # rows removed
    check(np.roll(x, 1, axis=0), keys, 15, "recomputed")  # every row changed
    for damaged in (b"not a graph", store.read_bytes()[:1000]):  # garbage, and a truncated file
        store.write_bytes(damaged)
        check(x, keys, 15, "recomputed")


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


@pytest.mark.parametrize("hnsw_min_rows, index_type", [(10_000, "IvfPq"), (2000, "IvfHnswSq")])
def test_ann_index_is_built_for_large_tables_and_searched(tmp_path, hnsw_min_rows, index_type):
    """Large tables get IVF_PQ, the largest IVF_HNSW_SQ; each is searched with its own settings."""
    from lake import vectors

    rng = np.random.default_rng(3)
    x = rng.normal(size=(3000, 32)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dates = [(dt.date(2000, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(len(x))]  # 2000 to 2008
    vectors.write_table(tmp_path, "text", dates, x, titles=dates, years=[int(d[:4]) for d in dates],
                        categories=["c"] * len(x),
                        has_image=[False] * len(x), ann_min_rows=1000, hnsw_min_rows=hnsw_min_rows)
    table = vectors.open_table(tmp_path, "text")
    assert {ix.columns[0]: ix.index_type for ix in table.list_indices()} == {
        "vector": index_type, "date": "BTree", "year": "Bitmap", "category": "Bitmap", "has_image": "Bitmap"}
    settings = vectors.ann_search_settings(table)
    assert settings == (index_type, *vectors.ANN_SEARCH[index_type])
    hits = vectors.ann_search(table, x[7], settings=settings, limit=5, columns=["date"])
    assert hits[0]["date"] == "2000-01-08"
    nprobes, refine = settings.nprobes, settings.refine_factor
    # a filter as search writes it is answered from the filter columns' indexes, not by reading them
    where = Filters(categories=("c",), start="2000-01-01", end="2001-06-30", has_image=False).lance_where(
        known_categories=["c"])  # … AND ((year = 2000) OR (date >= '2001-01-01' AND date <= '2001-06-30'))
    query = table.search(x[7]).metric("cosine").nprobes(nprobes).refine_factor(refine).where(where, prefilter=True)
    plan = query.limit(5).explain_plan(True)
    assert "ScalarIndexQuery" in plan and all(f"{column}_idx" in plan for column in vectors.SCALAR_INDEXES)
    hits = query.limit(5).to_list()
    assert hits[0]["date"] == "2000-01-08" and all(h["date"] <= "2001-06-30" for h in hits)


def test_broad_filters_are_post_filtered_under_hnsw_and_pre_filtered_where_they_shun_the_query(tmp_path, monkeypatch,
                                                                                              caplog):
    """Under IVF_HNSW_SQ a filter most rows pass is cut from a deeper unfiltered list (one query); where
    that list holds too few passing rows (the filter shuns the query's neighbourhood) the pre-filter
    answers (a second query, logged). Either way the rows are the exact nearest passing ones."""
    from lake import vectors

    rng = np.random.default_rng(4)
    centres = rng.normal(size=(30, 32))
    x = (centres[np.arange(3000) % 30] + 0.3 * rng.normal(size=(3000, 32))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dates = [(dt.date(2000, 1, 1) + dt.timedelta(days=i // 30) if i % 30 == 0  # one cluster is all 2000
              else dt.date(2001, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(len(x))]
    years = [int(d[:4]) for d in dates]
    vectors.write_table(tmp_path, "text", dates, x, titles=dates, years=years, categories=["c"] * len(x),
                        has_image=[True] * len(x), ann_min_rows=1000, hnsw_min_rows=2000)
    table = vectors.open_table(tmp_path, "text")
    settings = vectors.ann_search_settings(table)
    assert settings.index_type == "IvfHnswSq" and settings.ef is not None
    prefilters = []  # how each query applies the filter
    search = table.search

    def observed(*args, **kwargs):
        builder = search(*args, **kwargs)
        where = builder.where
        builder.where = lambda w, prefilter: prefilters.append(prefilter) or where(w, prefilter=prefilter)
        return builder

    monkeypatch.setattr(table, "search", observed)
    where = "year >= 2001"
    share = table.count_rows(where) / len(x)
    assert settings.post_filter(share=share, n=10) == (math.ceil(10 * vectors.POST_FILTER_MARGIN / share),
                                                       math.ceil(settings.ef / math.sqrt(share)))
    passing = np.array(years) >= 2001
    for query_row, applied in ((1, [False]), (0, [False, True])):  # a later cluster: after; the 2000 one: both
        prefilters.clear()
        caplog.clear()
        with caplog.at_level(logging.DEBUG, logger="lake.vectors"):
            hits = vectors.ann_search(table, x[query_row], settings=settings, limit=10, columns=["date"],
                                      where=where, share=share)
        sims = np.where(passing, x @ x[query_row], -np.inf)
        assert [h["date"] for h in hits] == [dates[i] for i in np.argsort(-sims)[:10]]
        assert prefilters == applied
        fell_back = [r for r in caplog.records if r.msg == vectors.POST_FILTER_FELL_BACK]
        assert len(fell_back) == len(applied) - 1
    # a narrow filter, and a list deeper than the graph's candidates (deep pages): pre-filtered at once
    assert settings.post_filter(share=0.1, n=10) is None
    assert settings.post_filter(share=0.9, n=1000) is None
    assert vectors.AnnSettings("IvfPq", *vectors.ANN_SEARCH["IvfPq"]).post_filter(share=0.9, n=10) is None


@pytest.mark.slow
def test_umap_transform_placement_matches_umap_learn_and_any_worker(monkeypatch):
    """``--map-placement transform`` runs umap-learn's transform steps on the build's own neighbours (a
    model fitted on a precomputed graph has no index for umap-learn's ``transform``). On a model umap-learn
    can transform itself, the positions agree with its own up to the random negative samples, far closer
    than interpolation; the fitted map does not move; fixed batches with a seed each give the same
    positions serially and in worker processes."""
    import warnings

    import umap

    from pipeline.executors import LocalExecutor
    from pipeline.placement import MapPlacement, batches, resolve

    rng = np.random.default_rng(5)
    centres = rng.normal(size=(6, 24))
    x = (centres[rng.integers(0, 6, 600)] + 0.35 * rng.normal(size=(600, 24))).astype(np.float32)
    fitted_rows, new_rows = np.arange(0, 600, 2), np.arange(1, 600, 2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reducer = umap.UMAP(n_neighbors=15, min_dist=0.1, metric="cosine", random_state=42, init="pca").fit(x[fitted_rows])
        theirs = reducer.transform(x[new_rows])
    coords = reducer.embedding_.copy()
    placed = {}
    for how in ("interpolate", "transform"):
        placement = MapPlacement.prepare(fitted_vectors=x[fitted_rows], fitted_coords=coords, method=how,
                                         queries=len(new_rows))
        placed[how] = LocalExecutor(threads=1).map_batches(placement, x[new_rows], batches(len(new_rows), 64))
    in_workers = LocalExecutor(threads=2, pool_min_batches=2).map_batches(placement, x[new_rows], batches(len(new_rows), 64))
    extent = float(np.ptp(coords, axis=0).max())
    # the same batches and seeds: equal up to the last bits of BLAS products made with other thread counts
    np.testing.assert_allclose(in_workers, placed["transform"], atol=1e-4 * extent)
    np.testing.assert_array_equal(coords, reducer.embedding_)
    off = {how: float(np.median(np.linalg.norm(p - theirs, axis=1))) for how, p in placed.items()}
    assert off["transform"] < 0.03 * extent and off["transform"] < 0.6 * off["interpolate"], (off, extent)
    assert resolve("auto", map_method="umap", points=5) == "interpolate"
    assert resolve("auto", map_method="umap3d", points=5000) == "transform"
    assert resolve("transform", map_method="tsne", points=5000) == "interpolate"
    with pytest.raises(ValueError, match="choose interpolate or transform"):
        MapPlacement.prepare(fitted_vectors=x, fitted_coords=np.zeros((600, 2)), method="auto", queries=1)
    # millions of points against a large sample: one NN-descent index, built here and shipped to the workers
    monkeypatch.setattr("pipeline.placement.EXACT_MAX_PAIRS", 1000)
    approx = MapPlacement.prepare(fitted_vectors=x[fitted_rows], fitted_coords=coords, method="transform",
                                  queries=len(new_rows))
    assert approx.index is not None
    assert approx.fitted is None  # the index carries the vectors: they travel once
    shipped = LocalExecutor(threads=2, pool_min_batches=2).map_batches(approx, x[new_rows], batches(len(new_rows), 64))
    np.testing.assert_allclose(shipped, LocalExecutor(threads=1).map_batches(approx, x[new_rows],
                                                                                batches(len(new_rows), 64)),
                               atol=1e-4 * extent)
    assert float(np.median(np.linalg.norm(shipped - placed["transform"], axis=1))) < 0.03 * extent


def test_placement_follows_the_maps_neighbours_and_dimensions():
    """The build's ``place``: a transform uses the map's own UMAP neighbour count (umap-learn's transform
    does), on 2-D and 3-D maps; interpolation keeps 15; fewer fitted points than neighbours still work."""
    from pipeline.executors import LocalExecutor
    from pipeline.placement import PLACE_K, MapPlacement
    from pipeline.project_jobs import place

    rng = np.random.default_rng(9)
    fitted, new = rng.normal(size=(200, 12)).astype(np.float32), rng.normal(size=(1200, 12)).astype(np.float32)
    for dims in (2, 3):
        coords = rng.normal(size=(200, dims)).astype(np.float32)
        params = ProjectionParams(umap_neighbors=30, placement="transform")
        method = "umap3d" if dims == 3 else "umap"
        got = place(method, params, fitted_vectors=fitted, fitted_coords=coords, new_vectors=new,
                    executor=lambda: LocalExecutor(threads=1))
        own = MapPlacement.prepare(fitted_vectors=fitted, fitted_coords=coords, method="transform", queries=len(new),
                                   k=30)(new, 0)
        assert got.shape == (1200, dims) and np.isfinite(got).all()
        np.testing.assert_array_equal(got, own)  # one batch of 1,200 rows, k = 30
        interpolated = place("tsne", params, fitted_vectors=fitted, fitted_coords=coords, new_vectors=new,
                             executor=lambda: LocalExecutor(threads=1))
        np.testing.assert_array_equal(interpolated, MapPlacement.prepare(
            fitted_vectors=fitted, fitted_coords=coords, method="interpolate", queries=len(new), k=PLACE_K)(new, 0))
    few = MapPlacement.prepare(fitted_vectors=fitted[:5], fitted_coords=coords[:5], method="transform", queries=3, k=30)
    assert few.k == 5 and np.isfinite(few(new[:3], 0)).all()


def test_placed_points_sit_among_their_neighbours_and_fitted_ones_do_not_move():
    from pipeline.placement import MapPlacement
    from pipeline.project import vector_drift

    def place_points(fitted, coords, new):
        return MapPlacement.prepare(fitted_vectors=fitted, fitted_coords=coords, method="interpolate",
                                    queries=len(new))(new, 0)

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
