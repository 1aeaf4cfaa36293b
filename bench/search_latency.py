"""End-to-end search latency: HTTP request → JSON from the app under gunicorn, on the built lake.

Sequential requests from one client (no concurrency), the benchmark queries repeated. First, the first
search after the server answers its first page, with the Procfile's gunicorn.conf.py (each worker loads
the query encoder before it serves) and, as the baseline, without it (the encoder loads on first use).
One request is one sample, as noisy as any single request, so the first search is timed on ``--starts``
fresh servers (a different query each time) and reported as their median against the warm p50.
Reports p50/p95 per mode, for /api/similar, and a filtered query.

With ``--baseline REV`` the same requests are also timed against the code of an earlier commit (a git
worktree), on the same lake in the same run: the before/after of a speed change.

Usage: python bench/search_latency.py [--lake DIR] [--rounds 5] [--starts 5] [--baseline REV]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import lake_label, latency_stats, median, save  # noqa: E402
from bench.dashboard import checkout, serve  # noqa: E402
from lake.layout import LakeLayout  # noqa: E402

QUERIES = Path(__file__).resolve().parent / "data" / "search_queries.txt"


def timed_get(url: str) -> float:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        json.loads(resp.read())
    return time.perf_counter() - t0


def first_searches(lake: Path, queries: list[str], starts: int, *, config: bool = True,
                   repo: Path | None = None) -> tuple[list[float], list[float]]:
    """For each of ``starts`` fresh servers: seconds from the server's start until its worker answers its
    first page (the worker's warm-up included, where the config has one), and the first search (ms)
    right after."""
    first, ready = [], []
    for i in range(starts):
        t0 = time.perf_counter()
        proc, base = serve(lake, config=config, **({"repo": repo} if repo else {}))
        ready.append(round(time.perf_counter() - t0, 2))
        try:
            first.append(round(timed_get(f"{base}/api/search?" + urllib.parse.urlencode(
                {"q": queries[i % len(queries)], "k": 10})) * 1000, 1))
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    return first, ready


def measure(lake: Path, queries: list[str], rounds: int, repo: Path | None = None) -> dict:
    """p50/p95 per request type against one server (``repo``: which code it runs)."""
    proc, base = serve(lake, **({"repo": repo} if repo else {}))
    try:
        for q in queries:  # warm-up round
            timed_get(f"{base}/api/search?" + urllib.parse.urlencode({"q": q, "k": 10}))
        out = {}
        for mode in ("hybrid", "dense", "keyword"):
            out[mode] = latency_stats([timed_get(f"{base}/api/search?" + urllib.parse.urlencode({"q": q, "k": 10, "mode": mode}))
                               for _ in range(rounds) for q in queries])
        out["hybrid_filtered"] = latency_stats([timed_get(f"{base}/api/search?" + urllib.parse.urlencode(
            {"q": q, "k": 10, "category": "Nebula", "from": "2005-01-01", "to": "2020-12-31", "has_image": "true"}))
            for _ in range(rounds) for q in queries])
        dates = ["2014-01-07", "2002-05-03", "1999-08-18", "2020-07-11", "2024-05-02"]
        out["similar"] = latency_stats([timed_get(f"{base}/api/similar/{d}?k=10") for _ in range(rounds * 4) for d in dates])
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--starts", type=int, default=5, help="fresh servers whose first search is timed")
    ap.add_argument("--baseline", metavar="REV", help="also time the code of this commit (before/after)")
    ap.add_argument("--out", default="search_latency",
                    help="results name (bench/results/<out>.json); search_latency_other_machine is shown beside "
                         "the main run in BENCHMARKS.md")
    args = ap.parse_args()
    lake = LakeLayout.at(args.lake).root
    queries = [q for q in QUERIES.read_text().splitlines() if q.strip()]
    starts = {"without worker warm-up": first_searches(lake, queries, 1, config=False),
              "with gunicorn.conf.py warm-up": first_searches(lake, queries, args.starts)}
    first = {label: ms for label, (ms, _) in starts.items()}
    out = measure(lake, queries, args.rounds)
    if args.baseline:
        with checkout(args.baseline) as tree:
            before = measure(lake, queries, args.rounds, repo=tree)
            before["first_search_ms"], before["worker_ready_s"] = first_searches(lake, queries, args.starts, repo=tree)
            before["first_search_over_warm_p50"] = round(median(before["first_search_ms"]) / before["hybrid"]["p50_ms"], 2)
        out["baseline"] = {"rev": args.baseline, **before}
    out["first_search_ms"] = first
    out["worker_ready_s"] = {label: s for label, (_, s) in starts.items()}
    out["first_search_over_warm_p50"] = round(median(first["with gunicorn.conf.py warm-up"]) / out["hybrid"]["p50_ms"], 2)
    for k, v in out.items():
        print(f"{k:<16} {v}")
    save(args.out, {"lake": lake_label(lake), "server": "gunicorn 1 worker, 4 threads", "results": out,
                    "targets": {"p50_ms": 15}})


if __name__ == "__main__":
    main()
