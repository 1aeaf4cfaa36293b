"""The Cosmic Atlas data lake: the one place that knows its layout, schema and how to read/write it.

The pipeline writes through :mod:`lake.writer`; the dashboard and the search API read through
:mod:`lake.reader`. Both resolve file names with :class:`lake.layout.LakeLayout`.
"""

from lake.layout import LakeLayout, default_lake_dir
from lake.schema import EMBEDDING_KINDS, TABLES

__all__ = ["LakeLayout", "default_lake_dir", "EMBEDDING_KINDS", "TABLES"]
