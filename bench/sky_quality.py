"""Object extraction + offline resolution against the 2014 check set (Stuart Lowe's LookUP parse of
2014 APODs, tests/data/apod_2014_objects_slowe.csv): recall of reference objects that have RA/Dec,
precision of our resolved positions, and position agreement (a match is within 0.1°).

Usage: python bench/sky_quality.py
"""

from __future__ import annotations

import datetime as dt
import math
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import save  # noqa: E402
from pipeline.config import BUNDLED_ARCHIVE  # noqa: E402
from pipeline.ingest import normalise  # noqa: E402
from pipeline.sky.gazetteer import default  # noqa: E402
from pipeline.sky.resolve import objects_for  # noqa: E402

CHECK = ROOT / "tests" / "data" / "apod_2014_objects_slowe.csv"


def separation(ra1: float, dec1: float, ra2: float, dec2: float) -> float:
    r1, d1, r2, d2 = map(math.radians, (ra1, dec1, ra2, dec2))
    c = math.sin(d1) * math.sin(d2) + math.cos(d1) * math.cos(d2) * math.cos(r1 - r2)
    return math.degrees(math.acos(max(-1.0, min(1.0, c))))


def evaluate(tolerance: float = 0.1) -> dict:
    ref = pd.read_csv(CHECK)
    ref = ref[ref.ra_deg.notna()]
    archive = pd.read_parquet(BUNDLED_ARCHIVE)
    archive = archive[archive.date.astype(str).isin(set(ref.date))]
    g = default()
    predicted: dict[str, list] = {}
    for rec in archive.to_dict("records"):
        row, _ = normalise(rec, "bundled", dt.date.today())
        objs = objects_for(row["title"], row["explanation"], g) if row else []
        predicted[str(rec["date"])] = [o for o in objs if o.ra_deg is not None]
    hits = 0
    for r in ref.itertuples():
        if any(separation(r.ra_deg, r.dec_deg, o.ra_deg, o.dec_deg) <= tolerance for o in predicted.get(r.date, [])):
            hits += 1
    ours = [(d, o) for d, objs in predicted.items() for o in objs]
    refs_by_date = {d: grp for d, grp in ref.groupby("date")}
    correct = sum(1 for d, o in ours if d in refs_by_date and any(
        separation(o.ra_deg, o.dec_deg, r.ra_deg, r.dec_deg) <= tolerance for r in refs_by_date[d].itertuples()))
    return {"reference_objects_with_radec": len(ref), "recalled": hits, "recall": round(hits / len(ref), 3),
            "resolved_objects": len(ours), "matching_reference": correct,
            "precision": round(correct / max(len(ours), 1), 3), "tolerance_deg": tolerance}


def main() -> None:
    result = {"strict_0.1deg": evaluate(0.1), "extended_0.5deg": evaluate(0.5),
              "targets": {"recall": 0.8, "precision": 0.9, "tolerance_deg": 0.1}, "resolver": "offline (OpenNGC)"}
    print(result)
    save("sky_quality", result)


if __name__ == "__main__":
    main()
