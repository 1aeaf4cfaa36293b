"""Content hashes that decide what a re-run must redo."""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=64)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    return sha1_file(Path(path))


def file_digest(path: Path) -> str:
    """:func:`sha1_file` of ``path``, read once per process while its size and time stay the same (a
    build asks for a model checkpoint's digest more than once; reading 600 MB takes about a second)."""
    st = Path(path).stat()
    return _file_digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def sha1_json(obj: Any) -> str:
    """Hash of a JSON-able value with stable key order (stage parameters, lists of hashes)."""
    return sha1_text(json.dumps(obj, sort_keys=True, default=str, separators=(",", ":")))
