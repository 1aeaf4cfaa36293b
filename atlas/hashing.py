"""Content hashes that decide what a re-run must redo."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha1_bytes(data: bytes) -> str:
    return hashlib.sha1(data).hexdigest()


def sha1_text(text: str) -> str:
    return sha1_bytes(text.encode("utf-8"))


def sha1_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def sha1_json(obj: Any) -> str:
    """Hash of a JSON-able value with stable key order (stage parameters, lists of hashes)."""
    return sha1_text(json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")))
