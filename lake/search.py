"""Semantic, keyword and hybrid search over the lake's LanceDB tables.

* **dense**: cosine nearest neighbours of the query vector in one embedding table (``text`` by default).
  ``kind=image`` from a text query searches the pictures in the text space (the ``aligned`` table: the
  offline lake's learned text–picture space, or CLIP's own picture vectors); ``multimodal`` is queried
  with ``[q, q]`` because both of its halves live in the text space.
* **keyword**: BM25 over ``title + explanation`` (LanceDB's full-text index on the ``text`` table's
  ``body`` column; English stemming, stop words removed), for the query's words and the American
  spelling of its British-spelled ones (:func:`keyword_query`).
* **hybrid** (default): reciprocal rank fusion of both lists, ``score = Σ weight / (60 + rank)`` over
  the lists an entry appears in (Cormack et al., 2009; the keyword list weighs :data:`KEYWORD_WEIGHT`,
  the dense list 1) — no score calibration needed between BM25 and cosine.
  For text results on lakes searched in memory the dense list then takes pseudo-relevance feedback
  (Rocchio, 1971): the query vector moves toward the mean vector of the fused list's top
  :data:`FEEDBACK_DOCS` entries, is searched again, and the new dense list is fused with the keyword
  list. Paraphrase queries ("shooting stars", "the ringed gas giant") borrow the archive's own words
  and phrasing from their first hits.

Dense search reads its vectors from LanceDB. Tables below ``ANN_MIN_ROWS`` (the 11k archive) are
searched exactly with one in-memory matrix product (0.2 ms instead of LanceDB's 9 ms brute-force scan);
larger tables use LanceDB's ANN index (IVF_PQ, or IVF_HNSW_SQ at millions of rows) with re-ranking on
the full vectors (see ``lake.vectors``).

Filters (:class:`lake.filters.Filters`: categories, date range, has-image, sky cone) are applied inside
each query (a mask before the top-k, or LanceDB pre-filtering), so ``k`` results come back whenever that
many match; under IVF_HNSW_SQ a filter most rows pass is cut from a deeper unfiltered list, and
pre-filtered where that list holds fewer than ``k`` (``lake.vectors.ann_search``). Both come from the one rule list in :mod:`lake.filters`;
LanceDB filter expressions are built only from validated values (taxonomy names, ``datetime.date``).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import replace
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from breame.data.spelling_constants import BRITISH_ENGLISH_SPELLINGS

from lake.filters import NO_SKY, FilterError, Filters
from lake.pictures import picture_of
from lake.manifest import LakeMissingError
from lake.reader import LakeReader
from lake.schema import ALIGNED_KIND, EMBEDDING_KINDS, KEYWORD_KIND
from lake.vectors import ANN_MIN_ROWS, AnnSettings, ann_search, ann_search_settings, matrix

if TYPE_CHECKING:
    import pandas as pd
    from PIL import Image

MODES = ("hybrid", "dense", "keyword")
RRF_K = 60
#: Weight of the keyword (BM25) list against 1 for the dense list in the hybrid fusion. Chosen on the
#: tuning queries only (bench/data/search_queries.txt; RRF k = 60): P@10 0.621 / 0.675 / 0.671 / 0.637
#: at weights 1 / 1.5 / 2 / 3, and k = 10 or 20 scored lower at every weight. Re-checked with the feedback
#: on the 60 tuning queries of 2026-12-08 over k 10 / 20 / 30 / 60 × weight 1 / 1.5 / 2: k = 60 and 1.5 still
#: score best (0.543, tied with weight 2). The held-out queries never chose anything; BENCHMARKS.md
#: (*Search quality*) scores both sets with this weight and with 1, and the whole grid.
KEYWORD_WEIGHT = 1.5
#: Pseudo-relevance feedback of hybrid text search: the query vector plus FEEDBACK_WEIGHT × the unit
#: mean of the first fused list's top FEEDBACK_DOCS vectors (0 docs: none). Chosen on the tuning queries
#: only (bench/search_quality.py): P@10 0.675 → 0.737 there; 3 or 10 docs and weight 1 scored lower in a
#: first look (condensed P@10 over judged entries). Expanding the BM25 query with the feedback entries'
#: words as well scored 0.771 on the tuning set but costs a second full-text query (≈ 3.5 ms: past the
#: 15 ms p50 target), so search keeps the dense feedback alone (≈ 0.5 ms). BENCHMARKS.md (*Search
#: quality*) scores both query sets with and without it.
#: Large lakes (vectors not in memory: an ANN index) skip it: a second ANN query would double the dense
#: side's cost (p50 42 ms at 10M vectors) for a gain measured only on the archive.
FEEDBACK_DOCS = 5
FEEDBACK_WEIGHT = 0.5
#: Hybrid search fuses the top FUSION_DEPTH hits of each list, whatever page is asked for, so the pages
#: of one query continue each other (a deeper list changes RRF's order: an entry ranked 60th in both
#: lists outscores one ranked 1st in one). Results past the fused top come from lists DEEP_DEPTH deep,
#: appended after it. The feedback entries come from the fused top too.
FUSION_DEPTH = 50
DEEP_DEPTH = 1000
MAX_K = 100
MAX_QUERY_CHARS = 1000
#: The most entries a sky cone may hold in a search. The cone reaches LanceDB as the list of dates inside
#: it, one literal each, parsed with every query and applied to both the keyword and the vector search:
#: the whole archive (11,382 entries) is well within it; on a lake of millions a wide cone is refused
#: with a reason rather than sent as a filter of a million dates.
MAX_CONE_DATES = 20_000
_WORD = re.compile(r"[A-Za-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class SearchError(ValueError):
    """A request that cannot be answered as asked; the message says why (shown to users, HTTP 400)."""


class SearchUnavailable(SearchError):
    """Search by meaning cannot run on this server: the encoder the lake was built with does not load
    here (other package versions, OpenCLIP weights not on disk). Not the asker's fault: HTTP 503."""


class InMemoryVectors:
    """A small vector table held in memory for exact search, with the columns filters need."""

    def __init__(self, table) -> None:
        arrow = table.to_arrow().select(["date", "vector", "title", "category", "has_image"])
        self.vectors = matrix(arrow.column("vector"))
        self.dates = np.array(arrow.column("date").to_pylist())
        self.titles = arrow.column("title").to_pylist()
        self.categories = np.array([c or "" for c in arrow.column("category").to_pylist()])
        self.has_image = np.array(arrow.column("has_image").to_pylist(), dtype=bool)
        self.row = {d: i for i, d in enumerate(self.dates.tolist())}

    def mask(self, filters: Filters, exclude: str | None = None) -> np.ndarray | None:
        """Rows passing ``filters`` (and not ``exclude``); None when every row does."""
        m = filters.mask(columns={"date": self.dates, "category": self.categories, "has_image": self.has_image})
        if exclude is not None and exclude in self.row:
            m[self.row[exclude]] = False
        return None if m.all() else m

    def search(self, vector: np.ndarray, mask: np.ndarray | None, n: int) -> list[dict[str, Any]]:
        sims = self.vectors @ np.asarray(vector, np.float32) / max(float(np.linalg.norm(vector)), 1e-12)
        candidates = np.flatnonzero(mask) if mask is not None else np.arange(len(sims))
        n = min(n, len(candidates))
        if n == 0:
            return []
        top = candidates[np.argpartition(-sims[candidates], n - 1)[:n]]
        top = top[np.lexsort((self.dates[top], -sims[top]))]
        return [{"date": str(self.dates[i]), "title": self.titles[i], "category": self.categories[i] or None,
                 "has_image": bool(self.has_image[i]), "score": round(float(sims[i]), 4)} for i in top]


def keyword_query(q: str) -> str:
    """``q`` followed by the American spelling of each of its British-spelled words ("grey colour" →
    "grey colour gray color"), for BM25 and snippets.

    The archive is written in American English: "neighbor" is in 391 explanations and "neighbour" in
    none, "color" in 2,871 and "colour" in 13, "center" in 2,883 and "centre" in 8. So a British-spelled
    word found nothing, or only the few texts that spell it so, and "our closest big spiral neighbour
    galaxy" missed every Andromeda entry. The words typed stay in the query (a few texts do use them:
    "Endeavour", the shuttle). The word list is PyPI ``breame``'s (1,730 British → American spellings,
    Apache-2.0); the dense side needs none (its word pieces place both spellings alike)."""
    added = american_spellings(q)
    return " ".join([q, *added]) if added else q


def american_spellings(q: str) -> list[str]:
    """The American spellings :func:`keyword_query` adds to ``q`` (none for words already American or
    already in the query), in query order: the search page and API say which words were also searched."""
    said = [w.lower() for w in _WORD.findall(q)]
    american = dict.fromkeys(BRITISH_ENGLISH_SPELLINGS.get(w) for w in said)
    return [a for a in american if a and a not in said]


def spellings_searched(q: str, *, mode: str) -> list[str]:
    """The spellings a ``mode`` search of ``q`` also searched (:func:`american_spellings`), for the page
    and the API to say so: none in dense mode, which reads no words."""
    return american_spellings(q) if mode != "dense" else []


def snippet(text: str, query: str, width: int = 240) -> str:
    """The sentence of ``text`` sharing most words with the query (the first one when none do)."""
    if not text:
        return ""
    words = {w.lower() for w in _WORD.findall(query) if len(w) > 2}
    sentences = _SENTENCE.split(text)
    best = max(sentences, key=lambda s: len(words & {w.lower() for w in _WORD.findall(s)})) if words else sentences[0]
    return best if len(best) <= width else best[: width - 1].rstrip() + "…"


def rrf(ranked_lists: list[list[str]], *, weights: Sequence[float] | None = None, k: int = RRF_K) -> dict[str, float]:
    """Reciprocal-rank fusion: each list adds ``weight / (k + rank)`` for every key it ranks."""
    scores: dict[str, float] = {}
    for weight, ranking in zip(weights or [1.0] * len(ranked_lists), ranked_lists):
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + weight / (k + rank)
    return scores


def feedback_query(vector: np.ndarray, ranking: list[str], vectors: dict[str, np.ndarray], *,
                   docs: int | None = None, weight: float | None = None) -> np.ndarray:
    """Rocchio's pseudo-relevance feedback: the unit query ``vector`` plus ``weight`` × the unit mean of
    the unit vectors of ``ranking``'s first ``docs`` entries that have one in ``vectors`` (others are
    skipped). Defaults: :data:`FEEDBACK_DOCS`, :data:`FEEDBACK_WEIGHT`. No such entry: ``vector``
    unchanged."""
    docs = FEEDBACK_DOCS if docs is None else docs
    weight = FEEDBACK_WEIGHT if weight is None else weight
    picked = [np.asarray(vectors[d], np.float32) for d in ranking if d in vectors][:docs]
    if not picked:
        return vector
    unit = np.stack(picked)
    centre = (unit / np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)).mean(axis=0)
    query = np.asarray(vector, np.float32)
    return query / max(float(np.linalg.norm(query)), 1e-12) + weight * centre / max(float(np.linalg.norm(centre)), 1e-12)


def paged_fusion(dense: list[str], keyword: list[str], *, n: int) -> list[tuple[str, float]]:
    """The first ``n`` of hybrid search's order, the same prefix for every ``n``: the fusion of both
    lists' top :data:`FUSION_DEPTH`, then (for deeper pages) the fusion of the whole lists without the
    entries already placed."""
    order = hybrid_ranking(dense[:FUSION_DEPTH], keyword[:FUSION_DEPTH])
    if len(order) < n and max(len(dense), len(keyword)) > FUSION_DEPTH:
        placed = {d for d, _ in order}
        order += [(d, s) for d, s in hybrid_ranking(dense, keyword) if d not in placed]
    return order[:n]


def matched_ranks(dates: list[str], *, dense: list[dict[str, Any]], keyword: list[dict[str, Any]]
                  ) -> list[dict[str, int | None]]:
    """Where each hybrid hit stood in the lists fused into it (1 = first; None: not there): ``words``, the
    keyword list, and ``meaning``, the dense one. A fused score alone (0.039…) tells a reader nothing;
    "words #3, meaning #12" says why the entry is there. Ranks within each list's top
    :data:`FUSION_DEPTH`, the part fused into the first results (so a hit says the same on every page
    size); a hit fused from the deeper lists (past the top of both) gives its ranks there."""
    words, meaning = ({h["date"]: i for i, h in enumerate(ranked, start=1)} for ranked in (keyword, dense))
    out = []
    for d in dates:
        ranks = (words.get(d), meaning.get(d))
        if any(r is not None and r <= FUSION_DEPTH for r in ranks):  # fused from the tops: ranks there
            ranks = tuple(r if r is not None and r <= FUSION_DEPTH else None for r in ranks)
        out.append(dict(zip(("words", "meaning"), ranks)))
    return out


def list_depth(n: int) -> int:
    """How deep a ranked list is fetched for the first ``n`` results: the fused top, or every result
    that can be paged to."""
    return FUSION_DEPTH if n <= FUSION_DEPTH else DEEP_DEPTH


def paged_list(fetch: Callable[[int], list[dict[str, Any]]], n: int) -> list[dict[str, Any]]:
    """A ranked list deep enough for the first ``n`` results whose top :data:`FUSION_DEPTH` is the same
    whatever ``n``: pages cut from it, and the fusion of its top, continue each other.

    ``fetch(m)`` returns the best ``m``. An ANN index's best 50 are not the first 50 of its best 1,000
    (its exact re-ranking sees more candidates when more are asked for: for 5 of 20 random queries of an
    IVF_PQ table of 20,000 vectors), nor are BM25's ties ordered alike at every depth; so a page past the
    top came from a list whose top was another, and results were repeated or skipped where the pages
    changed depth. A deeper list is the top's fetch followed by the deep fetch's other entries."""
    top = fetch(FUSION_DEPTH)
    if n <= FUSION_DEPTH or len(top) < FUSION_DEPTH:
        return top
    placed = {h["date"] for h in top}
    return top + [h for h in fetch(DEEP_DEPTH) if h["date"] not in placed]


def fused_order(ranked_lists: list[list[str]], *, weights: Sequence[float]) -> list[tuple[str, float]]:
    """The keys of ``ranked_lists`` fused by :func:`rrf`, best first, ties by key, with their scores."""
    return sorted(rrf(ranked_lists, weights=weights).items(), key=lambda kv: (-kv[1], kv[0]))


def hybrid_ranking(dense: list[str], keyword: list[str]) -> list[tuple[str, float]]:
    """The hybrid mode's order: the dense and keyword lists fused (:func:`fused_order`; the keyword list
    weighted :data:`KEYWORD_WEIGHT`)."""
    return fused_order([dense, keyword], weights=(1.0, KEYWORD_WEIGHT))


class SearchEngine:
    """Answers searches for one lake; the query encoder is loaded once, on first use."""

    def __init__(self, reader: LakeReader, encoder_factory: Callable[[dict[str, Any]], Any]) -> None:
        self.reader = reader
        self._encoder_factory = encoder_factory
        self._encoder = None
        self._image_space: dict[str, np.ndarray] | None = None
        self._head: Any = None  # the learned picture → text-space head (offline lakes), loaded on first use
        self._classes: dict[str, Any] | None = None
        self._memory: dict[str, InMemoryVectors | None] = {}
        self._tables: dict[str, Any] = {}  # opened LanceDB tables (read-only; one lake version)
        self._ann: dict[str, AnnSettings] = {}  # query settings per kind with an ANN index
        self._shares: dict[tuple[str, str], float] = {}  # share of a table's rows passing a filter (one version)
        self._explanations: dict[str, _Details] | None = None
        self._fts: Any = None  # the keyword table's Lance dataset (see _keyword_dataset)

    # -- helpers --------------------------------------------------------------------------------
    def _require_apod(self) -> None:
        """A lake built with ``--collection gz2`` only has nothing to search: a 503 that says so, whatever
        the mode (before, keyword and hybrid searches blamed the request with a 400)."""
        if "encoder" not in self.reader.manifest:
            raise LakeMissingError(self.reader.layout.location, "This lake has no APOD collection yet.")

    @property
    def encoder(self):
        if self._encoder is None:
            self._require_apod()
            self._encoder = self._encoder_factory(self.reader.manifest["encoder"])
        return self._encoder

    @property
    def categories(self) -> list[str]:
        return list(self.reader.manifest.get("taxonomy", {}).get("categories", []))

    @property
    def shared_space(self) -> bool:
        return bool(self.reader.manifest.get("encoder", {}).get("shared_space"))

    def _table(self, kind: str):
        if kind not in (*EMBEDDING_KINDS, ALIGNED_KIND):
            raise SearchError(f"kind must be one of {', '.join(EMBEDDING_KINDS)}")
        table = self._tables.get(kind)
        if table is None:  # opening costs a LanceDB connect and listing (≈ 6 ms): once per kind
            try:
                table = self._tables[kind] = self.reader.vector_table(kind)
            except KeyError as exc:
                raise SearchError(f"this lake has no {kind!r} vectors") from exc
        return table

    def _has_table(self, kind: str) -> bool:
        try:
            self._table(kind)  # through the cache: kind=image searches ask this on every query
        except SearchError:
            return False
        return True

    def _pictures_as_text(self) -> str:
        """The table of pictures comparable with text queries (``aligned``; CLIP lakes of older builds:
        ``image``), or a SearchError saying how to get one."""
        if self._has_table(ALIGNED_KIND):
            return ALIGNED_KIND
        if self.shared_space:
            return "image"
        raise SearchError("this lake has no text–picture space (too few pictures, or built before alignment "
                          "existed); rebuild it with `python -m pipeline build`, or search kind=text")

    def _query(self, q: str, kind: str) -> tuple[str, np.ndarray]:
        """(table, vector) of a text query for results of ``kind`` (checked by :meth:`search`)."""
        vec = self.encoder.encode_text([q])[0]
        if kind == "image":
            return self._pictures_as_text(), vec
        if kind == "multimodal":  # both halves are in the text space
            return kind, self._multimodal_query(vec)
        return kind, vec

    def _multimodal_query(self, vec: np.ndarray) -> np.ndarray:
        dim = self._table("multimodal").schema.field("vector").type.list_size
        if dim != 2 * vec.shape[0]:
            raise SearchError("this lake's multimodal vectors predate the text–picture space; rebuild it")
        return np.concatenate([vec, vec])

    def _ann_settings(self, kind: str) -> AnnSettings:
        """The query settings of ``kind``'s ANN index type, looked up once per kind."""
        if kind not in self._ann:
            self._ann[kind] = ann_search_settings(self._table(kind))
        return self._ann[kind]

    def _in_memory(self, kind: str) -> InMemoryVectors | None:
        if kind not in self._memory:
            table = self._table(kind)
            self._memory[kind] = InMemoryVectors(table) if table.count_rows() < ANN_MIN_ROWS else None
        return self._memory[kind]

    def _where(self, filters: Filters) -> str | None:
        """The LanceDB filter; also where categories are checked against the taxonomy, for both paths."""
        try:
            return filters.lance_where(known_categories=self.categories)
        except FilterError as exc:
            raise SearchError(str(exc)) from None

    def _dense_search(self, vector: np.ndarray, kind: str, filters: Filters, n: int,
                      exclude: str | None = None) -> list[dict[str, Any]]:
        where = self._where(filters)  # validates the categories in both paths
        memory = self._in_memory(kind)
        if memory is not None:
            return memory.search(vector, memory.mask(filters, exclude), n)
        if exclude is None:
            return self._dense(vector, kind, where, n)
        # one more, then the excluded entry dropped: a filter of its own would make every neighbour list a
        # filtered search (the filter evaluated, more probes under IVF_PQ: lake.vectors.AnnSettings.probes)
        return [h for h in self._dense(vector, kind, where, n + 1) if h["date"] != exclude][:n]

    def _paged_dense(self, vector: np.ndarray, kind: str, filters: Filters, n: int) -> list[dict[str, Any]]:
        """The dense list a page of ``n`` results is cut from (:func:`paged_list`). Exact search from
        memory is the same order at every depth, so it fetches once; an ANN index's is not."""
        if self._in_memory(kind) is not None:
            return self._dense_search(vector, kind, filters, list_depth(n))
        return paged_list(lambda m: self._dense_search(vector, kind, filters, m), n)

    def _dense(self, vector: np.ndarray, kind: str, where: str | None, n: int) -> list[dict[str, Any]]:
        hits = ann_search(self._table(kind), vector, settings=self._ann_settings(kind), limit=n,
                          columns=["date", "title", "category", "has_image"], where=where,
                          share=self._share(kind, where) if where else None)
        return [h | {"score": round(1.0 - float(h.pop("_distance")), 4)} for h in hits]

    #: Filters whose share of passing rows is remembered (per kind); all are forgotten beyond it.
    SHARES_KEPT = 256

    def _share(self, kind: str, where: str) -> float:
        """The share of table ``kind``'s rows passing ``where`` (what the ANN query is planned by:
        :func:`lake.vectors.ann_search`), counted once per filter from the filter columns' indexes
        (:data:`lake.vectors.SCALAR_INDEXES`: 3–8 ms at 10M rows, 140–160 ms without)."""
        key = (kind, where)
        share = self._shares.get(key)
        if share is None:
            table = self._table(kind)
            share = table.count_rows(where) / max(1, table.count_rows())
            if len(self._shares) >= self.SHARES_KEPT:  # started afresh: one call, safe with the app's threads
                self._shares.clear()
            self._shares[key] = share
        return share

    def _keyword(self, q: str, where: str | None, n: int) -> list[dict[str, Any]]:
        memory = self._in_memory(KEYWORD_KIND)
        # a small lake's columns are in memory already: the index returns the key and the score only
        # (≈ 0.5 ms less per query on the archive), with the same ranking
        columns = ["date", "_score"] if memory is not None else ["date", "title", "category", "has_image", "_score"]
        hits = self._keyword_dataset().to_table(
            full_text_query={"query": keyword_query(q), "columns": ["body"]}, columns=columns, filter=where,
            prefilter=True if where else None, limit=n)
        if memory is None:
            return [h | {"score": round(float(h.pop("_score")), 4)} for h in hits.to_pylist()]
        out = []
        for date, score in zip(hits.column("date").to_pylist(), hits.column("_score").to_pylist()):
            i = memory.row[date]
            out.append({"date": date, "title": memory.titles[i], "category": memory.categories[i] or None,
                        "has_image": bool(memory.has_image[i]), "score": round(float(score), 4)})
        return out

    def _keyword_dataset(self) -> Any:
        """The keyword table's Lance dataset (same version), opened once. BM25 goes to it directly, not
        through LanceDB's query builder: the same index and the same ranking (the benchmark queries' top
        50 agree), without the builder's six round trips to its event loop and its schema lookups (full-text
        search 3.3 ms against 6.8 ms per query on a slow 2-core machine)."""
        if self._fts is None:
            self._fts = self._table(KEYWORD_KIND).to_lance()
        return self._fts

    def _details(self, dates: list[str]) -> dict[str, _Details]:
        """(explanation, image_path, url, media_type) of the given entries: snippets and where pictures come from.
        Small lakes keep them all in memory after the first search; large ones ask DuckDB per page."""
        sql = "SELECT strftime(date, '%Y-%m-%d') AS date, explanation, image_path, url, media_type FROM entries"
        if self._explanations is None and self.reader.count("entries") < ANN_MIN_ROWS:
            self._explanations = _details_by_date(self.reader.query(sql))
        if self._explanations is not None:
            return {d: self._explanations.get(d, ("", None, None, None)) for d in dates}
        return _details_by_date(
            self.reader.query(sql + " WHERE list_contains($dates, strftime(date, '%Y-%m-%d'))", {"dates": dates}))

    def _with_snippets(self, hits: list[dict[str, Any]], q: str) -> list[dict[str, Any]]:
        """Hits with a snippet of their explanation and where their picture comes from."""
        if not hits:
            return hits
        details = self._details([h["date"] for h in hits])
        words = keyword_query(q)
        out = []
        for h in hits:
            explanation, image_path, url, media_type = details.get(h["date"], ("", None, None, None))
            picture = picture_of(image_path=image_path, url=url, media_type=media_type)
            out.append(h | {"snippet": snippet(explanation or "", words), "picture": picture.to_dict()})
        return out

    def _with_cone(self, filters: Filters | None) -> Filters:
        """Turn a sky cone into the set of entry dates inside it: only DuckDB, over the lake's objects
        table, can evaluate a cone; LanceDB and the in-memory vectors then filter on those dates."""
        filters = filters or Filters()
        if filters.cone is None:
            return filters
        if "objects" not in self.reader.tables:  # the lake's limit: the API's 503, not the request's 400
            raise LakeMissingError(self.reader.layout.location, NO_SKY)
        from lake.queries import AtlasQueries

        inside = AtlasQueries(self.reader).matching_dates(Filters(cone=filters.cone, dates=filters.dates),
                                                          limit=MAX_CONE_DATES + 1)
        if len(inside) > MAX_CONE_DATES:
            raise SearchError(f"the sky cone holds more than {MAX_CONE_DATES:,} entries: give a smaller "
                              "radius, or search without a cone")
        return filters.with_dates(inside)

    # -- public API -----------------------------------------------------------------------------
    def preload(self) -> None:
        """Open every vector table and hold the small ones in memory now (server warm-up), so the first
        entry page's neighbours do not pay for it."""
        for kind in (*EMBEDDING_KINDS, ALIGNED_KIND):
            if self._has_table(kind):
                self._in_memory(kind)

    def search(self, q: str, *, k: int = 10, kind: str = "text", mode: str = "hybrid",
               filters: Filters | None = None, offset: int = 0) -> list[dict[str, Any]]:
        self._require_apod()
        q = (q or "").strip()
        if not q:
            raise SearchError("the query is empty")
        if len(q) > MAX_QUERY_CHARS:
            raise SearchError(f"the query is {len(q):,} characters; the limit is {MAX_QUERY_CHARS:,}")
        _check_k(k)
        if mode not in MODES:
            raise SearchError(f"mode must be one of {', '.join(MODES)}")
        if kind not in EMBEDDING_KINDS:  # keyword mode reads no vectors, but a wrong kind is still an error
            raise SearchError(f"kind must be one of {', '.join(EMBEDDING_KINDS)}")
        if offset < 0 or offset + k > DEEP_DEPTH:
            raise SearchError("results beyond the first 1,000 are not available")
        filters = self._with_cone(filters)  # a query of the objects table: after the checks that cost nothing
        if kind == "image":  # pictures were asked for: keyword hits without one must not fuse in
            if filters.has_image is False:
                raise SearchError("kind=image finds pictures; it cannot be combined with has_image=false")
            filters = replace(filters, has_image=True)
        where = self._where(filters)
        n = offset + k
        if mode == "dense":
            table, vec = self._query(q, kind)
            hits = self._paged_dense(vec, table, filters, n)
        elif mode == "keyword":
            hits = paged_list(lambda m: self._keyword(q, where, m), n)
        else:
            # one after the other: run beside the query's encoding, LanceDB's full-text threads and torch
            # contend for 2 cores (the encoding took ≈ 10 ms instead of ≈ 4) and the search was ≈ 1 ms
            # slower than in sequence (in-process, the benchmark queries: 11.9–12.1 against 10.9–11.4 ms)
            keyword = paged_list(lambda m: self._keyword(q, where, m), n)
            table, vec = self._query(q, kind)
            dense = self._paged_dense(vec, table, filters, n)
            memory = self._in_memory(table)
            if kind == "text" and FEEDBACK_DOCS > 0 and memory is not None:  # exact: one fetch at any depth
                first = [d for d, _ in paged_fusion([h["date"] for h in dense], [h["date"] for h in keyword],
                                                    n=FEEDBACK_DOCS)]
                have = {d: memory.vectors[memory.row[d]] for d in first if d in memory.row}
                dense = self._dense_search(feedback_query(vec, first, have), table, filters, list_depth(n))
            order = paged_fusion([h["date"] for h in dense], [h["date"] for h in keyword], n=n)
            info = {h["date"]: h for h in keyword} | {h["date"]: h for h in dense}
            hits = [info[d] | {"score": round(score, 5), "matched": matched} for (d, score), matched
                    in zip(order, matched_ranks([d for d, _ in order], dense=dense, keyword=keyword))]
        return self._with_snippets(hits[offset:n], q)

    def similar(self, date: dt.date, *, kind: str = "text", k: int = 10,
                filters: Filters | None = None) -> list[dict[str, Any]]:
        self._require_apod()
        _check_k(k)
        if kind not in EMBEDDING_KINDS:  # the aligned text table is a search-time detail, not a kind
            raise SearchError(f"kind must be one of {', '.join(EMBEDDING_KINDS)}")
        filters = self._with_cone(filters)
        day = date.isoformat()
        memory = self._in_memory(kind)
        if memory is not None:
            if day not in memory.row:
                raise LookupError(f"no {kind} vector for {day}")
            vector, title = memory.vectors[memory.row[day]], memory.titles[memory.row[day]]
        else:
            own = self._table(kind).search().where(f"date = '{day}'").limit(1).to_list()
            if not own:
                raise LookupError(f"no {kind} vector for {day}")
            vector, title = np.asarray(own[0]["vector"]), own[0]["title"]
        hits = self._dense_search(vector, kind, filters, k, exclude=day)
        return self._with_snippets(hits, title or "")

    def picture_search(self, image: "Image.Image", *, k: int = 10, kind: str = "image",
                       filters: Filters | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Entries whose picture looks like an uploaded one (``image``), whose text matches it (``text``,
        ``title``: through the text–picture space), or both (``multimodal``); and the upload's
        :meth:`categorise_image`, from one run of the picture model. The categories are empty when the
        lake has no text–picture space (the search still answers)."""
        self._require_apod()
        _check_k(k)  # before the picture model runs (the CLI passes -k through as typed)
        picture = self._upload_picture(image)
        hits = self._by_picture(picture, k=k, kind=kind, filters=filters)
        try:
            categories = self._categories_of(picture)
        except SearchError:
            categories = []
        return hits, categories

    def categorise_image(self, image: "Image.Image", *, top: int = 5) -> list[dict[str, Any]]:
        """Zero-shot categories of an uploaded picture, from the picture alone (probabilities, best first)."""
        return self._categories_of(self._upload_picture(image), top=top)

    def _by_picture(self, picture: np.ndarray, *, k: int, kind: str, filters: Filters | None) -> list[dict[str, Any]]:
        if kind not in EMBEDDING_KINDS:
            raise SearchError(f"kind must be one of {', '.join(EMBEDDING_KINDS)}")
        filters = self._with_cone(filters)
        if kind == "image":
            return self._with_snippets(self._dense_search(picture, kind, filters, k), "")
        as_text = self._picture_in_text_space(picture)
        vec = self._multimodal_query(as_text) if kind == "multimodal" else as_text
        return self._with_snippets(self._dense_search(vec, kind, filters, k), "")

    def _categories_of(self, picture: np.ndarray, *, top: int = 5) -> list[dict[str, Any]]:
        """Zero-shot categories of a picture vector, by the rule its lake's build used for its pictures:
        the look-alikes' vote blended with the linear probe (offline, see :mod:`atlas.encoders.align`) or
        CLIP's nearest prompts."""
        from atlas.encoders.align import class_probabilities

        classes = self._class_vectors()
        head = None if self.shared_space else self._align_head()
        if head is not None and classes["vote"] is not None:
            captions = classes["caption_probs"]
            if captions is None:  # lakes built before the captions' categories were kept: their zero-shot
                captions = class_probabilities(head.captions, classes["text"], classes["scale"])
            probs = head.category_votes(picture[None, :], captions, vote=classes["vote"], probe=classes["probe"])[0]
        else:
            as_text = self._picture_in_text_space(picture)
            probs = class_probabilities(as_text[None, :], classes["picture"], classes["scale"])[0]
        order = np.argsort(-probs)[:top]
        return [{"category": classes["names"][i], "probability": round(float(probs[i]), 4)} for i in order]

    def _upload_picture(self, image) -> np.ndarray:
        features = self.encoder.encode_images([image])
        return self.encoder.to_image_vectors(features, self._space())[0]

    def _picture_in_text_space(self, picture: np.ndarray) -> np.ndarray:
        if self.shared_space:
            return picture
        head = self._align_head()
        if head is None:
            raise SearchError("this lake has no text–picture space (too few pictures, or built before alignment "
                              "existed); rebuild it with `python -m pipeline build`, or search kind=image")
        return head.apply(picture[None, :])[0]

    def _align_head(self):
        if self._head is None:
            from atlas.encoders.align import HEAD_NAME, AlignHead

            path = self.reader.layout.align_head
            method = self.reader.manifest.get("alignment", {}).get("method")
            self._head = AlignHead.load(path) if method == HEAD_NAME and path.is_file() else False
        return self._head or None

    def _class_vectors(self) -> dict[str, Any]:
        if self._classes is None:
            path = self.reader.layout.class_vectors
            if not path.is_file():
                raise SearchError("this lake has no saved category prompts; rebuild it with `python -m pipeline build`")
            from atlas.encoders.align import CategoryVote, PictureProbe

            with np.load(path) as z:
                vote = CategoryVote(k=int(z["vote_k"]), tau=float(z["vote_tau"])) if "vote_k" in z.files else None
                self._classes = {"names": [str(n) for n in z["names"]], "text": z["text"], "picture": z["picture"],
                                 "scale": float(z["logit_scale"]), "vote": vote,
                                 "caption_probs": z["caption_probs"] if "caption_probs" in z.files else None,
                                 "probe": PictureProbe.from_fields(z)}
        return self._classes

    def _space(self) -> dict[str, np.ndarray]:
        if self._image_space is None:
            path = self.reader.layout.image_space
            self._image_space = dict(np.load(path)) if path.is_file() else {}
        return self._image_space


#: What a hit's snippet and picture are made from: explanation, image_path, url, media_type.
_Details = tuple[str, str | None, str | None, str | None]


def _details_by_date(df: pd.DataFrame) -> dict[str, _Details]:
    return {d: (x, p if isinstance(p, str) else None, u, m)
            for d, x, p, u, m in zip(df.date, df.explanation, df.image_path, df.url, df.media_type)}


def _check_k(k: int) -> None:
    """The result counts every search takes: 1 to :data:`MAX_K`."""
    if not 1 <= k <= MAX_K:
        raise SearchError(f"k must be between 1 and {MAX_K}")
