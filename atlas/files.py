"""Atomic file writes: write to a temporary file beside the target, fsync, then rename over it.

A reader therefore sees either the old file or the new one, never a torn write, and a crash leaves at
most a stray ``.tmp-*`` file that the next write ignores. Here, not in ``lake``, because both sides write
such files: the lake's tables and manifests (``lake.atomic`` builds on these) and the model cache's
traces and signatures (``atlas.encoders.trace_files``), which ``atlas`` writes without importing ``lake``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; on success it is flushed to disk and replaces
    ``target``; on an error it is removed and ``target`` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
