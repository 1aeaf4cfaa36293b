"""Read-only access to a published lake: DuckDB over the Parquet tables, LanceDB for vectors.

The app and the search code use this class only; they never open lake files themselves.
"""

from __future__ import annotations

import contextlib
import threading
from functools import cached_property
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd

from lake import manifest as manifest_io
from lake import vectors
from lake.layout import LakeLayout
from lake.manifest import LakeMissingError
from lake.schema import TABLES

#: The tables a serving process holds in memory, smallest first, add up to at most this much data
#: (uncompressed; :meth:`LakeReader.hold_small_tables`): every table of the archive's lake.
HELD_TABLES_MAX_BYTES = 256 * 1024 * 1024


def data_bytes(parquet: Path) -> int:
    """A Parquet file's data uncompressed, in bytes, as its metadata gives it (nothing else is read)."""
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(parquet).metadata
    return sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))


class LakeReader:
    """A read-only view of one lake. Queries are parameterised; table names come from the schema."""

    def __init__(self, layout: LakeLayout) -> None:
        pinned = layout if layout.version else layout.pinned()
        if not pinned.version or not pinned.exists():
            legacy = layout.legacy_manifest.is_file()
            raise LakeMissingError(layout.location, f"The lake at {layout.location} was made by an older Cosmic Atlas "
                                   "(before versioned publishing)." if legacy else None)
        self.layout = pinned  # every query of this reader sees one published version, whatever is published next
        self._local = threading.local()
        self._database_lock = threading.Lock()
        self._db: duckdb.DuckDBPyConnection | None = None
        self._held: set[str] = set()  # tables copied into memory (hold_small_tables), and their data's size
        self._held_bytes = 0
        _ = self.manifest  # fails now, with the rebuild message, when the schema version differs

    @property
    def version(self) -> str:
        return str(self.layout.version)

    @classmethod
    def open(cls, path: str | Path | None = None) -> "LakeReader":
        """The live version of the lake at ``path`` (a directory or ``s3://bucket/prefix``: that lake's
        live version is pulled into its local working copy first)."""
        layout = LakeLayout.at(path)
        if layout.remote:
            from lake.remote import RemoteLake

            RemoteLake(layout).pull()
        return cls(layout)

    @cached_property
    def manifest(self) -> dict[str, Any]:
        return manifest_io.read(self.layout.manifest, lake=self.layout.location)

    @property
    def lake_id(self) -> str | None:
        """The lake's id (:data:`lake.manifest.LAKE_ID`; None for a lake published before ids)."""
        return manifest_io.lake_id(self.manifest)

    @property
    def tables(self) -> list[str]:
        return [name for name in TABLES if self.layout.table(name).is_file()]

    def connection(self) -> duckdb.DuckDBPyConnection:
        """This thread's DuckDB connection: a cursor on the reader's one in-memory database, whose views
        (one per published table) every cursor shares. DuckDB connections are not for sharing between
        threads; a cursor is its way of giving each thread its own. Registering the views anew per thread
        cost each server thread's first request ≈ 25 ms on the archive; a cursor costs ≈ 0.05 ms."""
        con = getattr(self._local, "con", None)
        if con is None:
            con = self._local.con = self._database().cursor()
        return con

    def _database(self) -> duckdb.DuckDBPyConnection:
        with self._database_lock:
            if self._db is None:
                db = duckdb.connect(":memory:")
                for name in self.tables:
                    db.read_parquet(str(self.layout.table(name))).create_view(name)
                self._db = db
            return self._db

    def hold_small_tables(self, *, budget: int = HELD_TABLES_MAX_BYTES) -> list[str]:
        """Copy the tables into the reader's in-memory database, in place of their views, smallest first
        while their data (uncompressed, as the Parquet files' metadata gives it) fits in ``budget`` bytes
        altogether; returns the names copied. For a serving process, once (its warm-up): a view reads its
        Parquet file's metadata and row groups again for every query, so one entry by date took ≈ 11 ms
        through the view of the archive's ``entries`` file and ≈ 2 ms from the copy (all its tables: ≈
        0.14 s to copy). Large tables (the maps of a lake of millions) stay views over their files. Queries
        running meanwhile see the view or the copy, the same rows either way."""
        db, held = self._database(), []
        with self._database_lock:
            sizes = {name: data_bytes(self.layout.table(name)) for name in self.tables if name not in self._held}
            left = budget - self._held_bytes
            for name in sorted(sizes, key=sizes.get):
                if sizes[name] > left:
                    break
                try:
                    db.execute(f'CREATE TABLE "_held_{name}" AS SELECT * FROM "{name}"')
                    # one transaction swaps the view for the table: no query finds neither
                    db.execute(f'BEGIN; DROP VIEW "{name}"; ALTER TABLE "_held_{name}" RENAME TO "{name}"; COMMIT')
                except duckdb.Error:  # (out of memory, say) the view stays, as it was
                    with contextlib.suppress(duckdb.Error):
                        db.execute("ROLLBACK")
                    db.execute(f'DROP TABLE IF EXISTS "_held_{name}"')
                    raise
                self._held.add(name)
                self._held_bytes += sizes[name]
                left -= sizes[name]
                held.append(name)
        return held

    @property
    def held_bytes(self) -> int:
        """The data of the tables held in memory (:meth:`hold_small_tables`), uncompressed, in bytes."""
        return self._held_bytes

    def query(self, sql: str, params: list[Any] | dict[str, Any] | None = None) -> pd.DataFrame:
        """Run SQL against the table views. User values go in ``params``, never into ``sql``."""
        return self.connection().execute(sql, params or []).df()

    def count(self, table: str) -> int:
        if table not in self.tables:
            return 0
        return int(self.connection().execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])

    def vectors(self, kind: str) -> tuple[list[str], np.ndarray]:
        return vectors.read_vectors(self.layout.vectors, kind)

    def vector_table(self, kind: str):
        return vectors.open_table(self.layout.vectors, kind)
