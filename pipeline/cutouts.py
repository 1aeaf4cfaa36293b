"""Galaxy pictures for users with internet: cutouts from a public survey service, cached in the lake.

Default service: SDSS SkyServer DR18 ``ImgCutout/getjpeg`` (gri colour JPEGs, the same survey the GZ2
volunteers saw). Every galaxy gets the same angular scale (``scale`` arcsec per pixel × ``size``
pixels), so sizes in the pictures compare across the catalogue. Which service made each cutout is
recorded (``cache/cutout_sources.json``): a fetch from another service, or at another scale, replaces
the cutouts it did not make (one at a time: a galaxy keeps its old picture until the new one is in). Downloads go through
:class:`pipeline.fetch.PoliteFetcher` (≤ 4 at once, timeouts, retries with backoff, ``Retry-After``
honoured, byte cap, content-type check); every body is decoded under the picture limits (corrupt files
and decompression bombs are refused) and stored as ``cutouts/gz2/<objid>.jpg`` beside the versions, so
an interrupted fetch resumes with the galaxies still missing and a rebuild never downloads twice.
``--offline`` never calls this module.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from urllib.parse import urlencode

from atlas.environment import SDSS_CUTOUT_URL
from atlas.hashing import sha1_text
from atlas.images import ImageLimits, ImageRejected, decode_image
from lake import atomic
from lake.layout import LakeLayout
from pipeline.fetch import PoliteFetcher

log = logging.getLogger(__name__)

#: Arcseconds per pixel and pixels per side: 0.3″ × 160 px = a 48″ field, enough for Stripe 82 galaxies.
CUTOUT_SCALE = 0.3
CUTOUT_SIZE = 160


@dataclass(frozen=True)
class CutoutService:
    """Where cutouts come from: ``base_url`` answers ``?ra=&dec=&scale=&width=&height=`` with a JPEG."""

    base_url: str = SDSS_CUTOUT_URL
    scale: float = CUTOUT_SCALE
    size: int = CUTOUT_SIZE

    @property
    def key(self) -> str:
        """What a cutout from this service is recorded as having come from."""
        return f"{self.base_url}?scale={self.scale:g}&size={self.size}"

    def url(self, ra: float, dec: float) -> str:
        query = {"ra": f"{ra:.6f}", "dec": f"{dec:.6f}", "scale": f"{self.scale:g}",
                 "width": self.size, "height": self.size}
        return f"{self.base_url}?{urlencode(query)}"


@dataclass
class CutoutReport:
    fetched: int = 0
    present: int = 0
    replaced: int = 0  # of ``fetched``: cutouts another service had made
    failed: Counter = field(default_factory=Counter)
    #: every cutout in the lake after the fetch → the service that made it (:func:`cutout_sources`), so
    #: the stage need not list the folder again
    sources: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"fetched": self.fetched, "already_present": self.present, "replaced": self.replaced,
                "failed": dict(self.failed)}


def cutout_sources(layout: LakeLayout) -> dict[str, str]:
    """objid → :attr:`CutoutService.key` of the service that made its cutout. A cutout fetched before
    sources were recorded counts as the default service's (the only one a build used without
    ``GZ2_CUTOUT_URL``)."""
    try:
        recorded = json.loads(layout.cutout_sources.read_text()) if layout.cutout_sources.is_file() else {}
    except (OSError, ValueError) as exc:
        log.warning("%s unreadable (%s): its cutouts count as the default service's", layout.cutout_sources, exc)
        recorded = {}
    default = CutoutService().key
    present = (p.stem for p in layout.cutouts.glob("*.jpg")) if layout.cutouts.is_dir() else ()
    return {objid: recorded.get(objid, default) if isinstance(recorded, dict) else default for objid in present}


def fetch_cutouts(
    galaxies: Sequence[tuple[str, float, float]],
    layout: LakeLayout,
    *,
    service: CutoutService,
    fetcher: PoliteFetcher,
    limits: ImageLimits,
    limit: int | None = None,
    progress: bool = False,
) -> CutoutReport:
    """Fetch the cutout of every ``(objid, ra, dec)`` not in the lake yet (of the first ``limit`` of them,
    in order: ``--cutout-limit`` counts the galaxies still to fetch, so that each build with it fetches
    the next part rather than none once the first part is there); failures are counted, not raised."""
    report = CutoutReport()
    sources, lock = cutout_sources(layout), threading.Lock()
    todo = []
    for objid, ra, dec in galaxies:
        if sources.get(objid) == service.key:
            report.present += 1
        else:
            todo.append((objid, ra, dec))
    todo = todo[:limit]
    replacing = {objid for objid, _, _ in todo if objid in sources}
    stored = 0

    def store(item: tuple[str, float, float]) -> None:
        nonlocal stored
        objid, ra, dec = item
        url = service.url(ra, dec)
        body = fetcher.fetch(url)
        try:
            img = decode_image(body, limits)
            if img.width < 8 or img.height < 8:
                raise ImageRejected(f"cutout is only {img.width}x{img.height} pixels")
            if (img.width, img.height) != (service.size, service.size):
                img = img.resize((service.size, service.size))
            atomic.write_with(layout.cutout(objid), lambda p: img.save(p, format="JPEG", quality=90))
        finally:  # the decoded cutout is the copy we keep; a bad body must not be served from cache
            (fetcher.cache_dir / sha1_text(url)).unlink(missing_ok=True)
        with lock:
            sources[objid], stored = service.key, stored + 1
            if objid in replacing:
                report.replaced += 1
            if stored % 100 == 0:  # an interrupted fetch keeps the record of what it stored
                atomic.write_json(layout.cutout_sources, dict(sources))

    try:
        report.fetched, report.failed = fetcher.each(todo, store, desc="fetch galaxy cutouts", unit="galaxy",
                                                     progress=progress)
    finally:
        with lock:
            atomic.write_json(layout.cutout_sources, dict(sources))
            report.sources = dict(sources)
    log.info("cutouts: %d fetched (%d replacing another service's), %d already in the lake, %d failed %s",
             report.fetched, report.replaced, report.present, sum(report.failed.values()), dict(report.failed))
    return report
