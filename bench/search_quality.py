"""Search quality: mean precision@10 of dense, keyword and hybrid search over two hand-judged query sets.

Queries (bench/data/search_queries.txt) are written in other words than the archive uses ("shooting
stars" for meteors, "frozen visitor … glowing tail" for comets). Judgements
(bench/data/search_judgements.json) list the relevant entries of each query's pooled top-10 results
and, under ``_judged_not_relevant``, the other entries read; an entry listed in neither counts as not
relevant, so re-running after a model change reports a lower bound until the new results are judged
(the *unjudged* counts say how many).

Rankings: dense, keyword, hybrid (the default: RRF with pseudo-relevance feedback on the dense side),
hybrid with the query's words as typed (before British spellings got their American ones), hybrid
without feedback and with equal weights (the defaults before that, same run), and two alternatives the
build did not adopt: the keyword expansion (:class:`KeywordExpansion`) and score fusion by a convex
combination (:class:`ConvexFusion`, its setting chosen on the tuning set).

With ``--compare-lake DIR`` (and ``--compare-label``, what that lake is: e.g. "lake built by 1a2b3c4") the
same queries are also scored on another lake with this search code, in the same run: what a change of the
lake's contents (its texts, its vectors) did to search, apart from the search code.

Usage: python bench/search_quality.py [--lake DIR] [--compare-lake DIR --compare-label TEXT]
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
from typing import Any
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import save  # noqa: E402
from atlas import environment  # noqa: E402
from lake.reader import LakeReader  # noqa: E402
from lake import search  # noqa: E402
from lake.search import SearchEngine  # noqa: E402
from atlas.encoders import encoder_from_manifest  # noqa: E402

DATA = Path(__file__).resolve().parent / "data"


SETS = {
    # the first set: written before the wave-1 search was built; settings may be tuned on it
    "tuning": ("search_queries.txt", "search_judgements.json"),
    # written and judged before any search tuning, never used to choose a setting
    "held_out": ("search_queries_holdout.txt", "search_judgements_holdout.json"),
}
#: The tuning set's queries by when they were written (file order): the second part was added, pooled and
#: judged before any setting was chosen on it, so that differences of a few hundredths can be settled.
TUNING_PARTS = {"the first 24 (2026-11-23)": slice(0, 24), "the 36 added 2026-12-08": slice(24, None)}
MODES = ("dense", "keyword", "hybrid")


@contextmanager
def equal_weights():
    """The fusion before its keyword weight was tuned, and before pseudo-relevance feedback."""
    saved = search.KEYWORD_WEIGHT, search.FEEDBACK_DOCS
    search.KEYWORD_WEIGHT, search.FEEDBACK_DOCS = 1.0, 0
    try:
        yield
    finally:
        search.KEYWORD_WEIGHT, search.FEEDBACK_DOCS = saved


@contextmanager
def no_feedback():
    """Hybrid search without pseudo-relevance feedback (the default before it)."""
    saved, search.FEEDBACK_DOCS = search.FEEDBACK_DOCS, 0
    try:
        yield
    finally:
        search.FEEDBACK_DOCS = saved


@contextmanager
def as_typed():
    """Keyword search for the query's words as typed, without the American spellings that
    :func:`lake.search.keyword_query` adds to British-spelled words (the default before)."""
    saved, search.keyword_query = search.keyword_query, lambda q: q
    try:
        yield
    finally:
        search.keyword_query = saved


def leave_one_query_out(per_query: dict[str, list[float]]) -> float:
    """Mean P@10 of choosing a setting on a query set, each query scored with the setting the *other*
    queries choose (``per_query``: setting → each query's P@10, in grid order; ties: the first). The best
    of a grid scored on the queries that chose it is optimistic; this says what choosing is worth."""
    n = len(next(iter(per_query.values())))
    held = []
    for i in range(n):
        rest = {k: sum(v) - v[i] for k, v in per_query.items()}
        held.append(per_query[max(rest, key=rest.get)][i])
    return round(sum(held) / n, 3)


#: RRF's k and the keyword weight, re-checked together in the app's mode (with the feedback) on the
#: tuning set: the weight was chosen with k = 60 on 24 queries without feedback. The current setting first,
#: so a tie keeps it.
FUSION_GRID = ((search.RRF_K, search.KEYWORD_WEIGHT),) + tuple(
    (k, w) for k in (10, 20, 30, 60) for w in (1.0, 1.5, 2.0) if (k, w) != (search.RRF_K, search.KEYWORD_WEIGHT))


@contextmanager
def fusion(k: int, weight: float):
    """Hybrid search with RRF constant ``k`` and keyword weight ``weight``."""
    saved = search.rrf, search.KEYWORD_WEIGHT
    search.rrf, search.KEYWORD_WEIGHT = functools.partial(saved[0], k=k), weight
    try:
        yield
    finally:
        search.rrf, search.KEYWORD_WEIGHT = saved


def fusion_grid(engine: SearchEngine) -> dict[str, Any]:
    """Hybrid P@10 (app's mode) per (k, keyword weight) of :data:`FUSION_GRID` on both sets; the setting
    the tuning set chooses, its leave-one-query-out score there, and the held-out score of each."""
    scores: dict[str, dict[str, list[float]]] = {}
    for name, files in SETS.items():
        queries, judged = load_set(*files)
        scores[name] = {}
        for k, w in FUSION_GRID:
            with fusion(k, w):
                scores[name][f"k={k} w={w}"] = [
                    sum(h["date"] in set(judged[q]) for h in engine.search(q, k=10, mode="hybrid")) / 10
                    for q in queries]
    means = {name: {s: round(sum(v) / len(v), 3) for s, v in per.items()} for name, per in scores.items()}
    chosen = max(means["tuning"], key=means["tuning"].get)
    return {"current": f"k={search.RRF_K} w={search.KEYWORD_WEIGHT}", "chosen": chosen,
            "tuning_p_at_10_leave_one_query_out": leave_one_query_out(scores["tuning"]),
            "p_at_10": means, "per_query": scores}


def load_set(queries_file: str, judgements_file: str) -> tuple[list[str], dict[str, Any]]:
    """One judged set: its queries (in file order) and, per query, the dates judged relevant (keys from
    ``_``: notes, e.g. ``_judged_not_relevant``: every other entry read, per query)."""
    queries = [q for q in (DATA / queries_file).read_text().splitlines() if q.strip()]
    return queries, json.loads((DATA / judgements_file).read_text())


def hybrid_order(dense: list[str], keyword: list[str]) -> list[str]:
    """Dates of a dense and a keyword ranking fused as hybrid search fuses them (without its feedback,
    which needs the lake's own vectors: these rankings come from other vectors)."""
    return [d for d, _ in search.hybrid_ranking(dense, keyword)]


def judged_pool(judged: dict[str, Any], q: str) -> set[str]:
    """The entries the judges read for ``q``: those judged relevant and those listed under
    ``_judged_not_relevant`` (which holds the pooled top-10 entries of dense, keyword and hybrid search
    read when judging, frozen 2026-11-30). Anything else a ranking returns is unjudged: scored as not
    relevant by P@10, skipped by :func:`condensed_p_at_10`, counted in *unjudged*. (Until the freeze the
    pool was recomputed with the current search code, so a code change could make an entry nobody had
    read count as judged.)"""
    return set(judged[q]) | set(judged.get("_judged_not_relevant", {}).get(q, []))


def condensed_p_at_10(ranking: list[str], pool: set[str], relevant: set[str]) -> float:
    """P@10 over judged entries only: unjudged ones are skipped, not counted as misses (Sakai's
    condensed lists), so rankings that surface entries nobody judged are not penalised for it."""
    judged_top = [d for d in ranking if d in pool][:10]
    return sum(d in relevant for d in judged_top) / max(len(judged_top), 1)


class KeywordExpansion:
    """The alternative the build did not take: the BM25 query also expanded with the 10 words of highest
    summed TF-IDF in the first fused list's top 5 entries (RM3-like), a third list fused beside the
    keyword and dense lists (weights 0.75, 0.75, 1). Better on the tuning set, but a second full-text
    query per search (≈ 3.5 ms)."""

    def __init__(self, engine: SearchEngine) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        rows = engine.reader.query("SELECT strftime(date, '%Y-%m-%d') AS date, title, explanation FROM entries")
        self.engine, self.row = engine, {d: i for i, d in enumerate(rows.date)}
        vec = TfidfVectorizer(sublinear_tf=True, min_df=3, max_df=0.3, stop_words="english")
        self.x = vec.fit_transform([f"{t}. {x}" for t, x in zip(rows.title, rows.explanation)])
        self.terms = vec.get_feature_names_out()

    def ranking(self, q: str) -> list[str]:
        import re

        import numpy as np

        with no_feedback():
            first = [h["date"] for h in self.engine.search(q, k=50, mode="hybrid")]
        dense = [h["date"] for h in self.engine.search(q, k=50, mode="dense")]
        keyword = [h["date"] for h in self.engine.search(q, k=50, mode="keyword")]
        weights = np.asarray(self.x[[self.row[d] for d in first[:5]]].sum(axis=0)).ravel()
        said = set(re.findall(r"[a-z0-9]+", q.lower()))
        extra = [self.terms[i] for i in np.argsort(-weights) if self.terms[i] not in said][:10]
        expanded = [h["date"] for h in self.engine.search(q + " " + " ".join(extra), k=50, mode="keyword")]
        w = search.KEYWORD_WEIGHT / 2
        return [d for d, _ in search.fused_order([dense, keyword, expanded], weights=(1.0, w, w))]


class ConvexFusion:
    """The other common fusion, not adopted: a convex combination of the two lists' normalised scores,
    ``α·dense + (1 − α)·BM25`` (Bruch, Gai & Ingber 2023, "An Analysis of Fusion Functions for Hybrid
    Retrieval", which found it ahead of RRF once α is tuned), with the same dense feedback as the app's
    hybrid mode. Normalisation: min–max over each list's top 50 (*mm*), or from 0 to the list's best score
    (*tmm*, the theoretical-minimum variant; an entry missing from a list scores 0 there). Its (normalisation,
    α) are chosen on the tuning set only (:meth:`choose`), then applied unchanged to the held-out set."""

    GRID = tuple((how, alpha) for how in ("mm", "tmm") for alpha in (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8))

    def __init__(self, engine: SearchEngine) -> None:
        from lake.filters import Filters

        self.engine, self.filters = engine, Filters()
        self.setting: tuple[str, float] | None = None
        self.tuning_scores: dict[str, float] = {}
        self.leave_one_out: float | None = None  # tuning P@10, each query's setting chosen by the others
        self._lists: dict[str, tuple] = {}

    @staticmethod
    def _normalised(hits: list[dict[str, Any]], how: str) -> dict[str, float]:
        if not hits:
            return {}
        scores = [h["score"] for h in hits]
        lo, hi = (min(scores) if how == "mm" else 0.0), max(scores)
        return {h["date"]: (v - lo) / max(hi - lo, 1e-9) for h, v in zip(hits, scores)}

    def _fused(self, dense: list[dict[str, Any]], keyword: list[dict[str, Any]], how: str, alpha: float) -> list[str]:
        a, b = self._normalised(dense, how), self._normalised(keyword, how)
        return sorted(set(a) | set(b), key=lambda d: (-(alpha * a.get(d, 0.0) + (1 - alpha) * b.get(d, 0.0)), d))

    def _ranking(self, q: str, how: str, alpha: float) -> list[str]:
        e = self.engine
        if q not in self._lists:
            vec = e.encoder.encode_text([q])[0]
            self._lists[q] = (e._keyword(q, None, search.FUSION_DEPTH), vec,
                              e._dense_search(vec, "text", self.filters, search.FUSION_DEPTH))
        keyword, vec, dense = self._lists[q]
        memory = e._in_memory("text")
        first = self._fused(dense, keyword, how, alpha)[:search.FEEDBACK_DOCS]
        have = {d: memory.vectors[memory.row[d]] for d in first if d in memory.row}
        dense = e._dense_search(search.feedback_query(vec, first, have), "text", self.filters, search.FUSION_DEPTH)
        return self._fused(dense, keyword, how, alpha)[:10]

    def choose(self, queries: list[str], judged: dict[str, Any]) -> None:
        """The grid's best setting by mean P@10 on these (tuning) queries; ties: the first in the grid."""
        per_query: dict[str, list[float]] = {}
        for how, alpha in self.GRID:
            p = [sum(d in set(judged[q]) for d in self._ranking(q, how, alpha)) / 10 for q in queries]
            per_query[f"{how} alpha={alpha}"] = p
            self.tuning_scores[f"{how} alpha={alpha}"] = round(sum(p) / len(p), 3)
        best = max(self.tuning_scores, key=self.tuning_scores.get)
        self.setting = next(s for s in self.GRID if f"{s[0]} alpha={s[1]}" == best)
        self.leave_one_out = leave_one_query_out(per_query)

    def ranking(self, q: str) -> list[str]:
        assert self.setting is not None, "choose() on the tuning set first"
        return self._ranking(q, *self.setting)


#: Rows of the table: how each ranks a query (mode names are the API's; the rest are variants).
RANKINGS = ("dense", "keyword", "hybrid", "hybrid_as_typed", "hybrid_no_feedback", "hybrid_equal",
            "hybrid_keyword_expansion", "hybrid_convex")


def rankings(engine: SearchEngine, expansion: KeywordExpansion, q: str,
             convex: ConvexFusion | None = None) -> dict[str, list[str]]:
    out = {mode: [h["date"] for h in engine.search(q, k=10, mode=mode)] for mode in MODES}
    with as_typed():  # the default before British spellings got their American ones, in the same run
        out["hybrid_as_typed"] = [h["date"] for h in engine.search(q, k=10, mode="hybrid")]
    with no_feedback():
        out["hybrid_no_feedback"] = [h["date"] for h in engine.search(q, k=10, mode="hybrid")]
    with equal_weights():  # the fusion before its keyword weight was tuned, in the same run
        out["hybrid_equal"] = [h["date"] for h in engine.search(q, k=10, mode="hybrid")]
    out["hybrid_keyword_expansion"] = expansion.ranking(q)
    if convex is not None:
        out["hybrid_convex"] = convex.ranking(q)
    return out


def score_set(engine: SearchEngine, expansion: KeywordExpansion, queries_file: str, judgements_file: str,
              convex: ConvexFusion | None = None) -> dict:
    """P@10 per ranking, the condensed P@10 (unjudged entries skipped) and the unjudged entries per top
    10, and the best P@10 any ranking could reach (queries with fewer than 10 relevant entries cap it),
    so ``normalised`` = P@10 / that ceiling."""
    queries, judged = load_set(queries_file, judgements_file)
    per_query: dict[str, dict[str, float]] = {}
    names = [r for r in RANKINGS if convex is not None or r != "hybrid_convex"]
    condensed: dict[str, list[float]] = {r: [] for r in names}
    unjudged: dict[str, list[int]] = {r: [] for r in names}
    to_read: dict[str, set[str]] = {}
    for q in queries:
        relevant = set(judged[q])
        pool = judged_pool(judged, q)
        per_query[q] = {}
        for name, ranking in rankings(engine, expansion, q, convex).items():
            per_query[q][name] = sum(d in relevant for d in ranking[:10]) / 10
            condensed[name].append(condensed_p_at_10(ranking, pool, relevant))
            unjudged[name].append(sum(d not in pool for d in ranking[:10]))
            to_read.setdefault(q, set()).update(d for d in ranking[:10] if d not in pool)
        per_query[q]["ideal"] = min(len(relevant), 10) / 10
    means = {m: round(sum(v[m] for v in per_query.values()) / len(queries), 3) for m in (*names, "ideal")}
    normalised = {m: round(means[m] / means["ideal"], 3) for m in names}
    for q, v in per_query.items():
        print(f"{q[:55]:<55} " + "  ".join(f"{m} {p:.1f}" for m, p in v.items()))
    print(f"{queries_file}: mean P@10 {means}; P@10 / ideal {normalised}")
    return {"queries": len(queries), "mean_p_at_10": means, "normalised_p_at_10": normalised,
            "condensed_p_at_10": {m: round(sum(v) / len(v), 3) for m, v in condensed.items()},
            "unjudged_in_top_10": {m: round(sum(v) / len(v), 2) for m, v in unjudged.items()},
            "per_query": per_query,
            "unjudged_to_read": {q: sorted(v) for q, v in to_read.items() if v}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    ap.add_argument("--compare-lake", type=Path, default=None, help="also score this lake, with the same code")
    ap.add_argument("--compare-label", default=None, help="what the compared lake is (shown in BENCHMARKS.md)")
    args = ap.parse_args()
    if args.compare_lake is not None and not args.compare_label:
        ap.error("--compare-lake needs --compare-label (say what that lake is)")
    engine = SearchEngine(LakeReader.open(args.lake or environment.lake_dir()), encoder_from_manifest)
    expansion = KeywordExpansion(engine)
    convex = ConvexFusion(engine)
    convex.choose(*load_set(*SETS["tuning"]))  # its setting comes from the tuning set alone
    results = {name: score_set(engine, expansion, *files, convex=convex) for name, files in SETS.items()}
    tuning = results["tuning"]
    tuning_queries = list(tuning["per_query"])
    tuning["parts"] = {part: {m: round(sum(tuning["per_query"][q][m] for q in tuning_queries[rows])
                                       / len(tuning_queries[rows]), 3) for m in ("dense", "keyword", "hybrid", "ideal")}
                       | {"queries": len(tuning_queries[rows])} for part, rows in TUNING_PARTS.items()}
    payload = {"queries": tuning["queries"], "mean_p_at_10": tuning["mean_p_at_10"],
               "per_query": tuning["per_query"], "sets": results,
               "feedback": {"docs": search.FEEDBACK_DOCS, "weight": search.FEEDBACK_WEIGHT},
               "convex_fusion": {"chosen": f"{convex.setting[0]} alpha={convex.setting[1]}",
                                 "tuning_p_at_10": convex.tuning_scores,
                                 "tuning_p_at_10_leave_one_query_out": convex.leave_one_out},
               "fusion_grid": fusion_grid(engine),
               "encoder": engine.reader.manifest["encoder"]["name"]}
    if args.compare_lake is not None:
        other = SearchEngine(LakeReader.open(args.compare_lake), encoder_from_manifest)
        other_expansion = KeywordExpansion(other)
        payload["compared"] = {"label": args.compare_label, "sets": {
            name: {"mean_p_at_10": score_set(other, other_expansion, *files)["mean_p_at_10"]}
            for name, files in SETS.items()}}
    save("search_quality", payload)


if __name__ == "__main__":
    main()
