"""Semantic, keyword and hybrid search over the lake's LanceDB tables.

* **dense**: cosine nearest neighbours of the query vector in one embedding table (``text`` by default;
  ``image`` from a text query only when the encoder has a shared text–image space).
* **keyword**: BM25 over ``title + explanation`` (LanceDB's full-text index on the ``text`` table's
  ``body`` column; English stemming, stop words removed).
* **hybrid** (default): reciprocal rank fusion of both lists, ``score = Σ 1 / (60 + rank)`` over the
  lists an entry appears in (Cormack et al., 2009) — no score calibration needed between BM25 and cosine.

Filters (categories, date range, has-image) are applied inside each query (LanceDB pre-filtering), not
to the results afterwards, so ``k`` results come back whenever that many match. The filter expression
is built only from validated values: categories must be names of the lake's taxonomy and dates are
parsed ``datetime.date`` objects.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from lake.reader import LakeReader
from lake.schema import EMBEDDING_KINDS, KEYWORD_KIND

MODES = ("hybrid", "dense", "keyword")
RRF_K = 60
MAX_K = 100
MAX_QUERY_CHARS = 1000
_WORD = re.compile(r"[A-Za-z0-9]+")
_SENTENCE = re.compile(r"(?<=[.!?])\s+")


class SearchError(ValueError):
    """A request that cannot be answered as asked; the message says why (shown to users, HTTP 400)."""


@dataclass(frozen=True)
class SearchFilters:
    categories: tuple[str, ...] = ()
    start: dt.date | None = None
    end: dt.date | None = None
    has_image: bool | None = None

    def where(self, known_categories: list[str]) -> str | None:
        """A LanceDB SQL filter. Categories are checked against the taxonomy, dates are real dates."""
        parts = []
        unknown = [c for c in self.categories if c not in known_categories]
        if unknown:
            raise SearchError(f"unknown category {unknown[0]!r}; known: {', '.join(known_categories)}")
        if self.categories:
            quoted = ", ".join("'" + c.replace("'", "''") + "'" for c in self.categories)
            parts.append(f"category IN ({quoted})")
        if self.start:
            parts.append(f"date >= '{self.start.isoformat()}'")
        if self.end:
            parts.append(f"date <= '{self.end.isoformat()}'")
        if self.has_image is not None:
            parts.append(f"has_image = {'true' if self.has_image else 'false'}")
        return " AND ".join(parts) or None


def snippet(text: str, query: str, width: int = 240) -> str:
    """The sentence of ``text`` sharing most words with the query (the first one when none do)."""
    if not text:
        return ""
    words = {w.lower() for w in _WORD.findall(query) if len(w) > 2}
    sentences = _SENTENCE.split(text)
    best = max(sentences, key=lambda s: len(words & {w.lower() for w in _WORD.findall(s)})) if words else sentences[0]
    return best if len(best) <= width else best[: width - 1].rstrip() + "…"


def rrf(ranked_lists: list[list[str]], k: int = RRF_K) -> dict[str, float]:
    scores: dict[str, float] = {}
    for ranking in ranked_lists:
        for rank, key in enumerate(ranking, start=1):
            scores[key] = scores.get(key, 0.0) + 1.0 / (k + rank)
    return scores


class SearchEngine:
    """Answers searches for one lake; the query encoder is loaded once, on first use."""

    def __init__(self, reader: LakeReader, encoder_factory: Callable[[dict[str, Any]], Any]) -> None:
        self.reader = reader
        self._encoder_factory = encoder_factory
        self._encoder = None
        self._image_space: dict[str, np.ndarray] | None = None

    # -- helpers --------------------------------------------------------------------------------
    @property
    def encoder(self):
        if self._encoder is None:
            self._encoder = self._encoder_factory(self.reader.manifest["encoder"])
        return self._encoder

    @property
    def categories(self) -> list[str]:
        return list(self.reader.manifest.get("taxonomy", {}).get("categories", []))

    @property
    def shared_space(self) -> bool:
        return bool(self.reader.manifest.get("encoder", {}).get("shared_space"))

    def _table(self, kind: str):
        if kind not in EMBEDDING_KINDS:
            raise SearchError(f"kind must be one of {', '.join(EMBEDDING_KINDS)}")
        try:
            return self.reader.vector_table(kind)
        except KeyError as exc:
            raise SearchError(f"this lake has no {kind!r} vectors") from exc

    def _query_vector(self, q: str, kind: str) -> np.ndarray:
        vec = self.encoder.encode_text([q])[0]
        if kind == "image":
            if not self.shared_space:
                raise SearchError("text→image search needs an encoder with a shared text–image space (OpenCLIP); "
                                  "this lake's image vectors come from pixels only — search kind=text or "
                                  "multimodal, or upload an image")
            return vec
        if kind == "multimodal":  # the text half; the image half is zero, as for entries without a picture
            dim = self._table("multimodal").schema.field("vector").type.list_size
            return np.concatenate([vec, np.zeros(dim - vec.shape[0], np.float32)])
        return vec

    def _dense(self, vector: np.ndarray, kind: str, where: str | None, n: int) -> list[dict[str, Any]]:
        query = self._table(kind).search(np.asarray(vector, np.float32)).metric("cosine")
        if where:
            query = query.where(where, prefilter=True)
        hits = query.select(["date", "title", "category", "has_image", "_distance"]).limit(n).to_list()
        return [h | {"score": round(1.0 - float(h.pop("_distance")), 4)} for h in hits]

    def _keyword(self, q: str, where: str | None, n: int) -> list[dict[str, Any]]:
        query = self._table(KEYWORD_KIND).search(q, query_type="fts", fts_columns="body")
        if where:
            query = query.where(where, prefilter=True)
        hits = query.select(["date", "title", "category", "has_image", "_score"]).limit(n).to_list()
        return [h | {"score": round(float(h.pop("_score")), 4)} for h in hits]

    def _with_snippets(self, hits: list[dict[str, Any]], q: str) -> list[dict[str, Any]]:
        if not hits:
            return hits
        texts = self.reader.query(
            "SELECT strftime(date, '%Y-%m-%d') AS date, explanation FROM entries "
            "WHERE list_contains($dates, strftime(date, '%Y-%m-%d'))",
            {"dates": [h["date"] for h in hits]},
        )
        by_date = dict(zip(texts.date, texts.explanation))
        return [h | {"snippet": snippet(by_date.get(h["date"], ""), q)} for h in hits]

    # -- public API -----------------------------------------------------------------------------
    def search(self, q: str, *, k: int = 10, kind: str = "text", mode: str = "hybrid",
               filters: SearchFilters = SearchFilters(), offset: int = 0) -> list[dict[str, Any]]:
        q = (q or "").strip()
        if not q:
            raise SearchError("the query is empty")
        if len(q) > MAX_QUERY_CHARS:
            raise SearchError(f"the query is {len(q):,} characters; the limit is {MAX_QUERY_CHARS:,}")
        if not 1 <= k <= MAX_K:
            raise SearchError(f"k must be between 1 and {MAX_K}")
        if mode not in MODES:
            raise SearchError(f"mode must be one of {', '.join(MODES)}")
        if offset < 0 or offset + k > 1000:
            raise SearchError("results beyond the first 1,000 are not available")
        where = filters.where(self.categories)
        n = offset + k
        if mode == "dense":
            hits = self._dense(self._query_vector(q, kind), kind, where, n)
        elif mode == "keyword":
            hits = self._keyword(q, where, n)
        else:
            pool = max(50, 2 * n)
            dense = self._dense(self._query_vector(q, kind), kind, where, pool)
            keyword = self._keyword(q, where, pool)
            fused = rrf([[h["date"] for h in dense], [h["date"] for h in keyword]])
            info = {h["date"]: h for h in keyword} | {h["date"]: h for h in dense}
            order = sorted(fused, key=lambda d: (-fused[d], d))[:n]
            hits = [info[d] | {"score": round(fused[d], 5)} for d in order]
        return self._with_snippets(hits[offset:n], q)

    def similar(self, date: dt.date, *, kind: str = "text", k: int = 10,
                filters: SearchFilters = SearchFilters()) -> list[dict[str, Any]]:
        if not 1 <= k <= MAX_K:
            raise SearchError(f"k must be between 1 and {MAX_K}")
        table = self._table(kind)
        own = table.search().where(f"date = '{date.isoformat()}'").limit(1).to_list()
        if not own:
            raise LookupError(f"no {kind} vector for {date.isoformat()}")
        where = filters.where(self.categories)
        exclude = f"date != '{date.isoformat()}'"
        hits = self._dense(np.asarray(own[0]["vector"]), kind, f"{where} AND {exclude}" if where else exclude, k)
        return self._with_snippets(hits, own[0]["title"] or "")

    def by_image(self, image, *, k: int = 10, kind: str = "image",
                 filters: SearchFilters = SearchFilters()) -> list[dict[str, Any]]:
        """Entries that look like an uploaded picture (``image``), or match it across modalities."""
        if kind not in ("image", "multimodal", "text", "title"):
            raise SearchError("kind must be image, multimodal, text or title")
        if kind in ("text", "title") and not self.shared_space:
            raise SearchError("image→text search needs an encoder with a shared text–image space (OpenCLIP)")
        features = self.encoder.encode_images([image])
        vec = self.encoder.to_image_vectors(features, self._space())[0]
        if kind == "multimodal":
            text_dim = self.reader.manifest["encoder"]["text_dim"]
            vec = np.concatenate([np.zeros(text_dim, np.float32), vec])
        return self._with_snippets(self._dense(vec, kind, filters.where(self.categories), k), "")

    def _space(self) -> dict[str, np.ndarray]:
        if self._image_space is None:
            path = self.reader.layout.image_space
            self._image_space = dict(np.load(path)) if path.is_file() else {}
        return self._image_space
