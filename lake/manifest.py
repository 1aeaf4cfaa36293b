"""The lake's ``manifest.json``: provenance, encoder, counts, per-stage input hashes and timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lake import atomic
from lake.schema import SCHEMA_VERSION


class LakeMissingError(FileNotFoundError):
    """Raised when there is no usable lake; the message says how to build one."""

    def __init__(self, root: Path, reason: str | None = None) -> None:
        super().__init__(
            (reason or f"No Cosmic Atlas lake at {root}.")
            + f" Build it with `python -m pipeline build --lake {root}` (or run `make run` / see README)."
        )
        self.root = root


class LakeVersionError(LakeMissingError, ValueError):
    """The lake was written with another schema version than this code reads: it must be rebuilt."""


def read(path: Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as fh:
        manifest = json.load(fh)
    version = manifest.get("schema_version")
    if version != SCHEMA_VERSION:
        root = path.parent.parent.parent if path.parent.parent.name == "versions" else path.parent
        raise LakeVersionError(
            root, f"The lake at {root} has schema version {version}; this Cosmic Atlas reads version "
            f"{SCHEMA_VERSION}, so the lake must be rebuilt (the embedding cache is reused).")
    return manifest


def read_if_exists(path: Path) -> dict[str, Any] | None:
    return read(path) if path.is_file() else None


def write(path: Path, manifest: dict[str, Any]) -> None:
    atomic.write_json(path, {"schema_version": SCHEMA_VERSION, **manifest})
