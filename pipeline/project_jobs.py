"""Runs the projection jobs of the project stage: 2-D UMAP and t-SNE for each embedding kind, plus a
3-D UMAP of ``multimodal``.

Seeded UMAP is single-threaded, so with N threads the jobs run in N worker processes (spawned, not
forked, because the parent holds torch's thread pools), largest first.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import as_completed

import numpy as np
import pyarrow as pa

from lake.schema import EMBEDDING_KINDS, SCHEMAS
from lake.writer import LakeWriter
from pipeline.background import process_pool
from pipeline.executors import Executor
from pipeline.neighbors import KnnGraph, knn_graph
from pipeline.placement import PLACE_K, MapPlacement, batches, resolve
from pipeline.project import ProjectionParams, fit_sample, tsne_map, umap_map

log = logging.getLogger(__name__)

JOBS: list[tuple[str, str]] = [(kind, m) for kind in EMBEDDING_KINDS for m in ("umap", "tsne")] + [
    ("multimodal", "umap3d")
]


def project_one(method: str, vectors: np.ndarray, graph: KnnGraph, params: ProjectionParams, n_jobs: int = 1,
                backend: str = "umap-learn") -> np.ndarray:
    if method == "umap":
        return umap_map(vectors, graph, params, 2, backend=backend)
    if method == "umap3d":
        return umap_map(vectors, graph, params, 3, backend=backend)
    return tsne_map(vectors, graph, params, n_jobs=n_jobs)


def place(method: str, params: ProjectionParams, *, fitted_vectors: np.ndarray, fitted_coords: np.ndarray,
          new_vectors: np.ndarray, executor: Callable[[], Executor]) -> np.ndarray:
    """Positions for ``new_vectors`` on the map ``method`` fitted on ``fitted_vectors`` (the fitted
    points do not move), by ``params.placement`` as :func:`pipeline.placement.resolve` decides. A
    ``transform`` runs in batches on the build's executor (worker processes, or Ray tasks)."""
    if not len(new_vectors):
        return np.zeros((0, fitted_coords.shape[1]), np.float32)
    how = resolve(params.placement, map_method=method, points=len(new_vectors))
    placement = MapPlacement.prepare(fitted_vectors=fitted_vectors, fitted_coords=fitted_coords, method=how,
                                     queries=len(new_vectors), seed=params.seed, min_dist=params.umap_min_dist,
                                     k=params.umap_neighbors if how == "transform" else PLACE_K)
    if how == "interpolate":
        return placement(new_vectors, 0)  # one pass of neighbour products: not worth shipping anywhere
    engine = executor()
    parts = batches(len(new_vectors))
    log.info("%s: %d points placed by UMAP transform, batches: %d, runner: %s", method, len(new_vectors),
             len(parts), engine.name)
    return engine.map_batches(placement, new_vectors, parts)


def _table(kind: str, method: str, dates: list[str], coords: np.ndarray) -> pa.Table:
    z = coords[:, 2] if coords.shape[1] > 2 else np.full(len(dates), np.nan, np.float32)
    return pa.table({
        "date": pa.array(dates, pa.string()).cast(pa.date32()),  # ISO dates, parsed by Arrow (9 maps, ≈ 86k rows)
        "embedding": pa.array([kind] * len(dates)),
        "method": pa.array([method] * len(dates)),
        "x": pa.array(coords[:, 0], pa.float32()),
        "y": pa.array(coords[:, 1], pa.float32()),
        "z": pa.array(z, pa.float32(), mask=np.isnan(z)),
    })


def run_projections(
    writer: LakeWriter,
    params: ProjectionParams,
    *,
    threads: int,
    progress: bool,
    knn: Callable[[str, int], KnnGraph],
    executor: Callable[[], Executor],
    backend: str = "umap-learn",
) -> pa.Table:
    """Every map of :data:`JOBS`, fitted on all of its kind's entries or on a sample with the rest placed
    (:func:`place`). ``executor`` gives the build's executor (asked for only when a placement needs it).
    ``backend``: :func:`pipeline.project.umap_backend`; cuML fits run one after the other in this
    process (they share the GPU), umap-learn fits in ``threads`` worker processes."""
    from tqdm import tqdm

    inputs: dict[str, tuple[list[str], np.ndarray]] = {}
    samples: dict[str, np.ndarray | None] = {}
    jobs = []
    for kind, method in JOBS:
        if kind not in inputs:
            inputs[kind] = writer.read_vectors(kind)
            samples[kind] = fit_sample(len(inputs[kind][0]), params.fit_sample, params.seed)
        if len(inputs[kind][0]) < 4:
            log.info("skipping %s %s: only %d points", kind, method, len(inputs[kind][0]))
            continue
        jobs.append((kind, method))
    jobs.sort(key=lambda j: -len(inputs[j[0]][0]))

    def fit_inputs(kind: str) -> tuple[np.ndarray, KnnGraph]:
        """The vectors a map is fitted on and their k-NN graph: all of the kind, or its sample."""
        sample = samples[kind]
        if sample is None:
            return inputs[kind][1], knn(kind, params.knn_k)
        fitted = inputs[kind][1][sample]
        return fitted, knn_graph(fitted, params.knn_k)

    def finish(kind: str, method: str, coords: np.ndarray) -> pa.Table:
        """All points of the map: the fitted ones, and the rest placed on them (when fitted on a sample)."""
        dates, vecs = inputs[kind]
        sample = samples[kind]
        if sample is not None:
            rest = np.setdiff1d(np.arange(len(dates)), sample)
            full = np.empty((len(dates), coords.shape[1]), np.float32)
            full[sample] = coords
            full[rest] = place(method, params, fitted_vectors=vecs[sample], fitted_coords=coords,
                               new_vectors=vecs[rest], executor=executor)
            log.info("%s %s: fitted on %d points, %d placed (%s)", kind, method, len(sample), len(rest),
                     resolve(params.placement, map_method=method, points=len(rest)))
            coords = full
        return _table(kind, method, dates, coords)

    parts: list[pa.Table] = []
    bar = tqdm(total=len(jobs), desc="maps", unit="map", disable=not progress)
    if threads > 1 and len(jobs) > 1 and backend == "umap-learn":
        with process_pool(threads) as pool:
            futures = {pool.submit(project_one, method, *fit_inputs(kind), params): (kind, method)
                       for kind, method in jobs}
            for fut in as_completed(futures):
                kind, method = futures[fut]
                parts.append(finish(kind, method, fut.result()))
                bar.update()
    else:
        for kind, method in jobs:
            parts.append(finish(kind, method, project_one(method, *fit_inputs(kind), params, n_jobs=threads,
                                                          backend=backend)))
            bar.update()
    bar.close()
    return _assemble(parts)


def _assemble(parts: list[pa.Table]) -> pa.Table:
    """One projections table from per-map tables, maps in :data:`JOBS` order."""
    if not parts:
        return SCHEMAS["projections"].empty_table()
    order = {job: i for i, job in enumerate(JOBS)}
    parts.sort(key=lambda t: order[(t.column("embedding")[0].as_py(), t.column("method")[0].as_py())])
    return pa.concat_tables(parts).cast(SCHEMAS["projections"])


def place_on_previous(writer: LakeWriter, params: ProjectionParams, previous: dict, *,
                      executor: Callable[[], Executor]) -> tuple[pa.Table, dict] | None:
    """The published maps with this build's new entries placed on them (the existing points keep their
    positions), or None when a re-fit is due: no published maps, other parameters, entries removed, a
    kind's vectors drifted (:data:`PLACE_MAX_DRIFT`), or too many points placed since the last fit
    (:data:`PLACE_MAX_SHARE`). ``previous`` is the live manifest's ``projection`` section."""
    import pyarrow.parquet as pq

    from lake import vectors as lake_vectors
    from pipeline.project import PLACE_MAX_DRIFT, PLACE_MAX_SHARE, vector_drift

    layout = writer.layout
    fit = previous.get("fit")
    if not fit or {k: previous.get(k) for k in params.fit_dict()} != params.fit_dict():
        return None
    if not layout.table("projections").is_file():
        return None
    table = pq.read_table(layout.table("projections"))
    # ISO date strings from Arrow: the rows are matched to vectors by date string, ≈ 86k of them (9 maps)
    published = table.set_column(table.schema.get_field_index("date"), "date",
                                 table.column("date").cast(pa.string())).to_pandas()
    parts, drift, new_count = [], {}, 0
    vectors: dict[str, tuple] = {}  # per kind: this build's and the published vectors (a kind has 2–3 maps)
    # per kind, gathered once for its maps (they list their rows in the same order): the mapped dates, this
    # build's vectors of those entries, the new entries' dates and their vectors
    gathered: dict[str, tuple[list[str], np.ndarray, list[str], np.ndarray]] = {}
    published_maps: set[tuple[str, str]] = set()
    for (kind, method), group in published.groupby(["embedding", "method"], sort=False):
        published_maps.add((kind, method))
        mapped = group.date.tolist()
        if kind not in gathered or gathered[kind][0] != mapped:  # a map whose rows are in another order
            if kind not in vectors:
                vectors[kind] = (*writer.read_vectors(kind), *lake_vectors.read_vectors(layout.vectors, kind))
            dates, vecs, old_dates, old_vecs = vectors[kind]
            row = {d: i for i, d in enumerate(dates)}
            if any(d not in row for d in mapped) or set(old_dates) != set(mapped):
                return None  # entries left the build, or the published vectors are not the mapped ones
            fitted = vecs[[row[d] for d in mapped]]
            if kind not in drift:
                old_row = {d: i for i, d in enumerate(old_dates)}
                drift[kind] = vector_drift(old_vecs[[old_row[d] for d in mapped]], fitted)
                if drift[kind] > PLACE_MAX_DRIFT:
                    log.info("maps of %s re-fitted: its vectors moved by %.4f (> %.2f)", kind, drift[kind],
                             PLACE_MAX_DRIFT)
                    return None
            mapped_set = set(mapped)
            new = [d for d in dates if d not in mapped_set]
            gathered[kind] = (mapped, fitted, new, vecs[[row[d] for d in new]])
        _, fitted, new, new_vecs = gathered[kind]
        coords = group[["x", "y", "z"]].to_numpy(np.float32) if method == "umap3d" else group[["x", "y"]].to_numpy(np.float32)
        placed = place(method, params, fitted_vectors=fitted, fitted_coords=coords, new_vectors=new_vecs,
                       executor=executor)
        parts.append(_table(kind, method, mapped + new, np.concatenate([coords, placed])))
        new_count = max(new_count, len(new))
    if set(JOBS) - published_maps and new_count:
        return None  # a map the published lake lacks (too few points then): fit them all
    placed_since_fit = int(previous.get("placed_since_fit", 0)) + new_count
    if placed_since_fit > PLACE_MAX_SHARE * int(fit["entries"]):
        log.info("maps re-fitted: %d entries placed since the last fit (> %.0f%% of %d)", placed_since_fit,
                 100 * PLACE_MAX_SHARE, fit["entries"])
        return None
    report = {"mode": "placed", "fit": fit, "placed_this_build": new_count, "placed_since_fit": placed_since_fit,
              "drift_since_fit": {k: round(v, 5) for k, v in drift.items()}}
    return _assemble(parts), report
