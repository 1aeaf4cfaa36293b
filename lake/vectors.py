"""LanceDB side of the lake: one table per embedding kind, keyed by ISO date."""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa

from atlas import environment
from lake import atomic
from lake.digest import RowsDigest, rows_digest
from lake.schema import VECTOR_KINDS, vector_schema

log = logging.getLogger(__name__)


def _connect(path: Path):
    environment.default_lance_threads()  # before Lance's first query in this process
    import lancedb  # heavy import, only when vectors are touched

    return lancedb.connect(str(path))


def _lance():
    """pylance, the format library under LanceDB, once Lance's compute threads are set (as :func:`_connect`)."""
    environment.default_lance_threads()
    import lance

    return lance


#: Tables with at least this many rows get an ANN index (exact search is fast enough below it).
ANN_MIN_ROWS = 100_000
#: From this many rows the index is IVF_HNSW_SQ (√n/8 partitions, 8-bit scalar quantisation, an HNSW
#: graph per partition) instead of IVF_PQ (√n partitions, 48 sub-vectors). Measured (bench/ann.py,
#: BENCHMARKS.md): at 1M vectors IVF_PQ is as accurate and faster (recall@10 0.967 at p50 8 ms against
#: 0.97 at 19 ms) and builds in 105 s against 173 s; at 10M, PQ's compression caps recall@10 at 0.85
#: (p50 81 ms) while IVF_HNSW_SQ reaches 0.97 at p50 42 ms; it builds in 45 minutes on 2 cores against 9
#: (with less memory: 1.1 GB extra against 2.7 GB). Nothing between 1M and 10M was measured.
HNSW_MIN_ROWS = 5_000_000
#: Query-time settings (nprobes, refine factor, ef) per index type (LanceDB's ``IndexConfig.index_type``):
#: IVF_PQ recall@10 0.997 at p50 11 ms on 1M vectors. IVF_HNSW_SQ: ef, the candidates each probed
#: partition's graph search keeps, is set on its own. LanceDB's default is 1.5 × limit × refine factor,
#: so the refine factor 20 this had meant ef 300 at 10 rows and 1,500 at the 50 a search of the app
#: fetches: 10M vectors, held-out queries, recall@10 0.957 at p50 38 ms, and 0.968 at 112 ms for the
#: 50-row list. Refine 2 with ef 300 gives 0.957 at 35 and 37 ms (bench/ann_filters.py, BENCHMARKS.md).
#: With Lance's two compute threads (:func:`atlas.environment.default_lance_threads`), 40 probes took
#: 23 ms unfiltered and 31-33 ms filtered (held out, 10 rows), but their recall@10 depends on the query
#: sample: 0.930-0.961 over seven samples of 100-200 queries, 0.932-0.9415 on the latest held-out 200. So
#: the probes are the fewest whose recall@10 on 200 tuning queries clears 0.95 by one standard error in
#: every filter mode (bench/ann_filters.py, ``--seed 8``: 55 probes, 0.9625-0.975 ± 0.01; 50 gave
#: 0.9545 ± 0.0115). On 200 held-out queries no run had seen: recall@10 0.9545-0.9635 at p50 29 ms
#: unfiltered and 42-45 ms filtered, at most 48 ms at 50 rows; on another 200 (``--seed 9``) 0.9555-0.957 at
#: 29-44 ms, where no setting up to 60 probes cleared the margin on that run's tuning queries; on a third
#: (``--seed 10``) 0.9605-0.9725 at 28-41 ms, where the tuning queries chose 45 probes with ef 400, no
#: better held out (0.965-0.9705 at 27-40 ms) on that one sample (BENCHMARKS.md). On 1,000 more
#: (bench/ann_load.py, seed 11): 0.9565-0.9676 ± 0.0043 at 30-45 ms; two searches at once take 56-86 ms each.
#: Filtered queries: :data:`SCALAR_INDEXES`, :data:`PROBED_SHARE`, :data:`POST_FILTER_MIN_SHARE`.
ANN_SEARCH = {"IvfPq": (100, 40, None), "IvfHnswSq": (55, 2, 300)}
#: Under IVF_PQ, a filter passing a smaller share of the rows than this is searched with proportionally
#: more probes (:meth:`AnnSettings.probes`). Why: LanceDB's pre-filter searches the probed partitions'
#: passing rows, and the nearest rows passing a narrow filter lie further out: the tenth of those passing
#: 6 % of the rows is about the 170th nearest overall. With the probes of :data:`ANN_SEARCH`, recall@10
#: was 0.77 there (200k vectors; 0.95 with these probes, p50 10 → 21 ms) while a filter passing a third
#: of the rows kept the unfiltered recall. How far out depends on the data: at 1M it had kept 0.99, and
#: the probes cost 11 → 40 ms there for 1.0. IVF_HNSW_SQ kept its unfiltered recall for both filters (10M
#: vectors, 40-60 probes), so its probes stay as they are (bench/ann_filters.py, BENCHMARKS.md).
PROBED_SHARE = 1 / 3
#: Under IVF_HNSW_SQ, a filter at least this share of the rows pass is applied after the search, to an
#: unfiltered list :data:`POST_FILTER_MARGIN` times as deep as the share makes enough
#: (:meth:`AnnSettings.post_filter`); LanceDB's pre-filter where that list holds too few. Why: the
#: pre-filter's graph search walks past the rows failing the filter to fill its candidate list, so a
#: third of the rows passing cost three times the unfiltered search, while the post-filtered list costs
#: about what an unfiltered one does and its passing rows are the nearest passing ones it found. 10M
#: vectors, 40 probes, held-out queries, two runs: a third of the rows 108–113 → 48 ms p50 (265–268 → 51–53
#: ms for the 50 rows a search fetches), recall@10 0.964 → 0.959 (bench/ann_filters.py, BENCHMARKS.md); 3
#: of 100 queries fell back to the pre-filter at 10 rows, none at 50. For a narrow filter
#: LanceDB searches each probed partition's passing rows directly, and a list deep enough would cost more
#: (6 % of the rows: 52 ms pre-filtered for recall 0.940 on 40 tuning queries; post-filtered from 260
#: rows, ef 600, 61 ms for 0.918).
POST_FILTER_MIN_SHARE = 0.2
POST_FILTER_MARGIN = 1.5
#: What :func:`ann_search` logs (at DEBUG) when a post-filtered list holds too few passing rows and the
#: pre-filter answers instead: a second query (bench/ann_filters.py counts them).
POST_FILTER_FELL_BACK = "post-filter: %d of %d rows passed (wanted %d) for %s; pre-filtering"
#: Scalar indexes (column → LanceDB index type) that tables with an ANN index get on the columns search
#: filters read (:meth:`lake.filters.Filters.lance_where`): a B-tree for date ranges and date lists (ISO
#: text), bitmaps for whole years, the few categories and the has-image flag. Why: without them LanceDB's
#: pre-filter reads the filter column over the whole table on every filtered query (10M vectors, 40
#: probes, a third of the rows passing: p50 363 ms, 93 ms with them, 36 ms unfiltered; one category, 6 %
#: of the rows: 371 → 54 ms; built in 7.4 s in all; bench/ann_filters.py, BENCHMARKS.md).
SCALAR_INDEXES = {"date": "BTree", "year": "Bitmap", "category": "Bitmap", "has_image": "Bitmap"}
#: Rows appended to a table with an ANN index stay out of the index until this many are (searches read
#: them exactly, beside the index, as LanceDB does with rows an index lacks); then one merge takes them
#: in. Measured (bench/append_vectors.py, BENCHMARKS.md): merging one day's row into the IVF_PQ index of
#: 1M vectors took 31 s; a delta index per day instead costs searches (30 days: p50 77 ms against 19 ms
#: with the 30 rows unindexed).
UNINDEXED_MAX_ROWS = 10_000
#: Appended rows stay in fragments of their own until a table has this many fragments; then they are
#: compacted with the rest. Compacting after every day rewrote each of the archive's tables (one 11k-row
#: fragment): 0.4 s of a one-day build on a slow 2-core machine, 0.25 s of it the text table. Reading
#: many small fragments costs searches that read the table (21 fragments: a flat k-NN search 3–5 ms
#: slower than one), so the count is kept small; the archive's own searches run from memory.
COMPACT_AT_FRAGMENTS = 8


class AnnSettings(NamedTuple):
    """How a table's ANN index is queried (:data:`ANN_SEARCH` for its type)."""

    index_type: str  #: LanceDB's ``IndexConfig.index_type`` ("IvfPq", "IvfHnswSq")
    nprobes: int
    refine_factor: int
    #: HNSW's candidate list per partition, at least the limit × refine factor rows asked of the graph
    #: (None: LanceDB's 1.5 × limit × refine factor)
    ef: int | None = None

    def post_filter(self, *, share: float, n: int) -> tuple[int, int] | None:
        """(depth, ef) of the unfiltered list the first ``n`` rows passing a filter are cut from, for a
        filter ``share`` of the rows pass (:data:`POST_FILTER_MIN_SHARE`); None where the filter is applied
        before the search: under IVF_PQ, where fewer pass, or where the list would be longer than its ``ef``
        (deep pages: it would cost more than the pre-filter). The list's ``ef`` grows as 1/√share, as the
        share of the graph's candidates passing the filter falls: at a third of the rows (ef 512 from 300)
        the post-filtered recall@10 on the 100 tuning queries of bench/ann_filters.py (10M vectors) is the
        unfiltered query's (0.933 against 0.930; with ef 300 0.922, for 39 ms against 50)."""
        if self.index_type != "IvfHnswSq" or self.ef is None or share < POST_FILTER_MIN_SHARE:
            return None
        depth, ef = math.ceil(n * POST_FILTER_MARGIN / share), math.ceil(self.ef / math.sqrt(share))
        return (depth, ef) if depth <= ef else None

    def probes(self, *, share: float) -> int:
        """The partitions to probe for a filter that ``share`` of the rows pass: under IVF_PQ
        ``nprobes × PROBED_SHARE / share`` (:data:`PROBED_SHARE`), never fewer than ``nprobes``
        (LanceDB probes every partition when asked for more than the index has); else ``nprobes``."""
        if self.index_type != "IvfPq" or share <= 0:  # share 0: LanceDB answers from the filter alone
            return self.nprobes
        return max(self.nprobes, math.ceil(self.nprobes * PROBED_SHARE / share))


def ann_search(lance_table, vector: np.ndarray, *, settings: AnnSettings, limit: int, columns: list[str],
               where: str | None = None, share: float | None = None) -> list[dict[str, Any]]:
    """The ``limit`` rows of ``lance_table`` nearest ``vector`` (cosine) among those passing ``where``,
    nearest first, with ``columns`` and ``_distance``. ``share``: of the rows passing ``where`` (counted by
    the caller, once per filter); it decides between a post-filter (:meth:`AnnSettings.post_filter`)
    and a pre-filter, and the pre-filter's probes (:meth:`AnnSettings.probes`). Without it, the filter is
    pre-filtered with the settings' probes."""
    post = settings.post_filter(share=share, n=limit) if where and share is not None else None
    if post is not None:
        depth, ef = post
        # the deep list re-ranks as many candidates as the pre-filtered query would, not refine × more
        refine = max(1, math.ceil(limit * settings.refine_factor / depth))
        hits = _ann_query(lance_table, vector, limit=depth, nprobes=settings.nprobes, refine=refine, ef=ef,
                          columns=columns).where(where, prefilter=False).to_list()
        if len(hits) >= limit:
            return hits[:limit]
        # fewer passed than the share promised: the filter shuns this query's neighbourhood
        log.debug(POST_FILTER_FELL_BACK, len(hits), depth, limit, where)
    nprobes = settings.probes(share=share) if where and share is not None else settings.nprobes
    query = _ann_query(lance_table, vector, limit=limit, nprobes=nprobes, refine=settings.refine_factor,
                       ef=settings.ef, columns=columns)
    return (query.where(where, prefilter=True) if where else query).to_list()


def _ann_query(lance_table, vector: np.ndarray, *, limit: int, nprobes: int, refine: int, ef: int | None,
               columns: list[str]):
    query = (lance_table.search(np.asarray(vector, np.float32)).metric("cosine").nprobes(nprobes)
             .refine_factor(refine).select([*columns, "_distance"]).limit(limit))
    return query if ef is None else query.ef(max(ef, limit * refine))  # LanceDB refuses fewer


def ann_search_settings(lance_table) -> AnnSettings:
    """The :class:`AnnSettings` of the vector index ``lance_table`` has (IVF_PQ's when it has none: they
    are then ignored)."""
    for index in lance_table.list_indices():
        if "vector" in index.columns and index.index_type in ANN_SEARCH:
            return AnnSettings(index.index_type, *ANN_SEARCH[index.index_type])
    return AnnSettings("IvfPq", *ANN_SEARCH["IvfPq"])


def vector_table(
    kind: str,
    dates: list[str],
    vectors: np.ndarray,
    *,
    titles: list[str],
    years: list[int],
    categories: list[str | None],
    has_image: list[bool],
    bodies: list[str] | None = None,
) -> pa.Table:
    """The Arrow table of vector kind ``kind`` (with a ``body`` column for BM25 when ``bodies`` is given)."""
    if kind not in VECTOR_KINDS:
        raise KeyError(kind)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = int(vectors.shape[1])
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    columns = [
        pa.array(dates, pa.string()),
        pa.FixedSizeListArray.from_arrays(flat, dim),
        pa.array(titles, pa.string()),
        pa.array(years, pa.int16()),
        pa.array(categories, pa.string()),
        pa.array(has_image, pa.bool_()),
    ]
    if bodies is not None:
        columns.append(pa.array(bodies, pa.string()))
    return pa.Table.from_arrays(columns, schema=vector_schema(dim, with_body=bodies is not None))


def write_table(db_path: Path, kind: str, dates: list[str], vectors: np.ndarray, *,
                ann_min_rows: int = ANN_MIN_ROWS, hnsw_min_rows: int = HNSW_MIN_ROWS, **columns: Any) -> None:
    """:func:`vector_table` written by :func:`write_arrow` (tests and tools; builds go through their
    executor, which may write from a Ray cluster)."""
    write_arrow(db_path, kind, vector_table(kind, dates, vectors, **columns), ann_min_rows=ann_min_rows,
                hnsw_min_rows=hnsw_min_rows)


def table_uri(db_path: Path, kind: str) -> str:
    """Where LanceDB keeps table ``kind`` of the database at ``db_path`` (a Lance dataset)."""
    return str(db_path / f"{kind}.lance")


def write_arrow(db_path: Path, kind: str, table: pa.Table, *, ann_min_rows: int = ANN_MIN_ROWS,
                hnsw_min_rows: int = HNSW_MIN_ROWS) -> None:
    """Replace table ``kind`` in one LanceDB commit, so readers see the old or the new version; then
    :func:`finish_table`."""
    db = _connect(db_path)
    exists = kind in set(_table_names(db))
    db.create_table(kind, data=table, mode="overwrite" if exists else "create")
    finish_table(db_path, kind, table, ann_min_rows=ann_min_rows, hnsw_min_rows=hnsw_min_rows)


#: Key of the Lance dataset configuration that holds the :class:`~lake.digest.RowsDigest` of a table's rows.
ROWS_DIGEST_KEY = "cosmic_atlas.rows_digest"


def finish_table(db_path: Path, kind: str, table: pa.Table, *, ann_min_rows: int = ANN_MIN_ROWS,
                 hnsw_min_rows: int = HNSW_MIN_ROWS) -> None:
    """What follows every whole write of table ``kind`` (``table``), whoever wrote it: the digest of its
    rows in the table's configuration, where :func:`append_to_previous` of a later build finds it, then
    its indexes (:func:`index_table`)."""
    _lance().dataset(table_uri(db_path, kind)).update_config({ROWS_DIGEST_KEY: rows_digest(table)})
    index_table(db_path, kind, table, ann_min_rows=ann_min_rows, hnsw_min_rows=hnsw_min_rows)


def append_to_previous(db_path: Path, kind: str, table: pa.Table, *, previous: Path,
                       ann_min_rows: int = ANN_MIN_ROWS, hnsw_min_rows: int = HNSW_MIN_ROWS,
                       unindexed_max_rows: int = UNINDEXED_MAX_ROWS,
                       compact_at_fragments: int = COMPACT_AT_FRAGMENTS) -> int | None:
    """Write table ``kind`` of ``db_path`` as table ``kind`` of the database ``previous`` (the last
    published version) plus new rows, when ``table`` is exactly that: the previous table's rows, same
    schema, same values, same order, followed by rows it lacks, and the previous table has the indexes
    :func:`index_table` would give ``table``. Returns the number of rows appended (0: the same table),
    or None when ``table`` is something else and must be written whole (:func:`write_arrow`).

    Why: a daily build adds a day's rows to tables of the whole archive. Rewriting them re-tokenised
    every text for BM25 (1.2 s of the text table's 1.5 s on 11k entries; at 10M rows, rewriting the
    ANN index would take most of an hour). The copy's files are hard links to the previous version's
    (Lance never changes a file in place), the new rows are one more fragment (the last version's are
    compacted first once the table would have ``compact_at_fragments``, :data:`COMPACT_AT_FRAGMENTS`:
    compacting after the insert put the new rows first, Lance rewriting the indexed fragments apart
    from the unindexed new one and placing them after it), and merged into the BM25 index; the ANN
    index takes them in once ``unindexed_max_rows`` rows are outside it (:data:`UNINDEXED_MAX_ROWS`).
    Appending keeps the rows in the order a rewrite would give, and the BM25 scores equal a rewrite's
    (tested); a change to existing rows (a re-encoded kind, a changed category) is not attempted, since
    deleted rows would stay in BM25's document statistics.
    Done with pylance, the format library under LanceDB: importing LanceDB costs a daily build's worker
    ≈ 2 s more. The check reads two rows a fragment and nothing more: the digest stored with the last
    version (:func:`finish_table`) is compared with the digest of ``table``'s first rows, so it costs one
    pass over ``table`` in memory, not a second copy of the archive's vectors read from disk; a last
    version written without a digest (by a build before digests), or whose rows are not where its
    digest says (:func:`_rows_in_place`), is written whole once."""
    source = Path(table_uri(previous, kind))
    if not source.is_dir():
        return None
    try:
        old = _lance().dataset(str(source))
        stored, kept, schema = old.config().get(ROWS_DIGEST_KEY), old.count_rows(), old.schema
        indexes = {(column, index.index_type) for index in old.describe_indices() for column in index.field_names}
    except (OSError, ValueError, RuntimeError):  # unreadable: write the table whole
        return None
    if stored is None or not 0 < kept <= table.num_rows or not schema.equals(table.schema) \
            or indexes != _indexes_for(table, ann_min_rows=ann_min_rows, hnsw_min_rows=hnsw_min_rows):
        return None
    digest = RowsDigest(table.schema)
    digest.update(table.slice(0, kept))
    if digest.hexdigest() != stored or not _rows_in_place(old, table):
        return None
    target = Path(table_uri(db_path, kind))
    atomic.link_tree(source, target)  # makes db_path too
    if kept < table.num_rows:
        dataset = _lance().dataset(str(target))
        if len(dataset.get_fragments()) + 1 >= compact_at_fragments:
            dataset.optimize.compact_files()
        dataset.insert(table.slice(kept), mode="append")
        digest.update(table.slice(kept))
        dataset.update_config({ROWS_DIGEST_KEY: digest.hexdigest()})
        due = _indexes_to_merge(dataset, unindexed_max_rows=unindexed_max_rows)
        if due:
            dataset.optimize.optimize_indices(index_names=due)
        # one version left: the copy does not carry the history of every earlier build (no one else
        # opens a staged table)
        dataset.cleanup_old_versions(older_than=dt.timedelta(0))
    return table.num_rows - kept


def _rows_in_place(dataset, table: pa.Table) -> bool:
    """Whether ``dataset`` (a Lance dataset whose stored digest is that of ``table``'s first rows) keeps
    those rows where ``table`` has them: the first and last row of each fragment compared, a few rows
    read. Why: the digest says which rows were written in which order, not where Lance keeps them.
    Appends before ``30681ea`` compacted after the insert, which put the day's rows before the
    archive's from the second day on while the digest went on describing the intended order; a
    table so kept is written whole once, which puts it back in order. What went out of place there were
    whole fragments, which the ends of each fragment show."""
    positions, start = [], 0
    for fragment in dataset.get_fragments():
        rows = fragment.count_rows()
        positions += [start, start + rows - 1] if rows else []
        start += rows
    positions = sorted(set(positions))
    return dataset.take(positions).equals(table.take(positions))


def _indexes_to_merge(dataset, *, unindexed_max_rows: int) -> list[str]:
    """The indexes of ``dataset`` (a Lance dataset) that take its unindexed rows in now: BM25's always (a
    row outside it would be scored with other statistics than a rewritten table's), an ANN or scalar
    index once ``unindexed_max_rows`` rows are outside it (LanceDB reads the rows an index lacks beside
    it, so filters and searches see them before)."""
    rows = dataset.count_rows()
    return [index.name for index in dataset.describe_indices()
            if index.index_type == "Inverted" or rows - index.num_rows_indexed >= unindexed_max_rows]


def _indexes_for(table: pa.Table, *, ann_min_rows: int, hnsw_min_rows: int) -> set[tuple[str, str]]:
    """The (column, Lance index type) pairs :func:`index_table` gives ``table``."""
    kinds = {("body", "Inverted")} if "body" in table.column_names else set()
    if table.num_rows >= ann_min_rows:
        kinds.add(("vector", "IVF_HNSW_SQ" if table.num_rows >= hnsw_min_rows else "IVF_PQ"))
        kinds |= {(column, kind) for column, kind in SCALAR_INDEXES.items() if column in table.column_names}
    return kinds


def vector_index_config(*, num_rows: int, dim: int, hnsw_min_rows: int = HNSW_MIN_ROWS):
    """The LanceDB configuration of the ANN index of a table of ``num_rows`` vectors of ``dim`` dimensions:
    IVF_PQ (√n partitions), or IVF_HNSW_SQ (√n/8 partitions) from ``hnsw_min_rows`` rows (see
    :data:`HNSW_MIN_ROWS`). Public so that bench/ann_filters.py measures the index the lake builds."""
    from lancedb.index import HnswSq, IvfPq

    partitions = max(1, int(num_rows ** 0.5))
    if num_rows >= hnsw_min_rows:
        return HnswSq(distance_type="cosine", num_partitions=max(1, partitions // 8))
    return IvfPq(distance_type="cosine", num_partitions=partitions, num_sub_vectors=_sub_vectors(dim))


def create_scalar_indexes(lance_table, *, columns: Iterable[str]) -> None:
    """The :data:`SCALAR_INDEXES` of those of ``columns`` that have one, created (replaced) on
    ``lance_table`` (a LanceDB table)."""
    from lancedb.index import Bitmap, BTree

    configs = {"BTree": BTree, "Bitmap": Bitmap}
    for column in set(columns) & SCALAR_INDEXES.keys():
        lance_table.create_index(column, config=configs[SCALAR_INDEXES[column]](), replace=True)


def index_table(db_path: Path, kind: str, table: pa.Table, *, ann_min_rows: int = ANN_MIN_ROWS,
                hnsw_min_rows: int = HNSW_MIN_ROWS) -> None:
    """BM25 over ``body`` when the table has one; from ``ann_min_rows`` rows (below them search reads
    the table into memory), an ANN index over the vectors (:func:`vector_index_config`) and the
    :data:`SCALAR_INDEXES` of the filter columns."""
    lance_table = _connect(db_path).open_table(kind)
    if "body" in table.column_names:
        from lancedb.index import FTS

        lance_table.create_index("body", config=FTS(), replace=True)
    if table.num_rows >= ann_min_rows:
        dim = table.schema.field("vector").type.list_size
        lance_table.create_index("vector", replace=True, config=vector_index_config(
            num_rows=table.num_rows, dim=dim, hnsw_min_rows=hnsw_min_rows))
        create_scalar_indexes(lance_table, columns=table.column_names)


def _sub_vectors(dim: int) -> int:
    """PQ sub-vectors of 8 dimensions (48 for MiniLM's 384), falling back to a divisor of ``dim``."""
    for width in (8, 4, 2, 1):
        if dim % width == 0:
            return dim // width
    return 1


def open_table(db_path: Path, kind: str):
    """Open a vector table for search; raises ``KeyError`` when it was not built. A lake without vector
    tables (Galaxy Zoo only) is not connected to: connecting would create the folder inside a published,
    immutable version (or fail on a read-only mount)."""
    if isinstance(db_path, Path) and not db_path.is_dir():
        raise KeyError(f"vector table {kind!r}: this lake has no vector tables")
    db = _connect(db_path)
    names = set(_table_names(db))
    if kind not in names:
        raise KeyError(f"vector table {kind!r} is not in {db_path} (has: {sorted(names)})")
    return db.open_table(kind)


def _table_names(db) -> list[str]:
    listing = db.list_tables() if hasattr(db, "list_tables") else db.table_names()
    return list(getattr(listing, "tables", listing))


def matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-size-list vector column as a float32 (rows × dim) matrix."""
    vec = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return vec.flatten().to_numpy(zero_copy_only=False).reshape(len(vec), vec.type.list_size).astype(np.float32)


def read_vectors(db_path: Path, kind: str) -> tuple[list[str], np.ndarray]:
    """All dates and vectors of one kind, in table order. A local table is read with pylance, the
    format library under LanceDB: importing LanceDB itself costs ≈ 1 s, more than a daily build's map
    placement spends on everything else."""
    dataset = table_uri(Path(db_path), kind)
    if Path(dataset).is_dir():
        arrow = _lance().dataset(dataset).to_table(columns=["date", "vector"])
    else:
        arrow = open_table(db_path, kind).to_arrow()
    return arrow.column("date").to_pylist(), matrix(arrow.column("vector"))


def write_galaxy_table(db_path: Path, kind: str, galaxies: pa.Table, matrix_: np.ndarray) -> None:
    """Replace the galaxy vector table ``kind``: one row per galaxy of ``galaxies`` (objid, ra, dec,
    gz_class, has_image columns, same order as ``matrix_``), in one LanceDB commit."""
    from lake.galaxy_schema import GALAXY_VECTOR_KINDS, galaxy_vector_schema

    if kind not in GALAXY_VECTOR_KINDS:
        raise KeyError(kind)
    matrix_ = np.ascontiguousarray(matrix_, dtype=np.float32)
    if len(matrix_) != galaxies.num_rows:
        raise ValueError(f"{galaxies.num_rows} galaxies but {len(matrix_)} vectors")
    dim = int(matrix_.shape[1])
    schema = galaxy_vector_schema(dim)
    table = pa.table({
        "objid": galaxies.column("objid"),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix_.reshape(-1), pa.float32()), dim),
        **{name: galaxies.column(name) for name in ("ra", "dec", "gz_class", "has_image")},
    }).cast(schema)
    db = _connect(db_path)
    exists = kind in set(_table_names(db))
    db.create_table(kind, data=table, mode="overwrite" if exists else "create")


def read_galaxy_vectors(db_path: Path, kind: str) -> tuple[list[str], np.ndarray]:
    """All objids and vectors of one galaxy kind, in table order."""
    arrow = open_table(db_path, kind).to_arrow()
    return arrow.column("objid").to_pylist(), matrix(arrow.column("vector"))
