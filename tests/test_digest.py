"""The digest of a table's rows that lets a daily build append to the last version's vector tables
without reading them back: equal rows give equal digests however they are chunked or sliced, and any
change to a row (a value, a null, a boundary between strings, the order) changes it."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from lake.digest import RowsDigest, rows_digest


def _table(n: int = 37, seed: int = 3) -> pa.Table:
    """Every column type of the vector tables, with nulls where the schema allows them."""
    rng = np.random.default_rng(seed)
    words = ["", "m31", "comet", "saturn rings", "aurora", "ngc 7000"]
    vectors = rng.standard_normal((n, 5)).astype(np.float32)
    return pa.table({
        "date": pa.array([f"2001-01-{i:02d}" for i in range(n)]),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 5,
                                                    mask=pa.array([i % 17 == 9 for i in range(n)])),
        "title": pa.array([None if i % 7 == 3 else words[i % len(words)] for i in range(n)], pa.string()),
        "year": pa.array([None if i % 11 == 5 else 1995 + i for i in range(n)], pa.int16()),
        "has_image": pa.array([None if i % 13 == 2 else bool(i % 2) for i in range(n)], pa.bool_()),
        "body": pa.array([words[(i * 5) % len(words)] * (i % 4) for i in range(n)], pa.large_string()),
    })


def _rechunked(table: pa.Table, cuts: list[int]) -> pa.Table:
    bounds = [0, *cuts, table.num_rows]
    return pa.concat_tables([table.slice(a, b - a) for a, b in zip(bounds, bounds[1:])])


def test_the_digest_does_not_depend_on_chunks_slices_or_feeding_order():
    table = _table()
    whole = rows_digest(table)
    assert rows_digest(_rechunked(table, [1, 9, 10, 30])) == whole
    assert rows_digest(table.combine_chunks()) == whole
    assert rows_digest(table.replace_schema_metadata({"note": "metadata is not a row"})) == whole
    for split in (1, 3, 8, 17, 36):  # offsets inside and across validity bytes
        digest = RowsDigest(table.schema)
        digest.update(table.slice(0, split))
        assert digest.hexdigest() == rows_digest(table.slice(0, split))
        digest.update(table.slice(split))
        assert digest.hexdigest() == whole
        assert rows_digest(pa.concat_tables([pa.table(table.slice(split).to_pydict(), schema=table.schema)]))\
            == rows_digest(table.slice(split))  # rebuilt from Python values: fresh buffers, offset 0
    assert rows_digest(pa.Table.from_pylist(table.to_pylist(), schema=table.schema)) == whole


def _with(table: pa.Table, name: str, row: int, value) -> pa.Table:
    values = table.column(name).to_pylist()
    values[row] = value
    return table.set_column(table.schema.get_field_index(name), table.schema.field(name),
                            pa.array(values, table.schema.field(name).type))


def test_any_change_to_a_row_changes_the_digest():
    table = _table()
    whole = rows_digest(table)
    vector = table.column("vector")[4].as_py()
    changed = {
        "a vector component by one float32 step": _with(table, "vector", 4, [*vector[:4], float(
            np.nextafter(np.float32(vector[4]), np.float32(np.inf)))]),
        "a null title for an empty one": _with(table, "title", 0, None),
        "an empty title for a null one": _with(table, "title", 3, ""),
        "a zero year for a null one": _with(table, "year", 5, 0),
        "a null vector": _with(table, "vector", 4, None),
        "a null vector one row later": _with(_with(table, "vector", 9, vector), "vector", 10, None),
        "a year": _with(table, "year", 0, 1996),
        "a null flag": _with(table, "has_image", 1, None),
        "a flag": _with(table, "has_image", 1, False),
        "a character between two strings": _with(_with(table, "date", 0, "2001-01-0"), "date", 1, "02001-01-01"),
        "the order of two rows": pa.concat_tables([table.slice(1, 1), table.slice(0, 1), table.slice(2)]),
        "a row fewer": table.slice(0, table.num_rows - 1),
    }
    digests = {what: rows_digest(t) for what, t in changed.items()}
    assert all(d != whole for d in digests.values()), [w for w, d in digests.items() if d == whole]
    assert len(set(digests.values())) == len(digests)
    assert rows_digest(table.cast(pa.schema([f.with_type(pa.int32()) if f.name == "year" else f
                                             for f in table.schema]))) != whole  # same values, other schema


def test_rows_of_another_schema_or_type_are_refused():
    digest = RowsDigest(_table().schema)
    with pytest.raises(ValueError, match="fed to the digest"):
        digest.update(_table().drop_columns(["body"]))
    with pytest.raises(TypeError, match="no canonical form"):
        rows_digest(pa.table({"when": pa.array([0], pa.date32())}))
