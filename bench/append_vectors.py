"""A daily build's append to a vector table of N rows (``lake/vectors.py`` ``append_to_previous``): time
and memory of adding one row to the last version's table, by this code and, with ``--baseline REV``, by
the code of an earlier commit (a git worktree), on the same last version in the same run.

The last version is written once per size by this code (``write_arrow``: the table, the digest of its
rows, the indexes it gets at that size: IVF_PQ from 100,000 rows). Each code then appends, in a process
of its own, ``--repeat`` times to fresh copies: it builds the new table (the last version's rows plus
one) in memory as the vectors stage does, and calls ``append_to_previous``; where the table has an ANN
index, this code also appends with the index due to take the new row in (*index merge due*: what one
append in ``UNINDEXED_MAX_ROWS`` costs; the others leave it outside the index). *extra RSS* = the largest
resident memory during the call above the resident memory before it (the new table already in memory;
sampled every 10 ms). Rows are synthetic: 384-d vectors (MiniLM's size) drawn around 2,000 centres and
normalised, titles, years, categories, picture flags, as the ``image`` kind has them.

Usage: python bench/append_vectors.py [--n 11382 1000000] [--repeat 3] [--baseline REV] [--out NAME]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.ann import DIM, centres  # noqa: E402  (the same 2,000 centres as the ANN benchmark's vectors)

KIND = "image"
CATEGORIES = ["Galaxy", "Nebula", "Solar", "Earth/Atmospheric", "Comet", "Star cluster"]


def archive_table(vectors_module, n: int):
    """The vector table of ``n`` synthetic days, built by ``vectors_module.vector_table`` (the code under
    test's); the same rows for every ``n`` up to its own (seeded per 100,000-row block)."""
    around = centres()
    blocks = []
    for start in range(0, n, 100_000):
        rows = min(n, start + 100_000) - start
        x = around[np.random.default_rng([1, start, 0]).integers(0, len(around), rows)]
        x += 0.9 * np.random.default_rng([1, start, 1]).normal(size=x.shape).astype(np.float32)
        blocks.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    days = np.datetime64("1000-01-01") + np.arange(n)
    dates = np.datetime_as_string(days, unit="D").tolist()
    return vectors_module.vector_table(
        KIND, dates, np.concatenate(blocks), titles=[f"Synthetic entry {i}" for i in range(n)],
        years=(days.astype("datetime64[Y]").astype(int) + 1970).tolist(),
        categories=[CATEGORIES[i % len(CATEGORIES)] for i in range(n)], has_image=[i % 3 != 0 for i in range(n)])


def child(code: Path, last: Path, n: int, repeat: int, *, merge_due: bool) -> dict:
    """In a process of its own (``code``'s ``lake`` package): append one row to ``last`` ``repeat`` times
    (``merge_due``: with the ANN index due to take the new row in, as it is once ``UNINDEXED_MAX_ROWS``
    rows are outside it)."""
    from bench.common import peak_rss  # this repository's (it imports nothing of the lake)

    sys.path.insert(0, str(code))
    import lance  # noqa: F401  (imported by the call under test; not timed)

    from lake import vectors

    table = archive_table(vectors, n + 1)
    options = {"unindexed_max_rows": 1} if merge_due else {}
    walls, extra, appended = [], [], set()
    for i in range(repeat):
        target = last.parent / f"staged-{i}"
        result, wall, before, peak = peak_rss(
            lambda target=target: vectors.append_to_previous(target, KIND, table, previous=last, **options), every=0.01)
        appended.add(result)
        walls.append(wall)
        extra.append(peak - before)
        shutil.rmtree(target, ignore_errors=True)
    if appended != {1}:
        raise SystemExit(f"{code}: append_to_previous returned {appended}, not 1 row appended")
    return {"wall_s": round(float(np.median(walls)), 3), "wall_runs_s": [round(w, 3) for w in walls],
            "extra_rss_mb": round(max(extra) / 2**20)}


def run_child(code: Path, last: Path, n: int, repeat: int, *, merge_due: bool = False) -> dict:
    proc = subprocess.run([sys.executable, __file__, "--child", str(code), "--last", str(last), "--n", str(n),
                           "--repeat", str(repeat), *(["--merge-due"] if merge_due else [])], cwd=REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, nargs="+", default=[11_382, 1_000_000], help="rows of the last version")
    ap.add_argument("--repeat", type=int, default=3, help="appends per code and size (median reported)")
    ap.add_argument("--baseline", metavar="REV", help="also append with the code of this commit")
    ap.add_argument("--out", default="append_vectors", help="results name (bench/results/NAME.json)")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--last", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--merge-due", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.last, args.n[0], args.repeat, merge_due=args.merge_due)))
        return
    import contextlib

    import lance

    from bench.common import save
    from bench.dashboard import checkout
    from lake import vectors

    results: dict = {"kind": KIND, "dim": DIM, "repeat": args.repeat, "sizes": []}
    with contextlib.ExitStack() as stack:
        codes = {"this": REPO}
        if args.baseline:
            codes[args.baseline] = stack.enter_context(checkout(args.baseline))
            results["baseline"] = args.baseline
        for n in args.n:
            with tempfile.TemporaryDirectory(prefix="cosmic-atlas-append-") as tmp:
                last = Path(tmp) / "last"
                vectors.write_arrow(last, KIND, archive_table(vectors, n))
                dataset = lance.dataset(vectors.table_uri(last, KIND))
                row = {"rows": n, "indexes": sorted(i.index_type for i in dataset.describe_indices()),
                       "fragments": len(dataset.get_fragments())}
                runs = [(name, code, False) for name, code in codes.items()]
                if {"IVF_PQ", "IVF_HNSW_SQ"} & set(row["indexes"]):
                    runs.insert(1, ("this, index merge due", REPO, True))
                for name, code, merge_due in runs:
                    row[name] = run_child(code, last, n, args.repeat, merge_due=merge_due)
                    print(f"{n:>10,} rows  {name:>22}: {row[name]['wall_s']:.3f} s, "
                          f"extra RSS {row[name]['extra_rss_mb']} MB", flush=True)
                results["sizes"].append(row)
    print(save(args.out, results))


if __name__ == "__main__":
    main()
