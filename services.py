"""The web app's handles on its lake: queries, search, and the query encoder.

One :class:`LakeService` per app (made by ``app.create_app``, kept in the Flask app's extensions).
It pins one published version of the lake at a time and reopens when the build publishes a new one
(one ``readlink`` per call of :meth:`LakeService.atlas` / :meth:`LakeService.engine` decides), so a
running server picks up rebuilt lakes; each handle it returns reads one build (a request that asks twice
while a build publishes may get the new one the second time). Query encoders are kept by fingerprint across versions: a rebuild with the same
model does not pay the model load again, and :meth:`LakeService.warm` loads it before the first search.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any, Final

from flask import current_app

import pandas as pd

from atlas.encoders import Encoder, EncoderUnavailable, encoder_from_manifest
from atlas.userstate import FeedbackStore, FeedbackUnavailable, default_path
from atlas.sky.resolve import position_of
from lake.layout import LakeLayout
from lake.filters import Filters
from lake.galaxies import GalaxyQueries
from lake.manifest import LakeMissingError
from lake.oddities import ranked
from lake.queries import AtlasQueries
from lake.reader import LakeReader
from lake.remote import RemoteLake
from lake.search import SearchEngine, SearchUnavailable

log = logging.getLogger(__name__)
#: Longest object name a cone search resolves (the longest catalogue names are a few dozen characters).
MAX_OBJECT_NAME_CHARS = 200
#: A query encoder that failed to load is tried again after this long (each try may take seconds).
ENCODER_RETRY_SECONDS = 60.0

EXTENSION = "cosmic_atlas"


class LakeService:
    """Read-side access to one lake for every request of one process (thread-safe)."""

    def __init__(self, layout: LakeLayout) -> None:
        self.layout = layout
        self._remote = RemoteLake.of(layout)  # a lake on object storage: served from its working copy
        self._lock = threading.Lock()
        self._version: str | None = None
        self._atlas: AtlasQueries | None = None
        self._engine: SearchEngine | None = None
        self._galaxies: GalaxyQueries | None = None
        self._encoders: dict[str, Encoder] = {}
        self._encoder_lock = threading.Lock()  # loading takes seconds: not under the lock every request takes
        self._encoder_failed: dict[str, float] = {}  # fingerprint → when it failed; retried after a while
        self._feedback: FeedbackStore | None = None
        self._warmers: list[Callable[[], None]] = []

    def add_warmer(self, warm: Callable[[], None]) -> None:
        """Something else to prepare in :meth:`warm` (the app registers its pages' default views)."""
        self._warmers.append(warm)

    def _encoder_for(self, info: dict[str, Any]) -> Encoder:
        """The lake's query encoder, loaded once (under its own lock: the requests that need no encoder
        go on meanwhile). One that does not load here is a :class:`lake.search.SearchUnavailable`, and
        is not tried again for :data:`ENCODER_RETRY_SECONDS` (each try may take seconds)."""
        key = str(info.get("fingerprint"))
        with self._encoder_lock:
            if key in self._encoders:
                return self._encoders[key]
            failed = self._encoder_failed.get(key)
            if failed is None or time.monotonic() - failed > ENCODER_RETRY_SECONDS:
                try:
                    self._encoders[key] = encoder_from_manifest(info, trace_dir=self.layout.model_cache,
                                                                allow_download=False)
                    self._encoder_failed.pop(key, None)
                    return self._encoders[key]
                except EncoderUnavailable as exc:
                    log.error("the lake's encoder does not load on this server: %s", exc)
                    self._encoder_failed[key] = time.monotonic()
                except Exception:  # noqa: BLE001 (torch, a model file, a manifest: every cause is a 503 here)
                    log.exception("the lake's encoder failed to load on this server")
                    self._encoder_failed[key] = time.monotonic()
        raise SearchUnavailable("search by meaning is unavailable on this server: the encoder this lake was built "
                                "with does not load here (the server log says why). Rebuild the lake with the "
                                "packages installed here, or install the lake's models.")

    def _open(self) -> tuple[AtlasQueries, SearchEngine]:
        version = self._remote.pull_if_stale() if self._remote else self.layout.current_version()
        if version is None:
            LakeReader(self.layout)  # raises LakeMissingError with the reason (none built, or too old)
        with self._lock:
            if version != self._version or self._atlas is None:
                reader = LakeReader(replace(self.layout, version=version))
                self._atlas, self._engine = AtlasQueries(reader), SearchEngine(reader, self._encoder_for)
                self._galaxies = GalaxyQueries(reader, self._encoder_for)
                self._version = version
                log.info("serving lake %s version %s", self.layout.location, version)
            return self._atlas, self._engine  # type: ignore[return-value]

    @property
    def version(self) -> str | None:
        return self._version

    def atlas(self) -> AtlasQueries:
        return self._open()[0]

    def engine(self) -> SearchEngine:
        return self._open()[1]

    def galaxies(self) -> GalaxyQueries:
        """The lake's Galaxy Zoo collection (same pinned version as the rest of the request)."""
        self._open()
        with self._lock:
            return self._galaxies  # type: ignore[return-value]

    def feedback(self) -> FeedbackStore:
        """People's labels for this lake (outside the lake: they survive rebuilds)."""
        with self._lock:
            if self._feedback is None:
                self._feedback = FeedbackStore(default_path(self.layout.root))
            return self._feedback

    def oddities(self, *, filters: Filters | None = None, detector: str = "combined",
                 user: str | None = None) -> pd.DataFrame:
        """The ranked oddities list: the detector's order, re-ranked by this person's labels. Without
        ``why`` (word the rows you show with :func:`lake.oddities.reason`)."""
        atlas = self.atlas()
        try:
            labels = self.feedback().labels(user=user)
        except FeedbackUnavailable as exc:  # the detectors' own order still answers; storing labels says why not
            log.warning("oddities without feedback: %s", exc)
            labels = {}
        return ranked(atlas.anomaly_scores(filters), labels, detector=detector,
                      pct=atlas.anomaly_percentiles(), words=False)

    def locate(self, name: str) -> tuple[float, float] | None:
        """RA/Dec of a typed object name: the offline catalogues first, then the positions the lake's
        build found (online resolution included). The web app never asks the network at request time."""
        return position_of(name) or self.atlas().object_position(name)

    def warm(self) -> None:
        """Open the lake and load its query encoders now, so the first search (and the first galaxy
        upload) is as fast as the rest; then the registered warmers (the pages' default views). A step
        that fails is logged and skipped: warming up must never stop a worker from serving."""
        def galaxies() -> None:
            g = self.galaxies()
            if g.has_pictures:
                g.warm()

        def search() -> None:
            if not self.atlas().has_entries:  # a Galaxy-Zoo-only lake: no text search to warm
                return
            engine = self.engine()
            _ = engine.encoder
            for query in WARM_QUERIES:
                engine.search(query, k=10)
            engine.preload()

        for step in (galaxies, search, *self._warmers):
            try:
                step()
            except LakeMissingError as exc:
                log.warning("%s", exc)
                return
            except Exception:
                log.warning("warm-up step %s failed; serving without it", getattr(step, "__name__", step),
                            exc_info=True)


#: Searches of the worker's warm-up. One is not enough: the full-text index answers its first few
#: queries more slowly, whatever their words (in-process on the archive, the first search after one
#: warm-up query took 15.4–16.6 ms in four starts, after these five 10.2–14.9 ms; warm ≈ 9–10 ms).
WARM_QUERIES: Final = ("galaxy", "planetary nebula", "comet tail over the mountains", "total solar eclipse",
                       "aurora and the milky way")

#: torch threads of a serving process once warm: its model calls are single queries and single pictures,
#: too small to split, and a second thread mostly waits and competes with LanceDB's full-text threads
#: (in-process on 2 cores, hybrid search 18–20 ms median against 34–43 ms with torch's default of 2; over
#: HTTP the difference was within bench/search_latency.py's run-to-run noise). The warm-up (model
#: loading) keeps the default.
SERVING_TORCH_THREADS = 1


def prepare_worker(service: LakeService) -> None:
    """What a serving process does once, before its first request (gunicorn.conf.py, ``python app.py``):
    the warm-up (:meth:`LakeService.warm`); torch's threads for single requests; then everything the
    warm-up made (≈ 740,000 objects on the archive: models, cached views) moved out of the garbage
    collector's reach: a full collection walks every tracked object, a ≈ 0.4 s pause on 2 cores of
    whatever request triggered it (the slowest callbacks of bench/dashboard.py)."""
    import gc

    from atlas.device import set_threads

    service.warm()
    set_threads(SERVING_TORCH_THREADS)
    gc.collect()
    gc.freeze()


def current() -> LakeService:
    """The service of the app handling this request."""
    return current_app.extensions[EXTENSION]


def atlas() -> AtlasQueries:
    return current().atlas()


def engine() -> SearchEngine:
    return current().engine()


def locate(name: str) -> tuple[float, float] | None:
    """:meth:`LakeService.locate` for a name a person typed: one longer than :data:`MAX_OBJECT_NAME_CHARS`
    is refused (ValueError), before any lake is opened: the name scanner's time grows faster than the
    text (≈ 1.4 s at 100,000 characters), and a request may carry megabytes."""
    if len(name) > MAX_OBJECT_NAME_CHARS:
        raise ValueError(f"an object name is at most {MAX_OBJECT_NAME_CHARS} characters; this one has {len(name):,}")
    return current().locate(name)


def galaxies() -> GalaxyQueries:
    return current().galaxies()


def lake_layout() -> LakeLayout:
    return current().layout


def feedback() -> FeedbackStore:
    return current().feedback()


def oddities(**kwargs: Any) -> pd.DataFrame:
    return current().oddities(**kwargs)
