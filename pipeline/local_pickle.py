"""Pickles that only this machine's builds wrote are ever loaded.

A kept scikit-learn model (the anomaly detectors' isolation forests) is a pickle: scikit-learn's own way
to persist a model, and the only fast one (skops, the safe alternative, took 0.23 s per forest against
0.01 s). Unpickling runs code, and a lake's cache is not always this machine's own: a lake on object
storage shares its ``cache/`` folder through the bucket with every builder. So each file is signed with
HMAC-SHA256 under a random key kept in this machine's state folder (``$COSMIC_ATLAS_STATE``, else the
XDG state folder), and a file whose signature does not match is refused before it is unpickled; the
caller then fits its model anew (a builder elsewhere only loses the speed-up).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import pickle
import secrets
import tempfile
from pathlib import Path
from typing import Any

from atlas import environment
from lake import atomic

KEY_FILE = "pickle-signing.key"
_DIGEST = hashlib.sha256().digest_size


class UntrustedPickle(ValueError):
    """The file was not signed by this machine's key (written elsewhere, or changed since)."""


def _key() -> bytes:
    """This machine's signing key, made on first use (readable by its owner only). Two builds making it at
    once agree: the key file appears whole, by a hard link that fails if the other build linked first."""
    folder = environment.state_dir()
    path = folder / KEY_FILE
    if not path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-key-", dir=folder)
        try:
            os.write(fd, secrets.token_bytes(32))
            os.fsync(fd)
            os.close(fd)
            try:
                os.link(tmp, path)
            except FileExistsError:
                pass
        finally:
            os.unlink(tmp)
    return path.read_bytes()


def dump(obj: Any, path: Path) -> None:
    """Pickle ``obj`` to ``path`` (atomically), signed."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    atomic.write_bytes(path, hmac.new(_key(), payload, hashlib.sha256).digest() + payload)


def load(path: Path) -> Any:
    """The object :func:`dump` wrote to ``path``; :class:`UntrustedPickle` before anything is unpickled
    when the signature does not match."""
    data = Path(path).read_bytes()
    signature, payload = data[:_DIGEST], data[_DIGEST:]
    if not hmac.compare_digest(signature, hmac.new(_key(), payload, hashlib.sha256).digest()):
        raise UntrustedPickle(f"{Path(path).name} was not written by this machine's builds")
    return pickle.loads(payload)  # noqa: S301 (signed by this machine's key: written by its builds)
