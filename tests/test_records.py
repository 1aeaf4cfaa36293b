"""lake.records: the one NaN → None (and numpy → Python) clean-up for rows shown or sent as JSON."""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pandas as pd
import pytest

from lake.records import json_value, records


def test_missing_values_become_none_and_numpy_becomes_python():
    df = pd.DataFrame({"a": [1.5, np.nan], "b": ["x", None], "c": [np.array([1.0, np.nan]), np.array([])],
                       "d": [True, False], "e": pd.array([1, None], dtype="Int64"),
                       "t": [pd.Timestamp("2014-01-02"), pd.NaT]})
    rows = records(df)
    assert rows == [{"a": 1.5, "b": "x", "c": [1.0, None], "d": True, "e": 1, "t": "2014-01-02T00:00:00"},
                    {"a": None, "b": None, "c": [], "d": False, "e": None, "t": None}]
    assert type(rows[0]["d"]) is bool and type(rows[0]["e"]) is int
    json.dumps(rows, allow_nan=False)


def test_scalars():
    assert json_value(np.float32(np.nan)) is None and json_value(float("inf")) is None
    assert json_value(np.int16(3)) == 3 and json_value(dt.date(2014, 1, 2)) == "2014-01-02"
    assert json_value("NaN") == "NaN"  # text is text


def test_exports_carry_their_licence_in_csv_and_parquet():
    import io

    import pyarrow.parquet as pq

    from lake.exports import table_bytes

    df = pd.DataFrame({"date": ["2014-01-07"], "title": ["M7: Open Star Cluster"]})
    csv, mime = table_bytes(df, fmt="csv", licence="terms: see apod.nasa.gov")
    assert mime.startswith("text/csv")
    assert pd.read_csv(io.BytesIO(csv)).licence_note.tolist() == ["terms: see apod.nasa.gov"]
    parquet, mime = table_bytes(df, fmt="parquet", licence="terms: see apod.nasa.gov")
    table = pq.read_table(io.BytesIO(parquet))
    assert mime == "application/vnd.apache.parquet" and table.schema.metadata[b"licence"] == b"terms: see apod.nasa.gov"
    assert table.column("title").to_pylist() == ["M7: Open Star Cluster"] and "licence_note" not in df
    plain, _ = table_bytes(df, fmt="csv")
    assert "licence_note" not in plain.decode()
    with pytest.raises(ValueError, match="format must be one of csv, parquet"):
        table_bytes(df, fmt="xlsx")
