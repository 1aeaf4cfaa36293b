"""Pickles that only this machine's builds wrote are ever loaded.

A kept scikit-learn model (the anomaly detectors' isolation forests) is a pickle: scikit-learn's own way
to persist a model, and the only fast one (skops, the safe alternative, took 0.23 s per forest against
0.01 s). Unpickling runs code, and a lake's cache is not always this machine's own: a lake on object
storage shares its ``cache/`` folder through the bucket with every builder. So each file is signed with
HMAC-SHA256 under a random key kept in this machine's state folder (:mod:`atlas.signing`, shared with the
saved TorchScript traces), and a file whose signature does not match is refused before it is unpickled;
the caller then fits its model anew (a builder elsewhere only loses the speed-up).
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from atlas import signing
from lake import atomic


class UntrustedPickle(ValueError):
    """The file was not signed by this machine's key (written elsewhere, or changed since)."""


def dump(obj: Any, path: Path) -> None:
    """Pickle ``obj`` to ``path`` (atomically), signed."""
    payload = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    atomic.write_bytes(path, signing.sign(payload) + payload)


def load(path: Path) -> Any:
    """The object :func:`dump` wrote to ``path``; :class:`UntrustedPickle` before anything is unpickled
    when the signature does not match."""
    data = Path(path).read_bytes()
    signature, payload = data[:signing.SIZE], data[signing.SIZE:]
    if not signing.verify(payload, signature):
        raise UntrustedPickle(f"{Path(path).name} was not written by this machine's builds")
    return pickle.loads(payload)  # noqa: S301 (signed by this machine's key: written by its builds)
