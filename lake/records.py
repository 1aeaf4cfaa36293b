"""Query results as plain, JSON-safe Python values: the one place that turns pandas' missing values
(NaN, NaT, NA) into ``None`` and numpy scalars and arrays into Python ones.

Why here: DuckDB hands back NULL floats as NaN and list columns as numpy arrays. ``NaN`` is not JSON
(Flask would write an invalid document), ``NaN == NaN`` is false, and ``np.float32`` is not
serialisable, so every caller that shows or sends a row needs the same clean-up; it is written once.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd


def json_value(value: Any) -> Any:
    """``value`` as a JSON-safe Python value; missing values (NaN, NaT, NA, None) become ``None``."""
    if value is None or value is pd.NaT or value is pd.NA:
        return None
    if isinstance(value, np.ndarray):
        return [json_value(v) for v in value.tolist()]
    if isinstance(value, (list, tuple)):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, (dt.date, dt.datetime)):
        return value.isoformat()
    return value


def record(row: Mapping[str, Any]) -> dict[str, Any]:
    """One row (a mapping of column to value) with JSON-safe values."""
    return {k: json_value(v) for k, v in row.items()}


def records(df: pd.DataFrame) -> list[dict[str, Any]]:
    """The rows of ``df`` as dicts with JSON-safe values, in order."""
    return [record(row) for row in df.to_dict("records")]
