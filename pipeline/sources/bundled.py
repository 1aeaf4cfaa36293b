"""The APOD archive shipped in ``data/apod`` (metadata for all entries + public-domain thumbnails)."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq

from atlas.hashing import sha1_file
from pipeline.sources import RawBatch, SourceError


def load(archive: Path, images_dir: Path) -> RawBatch:
    if not archive.is_file():
        raise SourceError(
            f"bundled archive {archive} is missing; this checkout is incomplete (git checkout data/)"
        )
    table = pq.read_table(archive)
    records = table.to_pylist()
    images = {p.stem: p for p in images_dir.glob("*.jpg")} if images_dir.is_dir() else {}
    for rec in records:
        day = rec["date"].isoformat() if rec.get("date") is not None else None
        if day in images:
            rec["image_file"] = str(images[day])
    return RawBatch(
        source="bundled",
        records=records,
        fingerprint=sha1_file(archive),
        notes={"archive": archive.name, "images": len(images)},
    )
