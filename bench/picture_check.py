"""What checking a downloaded picture costs: ``atlas.images.check_image`` (what ``--fetch-images`` runs
on every body before keeping it) against decoding the picture whole, per format.

The check reads the whole file, at the least work that still finds a torn or altered one: a JPEG is
decoded at a reduced scale, a PNG's chunks are read, their checksums compared and its pixel data inflated
to count its rows (never filtered into pixels), GIF and WebP (no such check in Pillow) are decoded whole,
as every format was before. The
pictures are made here, photograph-like (a smooth gradient with a little noise), at ``--megapixels``.

Usage: python bench/picture_check.py [--megapixels 12] [--runs 7]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from atlas.images import ImageLimits, check_image  # noqa: E402
from bench.common import median, save  # noqa: E402

FORMATS = ("JPEG", "PNG", "GIF", "WEBP")


def picture(megapixels: float) -> Image.Image:
    h = int(round((megapixels * 1e6 * 3 / 4) ** 0.5))
    w = int(round(h * 4 / 3))
    rng = np.random.default_rng(0)
    ramp = np.linspace(0, 200, w, dtype=np.float32)[None, :, None] + np.linspace(0, 40, h, dtype=np.float32)[:, None, None]
    pixels = np.clip(ramp + rng.normal(0, 4, (h, w, 3)), 0, 255).astype(np.uint8)
    return Image.fromarray(pixels)


def decoded_whole(data: bytes) -> None:
    with Image.open(io.BytesIO(data)) as img:
        img.load()


def timed(fn, *args) -> float:
    """Seconds one call ``fn(*args)`` took."""
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--runs", type=int, default=7)
    args = ap.parse_args()
    img, limits = picture(args.megapixels), ImageLimits(max_bytes=200 * 1024 * 1024)
    rows = []
    for fmt in FORMATS:
        buf = io.BytesIO()
        img.save(buf, format=fmt, **({"quality": 90} if fmt in ("JPEG", "WEBP") else {}))
        data = buf.getvalue()
        whole: list[float] = []
        check: list[float] = []
        for _ in range(args.runs):  # in turns, so a busy moment of the machine hits both alike
            whole.append(timed(decoded_whole, data))
            check.append(timed(check_image, data, limits))
        row = {"format": fmt, "megabytes": round(len(data) / 1e6, 2), "size": list(img.size),
               "whole_ms": round(median(whole) * 1000, 1), "check_ms": round(median(check) * 1000, 1),
               "whole_runs_ms": [round(t * 1000, 1) for t in whole], "check_runs_ms": [round(t * 1000, 1) for t in check]}
        row["ratio"] = round(row["check_ms"] / row["whole_ms"], 3)
        rows.append(row)
        print(f"{fmt}: {row['megabytes']} MB, decoded whole {row['whole_ms']} ms, checked {row['check_ms']} ms "
              f"({row['ratio']}×)")
    print(f"wrote {save('picture_check', {'megapixels': args.megapixels, 'runs': args.runs, 'formats': rows})}")


if __name__ == "__main__":
    main()
