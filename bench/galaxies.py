"""Galaxy Zoo collection speed: upload → top-10 similar galaxies with morphology statistics and random
baselines, HTTP → JSON, on the full 19,761-galaxy catalogue; and a catalogue galaxy's morphology
neighbours.

No galaxy pictures can be fetched here (no internet), so the benchmark lake gets its cutouts from a local
stand-in for the cutout service that draws synthetic galaxies (tests/galaxy_pictures.py: a spiral for
featured galaxies, an elliptical for the rest), for the first ``--pictures`` galaxies, through the real
``--fetch-cutouts`` path. Their *look* is synthetic, so this measures speed, not picture quality; every
other part (catalogue, morphology vectors, maps, baselines over all 19,761 galaxies) is the real data.

Usage: python bench/galaxies.py [--pictures 2000] [--requests 40]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path


REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.common import latency_stats, save  # noqa: E402
from bench.dashboard import serve  # noqa: E402
from pipeline.config import BUNDLED_GZ2  # noqa: E402
from tests.conftest import CutoutServer  # noqa: E402
from tests.galaxy_pictures import render  # noqa: E402


def upload(base: str, picture: bytes, k: int = 10) -> tuple[float, dict]:
    boundary = uuid.uuid4().hex
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"g.jpg\"\r\n"
            f"Content-Type: image/jpeg\r\n\r\n").encode() + picture + f"\r\n--{boundary}--\r\n".encode()
    req = urllib.request.Request(f"{base}/api/galaxies/similar?k={k}", data=body,
                                 headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    t0 = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as resp:
        out = json.loads(resp.read())
    return time.perf_counter() - t0, out


def get(url: str) -> tuple[float, dict]:
    t0 = time.perf_counter()
    with urllib.request.urlopen(url, timeout=120) as resp:
        out = json.loads(resp.read())
    return time.perf_counter() - t0, out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pictures", type=int, default=2000)
    ap.add_argument("--requests", type=int, default=40)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        lake = Path(tmp) / "lake"
        cutouts = CutoutServer(BUNDLED_GZ2)
        t0 = time.perf_counter()
        try:
            subprocess.run([sys.executable, "-m", "pipeline", "build", "--collection", "gz2", "--no-progress",
                            "--encoder", "offline", "--lake", str(lake), "--fetch-cutouts", "--cutout-limit",
                            str(args.pictures), "--cutout-url", cutouts.url], check=True, cwd=REPO)
        finally:
            cutouts.close()
        build_s = time.perf_counter() - t0
        proc, base = serve(lake)
        try:
            info = get(f"{base}/api/galaxies")[1]
            first, _ = upload(base, render("spiral", seed=1))
            uploads, found = [], []
            for i in range(args.requests):
                t, body = upload(base, render("spiral" if i % 2 else "smooth", seed=10_000 + i))
                uploads.append(t)
                found.append(len(body["galaxies"]))
            morph = [get(f"{base}/api/galaxies/{o}?k=10")[0] for o in _first_ids(lake, args.requests)]
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    result = {
        "galaxies": info["galaxies"], "with_picture": info["with_picture"], "build_seconds": round(build_s, 1),
        "first_upload_ms": round(first * 1000, 1), "upload_top10": latency_stats(uploads),
        "morphology_top10": latency_stats(morph), "results_per_upload": min(found),
        "target_ms": 1000, "server": "gunicorn, 1 worker, 4 threads (gunicorn.conf.py's threads; the Procfile runs 2 such workers), one sequential client",
    }
    print(json.dumps(result, indent=2))
    print("saved", save("galaxies", result))


def _first_ids(lake: Path, n: int) -> list[str]:
    from lake.reader import LakeReader

    return LakeReader.open(lake).query("SELECT objid FROM galaxies ORDER BY objid LIMIT $n", {"n": n}).objid.tolist()


if __name__ == "__main__":
    main()
