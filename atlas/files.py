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


def umask() -> int:
    """The process's umask, read without changing it (``os.umask`` can only read it by setting it, which
    races with other threads): from ``/proc/self/status`` on Linux, else by setting and restoring it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def as_if_created(path: Path, *, folder: bool = False) -> None:
    """Give a file (or folder) made by ``mkstemp`` (``mkdtemp``), which are the owner's only (0600/0700),
    the mode a plain ``open``/``mkdir`` would have given it: a lake built by one user is read by a server
    running as another (a cron builder and a www-data app, a shared volume)."""
    os.chmod(path, (0o777 if folder else 0o666) & ~umask())


@contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path in ``target``'s folder; on success it is flushed to disk and replaces
    ``target`` (with the mode a plain write would have given it); on an error it is removed and
    ``target`` is left as it was."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{target.name}-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        as_if_created(tmp)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)
