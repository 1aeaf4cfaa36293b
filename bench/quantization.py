"""fp32 vs dynamic int8 MiniLM, and explanation truncation: throughput and agreement.

Baseline: fp32 at 256 word pieces (plain sentence-transformers settings). Each variant encodes the
same texts (title + cleaned explanation) for a random sample of the archive plus the hand-labelled
entries; reported: texts/s (median of repeats), mean cosine to the baseline, overlap of the 10 nearest
neighbours with the baseline's, zero-shot category agreement with the baseline, and zero-shot top-1
accuracy on the labelled sample.

Usage: python bench/quantization.py [--sample 600] [--repeats 3]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import median, save  # noqa: E402
from pipeline import taxonomy  # noqa: E402
from pipeline.classify import class_vectors, zero_shot  # noqa: E402
from pipeline.config import BUNDLED_ARCHIVE  # noqa: E402
from atlas.device import set_threads  # noqa: E402
from pipeline.embed import text_input  # noqa: E402
from atlas.encoders.offline import OfflineEncoder  # noqa: E402
from pipeline.ingest import normalise  # noqa: E402
from pipeline.neighbors import knn_graph  # noqa: E402

LABELS = Path(__file__).resolve().parent / "data" / "labelled_categories.csv"
VARIANTS = [("fp32", 256), ("fp32", 128), ("int8", 256), ("int8", 128)]


def load_texts(sample: int) -> tuple[list[str], list[str]]:
    df = pd.read_parquet(BUNDLED_ARCHIVE)
    labels = pd.read_csv(LABELS, dtype=str)
    df["d"] = df.date.astype(str)
    chosen = pd.concat([df[df.d.isin(labels.date)], df[~df.d.isin(labels.date)].sample(sample, random_state=3)])
    texts, dates = [], []
    import datetime as dt

    for rec in chosen.to_dict("records"):
        row, _ = normalise(rec, "bundled", dt.date.today())
        if row:
            texts.append(text_input(row["title"], row["explanation"]))
            dates.append(rec["d"])
    return texts, dates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sample", type=int, default=600)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    set_threads(args.threads)
    texts, dates = load_texts(args.sample)
    labels = pd.read_csv(LABELS, dtype=str)
    truth = dict(zip(labels.date, labels.category))
    tax = taxonomy.load(None)
    results, vectors, cats = {}, {}, {}
    for quant, tokens in VARIANTS:
        name = f"{quant}@{tokens}"
        enc = OfflineEncoder(quantize="none" if quant == "fp32" else "int8", text_max_tokens=tokens)
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            vec = enc.encode_text(texts)
            times.append(time.perf_counter() - t0)
        vectors[name] = vec
        res = zero_shot(vec, class_vectors(enc, tax), tax.names, 20.0, dates)
        cats[name] = res.category
        acc = np.mean([c == truth[d] for c, d in zip(res.category, dates) if d in truth])
        results[name] = {"texts_per_second": round(len(texts) / median(times), 1),
                         "seconds_median": round(median(times), 2), "zero_shot_top1": round(float(acc), 3)}
        print(name, results[name], flush=True)
    base = "fp32@256"
    base_nn = knn_graph(vectors[base], 10).without_self()[0]
    for name in results:
        nn = knn_graph(vectors[name], 10).without_self()[0]
        overlap = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(nn, base_nn)])
        results[name] |= {
            "speedup_vs_fp32@256": round(results[name]["texts_per_second"] / results[base]["texts_per_second"], 2),
            "mean_cosine_to_fp32@256": round(float(np.mean(np.sum(vectors[name] * vectors[base], axis=1))), 4),
            "top10_neighbour_overlap": round(float(overlap), 3),
            "category_agreement": round(float(np.mean([a == b for a, b in zip(cats[name], cats[base])])), 3),
        }
    for name, r in results.items():
        print(f"{name:<9} {r}")
    save("quantization", {"texts": len(texts), "labelled": int(sum(d in truth for d in dates)),
                          "repeats": args.repeats, "threads": args.threads, "variants": results})


if __name__ == "__main__":
    main()
