"""Embedding throughput on the local runner and on Ray (``--runner ray``, a local Ray instance) on the same
machine: the same build of the bundled archive from empty lakes, alternating runners, per-stage wall
and CPU time from the build's own metrics. The difference is Ray's overhead here (actor start-up and a
model load per actor and input kind, scheduling, object transfer); it buys nothing on one 2-core
machine and is what a cluster pays to spread the encoding over many nodes.

Usage: python bench/ray_runner.py [--start 2013-01-01] [--end 2013-12-31] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import median, save  # noqa: E402


def build(lake: Path, *, start: str, end: str, runner: str) -> dict:
    cmd = [sys.executable, "-m", "pipeline", "build", "--collection", "apod", "--encoder", "offline",
           "--no-progress", "--start", start, "--end", end, "--lake", str(lake), "--runner", runner]
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True)
    wall = time.perf_counter() - t0
    manifest = json.loads((lake / "current" / "manifest.json").read_text())
    embed = manifest["stages"]["embed"]
    return {"wall_s": round(wall, 2), "embed_wall_s": embed["wall_seconds"], "embed_cpu_s": embed.get("cpu_seconds"),
            "items": embed["items"], "vectors_wall_s": manifest["stages"]["vectors"]["wall_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default="2013-01-01")
    ap.add_argument("--end", default="2013-12-31")
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"local": [], "ray": []}
    for _ in range(args.repeats):
        for runner in ("local", "ray"):
            with tempfile.TemporaryDirectory(prefix="cosmic-atlas-ray-bench-") as tmp:
                runs[runner].append(build(Path(tmp) / "lake", start=args.start, end=args.end, runner=runner))
                print(runner, runs[runner][-1], flush=True)
    out = {}
    for runner, rows in runs.items():
        embed = median([r["embed_wall_s"] for r in rows])
        out[runner] = {"embed_wall_s_median": embed, "items": rows[0]["items"],
                       "items_per_s": round(rows[0]["items"] / embed, 1),
                       "vectors_wall_s_median": median([r["vectors_wall_s"] for r in rows]),
                       "build_wall_s_median": median([r["wall_s"] for r in rows]), "runs": rows}
    out["ray_over_local_embed"] = round(out["ray"]["embed_wall_s_median"] / out["local"]["embed_wall_s_median"], 2)
    print("saved", save("ray_runner", {"range": [args.start, args.end], "repeats": args.repeats, **out}))


if __name__ == "__main__":
    main()
