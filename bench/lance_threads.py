"""Lance's compute threads: the search the lake ships (``lake.vectors.ann_search`` with ``ANN_SEARCH``, the
filters as search writes and plans them) on a table ``bench/ann_filters.py --keep DIR`` left, with the
compute threads Lance picks by itself (all cores but two, at least one: one on 2 cores) and with those the
lake gives it (``atlas.environment.default_lance_threads``). Lance reads its thread count once per process,
so each setting runs in its own process, taking turns: Lance's own, the lake's, Lance's own again. Queries:
the held-out half of ``bench/ann_filters.py``'s for the same ``--queries`` and ``--seed`` (default 7), each run once unfiltered first (the index
partitions they probe loaded); p50 and p95 of each query alone after 5 warm-up queries per mode, at 10 rows and at the 50 a search of the app fetches; and whether every setting
returned the same rows (threads must change the time, not the answer).

Usage: python bench/lance_threads.py --table DIR [--n 10000000] [--queries 200] [--seed 7] [--out lance_threads]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlas.environment import LANCE_THREADS_ENV, lance_threads, lances_own_threads, usable_cpus  # noqa: E402
from bench.common import save  # noqa: E402

WARMUP = 5


def worker(table: Path, n: int, count: int, seed: int) -> dict:
    """Times the shipped search in this process (its Lance threads set by the caller's environment)."""
    from bench.ann import centres, queries_near
    from bench.ann_filters import DEPTHS, _ids, shipped_table

    tbl, settings, wheres, shares = shipped_table(table)
    queries = queries_near(centres(), n=n, count=count, seed=seed)[count // 2:]
    for q in queries:  # the index's partitions these queries probe, loaded into Lance's cache: a server's steady state
        _ids(tbl, q, settings=settings, limit=DEPTHS[0], where=None, share=None)
    out = {}
    for mode, where in wheres.items():
        for depth in DEPTHS:
            run = partial(_ids, tbl, settings=settings, limit=depth, where=where, share=shares[mode])
            for q in queries[:WARMUP]:
                run(q)
            lat, ids = [], []
            for q in queries:
                t0 = time.perf_counter()
                ids.append(run(q))
                lat.append((time.perf_counter() - t0) * 1000)
            out[f"{mode}@{depth}"] = {"p50_ms": round(float(np.percentile(lat, 50)), 2),
                                      "p95_ms": round(float(np.percentile(lat, 95)), 2), "ids": ids}
    return {"index": settings.index_type, "settings": list(settings[1:]), "modes": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, required=True, help="the directory bench/ann_filters.py --keep filled")
    ap.add_argument("--n", type=int, default=10_000_000, help="its --n (the queries are drawn for it)")
    ap.add_argument("--queries", type=int, default=200, help="its --queries (the second half is timed here)")
    ap.add_argument("--seed", type=int, default=7, help="its --seed")
    ap.add_argument("--out", default="lance_threads")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.table, args.n, args.queries, args.seed)))
        return
    meta = json.loads((args.table / "ann_filters.json").read_text())
    if meta.get("n") != args.n:
        raise SystemExit(f"{args.table} holds a table of {meta.get('n'):,} vectors, not --n {args.n:,}")
    cpus = usable_cpus()
    lances_own, lakes = lances_own_threads(cpus), lance_threads(cpus)
    runs = []
    for label, threads in (("Lance's own", lances_own), ("the lake's", lakes), ("Lance's own", lances_own)):
        env = os.environ | {LANCE_THREADS_ENV: str(threads)}
        done = subprocess.run([sys.executable, __file__, "--worker", "--table", str(args.table), "--n", str(args.n),
                               "--queries", str(args.queries), "--seed", str(args.seed)], env=env, capture_output=True, text=True, check=True)
        runs.append({"threads": label, "lance_cpu_threads": threads} | json.loads(done.stdout.splitlines()[-1]))
        print(label, threads, {m: v["p50_ms"] for m, v in runs[-1]["modes"].items()}, flush=True)
    same = all(r["modes"][m]["ids"] == runs[0]["modes"][m]["ids"] for r in runs for m in runs[0]["modes"])
    for r in runs:
        for v in r["modes"].values():
            del v["ids"]
    save(args.out, {"n": args.n, "queries": args.queries // 2, "seed": args.seed, "cpus": cpus, "index": runs[0]["index"],
                    "settings": runs[0]["settings"], "same_rows": same, "runs": runs})


if __name__ == "__main__":
    main()
