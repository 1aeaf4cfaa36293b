"""Search quality: mean precision@10 of dense, keyword and hybrid search over two hand-judged query sets.

Queries (bench/data/search_queries.txt) are written in other words than the archive uses ("shooting
stars" for meteors, "frozen visitor … glowing tail" for comets). Judgements
(bench/data/search_judgements.json) list the relevant entries of each query's pooled top-10 results;
an entry outside the judged pool counts as not relevant, so re-running after a model change reports a
lower bound until the new results are judged.

Usage: python bench/search_quality.py [--lake DIR]
"""

from __future__ import annotations

import argparse
import json
import sys
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
MODES = ("dense", "keyword", "hybrid")


@contextmanager
def equal_weights():
    saved, search.KEYWORD_WEIGHT = search.KEYWORD_WEIGHT, 1.0
    try:
        yield
    finally:
        search.KEYWORD_WEIGHT = saved


def load_set(queries_file: str, judgements_file: str) -> tuple[list[str], dict[str, list[str]]]:
    """One judged set: its queries (in file order) and, per query, the dates judged relevant."""
    queries = [q for q in (DATA / queries_file).read_text().splitlines() if q.strip()]
    return queries, json.loads((DATA / judgements_file).read_text())


def hybrid_order(dense: list[str], keyword: list[str]) -> list[str]:
    """Dates of a dense and a keyword ranking in the order hybrid search gives them."""
    return [d for d, _ in search.hybrid_ranking(dense, keyword)]


def judged_pool(engine: SearchEngine, q: str, relevant: set[str]) -> set[str]:
    """The entries the judges read for ``q``, rebuilt: the top 10 of dense (the lake's stored vectors),
    keyword and hybrid search at both fusion weights used since judging, and every entry judged
    relevant. Scoring other vectors against judgements pooled from these favours these (their new
    results were never judged); :func:`condensed_p_at_10` does not."""
    pool = set(relevant)
    for mode in MODES:
        pool |= {h["date"] for h in engine.search(q, k=10, mode=mode)}
    with equal_weights():
        pool |= {h["date"] for h in engine.search(q, k=10, mode="hybrid")}
    return pool


def condensed_p_at_10(ranking: list[str], pool: set[str], relevant: set[str]) -> float:
    """P@10 over judged entries only: unjudged ones are skipped, not counted as misses (Sakai's
    condensed lists), so rankings that surface entries nobody judged are not penalised for it."""
    judged_top = [d for d in ranking if d in pool][:10]
    return sum(d in relevant for d in judged_top) / max(len(judged_top), 1)


def score_set(engine: SearchEngine, queries_file: str, judgements_file: str) -> dict:
    """P@10 per mode, and the best P@10 any ranking could reach (queries with fewer than 10 relevant
    entries cap it), so ``normalised`` = P@10 / that ceiling."""
    queries, judged = load_set(queries_file, judgements_file)
    per_query: dict[str, dict[str, float]] = {}
    for q in queries:
        relevant = set(judged[q])
        per_query[q] = {}
        for mode in MODES:
            dates = [h["date"] for h in engine.search(q, k=10, mode=mode)]
            per_query[q][mode] = sum(d in relevant for d in dates) / 10
        with equal_weights():  # the fusion before its keyword weight was tuned, in the same run
            dates = [h["date"] for h in engine.search(q, k=10, mode="hybrid")]
        per_query[q]["hybrid_equal"] = sum(d in relevant for d in dates) / 10
        per_query[q]["ideal"] = min(len(relevant), 10) / 10
    means = {m: round(sum(v[m] for v in per_query.values()) / len(queries), 3) for m in (*MODES, "hybrid_equal", "ideal")}
    normalised = {m: round(means[m] / means["ideal"], 3) for m in (*MODES, "hybrid_equal")}
    for q, v in per_query.items():
        print(f"{q[:55]:<55} " + "  ".join(f"{m} {p:.1f}" for m, p in v.items()))
    print(f"{queries_file}: mean P@10 {means}; P@10 / ideal {normalised}")
    return {"queries": len(queries), "mean_p_at_10": means, "normalised_p_at_10": normalised, "per_query": per_query}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lake", type=Path, default=None)
    args = ap.parse_args()
    engine = SearchEngine(LakeReader.open(args.lake or environment.lake_dir()), encoder_from_manifest)
    results = {name: score_set(engine, *files) for name, files in SETS.items()}
    tuning = results["tuning"]
    save("search_quality", {"queries": tuning["queries"], "mean_p_at_10": tuning["mean_p_at_10"],
                            "per_query": tuning["per_query"], "sets": results,
                            "encoder": engine.reader.manifest["encoder"]["name"]})


if __name__ == "__main__":
    main()
