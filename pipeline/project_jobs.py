"""Runs the projection jobs of the project stage: 2-D UMAP and t-SNE for each embedding kind, plus a
3-D UMAP of ``multimodal``.

Seeded UMAP is single-threaded, so with N threads the jobs run in N worker processes (spawned, not
forked, because the parent holds torch's thread pools), largest first.
"""

from __future__ import annotations

import datetime as dt
import logging
import multiprocessing as mp
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import pyarrow as pa

from lake.schema import EMBEDDING_KINDS, SCHEMAS
from lake.writer import LakeWriter
from pipeline.neighbors import KnnGraph
from pipeline.project import ProjectionParams, tsne_map, umap_map

log = logging.getLogger(__name__)

JOBS: list[tuple[str, str]] = [(kind, m) for kind in EMBEDDING_KINDS for m in ("umap", "tsne")] + [
    ("multimodal", "umap3d")
]


def project_one(method: str, vectors: np.ndarray, graph: KnnGraph, params: ProjectionParams, n_jobs: int = 1) -> np.ndarray:
    if method == "umap":
        return umap_map(vectors, graph, params, 2)
    if method == "umap3d":
        return umap_map(vectors, graph, params, 3)
    return tsne_map(vectors, graph, params, n_jobs=n_jobs)


def _table(kind: str, method: str, dates: list[str], coords: np.ndarray) -> pa.Table:
    z = coords[:, 2] if coords.shape[1] > 2 else np.full(len(dates), np.nan, np.float32)
    return pa.table({
        "date": pa.array([dt.date.fromisoformat(d) for d in dates], pa.date32()),
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
) -> pa.Table:
    from tqdm import tqdm

    inputs: dict[str, tuple[list[str], np.ndarray]] = {}
    jobs = []
    for kind, method in JOBS:
        if kind not in inputs:
            inputs[kind] = writer.read_vectors(kind)
        if len(inputs[kind][0]) < 4:
            log.info("skipping %s %s: only %d points", kind, method, len(inputs[kind][0]))
            continue
        jobs.append((kind, method))
    jobs.sort(key=lambda j: -len(inputs[j[0]][0]))
    parts: list[pa.Table] = []
    bar = tqdm(total=len(jobs), desc="maps", unit="map", disable=not progress)
    if threads > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=threads, mp_context=mp.get_context("spawn")) as pool:
            futures = {
                pool.submit(project_one, method, inputs[kind][1], knn(kind, params.knn_k), params): (kind, method)
                for kind, method in jobs
            }
            for fut in as_completed(futures):
                kind, method = futures[fut]
                parts.append(_table(kind, method, inputs[kind][0], fut.result()))
                bar.update()
    else:
        for kind, method in jobs:
            coords = project_one(method, inputs[kind][1], knn(kind, params.knn_k), params, n_jobs=threads)
            parts.append(_table(kind, method, inputs[kind][0], coords))
            bar.update()
    bar.close()
    if not parts:
        return SCHEMAS["projections"].empty_table()
    order = {job: i for i, job in enumerate(JOBS)}
    parts.sort(key=lambda t: order[(t.column("embedding")[0].as_py(), t.column("method")[0].as_py())])
    return pa.concat_tables(parts).cast(SCHEMAS["projections"])
