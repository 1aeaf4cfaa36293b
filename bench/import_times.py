"""Import times: what a small build pays before any work, in fresh interpreters.

The one-day build (``bench/add_one_day.py``) spends much of its ≈ 9 s starting Python and importing
libraries; the README's scaling table cites these numbers. Times are medians of ``--runs`` fresh
interpreters per row, the rows taken in turns so a busy moment of the machine hits every row alike:
*Python start* = ``python -c "pass"``; the build's base = ``import pipeline.stages`` (what ``python -m
pipeline build`` has loaded before a stage runs: numpy, pandas, pyarrow…) minus that start; each heavy
library = ``import pipeline.stages, X`` minus the base, i.e. what it adds to a build that already has
the base (its shared dependencies are not counted twice).

Usage: python bench/import_times.py [--runs 7]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median, save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BASE = "pipeline.stages"
#: What each library stands for in a build: the main process runs the saved towers (torch); the worker
#: process fits the anomaly detectors (scikit-learn) and writes the vector tables (LanceDB).
MODULES = {
    "torch": "the saved text and picture traces (main process)",
    "sklearn.ensemble": "the anomaly detectors' isolation forests (worker process)",
    "lancedb": "the vector tables (worker process)",
}


def run_once(code: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    codes = {"start": "pass", "base": f"import {BASE}", **{m: f"import {BASE}, {m}" for m in MODULES}}
    runs: dict[str, list[float]] = {name: [] for name in codes}
    for _ in range(args.runs):
        for name, code in codes.items():
            runs[name].append(run_once(code))
    start, base = median(runs["start"]), median(runs["base"])
    rows = [{"module": m, "why": why, "adds_s": round(median(runs[m]) - base, 3),
             "runs_s": [round(t, 3) for t in runs[m]]} for m, why in MODULES.items()]
    path = save("import_times", {"runs": args.runs, "python_start_s": round(start, 3), "base_module": BASE,
                                 "base_import_s": round(base - start, 3),
                                 "raw_runs_s": {n: [round(t, 3) for t in runs[n]] for n in ("start", "base")},
                                 "modules": rows})
    print(f"Python start {start:.3f} s; {BASE} {base - start:.3f} s; then "
          + ", ".join(f"{r['module']} +{r['adds_s']:.3f} s" for r in rows))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
