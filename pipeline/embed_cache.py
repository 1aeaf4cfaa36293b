"""Content-addressed embedding cache: vectors keyed by the hash of what was embedded.

Each batch of new vectors is written as its own Parquet chunk (atomically), so a killed embed stage
loses at most one chunk of work and a re-run embeds only what no chunk holds yet. Changing an entry's
text changes its key; old entries keep theirs, so new entries never cause old ones to be re-embedded.

A cache may also start from a *seed*: a read-only file of vectors this pipeline made elsewhere
(:func:`write_seed`), such as the bundled archive's text vectors shipped in ``data/apod/vectors`` (made
by ``python -m pipeline export-vectors``). The seed is keyed the same way, so a text the seed holds is
not encoded again and any other text is; vectors the cache computed itself win over the seed's. A seed's
vectors never enter the cache's own files (compaction writes only what this cache computed), so a build
without the seed (``--no-shipped-vectors``) still encodes what the seed held, and ``export-vectors``
exports only what this lake's own builds computed.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lake import atomic
from lake.vectors import matrix

COMPACT_AFTER = 64  # chunk files before they are merged into one


#: Seeds store float16: half the bytes in the repository, and a vector read back has cosine > 0.99999 to
#: the float32 one it was made from (``tests/test_shipped_vectors.py``). They are plain ``.npz`` files, not
#: Parquet: the archive's 10,809 text vectors load in ≈ 0.05 s against ≈ 0.16 s from a Parquet
#: fixed-size-list column, and every build that embeds (a daily one too) loads them.
SEED_DTYPE = np.float16


def write_seed(path: Path, keys: list[str], vectors: np.ndarray) -> None:
    """Write a seed file (keys sorted, so the same vectors always make the same bytes), atomically."""
    order = sorted(range(len(keys)), key=keys.__getitem__)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic.write_npz(path, {"keys": np.array([keys[i] for i in order], dtype="S"),
                            "vectors": np.asarray(vectors, dtype=SEED_DTYPE)[order]})


def read_seed(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return dict(zip(z["keys"].astype(str).tolist(), z["vectors"].astype(np.float32)))


class EmbeddingCache:
    def __init__(self, directory: Path, *, seed: Path | None = None) -> None:
        """``seed``: a seed file (see the module's docstring) consulted under this cache's own vectors;
        absent or None: none."""
        self.directory = directory
        self._vectors: dict[str, np.ndarray] = read_seed(seed) if seed is not None and seed.is_file() else {}
        self.seeded = len(self._vectors)
        self._own: set[str] = set()  # keys this cache computed (its chunk files), not the seed's
        self._load()

    def _chunks(self) -> list[Path]:
        return sorted(self.directory.glob("chunk-*.parquet")) if self.directory.is_dir() else []

    def _load(self) -> None:
        for chunk in self._chunks():
            table = pq.read_table(chunk)
            keys = table.column("key").to_pylist()
            self._vectors.update(zip(keys, matrix(table.column("vector"))))
            self._own.update(keys)

    def __contains__(self, key: str) -> bool:
        return key in self._vectors

    def __len__(self) -> int:
        return len(self._vectors)

    def missing(self, keys: list[str]) -> list[str]:
        """Keys not cached yet, first occurrence order, no duplicates."""
        return [k for k in dict.fromkeys(keys) if k not in self._vectors]

    def get(self, keys: list[str]) -> np.ndarray:
        return np.stack([self._vectors[k] for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def add(self, keys: list[str], vectors: np.ndarray) -> None:
        """Persist one chunk of new vectors, then make them visible to :meth:`get`."""
        if not keys:
            return
        vectors = np.asarray(vectors, dtype=np.float32)
        self._write(f"chunk-{time.time_ns()}.parquet", keys, vectors)
        self._vectors.update(zip(keys, vectors))
        self._own.update(keys)
        if len(self._chunks()) > COMPACT_AFTER:
            self.compact()

    def forget(self, keys: list[str]) -> int:
        """Drop these keys, so the next build embeds them again (the cache is rewritten as one chunk)."""
        gone = [k for k in dict.fromkeys(keys) if self._vectors.pop(k, None) is not None]
        self._own.difference_update(gone)
        if gone:
            self.compact()
        return len(gone)

    def compact(self) -> None:
        """Merge the chunk files into one, of this cache's own vectors only (never the seed's)."""
        old = self._chunks()
        keys = [k for k in self._vectors if k in self._own]
        if keys:
            self._write(f"chunk-{time.time_ns()}-all.parquet", keys, self.get(keys))
        for chunk in old:
            chunk.unlink(missing_ok=True)

    def _write(self, name: str, keys: list[str], vectors: np.ndarray) -> None:
        dim = vectors.shape[1]
        table = pa.table(
            {
                "key": pa.array(keys, pa.string()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), dim),
            }
        )
        atomic.write_parquet(self.directory / name, table)
