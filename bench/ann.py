"""A synthetic LanceDB table of N vectors (default 1,000,000; ``--n 10000000`` for the 10M case) with an
ANN index: build time and memory, query latency, recall@10 against exact search, with and without a
filter.

Vectors: 384-d (MiniLM's size), drawn around 2,000 random centres and L2-normalised, so neighbourhoods
have structure like real embeddings; each row also has a ``year`` (uniform over 1995–2026) for the
filtered queries. They are generated block by block from per-block seeds and streamed into LanceDB, and
the exact top-10 of every query is kept up to date block by block, so 10M vectors (15 GB as float32)
never sit in memory at once. Index: IVF_PQ (cosine), √n partitions, 48 sub-vectors, or IVF_HNSW_SQ;
searched with ``nprobes`` partitions and re-ranked on full vectors (``refine_factor``). Filtered queries
two ways: LanceDB's pre-filter (what the app runs), and a post-filter tried against it (an unfiltered list
8 times deeper cut to the rows that pass; the pre-filter where too few do). Each at 10 rows and at the
depth the app's searches fetch (``FUSION_DEPTH``, 50: recall of its first 10); with
``--then-scalar-index``, the filtered ones again once the filter column has an index of its own.

Usage: python bench/ann.py [--n 1000000] [--queries 200] [--index ivf_pq|ivf_hnsw_sq] [--out ann]
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import peak_rss, save  # noqa: E402
from lake.search import FUSION_DEPTH  # noqa: E402

DIM = 384
BLOCK = 100_000
#: The filter of the filtered queries: about a third of the rows pass it.
YEAR_FILTER = "year >= 2016"


def centres() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(2000, DIM)).astype(np.float32)


def block(start: int, stop: int, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors and years of rows [start, stop), the same whatever else was generated (seeded per block)."""
    rng = np.random.default_rng([1, start])
    idx = rng.integers(0, len(c), stop - start)
    x = c[idx] + 0.9 * rng.normal(size=(stop - start, DIM)).astype(np.float32)
    years = rng.integers(1995, 2027, stop - start).astype(np.int16)
    return x / np.linalg.norm(x, axis=1, keepdims=True), years


def queries_near(c: np.ndarray, *, n: int, count: int, seed: int) -> np.ndarray:
    """``count`` unit query vectors, each a little off a row of the first block of a table of ``n`` rows."""
    first, _ = block(0, min(BLOCK, n), c)
    rng = np.random.default_rng(seed)
    queries = first[rng.integers(0, len(first), count)] + 0.05 * rng.normal(size=(count, DIM)).astype(np.float32)
    return queries / np.linalg.norm(queries, axis=1, keepdims=True)


class ExactTop10:
    """Running exact cosine top-10 of fixed queries over blocks of rows (optionally only rows passing a mask)."""

    def __init__(self, queries: np.ndarray) -> None:
        self.q = queries
        self.best = np.full((len(queries), 10), -1, np.int64)
        self.score = np.full((len(queries), 10), -np.inf, np.float32)

    def add(self, data: np.ndarray, offset: int, keep: np.ndarray | None = None) -> None:
        sims = self.q @ data.T
        if keep is not None:
            sims[:, ~keep] = -np.inf
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        cand_s = np.concatenate([self.score, np.take_along_axis(sims, top, axis=1)], axis=1)
        cand_i = np.concatenate([self.best, top + offset], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :10]
        self.best, self.score = np.take_along_axis(cand_i, order, axis=1), np.take_along_axis(cand_s, order, axis=1)


#: The post-filter tried: an unfiltered list this many times deeper, cut to the rows passing the filter
#: (LanceDB's pre-filter where fewer pass).
POSTFILTER_DEPTH = 8


def ann_ids(tbl, q: np.ndarray, *, nprobes: int, refine: int, limit: int, where: str | None = None,
            prefilter: bool = True) -> list[int]:
    """The ids of one ANN query's hits, nearest first (``where`` applied before or after the search)."""
    query = tbl.search(q).metric("cosine").nprobes(nprobes).refine_factor(refine).limit(limit)
    if where:
        query = query.where(where, prefilter=prefilter)
    return query.select(["id", "_distance"]).to_arrow().column("id").to_pylist()


def post_filtered(tbl, q: np.ndarray, where: str, n: int, nprobes: int, refine: int) -> list[int]:
    """The ids of the ``n`` nearest rows passing ``where``, from an unfiltered list :data:`POSTFILTER_DEPTH`
    times deeper (LanceDB's pre-filter where fewer than ``n`` of them pass)."""
    ids = ann_ids(tbl, q, nprobes=nprobes, refine=refine, limit=n * POSTFILTER_DEPTH, where=where, prefilter=False)
    if len(ids) < n:
        ids = ann_ids(tbl, q, nprobes=nprobes, refine=refine, limit=n, where=where)
    return ids[:n]


def timed_recall(run: Callable[[np.ndarray], list[int]], queries: np.ndarray,
                 best: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Latency (ms) of ``run`` (a query → the ids of its hits, nearest first) on each of ``queries``, and
    the recall@10 of its first 10 against their exact top 10 (``best``, row by row)."""
    lat, recall = [], []
    for q, truth in zip(queries, best):
        s = time.perf_counter()
        ids = run(q)
        lat.append((time.perf_counter() - s) * 1000)
        recall.append(len(set(ids[:10]) & set(truth.tolist())) / 10)
    return np.array(lat), np.array(recall)


def measure(tbl, queries: np.ndarray, modes, nprobes: int, refine: int) -> dict:
    """Recall@10 and latency of each mode (label, filter, exact top-10) at 10 rows and at the depth the
    app's searches fetch a list at (the fused top, whose first 10 are scored). *postfiltered* = a
    post-filter (:func:`post_filtered`), the others LanceDB's query as such."""
    row = {}
    for (label, where, exact), depth in itertools.product(modes, (10, FUSION_DEPTH)):
        label = label if depth == 10 else f"list{depth}_{label}"
        run = (partial(post_filtered, tbl, where=where, n=depth, nprobes=nprobes, refine=refine)
               if "postfiltered_" in label else
               partial(ann_ids, tbl, nprobes=nprobes, refine=refine, limit=depth, where=where))
        lat, recall = timed_recall(run, queries, exact.best)
        lat_ms = lat[5:]  # the first queries warm the index cache
        row |= {f"{label}recall_at_10": round(float(np.mean(recall)), 4),
                f"{label}p50_ms": round(float(np.percentile(lat_ms, 50)), 2),
                f"{label}p95_ms": round(float(np.percentile(lat_ms, 95)), 2)}
    print({"nprobes": nprobes, "refine_factor": refine} | row, flush=True)
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--index", choices=("ivf_pq", "ivf_hnsw_sq"), default="ivf_pq")
    ap.add_argument("--out", default="ann", help="results name (bench/results/<out>.json)")
    ap.add_argument("--scalar-index", action="store_true",
                    help="also a BTREE index on year (the vectors stage builds none)")
    ap.add_argument("--then-scalar-index", choices=("BTREE", "BITMAP"),
                    help="after the grid, index the year column so and time the filtered queries again")
    args = ap.parse_args()
    import lancedb
    from lancedb.index import Bitmap, BTree, HnswSq, IvfPq

    c = centres()
    queries = queries_near(c, n=args.n, count=args.queries, seed=1)
    truth, truth_filtered = ExactTop10(queries), ExactTop10(queries)
    schema = pa.schema([("id", pa.int64()), ("year", pa.int16()), ("vector", pa.list_(pa.float32(), DIM))])

    def batches():
        for start in range(0, args.n, BLOCK):
            stop = min(args.n, start + BLOCK)
            x, years = block(start, stop, c)
            truth.add(x, start)
            truth_filtered.add(x, start, keep=years >= 2016)
            yield pa.record_batch([pa.array(np.arange(start, stop)), pa.array(years),
                                   pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM)], schema=schema)

    with tempfile.TemporaryDirectory(prefix="cosmic-atlas-ann-") as tmp:
        db = lancedb.connect(tmp)
        t0 = time.perf_counter()
        tbl = db.create_table("vectors", data=pa.RecordBatchReader.from_batches(schema, batches()))
        write_s = time.perf_counter() - t0
        partitions = int(np.sqrt(args.n))
        config = (IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=48)
                  if args.index == "ivf_pq" else HnswSq(distance_type="cosine", num_partitions=max(1, partitions // 8)))
        _, build_s, rss_before, rss_peak = peak_rss(lambda: tbl.create_index("vector", config=config))
        index_desc = (f"IVF_PQ, {partitions} partitions, 48 sub-vectors" if args.index == "ivf_pq"
                      else f"IVF_HNSW_SQ, {max(1, partitions // 8)} partitions")
        scalar_s = then_s = None
        if args.scalar_index:
            t0 = time.perf_counter()
            tbl.create_index("year", config=BTree())
            scalar_s = round(time.perf_counter() - t0, 1)
            index_desc += ", BTREE index on year"
        grid = ((20, 10), (60, 20), (100, 40), (200, 50)) if args.index == "ivf_pq" else ((5, 10), (10, 10), (20, 20), (40, 20))
        modes = (("", None, truth), ("filtered_", YEAR_FILTER, truth_filtered), ("postfiltered_", YEAR_FILTER, truth_filtered))
        settings = [{"nprobes": nprobes, "refine_factor": refine} | measure(tbl, queries, modes, nprobes, refine)
                    for nprobes, refine in grid]
        if args.then_scalar_index:  # the filtered queries again, once the filter column has its own index
            t0 = time.perf_counter()
            tbl.create_index("year", config={"BTREE": BTree, "BITMAP": Bitmap}[args.then_scalar_index]())
            then_s = round(time.perf_counter() - t0, 1)
            for row in settings:
                row |= {f"scalar_{k}": v for k, v in measure(tbl, queries, modes[1:], row["nprobes"],
                                                             row["refine_factor"]).items()}
                print(row, flush=True)
        exact_lat = []
        for q in queries[:10]:
            s = time.perf_counter()
            tbl.search(q).metric("cosine").bypass_vector_index().limit(10).select(["id", "_distance"]).to_arrow()
            exact_lat.append(time.perf_counter() - s)
        disk_mb = sum(p.stat().st_size for p in Path(tmp).rglob("*") if p.is_file()) / 2**20
    chosen = next((s for s in settings if s["recall_at_10"] >= 0.95 and s["filtered_recall_at_10"] >= 0.95), settings[-1])
    result = {"n": args.n, "dim": DIM, "queries": args.queries, "index": index_desc, "filter": YEAR_FILTER,
              "table_write_s": round(write_s, 1), "index_build_s": round(build_s, 1), "scalar_index_s": scalar_s,
              "then_scalar_index": args.then_scalar_index and {"type": args.then_scalar_index, "build_s": then_s},
              "rss_before_index_mb": round(rss_before / 2**20), "peak_rss_during_index_mb": round(rss_peak / 2**20),
              "index_build_extra_rss_mb": round((rss_peak - rss_before) / 2**20), "disk_mb": round(disk_mb),
              "settings": settings, "chosen": chosen,
              "exact_scan_p50_ms": round(float(np.median(exact_lat)) * 1000, 1),
              "targets": {"p50_ms": 50, "recall_at_10": 0.95}}
    print(result)
    save(args.out, result)


if __name__ == "__main__":
    main()
