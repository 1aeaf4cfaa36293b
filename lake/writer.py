"""Build-side access to a lake: stage new outputs, read the newest version, publish atomically.

Outputs of a build go to ``.staging/`` first. :meth:`LakeWriter.publish` moves them over the live
files one ``os.replace`` at a time (each atomic), writes the LanceDB tables (one commit each) and writes
``manifest.json`` last. Until then readers keep seeing the last good lake, and a re-run after a crash
picks up the staged outputs instead of recomputing them.
"""

from __future__ import annotations

import fcntl
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from lake import atomic, vectors
from lake import manifest as manifest_io
from lake.layout import LakeLayout
from lake.schema import EMBEDDING_KINDS, KEYWORD_KIND, conform

log = logging.getLogger(__name__)


class LakeBusyError(RuntimeError):
    pass


class LakeWriter:
    def __init__(self, layout: LakeLayout) -> None:
        self.layout = layout

    @contextmanager
    def locked(self) -> Iterator[None]:
        """One build per lake at a time (an advisory lock released even when the process dies)."""
        self.layout.root.mkdir(parents=True, exist_ok=True)
        with open(self.layout.lock, "w") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError as exc:
                raise LakeBusyError(f"another build is writing {self.layout.root}; wait for it to finish") from exc
            yield

    # -- manifests ------------------------------------------------------------------------------
    def live_manifest(self) -> dict[str, Any] | None:
        try:
            return manifest_io.read_if_exists(self.layout.manifest)
        except ValueError as exc:  # older schema: rebuild everything
            log.warning("%s", exc)
            return None

    def staged_manifest(self) -> dict[str, Any]:
        try:
            return manifest_io.read_if_exists(self.layout.staged_manifest) or {}
        except ValueError:
            return {}

    def save_staged_manifest(self, manifest: dict[str, Any]) -> None:
        manifest_io.write(self.layout.staged_manifest, manifest)

    def discard_staging(self) -> None:
        atomic.remove_tree(self.layout.staging)

    # -- tables ---------------------------------------------------------------------------------
    def stage_table(self, name: str, table: pa.Table) -> None:
        atomic.write_parquet(self.layout.staged_table(name), conform(table, name))

    def read_table(self, name: str) -> pa.Table:
        """The staged version when this build made one, else the published one."""
        staged = self.layout.staged_table(name)
        return pq.read_table(staged if staged.is_file() else self.layout.table(name))

    def stage_vectors(self, kind: str, dates: list[str], matrix: np.ndarray) -> None:
        matrix = np.ascontiguousarray(matrix, dtype=np.float32)
        dim = matrix.shape[1] if matrix.ndim == 2 and matrix.shape[1] else 1
        table = pa.table({
            "date": pa.array(dates, pa.string()),
            "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix.reshape(-1), pa.float32()), dim),
        })
        atomic.write_parquet(self.layout.staged_vectors(kind), table)

    def read_vectors(self, kind: str) -> tuple[list[str], np.ndarray]:
        staged = self.layout.staged_vectors(kind)
        if staged.is_file():
            table = pq.read_table(staged)
            return table.column("date").to_pylist(), vectors.matrix(table.column("vector"))
        if not self.layout.vectors.is_dir():
            return [], np.zeros((0, 0), np.float32)
        try:
            return vectors.read_vectors(self.layout.vectors, kind)
        except KeyError:  # e.g. no entry had an image
            return [], np.zeros((0, 0), np.float32)

    def stage_file(self, published: Path, writer) -> None:
        atomic.write_with(self.layout.staged(published), writer)

    # -- publish --------------------------------------------------------------------------------
    def publish(self, manifest: dict[str, Any], *, vector_columns: dict[str, Any] | None) -> None:
        """Move staged files live, rewrite LanceDB tables when asked, then write the manifest."""
        staging = self.layout.staging
        for staged in sorted(p for p in staging.rglob("*") if p.is_file()):
            rel = staged.relative_to(staging)
            if rel.name == "manifest.json" or rel.name.startswith("vectors_") or rel.name.startswith(".tmp-"):
                continue
            atomic.move_into_place(staged, self.layout.root / rel)
        if vector_columns is not None:
            for kind in EMBEDDING_KINDS:
                dates, matrix = self.read_vectors(kind)
                if not dates:
                    continue
                cols = vector_columns
                vectors.write_table(
                    self.layout.vectors, kind, dates, matrix,
                    titles=[cols["title"].get(d) for d in dates],
                    years=[int(d[:4]) for d in dates],
                    categories=[cols["category"].get(d) for d in dates],
                    has_image=[bool(cols["has_image"].get(d)) for d in dates],
                    bodies=[cols["body"].get(d, "") for d in dates] if kind == KEYWORD_KIND else None,
                )
        manifest_io.write(self.layout.manifest, manifest)
        self.discard_staging()
        os.sync()
