"""Where APOD records come from. Each source yields raw dicts; :mod:`pipeline.ingest` validates them.

Raw record keys: ``date``, ``title``, ``explanation``, ``url``, ``hdurl``, ``media_type``,
``copyright``, ``record_source``, and optionally ``image_file`` (a local image to thumbnail).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


class SourceError(RuntimeError):
    """A source could not be read at all (as opposed to single bad rows, which are skipped)."""


@dataclass
class RawBatch:
    source: str
    records: list[dict[str, Any]]
    fingerprint: str  # changes when the source's content changes
    notes: dict[str, Any] = field(default_factory=dict)
    #: the source's records outside ``--start``/``--end``: not ingested, but their words still inform
    #: the repair of clipped texts and replaced characters, so a text is repaired alike whatever the
    #: date window (:func:`pipeline.clean.restore_clipped_starts`, :func:`~pipeline.clean.restore_replaced_characters`)
    outside_window: list[dict[str, Any]] = field(default_factory=list)
