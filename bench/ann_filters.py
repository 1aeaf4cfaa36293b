"""Filtered vector search at N vectors (default 1,000,000; ``--n 10000000`` for the 10M case) as the lake
builds and runs it: the ANN index and the filter-column indexes of ``lake.vectors`` (``vector_index_config``,
``create_scalar_indexes``), the filter expressions of ``lake.filters.Filters`` that search sends, the query
settings chosen by measurement on one half of the queries and reported on the other.

Rows: the vectors and years of ``bench/ann.py`` (384-d, around 2,000 centres; the same seeds, so the same
vectors), with the columns of the lake's vector tables: an ISO ``date`` in that year, a ``category`` of 12
with a skewed share (as the archive's taxonomy), ``has_image`` for 95 %. Filters: whole years (from
2016, as the dashboard's year slider makes them: about a third of the rows), the same from a day inside
a year (from 15 March 2016: that year's days on the date's index, the later years on the year's), and
one category with pictures (about 6 %).

Steps, one run: (1) the table with its ANN index (or the one ``--keep`` left); (2) the baseline, the
version before the filter-column indexes: the previous query settings (``PREVIOUS_SEARCH``), every filter
a pre-filter with as many probes as any query, and date ranges written on the date alone
(``PREVIOUS_WHERE``), on the held-out queries; (3) the filter-column indexes built, timed, and the count of
each filter's rows timed without and with them; (4) a grid of (nprobes, refine factor, ef) on the tuning
queries, filtered queries planned as search plans them (``lake.vectors.ann_search``: under IVF_PQ more
probes for a narrow filter, under IVF_HNSW_SQ a broad filter applied after the search); the fastest
setting whose recall@10 is ≥ 0.95 by a standard error (:func:`meets`) in every mode (unfiltered and each
filter) at both list depths is chosen;
(5) on the held-out queries: that setting, the shipped one (``lake.vectors.ANN_SEARCH``), the shipped one
with every filter pre-filtered at its probes (without the share), and the previous version's settings and
plan (``PREVIOUS_SEARCH``, pre-filters; under IVF_PQ the same as now). Recall@10 is against exact cosine
search over the rows passing the filter; latency of each query alone, after 5 warm-up queries per mode,
with Lance's compute threads as the lake sets them (``atlas.environment.default_lance_threads``; every
row of one run alike: bench/lance_threads.py compares thread counts);
at 10 rows and at the 50 a search of the app fetches (``FUSION_DEPTH``; recall of its first 10); where
a filter is applied after the search, how many queries found too few passing rows in the list and went
to the pre-filter (a second query: ``lake.vectors`` logs each).

Usage: python bench/ann_filters.py [--n 1000000] [--queries 200] [--seed 7] [--keep DIR] [--out ann_filters]
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import json
import logging
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from atlas.environment import default_lance_threads  # noqa: E402
from bench.ann import BLOCK, DIM, ExactTop10, block, centres, queries_near, timed_recall  # noqa: E402
from bench.common import peak_rss, save  # noqa: E402
from lake.filters import Filters  # noqa: E402
from lake.schema import vector_schema  # noqa: E402
from lake.search import FUSION_DEPTH  # noqa: E402
from lake.vectors import (  # noqa: E402
    ANN_SEARCH,
    POST_FILTER_FELL_BACK,
    POST_FILTER_MARGIN,
    POST_FILTER_MIN_SHARE,
    HNSW_MIN_ROWS,
    PROBED_SHARE,
    SCALAR_INDEXES,
    AnnSettings,
    ann_search,
    create_scalar_indexes,
    vector_index_config,
)

CATEGORIES = ("galaxy", "nebula", "star cluster", "planet", "moon", "sun", "comet", "aurora", "eclipse",
              "spacecraft", "earth", "sky")
#: Shares of the categories (most common first), a skew like the archive's taxonomy.
SHARES = np.array([0.2, 0.16, 0.12, 0.1, 0.09, 0.08, 0.06, 0.05, 0.045, 0.04, 0.03, 0.025])
FILTERS = {"years": Filters(start=dt.date(2016, 1, 1)), "days": Filters(start=dt.date(2016, 3, 15)),
           "category": Filters(categories=("comet",), has_image=True)}
#: The filters as the previous version wrote them for LanceDB (d714fb0: date bounds on ``date`` only).
PREVIOUS_WHERE = {"years": "date >= '2016-01-01'", "days": "date >= '2016-03-15'"}
#: Settings tried on the tuning queries; the shipped one (ANN_SEARCH) is among them.
#: (nprobes, refine factor, ef): ef is HNSW's candidate list (None under IVF_PQ, which has none).
GRID = {"IvfHnswSq": ((20, 2, 300), (30, 2, 300), (40, 2, 200), (40, 2, 300), (40, 5, 300), (45, 2, 300),
                      (45, 2, 400), (50, 2, 300), (50, 2, 400), (55, 2, 300), (55, 2, 400), (60, 2, 300)),
        "IvfPq": ((20, 10, None), (40, 20, None), (60, 20, None), (100, 20, None), (100, 40, None),
                  (150, 40, None), (200, 50, None))}
#: The query settings of the previous version (272eeeb): IVF_HNSW_SQ's ef was LanceDB's default, 1.5 ×
#: limit × refine factor, and every filter was a pre-filter (its queries did not count the share).
PREVIOUS_SEARCH = {"IvfHnswSq": (40, 20, None), "IvfPq": (100, 40, None)}
TARGET_RECALL, TARGET_P50_MS = 0.95, 50
DEPTHS = (10, FUSION_DEPTH)
#: A vector table of the lake, and the row number the exact answers are kept by.
SCHEMA = pa.schema([*vector_schema(DIM), pa.field("id", pa.int64())])
WARMUP = 5


def rows(start: int, stop: int, c: np.ndarray) -> tuple[np.ndarray, pa.RecordBatch, dict[str, np.ndarray]]:
    """Vectors, the record batch of rows [start, stop) (the lake's vector-table columns and an ``id``)
    and, per filter, which of them pass it; the same whatever else was generated."""
    x, years = block(start, stop, c)
    rng = np.random.default_rng([2, start])
    year = (years.astype(np.int64) - 1970).astype("datetime64[Y]")
    first, after = year.astype("datetime64[D]"), (year + 1).astype("datetime64[D]")
    dates = (first + (rng.random(len(x)) * (after - first).astype(np.int64)).astype("timedelta64[D]")).astype(str)
    category = np.array(CATEGORIES)[rng.choice(len(CATEGORIES), len(x), p=SHARES)]
    has_image = rng.random(len(x)) < 0.95
    passes = {name: f.mask(columns={"date": dates, "category": category, "has_image": has_image})
              for name, f in FILTERS.items()}
    batch = pa.record_batch([pa.array(dates), pa.FixedSizeListArray.from_arrays(pa.array(x.reshape(-1)), DIM),
                             pa.nulls(len(x), pa.string()), pa.array(years), pa.array(category),
                             pa.array(has_image), pa.array(np.arange(start, stop))], schema=SCHEMA)
    return x, batch, passes


def measure(tbl, queries: np.ndarray, truth: dict[str, ExactTop10], wheres: dict[str, str | None],
            settings: AnnSettings, *, shares: dict[str, float] | None = None) -> dict:
    """Recall@10, p50 and p95 of each mode (unfiltered, each filter) at each list depth, the queries as
    search makes them (``lake.vectors.ann_search``). With ``shares`` (of the rows passing each filter),
    filtered queries are planned by it as search plans them (a post-filter or a pre-filter, the probes);
    without, every filter is a pre-filter with ``settings.nprobes``."""
    out = {}
    for (mode, where), depth in itertools.product(wheres.items(), DEPTHS):
        share = shares[mode] if shares and where else None
        run = partial(_ids, tbl, settings=settings, limit=depth, where=where, share=share)
        for q in queries[:WARMUP]:
            run(q)
        with FallBacks() as fell_back:
            lat, recall = timed_recall(run, queries, truth[mode].best)
        post = settings.post_filter(share=share, n=depth) if share is not None else None  # (depth, ef)
        out[f"{mode}@{depth}"] = {"nprobes": settings.probes(share=share) if share is not None else settings.nprobes,
                                  "post_filter_depth": post and post[0], "post_filter_ef": post and post[1],
                                  "post_filter_fell_back": fell_back.count if post else None,
                                  "recall_at_10": round(float(np.mean(recall)), 4),
                                  "recall_se": round(float(np.std(recall, ddof=1) / np.sqrt(len(recall))), 4),
                                  "p50_ms": round(float(np.percentile(lat, 50)), 2),
                                  "p95_ms": round(float(np.percentile(lat, 95)), 2)}
    row = {"nprobes": settings.nprobes, "refine_factor": settings.refine_factor, "ef": settings.ef,
           "by_share": shares is not None, "modes": out}
    print(row, flush=True)
    return row


class FallBacks(logging.Handler):
    """Counts, while in its ``with`` block, the queries whose post-filtered list held too few passing rows
    and went to the pre-filter (``lake.vectors`` logs each at DEBUG): the second query they cost."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0
        self._logger = logging.getLogger("lake.vectors")

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.msg == POST_FILTER_FELL_BACK

    def __enter__(self) -> FallBacks:
        self._level = self._logger.level
        self._logger.addHandler(self)
        self._logger.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc) -> None:
        self._logger.removeHandler(self)
        self._logger.setLevel(self._level)


def _ids(tbl, q: np.ndarray, *, settings: AnnSettings, limit: int, where: str | None, share: float | None) -> list[int]:
    return [h["id"] for h in ann_search(tbl, q, settings=settings, limit=limit, columns=["id"], where=where,
                                         share=share)]


def meets(row: dict) -> bool:
    """Recall@10 at least one standard error (of the mean over the tuning queries) above the target in
    every mode. Why the margin: a setting that only just reaches the target on one sample of queries
    misses it on the next (10M vectors, 40 probes: 0.950 on 200 tuning queries, 0.9415 on 200 held out)."""
    return all(m["recall_at_10"] - m.get("recall_se", 0) >= TARGET_RECALL for m in row["modes"].values())


def slowest_p50(row: dict) -> float:
    return max(m["p50_ms"] for key, m in row["modes"].items() if key.endswith("@10"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200, help="half tune the settings, half report them")
    ap.add_argument("--seed", type=int, default=7, help="of the queries (a new seed: queries no run has seen)")
    ap.add_argument("--keep", type=Path, help="keep the table here, and use the one a run with the same --n left")
    ap.add_argument("--out", default="ann_filters", help="results name (bench/results/<out>.json)")
    args = ap.parse_args()
    lance_cpu_threads = default_lance_threads()  # as the lake's tables are opened (lake.vectors)
    import lance

    queries = queries_near(centres(), n=args.n, count=args.queries, seed=args.seed)
    tune, test = queries[: args.queries // 2], queries[args.queries // 2:]
    modes = ("unfiltered", *FILTERS)
    truth = {m: ExactTop10(queries) for m in modes}

    with tempfile.TemporaryDirectory(prefix="cosmic-atlas-ann-") as tmp:
        where = args.keep or Path(tmp)
        db, meta, shares = kept_table(where, n=args.n, truth=truth)
        tbl = db.open_table("vectors")
        index_type = next(ix.index_type for ix in tbl.list_indices() if ix.columns == ["vector"])
        dataset = lance.dataset(str(where / "vectors.lance"))
        for index in dataset.describe_indices():  # a kept table's, from the run before: the baseline has none
            if index.field_names != ["vector"]:
                dataset.drop_index(index.name)
        tbl = db.open_table("vectors")
        wheres = lance_wheres()
        tune_truth = {m: _subset(t, slice(None, len(tune))) for m, t in truth.items()}
        test_truth = {m: _subset(t, slice(len(tune), None)) for m, t in truth.items()}
        shipped = AnnSettings(index_type, *ANN_SEARCH[index_type])
        previous = AnnSettings(index_type, *PREVIOUS_SEARCH[index_type])
        previous_where = wheres | PREVIOUS_WHERE
        count_ms = {"without_scalar_indexes": count_times(tbl, previous_where)}
        baseline = measure(tbl, test, test_truth, previous_where, previous)
        scalar_s = {}
        for column in SCALAR_INDEXES:
            t0 = time.perf_counter()
            create_scalar_indexes(tbl, columns=[column])
            scalar_s[column] = round(time.perf_counter() - t0, 2)
        count_ms["with_scalar_indexes"] = count_times(tbl, wheres)
        share = {name: count / args.n for name, count in shares.items()}
        grid = [measure(tbl, tune, tune_truth, wheres, AnnSettings(index_type, *row), shares=share)
                for row in GRID[index_type]]
        good = [row for row in grid if meets(row)]
        chosen = min(good, key=slowest_p50) if good else max(grid, key=lambda r: min(m["recall_at_10"] for m in r["modes"].values()))
        best = AnnSettings(index_type, chosen["nprobes"], chosen["refine_factor"], chosen["ef"])
        chosen_test = measure(tbl, test, test_truth, wheres, best, shares=share)
        shipped_test = chosen_test if best == shipped else measure(tbl, test, test_truth, wheres, shipped, shares=share)
        # the previous version's queries (under IVF_PQ the same as now: its probes read the share)
        previous_test = (shipped_test if previous == shipped else
                         measure(tbl, test, test_truth, wheres, previous, shares=share if index_type == "IvfPq" else None))
        without_share = measure(tbl, test, test_truth, wheres, shipped)  # every filter pre-filtered, shipped's probes
        disk_mb = sum(p.stat().st_size for p in (where / "vectors.lance").rglob("*") if p.is_file()) / 2**20
    result = {"n": args.n, "dim": DIM, "queries": {"tune": len(tune), "test": len(test)}, "seed": args.seed,
              "choice_margin": "one standard error", "index": index_type,
              "hnsw_min_rows": HNSW_MIN_ROWS, "kept_table": args.keep is not None, "lance_cpu_threads": lance_cpu_threads,
              "filters": {name: {"where": wheres[name], "share": round(share[name], 4)} for name in FILTERS},
              **{k: meta[k] for k in ("table_write_s", "index_build_s", "rss_before_index_mb", "index_build_extra_rss_mb")},
              "scalar_index_build_s": scalar_s, "disk_mb": round(disk_mb), "shipped": list(shipped[1:]),
              "previous_where": PREVIOUS_WHERE, "previous_search": list(previous[1:]),
              "probed_share": round(PROBED_SHARE, 4),
              "post_filter": {"min_share": POST_FILTER_MIN_SHARE, "margin": POST_FILTER_MARGIN}, "count_rows_p50_ms": count_ms,
              "baseline_without_scalar_indexes": baseline, "previous_held_out": previous_test,
              "shipped_without_share_held_out": without_share,
              "grid_tuning_queries": grid,
              "chosen": {"nprobes": chosen["nprobes"], "refine_factor": chosen["refine_factor"], "ef": chosen["ef"],
                         "met_on_tuning": bool(good)},
              "chosen_held_out": chosen_test, "shipped_held_out": shipped_test,
              "targets": {"recall_at_10": TARGET_RECALL, "p50_ms": TARGET_P50_MS}}
    print(result)
    save(args.out, result)


def kept_table(where: Path, *, n: int, truth: dict[str, ExactTop10]) -> tuple[Any, dict, dict[str, int]]:
    """The LanceDB connection of ``where`` holding the table of ``n`` rows (``vectors``, with its ANN
    index): the one a run with the same ``n`` left there, or written and indexed now (10M rows: about
    35 min on 2 cores). Every row also goes through ``truth`` (one :class:`ExactTop10` per mode:
    ``unfiltered`` and each filter), so the exact answers are ready either way. Returns the connection,
    the table's build record (``ann_filters.json``: write and index times, memory) and the number of rows
    passing each filter."""
    import lancedb

    c = centres()
    shares = dict.fromkeys(FILTERS, 0)

    def batches():
        for start in range(0, n, BLOCK):
            x, batch, passes = rows(start, min(n, start + BLOCK), c)
            truth["unfiltered"].add(x, start)
            for name, keep in passes.items():
                truth[name].add(x, start, keep=keep)
                shares[name] += int(keep.sum())
            yield batch

    where.mkdir(parents=True, exist_ok=True)
    meta_path = where / "ann_filters.json"
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    db = lancedb.connect(str(where))
    if meta.get("n") == n and "vectors" in db.list_tables().tables:
        for _ in batches():  # the exact answers only
            pass
        return db, meta, shares
    t0 = time.perf_counter()
    tbl = db.create_table("vectors", data=pa.RecordBatchReader.from_batches(SCHEMA, batches()), mode="overwrite")
    write_s = time.perf_counter() - t0
    config = vector_index_config(num_rows=n, dim=DIM)
    _, build_s, rss_before, rss_peak = peak_rss(lambda: tbl.create_index("vector", config=config))
    meta = {"n": n, "index": type(config).__name__, "table_write_s": round(write_s, 1),
            "index_build_s": round(build_s, 1), "rss_before_index_mb": round(rss_before / 2**20),
            "index_build_extra_rss_mb": round((rss_peak - rss_before) / 2**20)}
    meta_path.write_text(json.dumps(meta))
    return db, meta, shares


def lance_wheres() -> dict[str, str | None]:
    """Each mode's filter as search writes it for LanceDB (``unfiltered``: None)."""
    return {"unfiltered": None} | {m: f.lance_where(known_categories=CATEGORIES) for m, f in FILTERS.items()}


def shipped_table(where: Path) -> tuple[Any, AnnSettings, dict[str, str | None], dict[str, float | None]]:
    """The table :func:`kept_table` left in ``where``, opened for the search the lake ships: the table,
    its settings (``ANN_SEARCH`` for its index), each mode's filter (:func:`lance_wheres`) and the share
    of the rows passing it, counted as search counts it (None: unfiltered). For the benchmarks that
    time that search in processes of their own (bench/lance_threads.py, bench/ann_load.py)."""
    import lancedb

    from lake.vectors import ann_search_settings

    tbl = lancedb.connect(str(where)).open_table("vectors")
    settings = ann_search_settings(tbl)
    assert settings[1:] == ANN_SEARCH[settings.index_type], "the table's index is not one the lake ships settings for"
    wheres = lance_wheres()
    total = tbl.count_rows()
    return tbl, settings, wheres, {m: tbl.count_rows(w) / total if w else None for m, w in wheres.items()}


def count_times(tbl, wheres: dict[str, str | None]) -> dict[str, float]:
    """Median ms of counting each filter's rows (what search does once per filter: lake.search)."""
    out = {}
    for mode, where in wheres.items():
        if where:
            lat = []
            for _ in range(7):
                s = time.perf_counter()
                tbl.count_rows(where)
                lat.append((time.perf_counter() - s) * 1000)
            out[mode] = round(float(np.median(lat)), 2)
    return out


def _subset(truth: ExactTop10, part: slice) -> ExactTop10:
    out = ExactTop10(truth.q[part])
    out.best, out.score = truth.best[part], truth.score[part]
    return out


if __name__ == "__main__":
    main()
