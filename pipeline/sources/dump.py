"""A local dump of APOD records: JSON (a list, or an object with an ``entries`` list), JSONL, Parquet.

Rows need ``date`` and ``title`` or ``explanation``; other APOD API fields are used when present. An
``image_file`` column may name local image files (relative paths resolve against the dump's folder).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from atlas.hashing import sha1_file
from pipeline.sources import RawBatch, SourceError


def _open_text(path: Path):
    return gzip.open(path, "rt", encoding="utf-8") if path.suffix == ".gz" else open(path, encoding="utf-8")


def _read_records(path: Path) -> tuple[list[Any], int]:
    """Return records and the number of JSONL lines that were not valid JSON."""
    suffixes = [s.lower() for s in path.suffixes]
    if ".parquet" in suffixes:
        return pq.read_table(path).to_pylist(), 0
    if ".jsonl" in suffixes or ".ndjson" in suffixes:
        records, bad = [], 0
        with _open_text(path) as fh:
            for line in fh:
                if not line.strip():
                    continue
                try:
                    records.append(json.loads(line))
                except json.JSONDecodeError:
                    bad += 1
        return records, bad
    if ".json" in suffixes:
        with _open_text(path) as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise SourceError(f"{path} is not valid JSON ({exc})") from exc
        if isinstance(data, dict):
            data = data.get("entries", [data])
        if not isinstance(data, list):
            raise SourceError(f"{path}: expected a list of records or {{'entries': [...]}}")
        return data, 0
    raise SourceError(f"{path}: unknown dump format; use .json, .jsonl(.gz) or .parquet")


def load(path: Path) -> RawBatch:
    path = Path(path)
    if not path.is_file():
        raise SourceError(f"dump file {path} does not exist")
    try:
        records, bad_lines = _read_records(path)
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:  # a torn .gz, another encoding, bad Parquet
        raise SourceError(f"cannot read the dump {path} ({type(exc).__name__}: {exc}); JSON and JSONL dumps "
                          "must be UTF-8 text (gzipped if named .gz), Parquet files whole") from None
    clean: list[dict[str, Any]] = []
    for rec in records:
        if not isinstance(rec, dict):
            clean.append({"_invalid": f"row is {type(rec).__name__}, not an object"})
            continue
        rec = dict(rec)
        image = rec.get("image_file")
        if image is not None and not isinstance(image, str):
            clean.append({"_invalid": f"image_file is {type(image).__name__}, not a path"})
            continue
        if image and not Path(image).is_absolute():
            rec["image_file"] = str((path.parent / image).resolve())
        rec.setdefault("record_source", f"dump:{path.name}")
        clean.append(rec)
    clean.extend({"_invalid": "line is not valid JSON"} for _ in range(bad_lines))
    return RawBatch(source=f"dump:{path.name}", records=clean, fingerprint=sha1_file(path))
