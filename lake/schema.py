"""Names and Arrow schemas of the lake's tables: the contract users query with DuckDB.

Changing a column here is a breaking change for users' SQL; bump ``SCHEMA_VERSION`` when you do.
"""

from __future__ import annotations

import pyarrow as pa

from lake.galaxy_schema import GALAXIES, GALAXY_MAPS

#: 2: versioned publishing (tables under versions/<run id>/, the live one named by the `current` link).
SCHEMA_VERSION = 2

#: The four vectors computed per entry (LanceDB table names, ``embedding`` values in other tables).
EMBEDDING_KINDS: tuple[str, ...] = ("title", "text", "image", "multimodal")

#: Pictures mapped into the text space (the alignment stage's output): what a text query searches to
#: find pictures, and what picture categories come from. Searchable, but not mapped or clustered.
ALIGNED_KIND = "aligned"

#: Every LanceDB vector table a lake may hold.
VECTOR_KINDS: tuple[str, ...] = (*EMBEDDING_KINDS, ALIGNED_KIND)

#: Parquet tables of the lake.
TABLES: tuple[str, ...] = ("entries", "categories", "projections", "clusters", "metrics", "objects", "anomalies",
                           "galaxies", "galaxy_maps")
#: Tables of the second collection (Galaxy Zoo 2); a lake built with ``--collection apod`` only has none.
GALAXY_TABLES: tuple[str, ...] = ("galaxies", "galaxy_maps")

#: 2-D/3-D maps computed for each embedding kind.
PROJECTION_METHODS: tuple[str, ...] = ("umap", "tsne", "umap3d")

#: An entry has an explanation when its text holds a character that is not whitespace (113 of the
#: bundled archive's do not). One RE2 pattern for pyarrow (the build's anomaly stage) and DuckDB (the
#: reader), so both draw the line alike, and alike with Python's ``str.strip`` (which the text embedding's
#: input goes through): RE2's ``\s`` alone misses the vertical tab, the no-break and other Unicode spaces.
EXPLANATION_TEXT = r"[^\s\v\x{1C}-\x{1F}\x{85}\p{Z}]"

ENTRIES = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("title", pa.string(), nullable=False),
        pa.field("explanation", pa.string(), nullable=False),
        pa.field("credit", pa.string()),  # "Picture Credit: …" text found in old pages
        pa.field("copyright", pa.string()),  # API copyright field (absent = NASA / public domain)
        pa.field("rights_note", pa.string()),  # e.g. "Original material … copyrighted to …" (1995-96)
        pa.field("url", pa.string()),
        pa.field("hdurl", pa.string()),
        pa.field("media_type", pa.string(), nullable=False),  # image | video | other
        pa.field("has_image", pa.bool_(), nullable=False),
        pa.field("image_path", pa.string()),  # relative to the lake root, e.g. thumbs/1995-06-16.jpg
        pa.field("image_width", pa.int32()),
        pa.field("image_height", pa.int32()),
        pa.field("image_sha1", pa.string()),
        pa.field("year", pa.int16(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # bundled | nasa | dump:<file name>
        pa.field("record_source", pa.string()),
        pa.field("content_sha1", pa.string(), nullable=False),
    ]
)

CATEGORIES = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("source", pa.string(), nullable=False),  # text | image
        pa.field("category", pa.string(), nullable=False),
        pa.field("confidence", pa.float32(), nullable=False),
        pa.field("top3_categories", pa.list_(pa.string()), nullable=False),
        pa.field("top3_scores", pa.list_(pa.float32()), nullable=False),
    ]
)

PROJECTIONS = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("embedding", pa.string(), nullable=False),
        pa.field("method", pa.string(), nullable=False),
        pa.field("x", pa.float32(), nullable=False),
        pa.field("y", pa.float32(), nullable=False),
        pa.field("z", pa.float32()),
    ]
)

CLUSTERS = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("embedding", pa.string(), nullable=False),
        pa.field("cluster", pa.int32(), nullable=False),
        pa.field("label", pa.string(), nullable=False),
    ]
)

METRICS = pa.schema(
    [
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("record", pa.string(), nullable=False),  # stage | sample
        pa.field("timestamp", pa.timestamp("ms", tz="UTC"), nullable=False),
        pa.field("process", pa.string(), nullable=False),  # the stage name
        pa.field("duration_seconds", pa.float64()),
        pa.field("items", pa.int64()),
        pa.field("items_per_second", pa.float64()),
        pa.field("peak_rss_bytes", pa.int64()),
        pa.field("cpu_percent", pa.float32()),
        pa.field("rss_bytes", pa.int64()),
        pa.field("gpu_name", pa.string()),
        pa.field("gpu_utilization_percent", pa.float32()),
        pa.field("gpu_memory_used_bytes", pa.int64()),
        pa.field("gpu_memory_total_bytes", pa.int64()),
    ]
)

OBJECTS = pa.schema(
    [
        pa.field("date", pa.date32(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("canonical_id", pa.string()),
        pa.field("ra_deg", pa.float64()),
        pa.field("dec_deg", pa.float64()),
        pa.field("object_type", pa.string()),
        pa.field("resolver", pa.string()),
        pa.field("field", pa.string()),  # title | explanation
        pa.field("span_start", pa.int32()),
        pa.field("span_end", pa.int32()),
        pa.field("is_primary", pa.bool_()),
        pa.field("size_deg", pa.float64()),  # catalogued major axis, degrees; null when unknown
    ]
)

#: Detectors of the anomaly stage (pipeline/anomaly.py): per embedding kind, then across modalities.
ANOMALY_DETECTORS: tuple[str, ...] = (
    *(f"{kind}_{method}" for kind in EMBEDDING_KINDS for method in ("knn", "lof", "iforest")),
    "picture_vs_text_neighbours", "text_vs_picture_neighbours", "caption_mismatch", "cross_modal",
)

ANOMALIES = pa.schema(
    [pa.field("date", pa.date32(), nullable=False), pa.field("has_picture", pa.bool_(), nullable=False)]
    + [pa.field(name, pa.float64()) for name in ANOMALY_DETECTORS]  # higher = odder; null = not applicable
    + [pa.field("combined", pa.float64(), nullable=False), pa.field("rank", pa.int32(), nullable=False)]
)

SCHEMAS: dict[str, pa.Schema] = {
    "entries": ENTRIES,
    "categories": CATEGORIES,
    "projections": PROJECTIONS,
    "clusters": CLUSTERS,
    "metrics": METRICS,
    "objects": OBJECTS,
    "anomalies": ANOMALIES,
    "galaxies": GALAXIES,
    "galaxy_maps": GALAXY_MAPS,
}


#: Version of the LanceDB tables' layout; a build rewrites tables made under another version.
VECTOR_TABLES_VERSION = 2

#: The vector table whose ``body`` (title + explanation) carries the full-text (BM25) index.
KEYWORD_KIND = "text"


def vector_schema(dim: int, *, with_body: bool = False) -> pa.Schema:
    """Schema of a LanceDB vector table: the key, the vector and the columns search filters use."""
    fields = [
        pa.field("date", pa.string(), nullable=False),  # ISO date, the key shared with Parquet
        pa.field("vector", pa.list_(pa.float32(), dim), nullable=False),
        pa.field("title", pa.string()),
        pa.field("year", pa.int16()),
        pa.field("category", pa.string()),
        pa.field("has_image", pa.bool_()),
    ]
    if with_body:
        fields.append(pa.field("body", pa.string()))
    return pa.schema(fields)


def conform(table: pa.Table, name: str) -> pa.Table:
    """Cast ``table`` to the contract schema of ``name`` so a wrong column type fails at write time."""
    schema = SCHEMAS[name]
    missing = [f.name for f in schema if f.name not in table.column_names]
    if missing:
        raise ValueError(f"table {name!r} lacks columns {missing}")
    return table.select(schema.names).cast(schema)
