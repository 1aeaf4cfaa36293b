"""A digest of an Arrow table's rows that grows with appended rows.

Why: a daily build appends a day to vector tables of the whole archive, and may only do so when the new
table starts with the last version's rows exactly. Reading the last version back to compare is cheap at
11k rows and gigabytes at 10M; comparing the digest stored with that version against a digest of the new
table's first rows reads nothing from disk, and the same pass, carried on over the new rows, gives the
digest to store with the appended table.
"""

from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


class RowsDigest:
    """SHA-256 over a canonical form of the rows fed to :meth:`update`, column by column.

    Each column is hashed as separate streams (the positions of its nulls; its values; for strings their
    lengths and bytes) that are plain concatenations over rows, so feeding rows A then rows B gives the
    digest of the table A + B whatever its chunks, slices or buffer offsets. The form is injective (null
    positions are their own stream, string lengths are hashed beside their bytes), so equal digests mean
    equal rows. Values are compared by their bytes: 0.0 and -0.0 differ and a NaN equals itself, the
    opposite of ``Table.equals`` in both. A column without nulls costs one pass over its values' buffer, read
    in place (a vector column is hashed as the float32 matrix it is)."""

    def __init__(self, schema: pa.Schema) -> None:
        self._schema = schema.remove_metadata()
        self._rows = 0
        self._streams = [[hashlib.sha256() for _ in _canonical(pa.array([], type=field.type), [])]
                         for field in self._schema]
        #: per column, how many values each nesting level has been fed (null positions count from there)
        self._fed: list[list[int]] = [[] for _ in self._schema]

    def update(self, table: pa.Table) -> None:
        """Feed the rows of ``table`` (the schema given at construction, metadata aside)."""
        if not table.schema.remove_metadata().equals(self._schema):
            raise ValueError(f"rows of schema {table.schema} fed to the digest of {self._schema}")
        for streams, fed, column in zip(self._streams, self._fed, table.columns):
            for chunk in column.chunks:
                for stream, data in zip(streams, _canonical(chunk, fed)):
                    stream.update(data)
        self._rows += table.num_rows

    def hexdigest(self) -> str:
        """The digest of the schema, the row count and every column's streams."""
        whole = hashlib.sha256(self._schema.serialize().to_pybytes())
        whole.update(self._rows.to_bytes(8, "little"))
        for streams in self._streams:
            for stream in streams:
                whole.update(stream.digest())
        return whole.hexdigest()


def rows_digest(table: pa.Table) -> str:
    """The :class:`RowsDigest` of every row of ``table``."""
    digest = RowsDigest(table.schema)
    digest.update(table)
    return digest.hexdigest()


def _canonical(array: pa.Array, fed: list[int], level: int = 0) -> list[memoryview | bytes]:
    """The byte streams of ``array`` that :class:`RowsDigest` hashes: the positions of its nulls (counted
    from ``fed[level]``, the values this nesting level was fed before, which this advances), then its
    values with nulls filled (fixed-size lists: the values of the non-null lists, one level down)."""
    if len(fed) == level:
        fed.append(0)
    start, fed[level] = fed[level], fed[level] + len(array)
    nulls = np.flatnonzero(~pc.is_valid(array).to_numpy(zero_copy_only=False)) + start if array.null_count \
        else np.zeros(0, np.int64)
    streams: list[memoryview | bytes] = [_bytes(nulls.astype(np.int64))]
    kind = array.type
    if pa.types.is_fixed_size_list(kind):
        return streams + _canonical(array.flatten(), fed, level + 1)
    if any(test(kind) for test in (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary,
                                   pa.types.is_large_binary)):
        if array.null_count:
            array = pc.fill_null(array, pa.scalar("", pa.string()).cast(kind))
        if not len(array):
            return streams + [b"", b""]
        buffers = array.buffers()
        wide = pa.types.is_large_string(kind) or pa.types.is_large_binary(kind)
        offsets = np.frombuffer(buffers[1], np.int64 if wide else np.int32)[array.offset:array.offset + len(array) + 1]
        data = memoryview(buffers[2])[int(offsets[0]):int(offsets[-1])] if buffers[2] else b""
        return streams + [_bytes(np.diff(offsets).astype(np.int64)), data]
    if pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        if array.null_count:
            array = pc.fill_null(array, pa.scalar(False if pa.types.is_boolean(kind) else 0, kind))
        return streams + [_bytes(array.to_numpy(zero_copy_only=False))]
    raise TypeError(f"no canonical form for column type {kind}")


def _bytes(values: np.ndarray) -> memoryview:
    return memoryview(np.ascontiguousarray(values)).cast("B")
