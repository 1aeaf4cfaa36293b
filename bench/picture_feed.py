"""How the picture tower is fed, decided without hand labels: k-fold caption → picture retrieval over
every bundled picture–caption pair.

EfficientNet-Lite0 sees a 224 × 224 square. The build fed it the centre crop of a picture (short side
resized to 224), which cuts the ends off APOD's many wide panoramas and tall portraits. Two other feeds
keep the whole picture: *squash* (resized to 224 × 224, proportions lost) and *pad* (resized to fit, the
rest filled with black, as the sky around most astronomy pictures is).

An earlier run (``bench/picture_towers.py``) scored squash above the crop on only 358 held-out pairs
(R@10 0.642 against 0.612), too few to decide. This benchmark decides it on all 2,998 pairs, with no
hand label read at all:

* each feed's features go through the build's own path: the collection PCA-256 of
  :mod:`atlas.encoders.space`, then ``pipeline.align.align`` (the neighbour-captions head, its ``k`` by
  the build's inner CV), with one date block of the 5 passed as ``--align-exclude``;
* the held-out block's captions look for their own pictures among the block's aligned pictures
  (R@10, R@1 and the median rank; chance R@10 = 10 / block size), every pair held out exactly once;
* secondary, still label-free: the build's picture-category vote (``choose_vote`` on the training pairs)
  of each held-out picture against its own caption's class by the lake's word classifier.

**The rule, written before the run:** a feed replaces the centre crop only if its pooled R@10 is higher
and an exact McNemar test on the paired per-caption hits gives p < 0.025 (0.05 split over the two
candidate feeds), at no more than 1.1× the crop's time per picture. Otherwise the crop stays.

Usage: python bench/picture_feed.py [--lake DIR] [--features DIR]
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
from bench.picture_meaning import IMAGES  # noqa: E402
from bench.picture_towers import extract  # noqa: E402
from lake.reader import LakeReader  # noqa: E402

FEEDS = ("crop", "squash", "pad")
FOLDS = 5
ALPHA = 0.05  # split over the candidate feeds (Bonferroni)
MAX_TIME_RATIO = 1.1


def ranks(captions: np.ndarray, pictures: np.ndarray) -> np.ndarray:
    """Each caption's own picture's rank (0 = first) among ``pictures`` (rows paired, unit vectors)."""
    sims = captions @ pictures.T
    return (sims > np.diag(sims)[:, None]).sum(axis=1)


def mcnemar(a: np.ndarray, b: np.ndarray) -> dict:
    """Exact two-sided McNemar test on paired boolean outcomes (a: baseline, b: candidate)."""
    from scipy.stats import binomtest

    only_a, only_b = int(np.sum(a & ~b)), int(np.sum(~a & b))
    p = binomtest(only_b, only_a + only_b, 0.5).pvalue if only_a + only_b else 1.0
    return {"only_baseline": only_a, "only_candidate": only_b, "p": float(p)}


def kfold(dates: list[str], stored: np.ndarray, text: tuple[list[str], np.ndarray], caption_probs: np.ndarray) -> dict:
    """Per-pair held-out ranks and vote hits of one feed's stored picture vectors."""
    from atlas.encoders.align import choose_vote
    from pipeline.align import align

    tpos = {d: i for i, d in enumerate(text[0])}
    captions = text[1][[tpos[d] for d in dates]].astype(np.float64)
    captions /= np.linalg.norm(captions, axis=1, keepdims=True)
    own_class = caption_probs.argmax(axis=1)
    rank = np.zeros(len(dates), np.int64)
    vote_hit = np.zeros(len(dates), bool)
    ks, votes = [], []
    for held in np.array_split(np.arange(len(dates)), FOLDS):  # dates are sorted: contiguous date blocks
        res = align(text=text, image=(dates, stored), shared_space=False, exclude={dates[i] for i in held})
        aligned = res.aligned[held].astype(np.float64)
        rank[held] = ranks(captions[held], aligned)
        pos = {d: i for i, d in enumerate(dates)}
        probs_train = caption_probs[[pos[str(d)] for d in res.head.dates]]
        vote, _ = choose_vote(res.head, probs_train)
        winner = res.head.category_votes(stored[held], probs_train, vote=vote).argmax(axis=1)
        vote_hit[held] = winner == own_class[held]
        ks.append(res.head.k)
        votes.append(f"k={vote.k} tau={vote.tau}")
    return {"rank": rank, "vote_hit": vote_hit, "k": ks, "vote": votes}


def speeds(model, dates: list[str], rounds: int = 3) -> dict[str, float]:
    """Seconds per picture of each feed over the first 240 pictures, the feeds taking turns."""
    sample, runs = dates[:240], {f: [] for f in FEEDS}
    for round_ in range(rounds + 1):
        for feed in FEEDS:
            t0 = time.perf_counter()
            extract(model, feed, sample)
            if round_:
                runs[feed].append((time.perf_counter() - t0) / len(sample))
    return {f: float(np.median(r)) for f, r in runs.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--features", type=Path, default=None, help="reuse/save each feed's features in this folder")
    args = ap.parse_args()

    from atlas.encoders.efficientnet import EfficientNetFeatures, weights_sha256
    from pipeline.embed import text_input
    from pipeline.text_classifier import TextClassifier

    reader = LakeReader.open(args.lake or environment.lake_dir())
    text = reader.vectors("text")
    have = set(text[0])
    dates = sorted(p.stem for p in IMAGES.glob("*.jpg") if p.stem in have)
    ent = reader.query("SELECT strftime(date, '%Y-%m-%d') AS date, title, explanation FROM entries").set_index("date")
    caption_probs = TextClassifier.load(reader.layout.text_classifier).probabilities(
        [text_input(ent.title[d], ent.explanation[d]) for d in dates])

    model = EfficientNetFeatures()
    seconds = speeds(model, dates)
    results, key = {}, np.array([weights_sha256(), *dates])
    for feed in FEEDS:
        cache = args.features / f"feed_{feed}.npz" if args.features else None
        z = np.load(cache) if cache and cache.is_file() else None
        if z is not None and np.array_equal(z["key"], key):
            x = z["features"]
        else:
            x = extract(model, feed, dates)
            if cache:
                cache.parent.mkdir(parents=True, exist_ok=True)
                np.savez(cache, features=x, key=key)
        stored = space.apply_space(x, space.fit_space(x, 256)).astype(np.float32)
        results[feed] = kfold(dates, stored, text, caption_probs)
        r = results[feed]["rank"]
        print(feed, "R@10", round(float(np.mean(r < 10)), 4), flush=True)

    base = results["crop"]
    block = len(dates) // FOLDS
    rows, decision = {}, "crop"
    best_r10 = float(np.mean(base["rank"] < 10))
    for feed, r in results.items():
        hit10 = r["rank"] < 10
        row = {"r10": round(float(np.mean(hit10)), 4), "r1": round(float(np.mean(r["rank"] < 1)), 4),
               "median_rank": float(np.median(r["rank"]) + 1),
               "r10_per_fold": [round(float(np.mean(f < 10)), 4) for f in np.array_split(r["rank"], FOLDS)],
               "vote_caption_class_agreement": round(float(np.mean(r["vote_hit"])), 4),
               "k": r["k"], "vote": r["vote"], "ms_per_picture": round(seconds[feed] * 1000, 2),
               "time_vs_crop": round(seconds[feed] / seconds["crop"], 3)}
        if feed != "crop":
            row["mcnemar_r10_vs_crop"] = mcnemar(base["rank"] < 10, hit10)
            row["mcnemar_vote_vs_crop"] = mcnemar(base["vote_hit"], r["vote_hit"])
            wins = (row["r10"] > best_r10 and row["mcnemar_r10_vs_crop"]["p"] < ALPHA / (len(FEEDS) - 1)
                    and row["time_vs_crop"] <= MAX_TIME_RATIO)
            if wins:
                decision, best_r10 = feed, row["r10"]
        rows[feed] = row
        print(feed, row, flush=True)
    save("picture_feed", {"lake": lake_label(reader.layout.root), "pairs": len(dates), "folds": FOLDS,
                          "r10_chance": round(10 / block, 4), "feeds": rows, "decision": decision,
                          "rule": f"a feed replaces the crop if its pooled R@10 is higher with an exact McNemar p < "
                                  f"{ALPHA / (len(FEEDS) - 1)} at ≤ {MAX_TIME_RATIO}× the crop's time per picture"})


if __name__ == "__main__":
    main()
