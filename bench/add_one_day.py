"""The daily ingest: one new day added to the full archive, with the new entry placed on the published
maps (the default) against re-fitting every map (``--refit``, what every build did before), in one run.

A copy of a built lake (default ``lake/data``; its caches make embedding incremental) is first rebuilt
without the archive's last day (a re-fit: entries left), with that day's vectors dropped from the
embedding caches, so adding it back encodes it as a real new day would. Then the last day is added back
from that same state: as a plain build (placement; ``--repeat`` times, median), the same with every stage
in the main process (``--no-background-stages``: the anomaly detectors not in the worker process beside
the later stages), the same with the new entry placed by UMAP's transform instead of interpolation
(``--map-placement transform``; the default ``auto`` interpolates fewer than 1,000 points) and once with
``--refit``. Wall and CPU per stage come from the builds' manifests (medians over the repeats); *moved*
is the largest change of any existing point's map position.

With ``--baseline REV`` the code of an earlier commit (a git worktree) also adds the day, to the same
state rebuilt by that code (so that a stage whose code changed is compared in its steady state, not in
the one full pass an upgrade costs), and the before/after pair comes from one run on one machine.

``--day DATE`` adds another day instead (the days after it stay out of every build): the archive's last
day has no bundled picture, its last day with one is 2026-08-06.

Usage: python bench/add_one_day.py [--lake DIR] [--baseline REV] [--repeat N] [--day DATE] [--out NAME]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import lake_label, save  # noqa: E402
from lake.layout import LakeLayout  # noqa: E402
from lake.reader import LakeReader  # noqa: E402
from pipeline.embed import text_input  # noqa: E402
from pipeline.embed_cache import EmbeddingCache  # noqa: E402
from atlas.hashing import sha1_text  # noqa: E402


def shipped_vectors_flag(repo: Path) -> tuple[str, ...]:
    """A real new day has no text vector shipped with the archive: code that reads them is told not to."""
    return ("--no-shipped-vectors",) if "shipped_vectors" in (repo / "pipeline" / "config.py").read_text() else ()


def build(lake: Path, *extra: str, repo: Path = REPO) -> tuple[float, dict]:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pipeline", "build", "--collection", "apod", "--no-progress",
                           "--lake", str(lake), *shipped_vectors_flag(repo), *extra], cwd=repo, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-3000:])
    return wall, json.loads((lake / "current" / "manifest.json").read_text())


def positions(lake: Path):
    return LakeReader.open(lake).query("SELECT date, embedding, method, x, y, coalesce(z, 0) AS z FROM projections")


def moved(before, after) -> float:
    both = before.merge(after, on=["date", "embedding", "method"], suffixes=("_a", "_b"))
    if len(both) != len(before):
        raise SystemExit("existing points are missing after the build")
    return float(np.max(np.abs(both[["x_a", "y_a", "z_a"]].to_numpy() - both[["x_b", "y_b", "z_b"]].to_numpy())))


def forget_day(lake: Path, day: str) -> dict[str, int]:
    """Drop one day's title, text and picture vectors from every embedding cache of ``lake``."""
    row = LakeReader.open(lake).query("SELECT title, explanation, image_sha1 FROM entries WHERE date = ?", [day]).iloc[0]
    keys = {"title": [sha1_text(row.title)], "text": [sha1_text(text_input(row.title, row.explanation))],
            "image": [row.image_sha1] if row.image_sha1 else []}
    dropped: dict[str, int] = {}
    for folder in sorted(LakeLayout.at(lake).cache.glob("embeddings/*/*")):
        if folder.name in keys:
            dropped[folder.name] = dropped.get(folder.name, 0) + EmbeddingCache(folder).forget(keys[folder.name])
    return dropped


def stages(m: dict) -> dict:
    return {name: {"wall_s": s["wall_seconds"], "cpu_s": s.get("cpu_seconds"), "reused": bool(s.get("skipped")),
                   "in_worker": bool(s.get("ran_in"))}
            for name, s in m["stages"].items() if not name.startswith("gz2_")}


def _median_or_none(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(float(np.median(known)), 2) if known else None


def median_run(runs: list[dict]) -> dict:
    """The runs of one build as one row: median whole and per-stage times, every whole time, the largest
    move of any existing point over all runs."""
    out = dict(runs[-1])
    out["wall_s"] = round(float(np.median([r["wall_s"] for r in runs])), 1)
    out["wall_runs_s"] = [r["wall_s"] for r in runs]
    out["moved_max"] = max(r["moved_max"] for r in runs)
    out["stages"] = {name: {**stage, "wall_s": round(float(np.median([r["stages"][name]["wall_s"] for r in runs])), 3),
                            "cpu_s": _median_or_none([r["stages"][name]["cpu_s"] for r in runs])}
                     for name, stage in runs[-1]["stages"].items()}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--baseline", metavar="REV", help="also add the day with the code of this commit")
    ap.add_argument("--repeat", type=int, default=3, help="plain builds per code version (median reported)")
    ap.add_argument("--day", type=dt.date.fromisoformat, default=None,
                    help="the day to add (default: the lake's last); the days after it stay out of every build")
    ap.add_argument("--out", default="add_one_day", help="results name (bench/results/NAME.json)")
    args = ap.parse_args()
    if args.repeat < 1:
        ap.error("--repeat must be at least 1")
    source = LakeLayout.at(args.lake).root
    last = args.day or LakeReader.open(source).query("SELECT max(date) AS d FROM entries").d[0].date()
    day_before = (last - dt.timedelta(days=1)).isoformat()
    until = ("--end", last.isoformat())
    results: dict = {"lake": lake_label(source), "added_day": last.isoformat()}
    with tempfile.TemporaryDirectory(prefix="cosmic-atlas-add-day-") as tmp:
        base = Path(tmp) / "base"
        shutil.copytree(source, base, symlinks=True)
        results["added_day_has_picture"] = bool(LakeReader.open(base).query(
            "SELECT has_image FROM entries WHERE date = ?", [last.isoformat()]).has_image[0])
        results["forgotten_vectors"] = forget_day(base, last.isoformat())
        results["no_shipped_vectors"] = bool(shipped_vectors_flag(REPO))
        runs: list[tuple[str, tuple[str, ...], Path, Path]] = [
            ("placed", until, REPO, base), ("placed_serial", (*until, "--no-background-stages"), REPO, base),
            ("placed_transform", (*until, "--map-placement", "transform"), REPO, base),
            ("refit", (*until, "--refit"), REPO, base)]
        with contextlib.ExitStack() as stack:
            if args.baseline:
                from bench.dashboard import checkout

                # the baseline adds the day to the state its own code left: a stage whose code changed
                # (e.g. the sky resolver's fingerprint covers its source) would otherwise redo every entry
                base_baseline = Path(tmp) / "base_baseline"
                shutil.copytree(base, base_baseline, symlinks=True)
                repo = stack.enter_context(checkout(args.baseline))
                build(base_baseline, "--end", day_before, repo=repo)
                runs.insert(0, ("placed_baseline", until, repo, base_baseline))
                results["baseline"] = args.baseline
            wall, m = build(base, "--end", day_before)
            results["without_last_day"] = {"wall_s": round(wall, 1), "entries": m["counts"]["entries"]}
            before = {state: positions(state) for state in {state for *_, state in runs}}
            # the plain builds take turns, --repeat times each, in ABBA order (the machine's drift and
            # whatever a build leaves warm hit both alike); then one re-fit
            plain = [run for run in runs if run[0] != "refit"]
            rounds = [run for i in range(args.repeat) for run in (plain if i % 2 == 0 else plain[::-1])]
            rounds += [run for run in runs if run[0] == "refit"]
            done: dict[str, list[dict]] = {}
            for label, extra, repo, state in rounds:
                lake = Path(tmp) / label
                shutil.copytree(state, lake, symlinks=True)
                wall, m = build(lake, *extra, repo=repo)
                run = {"wall_s": round(wall, 2), "entries": m["counts"]["entries"],
                       "projection": {k: v for k, v in m["stages"]["project"]["manifest"]["projection"].items()
                                      if k in ("mode", "placed_this_build", "placed_since_fit", "drift_since_fit")},
                       "embedded_items": m["stages"]["embed"]["items"],
                       "moved_max": moved(before[state], positions(lake)), "stages": stages(m)}
                done.setdefault(label, []).append(run)
                print(label, json.dumps(run), flush=True)
                shutil.rmtree(lake)
            for label, label_runs in done.items():
                results[label] = median_run(label_runs)
    results["target_s"] = 10
    print("saved", save(args.out, results))


if __name__ == "__main__":
    main()
