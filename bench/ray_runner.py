"""Embedding throughput on the local runner and on Ray (``--runner ray``, a local Ray instance) on the same
machine: the same build of the bundled archive from empty lakes, alternating runners, per-stage wall
and CPU time from the build's own metrics. The difference is Ray's overhead here (actor start-up and a
model load per actor and job, scheduling, object transfer); it buys nothing on one 2-core machine and
is what a cluster pays to spread the encoding over many nodes.

Every title, text and picture is encoded (``--no-shipped-vectors``: a collection of one's own has no
shipped vectors), so with the default two years the titles and texts each span two checkpoint chunks
of 512. ``--baseline REV`` also builds on Ray with the code of that commit (a git worktree), in turn
with the others: before the chunks of one kind shared one actor pool, each chunk made its own.

Usage: python bench/ray_runner.py [--start 2012-01-01] [--end 2013-12-31] [--repeats 2] [--baseline REV]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import median, save  # noqa: E402


def build(lake: Path, *, start: str, end: str, runner: str, repo: Path = REPO) -> dict:
    cmd = [sys.executable, "-m", "pipeline", "build", "--collection", "apod", "--encoder", "offline",
           "--no-progress", "--no-shipped-vectors", "--start", start, "--end", end, "--lake", str(lake),
           "--runner", runner]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=repo, capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"build failed ({runner}, {repo}):\n{proc.stderr[-3000:]}")
    wall = time.perf_counter() - t0
    manifest = json.loads((lake / "current" / "manifest.json").read_text())
    embed = manifest["stages"]["embed"]
    return {"wall_s": round(wall, 2), "embed_wall_s": embed["wall_seconds"], "embed_cpu_s": embed.get("cpu_seconds"),
            "encoded": manifest["newly_embedded"], "vectors_wall_s": manifest["stages"]["vectors"]["wall_seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--start", default="2012-01-01")
    ap.add_argument("--end", default="2013-12-31")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--baseline", metavar="REV", help="also build on Ray with the code of this commit")
    args = ap.parse_args()
    with contextlib.ExitStack() as stack:
        setups = [("local", "local", REPO), ("ray", "ray", REPO)]
        if args.baseline:
            from bench.dashboard import checkout

            setups.append((f"ray_{args.baseline}", "ray", stack.enter_context(checkout(args.baseline))))
        runs: dict[str, list[dict]] = {name: [] for name, _, _ in setups}
        for _ in range(args.repeats):
            for name, runner, repo in setups:
                with tempfile.TemporaryDirectory(prefix="cosmic-atlas-ray-bench-") as tmp:
                    runs[name].append(build(Path(tmp) / "lake", start=args.start, end=args.end, runner=runner,
                                            repo=repo))
                    print(name, runs[name][-1], flush=True)
    out = {}
    for name, rows in runs.items():
        embed = median([r["embed_wall_s"] for r in rows])
        items = sum(rows[0]["encoded"].values())
        out[name] = {"embed_wall_s_median": embed, "encoded": rows[0]["encoded"], "items_per_s": round(items / embed, 1),
                     "vectors_wall_s_median": median([r["vectors_wall_s"] for r in rows]),
                     "build_wall_s_median": median([r["wall_s"] for r in rows]), "runs": rows}
    out["ray_over_local_embed"] = round(out["ray"]["embed_wall_s_median"] / out["local"]["embed_wall_s_median"], 2)
    if args.baseline:
        out["baseline_ray_over_ray_embed"] = round(
            out[f"ray_{args.baseline}"]["embed_wall_s_median"] / out["ray"]["embed_wall_s_median"], 2)
    print("saved", save("ray_runner", {"range": [args.start, args.end], "repeats": args.repeats,
                                       "baseline": args.baseline, **out}))


if __name__ == "__main__":
    main()
