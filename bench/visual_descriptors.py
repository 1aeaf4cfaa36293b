"""Which pixel descriptor for the offline image vectors? Measured, not guessed.

For every bundled image: neighbour agreement@10 (share of the 10 nearest images whose text-derived
zero-shot category matches) for each descriptor block alone, for all blocks, and for the whitening
choices. Categories come from a built lake (text side only, so no pixel information leaks into them).

Usage: python bench/visual_descriptors.py [--lake DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import lake_label, save  # noqa: E402
from bench.quality import neighbour_agreement  # noqa: E402
from atlas import environment  # noqa: E402
from lake.reader import LakeReader  # noqa: E402
from atlas.encoders import l2_normalise, visual  # noqa: E402


def block_slices() -> dict[str, slice]:
    img = Image.new("RGB", (64, 64))
    rgb = img.resize((visual.SIDE, visual.SIDE))
    hsv = np.asarray(rgb.convert("HSV"), dtype=np.float32) / 255.0
    gray = np.asarray(rgb.convert("L"), dtype=np.float32) / 255.0
    sizes = {"colour": visual._colour_hist(hsv).size, "gray": visual._gray_stats(gray).size,
             "layout": visual._layout(img).size, "gradients": visual._gradients(gray).size,
             "spectrum": visual._spectrum(gray).size}
    out, start = {}, 0
    for name, size in sizes.items():
        out[name] = slice(start, start + size)
        start += size
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    args = ap.parse_args()
    reader = LakeReader.open(args.lake or environment.lake_dir())
    rows = reader.query(
        "SELECT strftime(e.date, '%Y-%m-%d') AS date, e.image_path, c.category FROM entries e "
        "JOIN categories c ON c.date = e.date AND c.source = 'text' WHERE e.has_image ORDER BY e.date")
    t0 = time.perf_counter()
    feats = np.stack([visual.describe(Image.open(reader.layout.root / p)) for p in rows.image_path])
    per_image_ms = (time.perf_counter() - t0) / len(rows) * 1000
    cat = dict(zip(rows.date, rows.category))
    dates = rows.date.tolist()
    variants: dict[str, np.ndarray] = {}
    for name, sl in block_slices().items():
        variants[f"block {name} only"] = l2_normalise(feats[:, sl] - feats[:, sl].mean(0))
    variants["all blocks, raw cosine"] = l2_normalise(feats)
    variants["all blocks, centred"] = l2_normalise(feats - feats.mean(0))
    state = visual.fit_space(feats, 128)
    variants["all blocks, PCA-128 half-whitened (chosen)"] = visual.apply_space(feats, state)
    z = (feats - state["mean"]) @ state["components"].T / state["scale"]
    variants["all blocks, PCA-128 fully whitened"] = l2_normalise(z)
    results = {name: neighbour_agreement(dates, v, cat) for name, v in variants.items()}
    for name, r in results.items():
        print(f"{name:<45} agreement@10 {r['agreement']:.3f}  chance {r['chance']:.3f}  lift {r['lift']:.2f}")
    print(f"descriptor time: {per_image_ms:.2f} ms/image")
    save("visual_descriptors", {"lake": lake_label(reader.layout.root), "ms_per_image": round(per_image_ms, 2),
                                "variants": results})


if __name__ == "__main__":
    main()
