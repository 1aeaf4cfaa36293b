"""Ingest stage: raw source records → validated, cleaned entry rows (images are added later).

Bad rows never abort a build: each is counted with its reason and skipped.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pipeline.clean import (REPLACED, clean_copyright, clean_explanation, clean_title, restore_clipped_starts,
                            restore_replaced_characters)
from pipeline.credits import separate_glued_credits
from pipeline.sources import RawBatch

log = logging.getLogger(__name__)

MEDIA_TYPES = {"image", "video", "other"}
_IMAGE_EXT = (".jpg", ".jpeg", ".png", ".gif", ".tif", ".tiff", ".webp")
MAX_REPORTED = 200  # invalid rows listed one by one in the manifest; the rest are only counted


@dataclass
class IngestResult:
    rows: list[dict[str, Any]]
    invalid: list[dict[str, str]] = field(default_factory=list)
    invalid_by_reason: Counter = field(default_factory=Counter)
    #: dates whose explanation had its first letters restored (:func:`restore_clipped_starts`)
    restored_starts: list[str] = field(default_factory=list)
    #: dates whose texts had characters NASA's API replaced put back (:func:`restore_replaced_characters`),
    #: and how many replaced characters the ingested texts still hold (nothing in the archive said what)
    repaired_characters: list[str] = field(default_factory=list)
    replaced_left: int = 0
    #: dates whose credits had parts NASA's API glued together separated (:func:`separate_glued_credits`)
    separated_credits: list[str] = field(default_factory=list)

    def reject(self, record: Any, reason: str) -> None:
        self.invalid_by_reason[reason] += 1
        if len(self.invalid) < MAX_REPORTED:
            ident = record.get("date") if isinstance(record, dict) else None
            self.invalid.append({"date": str(ident) if ident is not None else "", "reason": reason})


def _parse_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value.strip()[:10])
        except ValueError:
            return None
    return None


def _media_type(record: dict[str, Any]) -> str:
    media = record.get("media_type")
    if isinstance(media, str) and media in MEDIA_TYPES:
        return media
    url = str(record.get("url") or "").lower().split("?")[0]
    if url.endswith(_IMAGE_EXT):
        return "image"
    if any(host in url for host in ("youtube", "vimeo", ".mp4", ".webm", ".mov")):
        return "video"
    return "other"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def normalise(record: dict[str, Any], source: str, today: dt.date) -> tuple[dict[str, Any] | None, str]:
    """One raw record → an entry row, or ``(None, reason)``."""
    if "_invalid" in record:
        return None, record["_invalid"]
    day = _parse_date(record.get("date"))
    if day is None:
        return None, "missing or malformed date"
    if day > today:
        return None, "date is in the future"
    title = clean_title(_text(record.get("title")))
    cleaned = clean_explanation(_text(record.get("explanation")))
    if not title and not cleaned.explanation:
        return None, "no title and no explanation"
    copyright_ = clean_copyright(_text(record.get("copyright")))
    return {
        "date": day,
        "title": title or "Untitled",
        "explanation": cleaned.explanation,
        "credit": cleaned.credit,
        "copyright": copyright_,
        "rights_note": cleaned.rights_note,
        "url": _text(record.get("url")),
        "hdurl": _text(record.get("hdurl")),
        "media_type": _media_type(record),
        "year": day.year,
        "source": source,
        "record_source": _text(record.get("record_source")),
        "image_file": _text(record.get("image_file")),
    }, ""


#: The text fields whose replaced characters are repaired (and whose words inform the repair).
_REPAIRED = ("title", "explanation", "credit", "copyright")


def _rewrite_fields(rows: list[dict[str, Any]], names: tuple[str, ...],
                    rewrite: Callable[[list[str | None]], dict[int, str]]) -> list[str]:
    """Give ``rewrite`` the rows' ``names`` fields as one flat list, put the texts it returns (index → new
    text) back in place, and return the dates of the rows it changed."""
    changed = rewrite([row[name] for row in rows for name in names])
    for i, text in changed.items():
        rows[i // len(names)][names[i % len(names)]] = text
    return sorted({rows[i // len(names)]["date"].isoformat() for i in changed})


def _repair_replaced(rows: list[dict[str, Any]], *, corpus: list[str]) -> list[str]:
    """Put back the characters NASA's API replaced by U+FFFD in the rows' texts, in place, where the
    archive's words say what they were (:func:`restore_replaced_characters`); returns the dates repaired."""
    return _rewrite_fields(rows, _REPAIRED, lambda texts: restore_replaced_characters(texts, corpus=corpus))


#: The credit fields whose glued parts are separated (:func:`separate_glued_credits`).
_CREDITS = ("credit", "copyright")


def _separate_credits(rows: list[dict[str, Any]], *, prose: list[str]) -> list[str]:
    """Separate the parts of the rows' credits that NASA's API glued together, in place; the rows' own
    titles and explanations and ``prose`` (more of the archive's) say which compounds are written whole.
    Returns the dates changed."""
    own = [row[name] for row in rows for name in ("title", "explanation")]
    return _rewrite_fields(rows, _CREDITS, lambda texts: separate_glued_credits(texts, prose=[*own, *prose]))


def ingest(batches: list[RawBatch], *, limit: int | None = None, today: dt.date | None = None) -> IngestResult:
    """Validate and merge batches by date; a later batch replaces an earlier one's entry."""
    today = today or dt.date.today()
    result = IngestResult(rows=[])
    by_date: dict[dt.date, dict[str, Any]] = {}
    for batch in batches:
        seen: set[dt.date] = set()
        for record in batch.records:
            if not isinstance(record, dict):
                result.reject({}, f"row is {type(record).__name__}, not an object")
                continue
            row, reason = normalise(record, batch.source, today)
            if row is None:
                result.reject(record, reason)
                continue
            if row["date"] in seen:
                result.reject(record, "duplicate date within one source (kept the last)")
            seen.add(row["date"])
            by_date[row["date"]] = row
    rows = [by_date[d] for d in sorted(by_date)]
    # every entry's words inform the restoration, also those --limit and --start/--end leave out
    # once per date, the later batch's, as the rows inside the window are
    outside = list({str(r.get("date")): r for batch in batches for r in batch.outside_window}.values())
    corpus = [text for record in outside if isinstance(text := record.get("explanation"), str)]
    restored = restore_clipped_starts([r["explanation"] for r in rows], corpus=corpus)
    for i, text in restored.items():
        rows[i]["explanation"] = text
    repaired = set(_repair_replaced(rows, corpus=[text for record in outside for name in _REPAIRED
                                                  if isinstance(text := record.get(name), str)]))
    separated = set(_separate_credits(rows, prose=[text for record in outside for name in ("title", "explanation")
                                                    if isinstance(text := record.get(name), str)]))
    result.rows = rows[:limit] if limit else rows
    # what the manifest reports: of the entries the lake holds (--limit keeps the first ones)
    result.restored_starts = [rows[i]["date"].isoformat() for i in sorted(restored) if not limit or i < limit]
    result.repaired_characters = [r["date"].isoformat() for r in result.rows if r["date"].isoformat() in repaired]
    result.separated_credits = [r["date"].isoformat() for r in result.rows if r["date"].isoformat() in separated]
    result.replaced_left = sum((row[name] or "").count(REPLACED) for row in result.rows for name in _REPAIRED)
    if result.restored_starts:
        log.info("restored the first letters NASA's API clipped from %d explanations", len(result.restored_starts))
    if result.repaired_characters:
        log.info("put back characters NASA's API replaced in %d entries (%d replaced characters left where the "
                 "archive does not say what they were)", len(result.repaired_characters), result.replaced_left)
    if result.separated_credits:
        log.info("separated the credits NASA's API glued together in %d entries", len(result.separated_credits))
    if result.invalid_by_reason:
        log.warning(
            "skipped %d invalid rows: %s",
            sum(result.invalid_by_reason.values()),
            ", ".join(f"{n} × {r}" for r, n in result.invalid_by_reason.most_common()),
        )
    return result
