"""Process-wide handles on the configured lake for the web app: queries, search, and the query encoder.

Opened lazily and reopened when a new build publishes a new manifest, so a running server picks up
rebuilt lakes. The lake is ``$COSMIC_ATLAS_LAKE`` or ``lake/data``.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from lake.layout import LAKE_ENV, LakeLayout
from lake.manifest import LakeMissingError
from lake.queries import AtlasQueries
from lake.reader import LakeReader
from lake.search import SearchEngine

_lock = threading.Lock()
_state: dict[str, Any] = {"mtime": None, "atlas": None, "engine": None}


def lake_layout() -> LakeLayout:
    return LakeLayout.at(os.environ.get(LAKE_ENV))


def _query_encoder(info: dict[str, Any]):
    from pipeline.encoders import encoder_from_manifest

    return encoder_from_manifest(info)


def _current() -> dict[str, Any]:
    layout = lake_layout()
    try:
        mtime = layout.manifest.stat().st_mtime
    except FileNotFoundError as exc:
        raise LakeMissingError(layout.root) from exc
    with _lock:
        if _state["mtime"] != mtime:
            reader = LakeReader(layout)
            _state.update(mtime=mtime, atlas=AtlasQueries(reader), engine=SearchEngine(reader, _query_encoder))
        return _state


def atlas() -> AtlasQueries:
    return _current()["atlas"]


def engine() -> SearchEngine:
    return _current()["engine"]


def locate(name: str) -> tuple[float, float] | None:
    """RA/Dec of a typed object name: the offline catalogues first, then the positions the lake's build
    found (online resolution included). The web app never asks the network at request time."""
    from pipeline.sky.resolve import position_of

    return position_of(name) or atlas().object_position(name)
