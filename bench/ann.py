"""A synthetic 1,000,000-vector LanceDB table with an ANN index: build time and memory, query latency,
recall@10 against exact search.

Vectors: 384-d (MiniLM's size), drawn around 2,000 random centres and L2-normalised, so neighbourhoods
have structure like real embeddings. Index: IVF_PQ (cosine), √n partitions, 48 sub-vectors, searched with
``nprobes`` partitions and re-ranked on full vectors (``refine_factor``). Ground truth: exact cosine
top-10 by matrix product over all vectors.

Usage: python bench/ann.py [--n 1000000] [--queries 200]
"""

from __future__ import annotations

import argparse
import threading
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import save  # noqa: E402

DIM = 384


def vectors(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(2000, DIM)).astype(np.float32)
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, 100_000):
        stop = min(n, start + 100_000)
        idx = rng.integers(0, len(centres), stop - start)
        block = centres[idx] + 0.9 * rng.normal(size=(stop - start, DIM)).astype(np.float32)
        out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return out


def exact_top10(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    best = np.full((len(queries), 10), -1, np.int64)
    best_s = np.full((len(queries), 10), -np.inf, np.float32)
    for start in range(0, len(data), 200_000):
        sims = queries @ data[start:start + 200_000].T
        top = np.argpartition(-sims, 10, axis=1)[:, :10]
        cand_s = np.concatenate([best_s, np.take_along_axis(sims, top, axis=1)], axis=1)
        cand_i = np.concatenate([best, top + start], axis=1)
        order = np.argsort(-cand_s, axis=1)[:, :10]
        best, best_s = np.take_along_axis(cand_i, order, axis=1), np.take_along_axis(cand_s, order, axis=1)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    import lancedb

    data = vectors(args.n)
    rng = np.random.default_rng(1)
    queries = data[rng.integers(0, args.n, args.queries)] + 0.05 * rng.normal(size=(args.queries, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    truth = exact_top10(data, queries)
    with tempfile.TemporaryDirectory() as tmp:
        db = lancedb.connect(tmp)
        table = pa.table({"id": pa.array(np.arange(args.n)),
                          "vector": pa.FixedSizeListArray.from_arrays(pa.array(data.reshape(-1)), DIM)})
        t0 = time.perf_counter()
        tbl = db.create_table("vectors", data=table)
        write_s = time.perf_counter() - t0
        from lancedb.index import IvfPq

        proc = psutil.Process()
        rss_before = proc.memory_info().rss
        peak = [rss_before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.2):
                peak[0] = max(peak[0], proc.memory_info().rss)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        t0 = time.perf_counter()
        partitions = int(np.sqrt(args.n))
        tbl.create_index("vector", config=IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=48))
        build_s = time.perf_counter() - t0
        done.set()
        sampler.join()
        settings = []
        for nprobes, refine in ((20, 10), (60, 20), (100, 40), (200, 50)):
            lat, recall = [], []
            for q, t in zip(queries, truth):
                s = time.perf_counter()
                hits = (tbl.search(q).metric("cosine").nprobes(nprobes).refine_factor(refine).limit(10)
                        .select(["id", "_distance"]).to_arrow())
                lat.append(time.perf_counter() - s)
                recall.append(len(set(hits.column("id").to_pylist()) & set(t.tolist())) / 10)
            lat_ms = np.array(lat[5:]) * 1000  # first queries warm the index cache
            row = {"nprobes": nprobes, "refine_factor": refine, "recall_at_10": round(float(np.mean(recall)), 4),
                   "p50_ms": round(float(np.percentile(lat_ms, 50)), 2), "p95_ms": round(float(np.percentile(lat_ms, 95)), 2)}
            settings.append(row)
            print(row, flush=True)
        exact_lat = []
        for q in queries[:20]:
            s = time.perf_counter()
            tbl.search(q).metric("cosine").bypass_vector_index().limit(10).select(["id", "_distance"]).to_arrow()
            exact_lat.append(time.perf_counter() - s)
    chosen = next((s for s in settings if s["recall_at_10"] >= 0.95), settings[-1])
    result = {"n": args.n, "dim": DIM, "queries": args.queries, "index": f"IVF_PQ, {partitions} partitions, 48 sub-vectors",
              "table_write_s": round(write_s, 1), "index_build_s": round(build_s, 1),
              "rss_before_index_mb": round(rss_before / 2**20), "peak_rss_during_index_mb": round(peak[0] / 2**20),
              "index_build_extra_rss_mb": round((peak[0] - rss_before) / 2**20),
              "settings": settings, "chosen": chosen,
              "exact_scan_p50_ms": round(float(np.median(exact_lat)) * 1000, 1),
              "targets": {"p50_ms": 60, "recall_at_10": 0.95}}
    print(result)
    save("ann", result)


if __name__ == "__main__":
    main()
