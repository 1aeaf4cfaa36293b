"""Content-addressed embedding cache: vectors keyed by the hash of what was embedded.

Each batch of new vectors is written as its own Parquet chunk (atomically), so a killed embed stage
loses at most one chunk of work and a re-run embeds only what no chunk holds yet. Changing an entry's
text changes its key; old entries keep theirs, so new entries never cause old ones to be re-embedded.
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


class EmbeddingCache:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._vectors: dict[str, np.ndarray] = {}
        self._load()

    def _chunks(self) -> list[Path]:
        return sorted(self.directory.glob("chunk-*.parquet")) if self.directory.is_dir() else []

    def _load(self) -> None:
        for chunk in self._chunks():
            table = pq.read_table(chunk)
            self._vectors.update(zip(table.column("key").to_pylist(), matrix(table.column("vector"))))

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
        if len(self._chunks()) > COMPACT_AFTER:
            self.compact()

    def forget(self, keys: list[str]) -> int:
        """Drop these keys, so the next build embeds them again (the cache is rewritten as one chunk)."""
        gone = [k for k in dict.fromkeys(keys) if self._vectors.pop(k, None) is not None]
        if gone:
            self.compact()
        return len(gone)

    def compact(self) -> None:
        old = self._chunks()
        keys = list(self._vectors)
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
