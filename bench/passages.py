"""Passage-level text vectors for long explanations, measured before choosing (issue #15).

The stored ``text`` vector encodes ``title. explanation`` truncated to the encoder's token limit (128
word pieces offline), so most of a long explanation never reaches it. Here every entry's text is cut
into consecutive windows of that many word pieces (each window after the first starts with the title,
so it still says what it is about); the windows are encoded with the lake's own encoder, and an entry
scores a query by

* **stored**: the lake's own ``text`` vector (the baseline),
* **first**: its first window only (what the lake stores, re-encoded here: a check of the windows),
* **max**: its best window (passage retrieval),
* **mean**: the mean of its windows' vectors (one vector per entry, like the stored one).

Dense and hybrid (RRF with the lake's keyword weight) mean P@10 on both judged query sets; the tuning
set may choose, the held-out set never does. Unjudged results count as not relevant (a lower bound for
any variant that surfaces entries the judges never saw), so the count of unjudged entries in each
variant's top 10 is reported beside it, and P@10 over judged entries only (the *condensed* list,
``bench.search_quality.condensed_p_at_10``). Also: windows per entry and the encoding time they cost.

Usage: python bench/passages.py [--lake DIR] [--cache FILE.npz]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlas import environment  # noqa: E402
from atlas.encoders import encoder_from_manifest, l2_normalise  # noqa: E402
from bench.common import lake_label, save  # noqa: E402
from bench.search_quality import SETS, condensed_p_at_10, hybrid_order, judged_pool, load_set  # noqa: E402
from lake import search  # noqa: E402
from lake.reader import LakeReader  # noqa: E402
from lake.search import SearchEngine  # noqa: E402
from pipeline.embed import text_input  # noqa: E402

VARIANTS = ("stored", "first", "max", "mean")


def windows(tokenizer, title: str, explanation: str, size: int) -> list[str]:
    """``title. explanation`` in consecutive windows of ``size`` word pieces (specials included), cut at
    word-piece boundaries of the original text (no detokenising); each window after the first is
    prefixed with the title."""
    text = text_input(title, explanation)
    spans = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    budget = size - 2  # [CLS] and [SEP]
    if len(spans) <= budget:
        return [text]
    out = [text[:spans[budget - 1][1]]]
    head = f"{title}. " if title else ""
    step = max(budget - len(tokenizer(head, add_special_tokens=False)["input_ids"]), 16)
    for start in range(budget, len(spans), step):
        end = min(start + step, len(spans)) - 1
        out.append(head + text[spans[start][0]:spans[end][1]])
    return out


def encode_windows(engine: SearchEngine, cache: Path | None) -> tuple[list[str], np.ndarray, np.ndarray, float]:
    """(dates, window → entry row, window vectors, encoding seconds) for every entry."""
    if cache and cache.is_file():
        z = np.load(cache)
        return list(z["dates"]), z["owner"], z["vectors"], float(z["seconds"])
    encoder = engine.encoder
    df = engine.reader.query("SELECT strftime(date, '%Y-%m-%d') AS date, title, explanation FROM entries ORDER BY date")
    size = int(engine.reader.manifest["encoder"].get("text_max_tokens") or 128)
    tokenizer = encoder.model.tokenizer
    texts, owner = [], []
    for row, (title, explanation) in enumerate(zip(df.title, df.explanation)):
        parts = windows(tokenizer, title or "", explanation or "", size)
        texts += parts
        owner += [row] * len(parts)
    t0 = time.perf_counter()
    vectors = encoder.encode_text(texts, progress=True)
    seconds = time.perf_counter() - t0
    owner_arr = np.array(owner)
    if cache:
        np.savez(cache, dates=np.array(df.date, dtype=str), owner=owner_arr, vectors=vectors, seconds=seconds)
    return list(df.date), owner_arr, vectors, seconds


def entry_scores(query: np.ndarray, owner: np.ndarray, vectors: np.ndarray, n_entries: int, variant: str,
                 first: np.ndarray, mean: np.ndarray, stored: np.ndarray) -> np.ndarray:
    if variant == "stored":
        return stored @ query
    if variant == "first":
        return first @ query
    if variant == "mean":
        return mean @ query
    sims = vectors @ query
    best = np.full(n_entries, -np.inf, np.float32)
    np.maximum.at(best, owner, sims)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None, help="reuse/save the window vectors here (.npz)")
    args = ap.parse_args()
    engine = SearchEngine(LakeReader.open(args.lake or environment.lake_dir()), encoder_from_manifest)
    dates, owner, vectors, seconds = encode_windows(engine, args.cache)
    n = len(dates)
    is_first = np.r_[True, owner[1:] != owner[:-1]]
    first = vectors[is_first]
    mean = l2_normalise(np.stack([np.bincount(owner, weights=vectors[:, j], minlength=n) for j in range(vectors.shape[1])], 1))
    date_arr = np.array(dates)
    stored_dates, stored_vectors = engine.reader.vectors("text")
    row = {d: i for i, d in enumerate(stored_dates)}
    stored = l2_normalise(stored_vectors[[row[d] for d in dates]])
    result = {"lake": lake_label(engine.reader.layout.root), "entries": n, "windows": len(owner),
              "windows_per_entry": round(len(owner) / n, 2), "window_encoding_s": round(seconds, 1),
              "stored_text_encoding_estimate_s": round(seconds * n / len(owner), 1),
              "keyword_weight": search.KEYWORD_WEIGHT, "sets": {}}
    for set_name, files in SETS.items():
        queries, judged = load_set(*files)
        rows: dict[str, dict[str, list[float]]] = {f"{m} · {v}": {"p": [], "condensed": [], "unjudged": []}
                                                   for m in ("dense", "hybrid") for v in VARIANTS}
        for q in queries:
            relevant = set(judged[q])
            pool = judged_pool(judged, q)
            _, vec = engine._query(q, "text")
            vec = np.asarray(vec, np.float32) / np.linalg.norm(vec)
            keyword = [h["date"] for h in engine._keyword(q, None, 50)]
            for v in VARIANTS:
                scores = entry_scores(vec, owner, vectors, n, v, first, mean, stored)
                dense = date_arr[np.argsort(-scores)[:100]].tolist()
                for mode, ranking in (("dense", dense), ("hybrid", hybrid_order(dense[:50], keyword))):
                    cell = rows[f"{mode} · {v}"]
                    cell["p"].append(sum(d in relevant for d in ranking[:10]) / 10)
                    cell["condensed"].append(condensed_p_at_10(ranking, pool, relevant))
                    cell["unjudged"].append(sum(d not in pool for d in ranking[:10]))
        result["sets"][set_name] = {k: {"p_at_10": round(float(np.mean(r["p"])), 3),
                                        "condensed_p_at_10": round(float(np.mean(r["condensed"])), 3),
                                        "unjudged_in_top10": round(float(np.mean(r["unjudged"])), 2)}
                                    for k, r in rows.items()}
        print(set_name, json.dumps(result["sets"][set_name]), flush=True)
    save("passages", result)


if __name__ == "__main__":
    main()
