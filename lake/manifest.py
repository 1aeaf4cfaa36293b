"""The lake's ``manifest.json``: provenance, encoder, counts, per-stage input hashes and timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lake import atomic
from lake.schema import SCHEMA_VERSION


class LakeMissingError(FileNotFoundError):
    """Raised when a lake has not been built; the message says how to build one."""

    def __init__(self, root: Path) -> None:
        super().__init__(
            f"No Cosmic Atlas lake at {root}. Build it with `python -m pipeline build --lake {root}` "
            "(or run `make run` / see README)."
        )
        self.root = root


def read(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        raise ValueError(
            f"{path} has lake schema version {version}, this code reads version {SCHEMA_VERSION}; "
            "rebuild the lake with `python -m pipeline build --force`."
        )
    return manifest


def read_if_exists(path: Path) -> dict[str, Any] | None:
    return read(path) if path.is_file() else None


def write(path: Path, manifest: dict[str, Any]) -> None:
    atomic.write_json(path, {"schema_version": SCHEMA_VERSION, **manifest})
