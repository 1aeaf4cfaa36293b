"""LanceDB side of the lake: one table per embedding kind, keyed by ISO date."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from lake.schema import VECTOR_KINDS, vector_schema


def _connect(path: Path):
    import lancedb  # heavy import, only when vectors are touched

    return lancedb.connect(str(path))


#: Tables with at least this many rows get an IVF_PQ index (exact search is fast enough below it).
ANN_MIN_ROWS = 100_000
#: Query-time ANN settings: recall@10 0.987 at p50 8 ms on 1M vectors (bench/ann.py, BENCHMARKS.md).
ANN_NPROBES = 100
ANN_REFINE_FACTOR = 40


def write_table(
    db_path: Path,
    kind: str,
    dates: list[str],
    vectors: np.ndarray,
    *,
    titles: list[str],
    years: list[int],
    categories: list[str | None],
    has_image: list[bool],
    bodies: list[str] | None = None,
    ann_min_rows: int = ANN_MIN_ROWS,
) -> None:
    """Replace table ``kind`` in one LanceDB commit, so readers see the old or the new version.

    With ``bodies`` the table also gets a ``body`` column and a BM25 full-text index on it.
    """
    if kind not in VECTOR_KINDS:
        raise KeyError(kind)
    vectors = np.ascontiguousarray(vectors, dtype=np.float32)
    dim = int(vectors.shape[1])
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    columns = [
        pa.array(dates, pa.string()),
        pa.FixedSizeListArray.from_arrays(flat, dim),
        pa.array(titles, pa.string()),
        pa.array(years, pa.int16()),
        pa.array(categories, pa.string()),
        pa.array(has_image, pa.bool_()),
    ]
    if bodies is not None:
        columns.append(pa.array(bodies, pa.string()))
    table = pa.Table.from_arrays(columns, schema=vector_schema(dim, with_body=bodies is not None))
    db = _connect(db_path)
    exists = kind in set(_table_names(db))
    lance_table = db.create_table(kind, data=table, mode="overwrite" if exists else "create")
    if bodies is not None:
        from lancedb.index import FTS

        lance_table.create_index("body", config=FTS(), replace=True)
    if len(dates) >= ann_min_rows:
        from lancedb.index import IvfPq

        lance_table.create_index("vector", replace=True, config=IvfPq(
            distance_type="cosine", num_partitions=max(1, int(len(dates) ** 0.5)),
            num_sub_vectors=_sub_vectors(dim)))


def _sub_vectors(dim: int) -> int:
    """PQ sub-vectors of 8 dimensions (48 for MiniLM's 384), falling back to a divisor of ``dim``."""
    for width in (8, 4, 2, 1):
        if dim % width == 0:
            return dim // width
    return 1


def open_table(db_path: Path, kind: str):
    """Open a vector table for search; raises ``KeyError`` when it was not built."""
    db = _connect(db_path)
    names = set(_table_names(db))
    if kind not in names:
        raise KeyError(f"vector table {kind!r} is not in {db_path} (has: {sorted(names)})")
    return db.open_table(kind)


def _table_names(db) -> list[str]:
    listing = db.list_tables() if hasattr(db, "list_tables") else db.table_names()
    return list(getattr(listing, "tables", listing))


def matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A fixed-size-list vector column as a float32 (rows × dim) matrix."""
    vec = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return vec.flatten().to_numpy(zero_copy_only=False).reshape(len(vec), vec.type.list_size).astype(np.float32)


def read_vectors(db_path: Path, kind: str) -> tuple[list[str], np.ndarray]:
    """All dates and vectors of one kind, in table order."""
    arrow = open_table(db_path, kind).to_arrow()
    return arrow.column("date").to_pylist(), matrix(arrow.column("vector"))


def write_galaxy_table(db_path: Path, kind: str, galaxies: pa.Table, matrix_: np.ndarray) -> None:
    """Replace the galaxy vector table ``kind``: one row per galaxy of ``galaxies`` (objid, ra, dec,
    gz_class, has_image columns, same order as ``matrix_``), in one LanceDB commit."""
    from lake.galaxy_schema import GALAXY_VECTOR_KINDS, galaxy_vector_schema

    if kind not in GALAXY_VECTOR_KINDS:
        raise KeyError(kind)
    matrix_ = np.ascontiguousarray(matrix_, dtype=np.float32)
    if len(matrix_) != galaxies.num_rows:
        raise ValueError(f"{galaxies.num_rows} galaxies but {len(matrix_)} vectors")
    dim = int(matrix_.shape[1])
    schema = galaxy_vector_schema(dim)
    table = pa.table({
        "objid": galaxies.column("objid"),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(matrix_.reshape(-1), pa.float32()), dim),
        **{name: galaxies.column(name) for name in ("ra", "dec", "gz_class", "has_image")},
    }).cast(schema)
    db = _connect(db_path)
    exists = kind in set(_table_names(db))
    db.create_table(kind, data=table, mode="overwrite" if exists else "create")


def read_galaxy_vectors(db_path: Path, kind: str) -> tuple[list[str], np.ndarray]:
    """All objids and vectors of one galaxy kind, in table order."""
    arrow = open_table(db_path, kind).to_arrow()
    return arrow.column("objid").to_pylist(), matrix(arrow.column("vector"))
