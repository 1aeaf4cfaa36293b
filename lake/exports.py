"""Downloads of query results: one table as CSV or Parquet bytes, with its licence.

The Map and Galaxies pages and the JSON API all hand people tables to take away. Writing them in one
place keeps the files alike wherever they come from: the same columns, and a Parquet file that carries
its licence note in the schema metadata (``licence``) as well as in a ``licence_note`` column, so the
terms travel with the data even when the column is dropped.
"""

from __future__ import annotations

import io

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

#: Rows a download made on request holds at most (the API's list, cluster and marks exports, the
#: Oddities page's): a bound on what one request costs; the CLI writes whole lists.
MAX_EXPORT_ROWS = 20_000

#: Formats :func:`table_bytes` writes, with their MIME types.
MIME_TYPES = {"csv": "text/csv; charset=utf-8", "parquet": "application/vnd.apache.parquet"}


def with_licence(df: pd.DataFrame, licence: str | None) -> pd.DataFrame:
    """``df`` with a ``licence_note`` column (the lake's own exports, e.g. cluster members, have one)."""
    return df if licence is None or "licence_note" in df else df.assign(licence_note=licence)


#: What a spreadsheet reads as the start of a formula in a CSV cell (OWASP, "CSV injection").
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert_for_spreadsheets(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with every text cell that a spreadsheet would run as a formula prefixed by ``'``.

    Some cells come from people (a feedback label's user name is whatever the sender typed), and a CSV
    opened in a spreadsheet runs ``=HYPERLINK(…)`` in them. Parquet and JSON keep the text as it is."""
    text = [c for c in df.columns if df[c].dtype == object or pd.api.types.is_string_dtype(df[c].dtype)]
    if not text:
        return df
    out = df.copy()
    for c in text:
        cells = out[c]
        risky = cells.map(lambda v: isinstance(v, str) and v.startswith(FORMULA_STARTS))
        if risky.any():
            out[c] = cells.where(~risky, "'" + cells.astype(str))
    return out


def table_bytes(df: pd.DataFrame, *, fmt: str, licence: str | None = None) -> tuple[bytes, str]:
    """(file contents, MIME type) of ``df`` as ``fmt`` (``csv`` or ``parquet``); with ``licence``, the
    ``licence`` schema metadata (Parquet) and a ``licence_note`` column where ``df`` has none yet."""
    if fmt not in MIME_TYPES:
        raise ValueError(f"format must be one of {', '.join(MIME_TYPES)}")
    df = with_licence(df, licence)
    if fmt == "csv":
        return inert_for_spreadsheets(df).to_csv(index=False).encode(), MIME_TYPES[fmt]
    table = pa.Table.from_pandas(df, preserve_index=False)
    if licence is not None:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"licence": licence.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue(), MIME_TYPES[fmt]
