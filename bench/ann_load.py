"""The search the lake ships at N vectors (default 10,000,000) on many fresh queries, alone and under
concurrent load.

Why: ``bench/ann_filters.py`` chooses the query settings on 200 tuning queries and checks them on 200
held out. There one standard error of recall@10 is about 0.01, as large as the shipped setting's
margin over the 0.95 target, and every query runs alone, while the app's gunicorn runs two worker
processes (Procfile), each answering several requests at once on the same two cores. This benchmark
draws ``--queries`` new queries (default 1,000, seed 11: no run has tuned on them, so all are held
out; a standard error near 0.005) and runs the shipped search (``lake.vectors.ann_search`` with
``ANN_SEARCH``; filters planned as search plans them) in worker processes, in turns:

* **alone**: one process, one query at a time, Lance's compute threads as the lake sets them
  (``atlas.environment.default_lance_threads``) — the number the target is stated for;
* **two workers**: two processes searching at once, each with the lake's threads (what the Procfile's
  two gunicorn workers do when both get a search);
* **two workers, one thread each**: the same with ``LANCE_CPU_THREADS=1`` in each;
* **one worker, two requests**: one process answering two searches at once from two threads (a
  gunicorn worker's threads);
* **alone, again**: the first run repeated last, so that the machine's drift over the runs shows.

Load is a closed loop: each stream sends its next query when its last one is answered, every stream
working through its share of the (query, mode, depth) list, modes interleaved. Each process first runs
its queries once unfiltered (the index partitions they probe loaded into its cache: a server's steady
state). Per mode (unfiltered, each filter of ``bench/ann_filters.py``) and depth (10 rows, and the 50 a
search of the app fetches): recall@10 of the first 10 against exact cosine search over the rows
passing the filter, with its standard error; p50 and p95 of each query; and searches per second of all
streams together. Every run must return the same rows (load changes the time, not the answer).

The table: the one ``bench/ann_filters.py --keep DIR`` (same ``--n``) left in ``--table``, or built
there now (10M rows: about 35 min on 2 cores); its filter-column indexes are added when missing.

Usage: python bench/ann_load.py --table DIR [--n 10000000] [--queries 1000] [--seed 11] [--out ann_load_10m]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlas.environment import LANCE_THREADS_ENV, default_lance_threads, lance_threads, usable_cpus  # noqa: E402
from bench.ann import ExactTop10, centres, queries_near  # noqa: E402
from bench.ann_filters import (  # noqa: E402
    DEPTHS,
    FILTERS,
    TARGET_P50_MS,
    TARGET_RECALL,
    _ids,
    kept_table,
    shipped_table,
)
from bench.common import save  # noqa: E402

MODES = ("unfiltered", *FILTERS)
#: (label, worker processes, request streams per process, Lance threads per process: None = the lake's).
RUNS = (("alone", 1, 1, None), ("two workers", 2, 1, None), ("two workers, one thread each", 2, 1, 1),
        ("one worker, two requests", 1, 2, None), ("alone, again", 1, 1, None))


def worker(table: Path, *, n: int, count: int, seed: int, part: int, parts: int, streams: int) -> dict:
    """Runs this process's share of the searches (every ``parts``-th query from ``part``) on ``streams``
    threads once the parent says go (a line on stdin), and returns each search's latency and ids."""
    default_lance_threads()  # a value the parent set is kept
    tbl, settings, wheres, shares = shipped_table(table)
    queries = queries_near(centres(), n=n, count=count, seed=seed)
    mine = range(part, count, parts)
    for i in mine:  # the partitions these queries probe, loaded into this process's cache
        _ids(tbl, queries[i], settings=settings, limit=DEPTHS[0], where=None, share=None)
    items = [(i, mode, depth) for i in mine for mode in MODES for depth in DEPTHS]
    done: list[tuple[int, str, int, float, list[int]]] = []

    def stream(todo: list[tuple[int, str, int]]) -> None:
        for i, mode, depth in todo:
            t0 = time.perf_counter()
            ids = _ids(tbl, queries[i], settings=settings, limit=depth, where=wheres[mode], share=shares[mode])
            done.append((i, mode, depth, (time.perf_counter() - t0) * 1000, ids))

    print("ready", flush=True)
    sys.stdin.readline()
    started = time.time()
    threads = [threading.Thread(target=stream, args=(items[k::streams],)) for k in range(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"started": started, "ended": time.time(), "lance_cpu_threads": int(os.environ[LANCE_THREADS_ENV]),
            "settings": [settings.index_type, *settings[1:]], "searches": done}


def run_load(args: argparse.Namespace, *, processes: int, streams: int, threads: int) -> list[dict]:
    """Starts the worker processes, lets them go at once when all are ready, and returns their results."""
    env = os.environ | {LANCE_THREADS_ENV: str(threads)}
    cmd = [sys.executable, __file__, "--worker", "--table", str(args.table), "--n", str(args.n), "--queries",
           str(args.queries), "--seed", str(args.seed), "--parts", str(processes), "--streams", str(streams)]
    procs = [subprocess.Popen([*cmd, "--part", str(p)], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              text=True) for p in range(processes)]
    for p in procs:
        for line in p.stdout:  # what a library printed first is passed over
            if line.strip() == "ready":
                break
        else:
            raise SystemExit(f"a worker failed before its searches (exit code {p.wait()})")
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    out = []
    for p in procs:
        stdout, _ = p.communicate()
        if p.returncode:
            raise SystemExit(f"a worker failed (exit code {p.returncode})")
        out.append(json.loads(stdout.splitlines()[-1]))
    return out


def summarise(results: list[dict], truth: dict[str, ExactTop10]) -> tuple[dict, dict]:
    """Per mode and depth: recall@10 (± its standard error), p50 and p95; and each search's ids, keyed
    (query, mode, depth), to compare runs by."""
    by_key, lat = {}, {}
    for r in results:
        for i, mode, depth, ms, ids in r["searches"]:
            by_key[(i, mode, depth)] = ids
            lat.setdefault((mode, depth), []).append(ms)
    modes = {}
    for mode in MODES:
        for depth in DEPTHS:
            recall = np.array([len(set(ids[:10]) & set(truth[mode].best[i].tolist())) / 10
                               for (i, m, d), ids in by_key.items() if m == mode and d == depth])
            ms = np.array(lat[(mode, depth)])
            modes[f"{mode}@{depth}"] = {"recall_at_10": round(float(recall.mean()), 4),
                                        "recall_se": round(float(recall.std(ddof=1) / np.sqrt(len(recall))), 4),
                                        "p50_ms": round(float(np.percentile(ms, 50)), 2),
                                        "p95_ms": round(float(np.percentile(ms, 95)), 2), "n": len(ms)}
    return modes, by_key


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, required=True, help="a directory bench/ann_filters.py --keep filled, or an empty one")
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=1000, help="all held out: no run tunes on them")
    ap.add_argument("--seed", type=int, default=11, help="of the queries (bench/ann_filters.py has used 7-10)")
    ap.add_argument("--out", default="ann_load_10m", help="results name (bench/results/<out>.json)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--part", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--parts", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--streams", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.table, n=args.n, count=args.queries, seed=args.seed, part=args.part,
                                parts=args.parts, streams=args.streams)))
        return
    default_lance_threads()
    queries = queries_near(centres(), n=args.n, count=args.queries, seed=args.seed)
    truth = {m: ExactTop10(queries) for m in MODES}
    t0 = time.perf_counter()
    db, meta, shares = kept_table(args.table, n=args.n, truth=truth)
    print(f"table and exact answers: {time.perf_counter() - t0:.0f} s", flush=True)
    tbl = db.open_table("vectors")
    from lake.vectors import SCALAR_INDEXES, create_scalar_indexes

    indexed = {c for ix in tbl.list_indices() for c in ix.columns}
    create_scalar_indexes(tbl, columns=set(SCALAR_INDEXES) - indexed)
    cpus = usable_cpus()
    runs, first = [], None
    for label, processes, streams, threads in RUNS:
        threads = threads or lance_threads(cpus)
        results = run_load(args, processes=processes, streams=streams, threads=threads)
        modes, ids = summarise(results, truth)
        wall = max(r["ended"] for r in results) - min(r["started"] for r in results)
        searches = sum(len(r["searches"]) for r in results)
        first = first or ids
        runs.append({"run": label, "processes": processes, "streams_per_process": streams,
                     "lance_cpu_threads": threads, "settings": results[0]["settings"],
                     "searches_per_s": round(searches / wall, 2), "wall_s": round(wall, 1),
                     "same_rows_as_alone": ids == first, "modes": modes})
        print(label, runs[-1]["searches_per_s"], {k: (v["recall_at_10"], v["p50_ms"]) for k, v in modes.items()},
              flush=True)
    save(args.out, {"n": args.n, "queries": args.queries, "seed": args.seed, "cpus": cpus,
                    "filters": {m: round(s / args.n, 4) for m, s in shares.items()},
                    "table": {k: meta[k] for k in ("index", "table_write_s", "index_build_s") if k in meta},
                    "targets": {"recall_at_10": TARGET_RECALL, "p50_ms": TARGET_P50_MS}, "runs": runs})


if __name__ == "__main__":
    main()
