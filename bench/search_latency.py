"""End-to-end search latency: HTTP request → JSON from the app under gunicorn, on the built lake.

Sequential requests from one client (no concurrency), the benchmark queries repeated. First, the first
search after the server answers its first page, with the Procfile's gunicorn.conf.py (each worker loads
the query encoder before it serves) and, as the baseline, without it (the encoder loads on first use).
One request is one sample, as noisy as any single request, so the first search is timed on ``--starts``
fresh servers (a different query each time) and reported as their median against the warm p50.
Reports p50/p95 per mode, for /api/similar, a filtered query, and hybrid from a client that accepts gzip
(as browsers do: the reply's compression and decoding in the time).

With ``--baseline REV`` the same requests are also timed against the code of an earlier commit (a git
worktree), on the same lake in the same run, both served at once and timed in turns (every round: each
version once): the before/after of a speed change.

Then **clients at once**: the Procfile's server (gunicorn.conf.py: two workers, four threads each) and 1,
2 and 4 clients sending hybrid searches in a closed loop (each its next request when its last is
answered), taking turns round after round (with ``--baseline``, both versions so served at once, in
turns); p50/p95 of each request and requests per second. The one-worker numbers above are one request
at a time on one warm process; the Procfile's server is what a deployment runs.

Usage: python bench/search_latency.py [--lake DIR] [--rounds 5] [--starts 5] [--baseline REV]
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import lake_label, latency_stats, median, save  # noqa: E402
from bench.dashboard import checkout, serve, stop  # noqa: E402
from lake.layout import LakeLayout  # noqa: E402

QUERIES = Path(__file__).resolve().parent / "data" / "search_queries.txt"


def timed_get(url: str, *, gzip_ok: bool = False) -> float:
    """Seconds for one GET until its JSON is read; ``gzip_ok``: sent as browsers and ``curl --compressed``
    send it, taking a gzip reply (decoded in the time) where the server compresses."""
    t0 = time.perf_counter()
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"} if gzip_ok else {})
    with urllib.request.urlopen(req, timeout=60) as resp:
        body = resp.read()
        if resp.headers.get("Content-Encoding") == "gzip":
            body = gzip.decompress(body)
        json.loads(body)
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


def measure(lake: Path, queries: list[str], rounds: int, repos: dict[str, Path | None]) -> dict[str, dict]:
    """p50/p95 per request type for each code version of ``repos`` (key → its checkout, None: this one),
    all served at once and timed in turns, round after round, so that the machine's drift over the run
    touches them alike. Returns key → request type → statistics."""
    servers = {key: serve(lake, **({"repo": repo} if repo else {})) for key, repo in repos.items()}
    dates = ["2014-01-07", "2002-05-03", "1999-08-18", "2020-07-11", "2024-05-02"]
    filtered = {"category": "Nebula", "from": "2005-01-01", "to": "2020-12-31", "has_image": "true"}
    samples: dict[str, dict[str, list[float]]] = {key: {} for key in servers}
    try:
        for _, base in servers.values():
            for q in queries:  # warm-up round
                timed_get(f"{base}/api/search?" + urllib.parse.urlencode({"q": q, "k": 10}))
        requests = {mode: ({"mode": mode}, False) for mode in ("hybrid", "dense", "keyword")} | {
            "hybrid_gzip_accepted": ({}, True), "hybrid_filtered": (filtered, False)}
        names = list(requests)
        for r in range(rounds):
            for key, (_, base) in servers.items():
                timed_get(f"{base}/api/similar/{dates[0]}?k=10")  # the turn's first request, not timed
                for i, q in enumerate(queries):  # the request types in turn, each query in another order
                    shift = (i + r) % len(names)
                    for name in names[shift:] + names[:shift]:
                        params, gzip_ok = requests[name]
                        samples[key].setdefault(name, []).append(timed_get(
                            f"{base}/api/search?" + urllib.parse.urlencode({"q": q, "k": 10} | params), gzip_ok=gzip_ok))
                samples[key].setdefault("similar", []).extend(timed_get(f"{base}/api/similar/{d}?k=10")
                                                              for _ in range(4) for d in dates)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=30)
    return {key: {name: latency_stats(values) for name, values in got.items()} for key, got in samples.items()}


CLIENTS = (1, 2, 4)


def clients_at_once(lake: Path, queries: list[str], rounds: int, repos: dict[str, Path | None]) -> dict[str, dict]:
    """Hybrid search from 1, 2 and 4 clients at once (closed loop, each client all the queries once per
    round, in its own order) against the Procfile's server (two workers) for each code version of
    ``repos`` (key → its checkout, None: this one), all served at once: per version and client count,
    p50/p95 of each request and requests/s. Versions and counts take turns in every round, so that drift
    touches them alike."""
    from concurrent.futures import ThreadPoolExecutor

    servers = {key: serve(lake, workers=2, **({"repo": repo} if repo else {})) for key, repo in repos.items()}
    urls = {key: [f"{base}/api/search?" + urllib.parse.urlencode({"q": q, "k": 10}) for q in queries]
            for key, (_, base) in servers.items()}
    samples = {key: {n: [] for n in CLIENTS} for key in servers}
    busy = {key: dict.fromkeys(CLIENTS, 0.0) for key in servers}

    def client(share: list[str]) -> list[float]:
        return [timed_get(url) for url in share]

    def shares(key: str, n: int) -> list[list[str]]:  # each client every query, starting at its own place
        return [urls[key][k * len(queries) // n:] + urls[key][:k * len(queries) // n] for k in range(n)]

    try:
        with ThreadPoolExecutor(max(CLIENTS)) as pool:
            for key in servers:  # warm-up: enough requests at once to reach both workers
                for _ in range(2):
                    list(pool.map(client, shares(key, max(CLIENTS))))
            for r in range(rounds):
                for key in servers:
                    for n in CLIENTS[r % len(CLIENTS):] + CLIENTS[:r % len(CLIENTS)]:
                        t0 = time.perf_counter()
                        for got in pool.map(client, shares(key, n)):
                            samples[key][n].extend(got)
                        busy[key][n] += time.perf_counter() - t0
    finally:
        stop(*(proc for proc, _ in servers.values()))
    return {key: {f"{n} client{'s' if n > 1 else ''}": latency_stats(got) | {
        "requests_per_s": round(len(got) / busy[key][n], 1)} for n, got in got_n.items()}
        for key, got_n in samples.items()}


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
    if not args.baseline:
        out = measure(lake, queries, args.rounds, {"this": None})["this"]
        out["clients_at_once"] = clients_at_once(lake, queries, args.rounds, {"this": None})["this"]
    else:
        with checkout(args.baseline) as tree:
            timed = measure(lake, queries, args.rounds, {"this": None, "before": tree})
            out, before = timed["this"], timed["before"]
            loads = clients_at_once(lake, queries, args.rounds, {"this": None, "before": tree})
            out["clients_at_once"], before["clients_at_once"] = loads["this"], loads["before"]
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
