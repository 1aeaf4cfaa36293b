"""Write a synthetic lake of N entries (default 1,000,000) for scale tests of the dashboard.

Real schema, fake content: entries with generated titles, a clustered 2-D "text/umap" map, text
categories and clusters. Only the tables the Map page reads are filled; vectors are not written.

Usage: python bench/synthetic_lake.py OUT_DIR [--n 1000000]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lake.layout import LakeLayout  # noqa: E402
from lake.writer import LakeWriter  # noqa: E402
from pipeline.taxonomy import DEFAULT  # noqa: E402


def write_synthetic_lake(out: Path, *, n: int, seed: int = 0) -> LakeLayout:
    """Publish a synthetic lake of ``n`` entries at ``out`` (also used by the map-callback tests)."""
    layout = LakeLayout.at(out)
    rng = np.random.default_rng(seed)
    base = np.datetime64("1000-01-01")
    dates = (base + np.arange(n).astype("timedelta64[D]")).astype("datetime64[D]")
    names = list(DEFAULT)
    cat_idx = rng.integers(0, len(names), n)
    centres = rng.normal(size=(len(names), 2)) * 12
    xy = centres[cat_idx] + rng.normal(size=(n, 2)) * 2.5
    date_arr = pa.array(dates, pa.date32())
    years = dates.astype("datetime64[Y]").astype(int) + 1970
    titles = pa.array([f"Synthetic entry {i}" for i in range(n)])
    entries = pa.table({
        "date": date_arr, "title": titles, "explanation": pa.array([""] * n), "credit": pa.nulls(n, pa.string()),
        "copyright": pa.nulls(n, pa.string()), "rights_note": pa.nulls(n, pa.string()), "url": pa.nulls(n, pa.string()),
        "hdurl": pa.nulls(n, pa.string()), "media_type": pa.array(["other"] * n), "has_image": pa.array(np.zeros(n, bool)),
        "image_path": pa.nulls(n, pa.string()), "image_width": pa.nulls(n, pa.int32()),
        "image_height": pa.nulls(n, pa.int32()), "image_sha1": pa.nulls(n, pa.string()), "year": pa.array(years, pa.int16()),
        "source": pa.array(["synthetic"] * n), "record_source": pa.nulls(n, pa.string()),
        "content_sha1": pa.array(["0"] * n),
    })
    cats = pa.table({
        "date": date_arr, "source": pa.array(["text"] * n), "category": pa.array(np.array(names)[cat_idx]),
        "confidence": pa.array(rng.uniform(0.2, 1.0, n).astype(np.float32)),
        "top3_categories": pa.array([[names[i]] * 3 for i in cat_idx[:1]] * n),
        "top3_scores": pa.array([[1.0, 0.0, 0.0]] * n, pa.list_(pa.float32())),
    })
    proj = pa.table({"date": date_arr, "embedding": pa.array(["text"] * n), "method": pa.array(["umap"] * n),
                     "x": pa.array(xy[:, 0].astype(np.float32)), "y": pa.array(xy[:, 1].astype(np.float32)),
                     "z": pa.nulls(n, pa.float32())})
    clusters = pa.table({"date": date_arr, "embedding": pa.array(["text"] * n), "cluster": pa.array(cat_idx.astype(np.int32)),
                         "label": pa.array([f"{names[i]}: synthetic" for i in cat_idx])})
    tables = {"entries": entries, "categories": cats, "projections": proj, "clusters": clusters}
    LakeWriter(layout).publish_tables(tables, {
        "built_at": dt.datetime.now(dt.timezone.utc).isoformat(), "synthetic": True,
        "taxonomy": {"categories": names}, "counts": {"entries": n}, "encoder": {},
        "projection": {"mode": "fitted", "fit": {"entries": n, "run_id": f"synthetic-{n}-{seed}"}}}, version=f"synthetic-{n}")
    return layout


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    layout = write_synthetic_lake(args.out, n=args.n)
    print(f"wrote a synthetic lake of {args.n:,} entries to {layout.root}")


if __name__ == "__main__":
    main()
