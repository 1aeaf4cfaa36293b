"""Maps fitted on a sample with the rest placed on them (``--map-sample``) against a full fit, on the
archive's text vectors: how much of the neighbourhood structure survives, and what it costs.

For each sample size: a UMAP fit (the build's settings: 15 neighbours, min_dist 0.1, cosine, seed 42,
shared exact k-NN graph) on a stable random sample, every other entry placed with the build's two
placements (``pipeline.placement``: ``interpolate``, the similarity-weighted mean of the 15 nearest
fitted neighbours' positions; ``transform``, umap-learn's transform steps on those neighbours, in
batches: in this process, in worker processes and, with ``--ray``, as Ray tasks), against the full fit
made in the same run. Placement times include starting the workers. Quality on a fixed random subset of
3,000 entries (the same for all): trustworthiness (scikit-learn, k = 10, cosine in the vector space) and
10-NN preservation (the share of an entry's 10 nearest neighbours in the vector space that are among its
10 nearest on the map), for all entries and for the placed ones alone. Also umap-learn's own
``UMAP.transform`` on the largest sample, as the reference (its fit builds its own neighbour index,
without which it cannot transform).

Usage: python bench/projection_sample.py [--lake DIR] [--samples 1000 2000 4000] [--threads 2] [--ray]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import lake_label, save  # noqa: E402
from lake.layout import LakeLayout  # noqa: E402
from lake.reader import LakeReader  # noqa: E402
from pipeline.neighbors import knn_graph  # noqa: E402
from pipeline.executors import LocalExecutor, make_executor  # noqa: E402
from pipeline.placement import MapPlacement, batches  # noqa: E402
from pipeline.project import ProjectionParams, fit_sample, umap_map  # noqa: E402

EVAL = 3000
K = 10


def knn_preservation(vectors: np.ndarray, coords: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per evaluated row: share of its K vector-space neighbours (among all points) that are among its K
    map neighbours."""
    v = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    sims = v[rows] @ v.T
    sims[np.arange(len(rows)), rows] = -np.inf
    near_v = np.argpartition(-sims, K, axis=1)[:, :K]
    d = ((coords[rows][:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    d[np.arange(len(rows)), rows] = np.inf
    near_m = np.argpartition(d, K, axis=1)[:, :K]
    return np.array([len(set(a) & set(b)) / K for a, b in zip(near_v, near_m)])


def text_vectors(lake: Path | None) -> tuple[dict, np.ndarray, np.ndarray]:
    """What the map benchmarks score on: the lake's text vectors and the fixed random entries every map
    is evaluated on, with the result header naming them (lake, entries, evaluated)."""
    reader = LakeReader.open(LakeLayout.at(lake).root)
    _, vectors = reader.vectors("text")
    rows = np.sort(np.random.default_rng(7).choice(len(vectors), min(EVAL, len(vectors)), replace=False))
    return {"lake": lake_label(reader.layout.root), "entries": len(vectors), "evaluated": len(rows)}, vectors, rows


def quality(vectors: np.ndarray, coords: np.ndarray, rows: np.ndarray, placed: np.ndarray | None) -> dict:
    from sklearn.manifold import trustworthiness

    kept = knn_preservation(vectors, coords, rows)
    out = {"trustworthiness": round(float(trustworthiness(vectors[rows], coords[rows], n_neighbors=K, metric="cosine")), 4),
           "knn_preservation": round(float(kept.mean()), 4)}
    if placed is not None:
        mask = np.isin(rows, placed)
        out["knn_preservation_placed"] = round(float(kept[mask].mean()), 4)
        out["knn_preservation_fitted"] = round(float(kept[~mask].mean()), 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--samples", type=int, nargs="+", default=[1000, 2000, 4000])
    ap.add_argument("--threads", type=int, default=2, help="worker processes (and Ray CPUs) for the transform")
    ap.add_argument("--throughput", type=int, default=200_000, help="points placed in the throughput run")
    ap.add_argument("--ray", action="store_true", help="also place with Ray tasks (a local Ray instance)")
    args = ap.parse_args()
    header, vectors, rows = text_vectors(args.lake)
    params = ProjectionParams()
    t0 = time.perf_counter()
    full = umap_map(vectors, knn_graph(vectors, params.knn_k), params)
    results = {**header, "full": {"fit_s": round(time.perf_counter() - t0, 1), **quality(vectors, full, rows, None)}}
    print("full", results["full"], flush=True)
    results["samples"] = []
    executors = {"local, 1 process": LocalExecutor(threads=1), f"local, {args.threads} worker processes":
                 LocalExecutor(threads=args.threads, pool_min_batches=2)}
    if args.ray:
        executors[f"Ray tasks ({args.threads} CPUs, one per task)"] = make_executor(
            runner="ray", address=None, threads=args.threads, actors=None, actor_cpus=0.5, actor_gpus=0.0)
    # this process imports umap-learn and compiles its layout loop once, untimed (worker processes and
    # Ray tasks pay that in their times: it is part of starting them)
    MapPlacement.prepare(fitted_vectors=vectors[:50], fitted_coords=np.random.default_rng(0).normal(size=(50, 2)),
                         method="transform", queries=5)(vectors[50:55], 0)
    for size in args.samples:
        sample = fit_sample(len(vectors), size, params.seed)
        rest = np.setdiff1d(np.arange(len(vectors)), sample)
        t0 = time.perf_counter()
        fitted = umap_map(vectors[sample], knn_graph(vectors[sample], params.knn_k), params)
        fit_s = time.perf_counter() - t0
        runs = [("interpolate", "local, 1 process")] + [("transform", name) for name in executors
                                                        if size == max(args.samples) or name == "local, 1 process"]
        for how, where in runs:
            t0 = time.perf_counter()
            placement = MapPlacement.prepare(fitted_vectors=vectors[sample], fitted_coords=fitted, method=how,
                                             queries=len(rest), seed=params.seed, min_dist=params.umap_min_dist)
            coords = np.empty((len(vectors), 2), np.float32)
            coords[sample] = fitted
            coords[rest] = executors[where].map_batches(placement, vectors[rest], batches(len(rest)))
            place_s = time.perf_counter() - t0
            row = {"sample": size, "placement": how, "where": where, "placed": len(rest), "fit_s": round(fit_s, 1),
                   "place_s": round(place_s, 2), **quality(vectors, coords, rows, rest)}
            results["samples"].append(row)
            print(row, flush=True)
    # throughput at a larger scale: --throughput points (archive vectors with small noise, so every one is
    # new) placed by transform on the largest sample's map, by each executor
    results["throughput"] = []
    rng = np.random.default_rng(11)
    extra = vectors[rng.integers(0, len(vectors), args.throughput)]
    extra = extra + 0.02 * np.linalg.norm(extra, axis=1, keepdims=True) * rng.normal(size=extra.shape).astype(np.float32) / np.sqrt(extra.shape[1])
    placement = MapPlacement.prepare(fitted_vectors=vectors[sample], fitted_coords=fitted, method="transform",
                                     queries=len(extra), seed=params.seed, min_dist=params.umap_min_dist)
    reference = None
    for where, executor in executors.items():
        t0 = time.perf_counter()
        placed = executor.map_batches(placement, extra, batches(len(extra)))
        seconds = time.perf_counter() - t0
        same = reference is None or bool(np.array_equal(placed, reference))
        reference = placed if reference is None else reference
        row = {"where": where, "points": len(extra), "batches": len(batches(len(extra))), "fitted": int(len(sample)),
               "seconds": round(seconds, 2), "points_per_s": round(len(extra) / seconds), "same_as_first": same}
        results["throughput"].append(row)
        print(row, flush=True)
    for executor in executors.values():
        executor.close()
    # the alternative: umap-learn's own transform (optimises each placed point against the fitted graph)
    import warnings

    import umap

    size = max(args.samples)
    sample = fit_sample(len(vectors), size, params.seed)
    rest = np.setdiff1d(np.arange(len(vectors)), sample)
    reducer = umap.UMAP(n_neighbors=params.umap_neighbors, min_dist=params.umap_min_dist, metric="cosine",
                        random_state=params.seed, init="pca")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore")
        t0 = time.perf_counter()
        fitted = reducer.fit_transform(vectors[sample])
        fit_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        coords = np.empty((len(vectors), 2), np.float32)
        coords[sample], coords[rest] = fitted, reducer.transform(vectors[rest])
        place_s = time.perf_counter() - t0
    results["umap_transform"] = {"sample": size, "fit_s": round(fit_s, 1), "place_s": round(place_s, 1),
                                 **quality(vectors, coords, rows, rest)}
    print("umap transform", results["umap_transform"], flush=True)
    print("saved", save("projection_sample", results))


if __name__ == "__main__":
    main()
