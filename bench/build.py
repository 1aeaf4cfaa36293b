"""Cold build of the embedded default lake, per stage, then no-op re-runs.

Runs the real CLI in a subprocess against a fresh lake directory (so the embedding cache is empty),
then re-runs it ``--noop-runs`` times on the finished lake. Wall times are process wall times, stage
times come from the manifest. Then (unless ``--no-recompute``) a second cold build with
``--no-shipped-vectors``: every text encoded, none taken from the vectors shipped in data/apod/vectors.

With ``--baseline REV`` the code of an earlier commit (a git worktree) first makes its own cold build
of the same archive, so the before/after pair comes from one run on one machine.

Usage: python bench/build.py [--noop-runs 3] [--keep DIR] [--baseline REV] [--no-recompute]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import median, save  # noqa: E402


def run(lake: Path, repo: Path = REPO, *, options: tuple[str, ...] = ()) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "build", "--no-progress", "--lake", str(lake), *options],
                          cwd=repo, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return wall, json.loads((lake / "current" / "manifest.json").read_text())


def _stages(m: dict) -> dict:
    return {k: {"seconds": v.get("wall_seconds"), "cpu_seconds": v.get("cpu_seconds"), "items": v.get("items"),
                "items_per_second": v.get("items_per_second"), "peak_rss_mb": round((v.get("peak_rss_bytes") or 0) / 2**20),
                **({"ran_in": v["ran_in"]} if v.get("ran_in") else {})}
            for k, v in m["stages"].items() if "wall_seconds" in v}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--noop-runs", type=int, default=3)
    ap.add_argument("--keep", type=Path, help="build here and keep the lake (default: a temp dir, removed)")
    ap.add_argument("--baseline", metavar="REV", help="first, a cold build by the code of this commit")
    ap.add_argument("--no-recompute", dest="recompute", action="store_false",
                    help="skip the second cold build, which encodes every text (--no-shipped-vectors)")
    args = ap.parse_args()
    baseline = None
    if args.baseline:
        from bench.dashboard import checkout

        with checkout(args.baseline) as tree, tempfile.TemporaryDirectory(prefix="cosmic-bench-base-") as tmp:
            wall, m = run(Path(tmp) / "lake", repo=tree)
            baseline = {"rev": args.baseline, "cold_wall_seconds": round(wall, 1), "cold_stages": _stages(m)}
    tmp = Path(tempfile.mkdtemp(prefix="cosmic-bench-"))
    lake = args.keep or tmp / "lake"
    if lake.exists():
        raise SystemExit(f"{lake} exists; the cold build needs an empty directory")
    try:
        cold_wall, m = run(lake)
        stages = _stages(m)
        noop = [run(lake)[0] for _ in range(args.noop_runs)]
        recomputed = None
        if args.recompute:
            wall, full = run(tmp / "recomputed", options=("--no-shipped-vectors",))
            recomputed = {"cold_wall_seconds": round(wall, 1), "cold_stages": _stages(full)}
        result = {
            "command": "python -m pipeline build (bundled archive, --encoder auto → offline, int8, 128 tokens)",
            "entries": m["counts"]["entries"], "encoder": m["encoder"]["name"],
            "cold_wall_seconds": round(cold_wall, 1), "cold_stages": stages,
            "noop_wall_seconds": [round(x, 2) for x in noop], "noop_median_seconds": round(median(noop), 2),
            "targets": {"cold_seconds": 360, "noop_seconds": 10},
        } | ({"baseline": baseline} if baseline else {}) | ({"recomputed": recomputed} if recomputed else {})
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(json.dumps(result, indent=2))
    print("saved", save("build", result))


if __name__ == "__main__":
    main()
