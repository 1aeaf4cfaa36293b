"""The lake's ``manifest.json``: provenance, encoder, counts, per-stage input hashes and timings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from lake import atomic
from lake.schema import SCHEMA_VERSION

#: The lake's id: made by its first publish, carried on by every later one (and kept by a copy or a move
#: of the lake), so what is kept about a lake outside it (people's labels:
#: :func:`atlas.userstate.default_path`) follows the lake, not its path.
LAKE_ID = "lake_id"


def lake_id(manifest: dict[str, Any]) -> str | None:
    """The lake id a manifest carries (None for a lake published before ids)."""
    value = manifest.get(LAKE_ID)
    return value if isinstance(value, str) and value else None


class LakeMissingError(FileNotFoundError):
    """Raised when there is no usable lake; the message says how to build one."""

    def __init__(self, root: Path | str, reason: str | None = None) -> None:
        """``root``: the lake as its users name it (:attr:`lake.layout.LakeLayout.location`)."""
        super().__init__((reason or f"No Cosmic Atlas lake at {root}.") + " " + self.advice(root))
        self.root = root

    def advice(self, root: Path | str) -> str:
        return f"Build it with `python -m pipeline build --lake {root}` (or run `make run` / see README)."


class LakeVersionError(LakeMissingError, ValueError):
    """The lake was written with another schema version than this code reads: it must be rebuilt."""


class LakeNewerError(LakeVersionError):
    """The lake was written by a newer Cosmic Atlas: this code must be upgraded, and a build must not
    replace the lake with an older kind (unless asked to, with ``--force``)."""

    def advice(self, root: Path | str) -> str:
        return f"A build of this version replaces it only when asked to: `python -m pipeline build --lake {root} --force`."


def read(path: Path, *, lake: str | None = None) -> dict[str, Any]:
    """The manifest at ``path``; errors name the lake as ``lake`` (default: the folder the path is in)."""
    root = lake or (path.parent.parent.parent if path.parent.parent.name == "versions" else path.parent)
    try:
        with open(path, encoding="utf-8") as fh:
            manifest = json.load(fh)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:  # a lake's files are written atomically: not ours
        raise LakeMissingError(root, f"The lake at {root} has an unreadable manifest ({path.name}: {exc}).") from None
    version = manifest.get("schema_version") if isinstance(manifest, dict) else None
    if isinstance(version, int) and version > SCHEMA_VERSION:
        raise LakeNewerError(
            root, f"The lake at {root} was written by a newer Cosmic Atlas (schema version {version}; this one "
            f"reads {SCHEMA_VERSION}): upgrade Cosmic Atlas to read it, or build a lake of this version elsewhere.")
    if version != SCHEMA_VERSION:
        raise LakeVersionError(
            root, f"The lake at {root} has schema version {version}; this Cosmic Atlas reads version "
            f"{SCHEMA_VERSION}, so the lake must be rebuilt (the embedding cache is reused).")
    return manifest


def read_if_exists(path: Path, *, lake: str | None = None) -> dict[str, Any] | None:
    return read(path, lake=lake) if path.is_file() else None


def write(path: Path, manifest: dict[str, Any]) -> None:
    atomic.write_json(path, {"schema_version": SCHEMA_VERSION, **manifest})
