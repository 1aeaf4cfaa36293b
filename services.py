"""The web app's handles on its lake: queries, search, and the query encoder.

One :class:`LakeService` per app (made by ``app.create_app``, kept in the Flask app's extensions).
It pins one published version of the lake at a time and reopens when the build publishes a new one
(one ``readlink`` per request decides), so a running server picks up rebuilt lakes. Everything one
request reads comes from one build: the first handle it asks for is kept for the rest of the request
(``flask.g``), so a view cached under a version was made from that version, and a request that asks
twice while a build publishes does not mix two builds. A serving process (one that ran :meth:`LakeService.warm`)
warms a new version in the background as soon as it sees it; query encoders are kept by fingerprint
across that switch (a rebuild with the same model does not pay the model load again) and the ones the
new version does not use are let go once it is warm.
"""

from __future__ import annotations

import functools
import gc
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, Final

from flask import current_app, g, has_request_context

import pandas as pd

from atlas.encoders import Encoder, EncoderUnavailable, encoder_from_manifest
from atlas.userstate import FeedbackStore, FeedbackUnavailable, default_path
from atlas.sky.resolve import position_of
from lake.layout import LakeLayout
from lake.filters import Filters, iso_day
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
#: Seconds before a labels' store that failed to open is tried again (each try may wait on the database).
FEEDBACK_RETRY_SECONDS = 30.0

EXTENSION = "cosmic_atlas"
#: Where a request keeps the lake version it reads (``flask.g``).
REQUEST_PIN = "cosmic_atlas_lake"


@dataclass(frozen=True)
class LakeHandles:
    """One published version's query objects: what a request reads, all of one build."""

    version: str
    atlas: AtlasQueries
    engine: SearchEngine
    galaxies: GalaxyQueries


class LakeService:
    """Read-side access to one lake for every request of one process (thread-safe)."""

    def __init__(self, layout: LakeLayout) -> None:
        self.layout = layout
        self._remote = RemoteLake.of(layout)  # a lake on object storage: served from its working copy
        self._lock = threading.Lock()
        self._handles: LakeHandles | None = None
        self._encoders: dict[str, Encoder] = {}  # the served version's (see _encoder_for)
        self._encoders_before: dict[str, Encoder] = {}  # the version before's: taken over, or let go once warm
        self._encoders_version: str | None = None  # the version whose encoders are in _encoders
        self._warming = threading.local()  # the handles warm() reads, pinned for its whole run
        self._encoder_lock = threading.Lock()  # loading takes seconds: not under the lock every request takes
        self._encoder_failed: dict[str, float] = {}  # fingerprint → when it failed; retried after a while
        self._feedback: FeedbackStore | None = None
        self._feedback_for: str | None = None  # the lake id the store was opened for
        self._feedback_lock = threading.Lock()  # opening may wait on the database: not the requests' lock
        self._feedback_failed: tuple[float, FeedbackUnavailable] | None = None  # when, and why
        self._warmers: list[Callable[[], None]] = []
        self._serving = False  # warm() ran: this process serves, and warms each new version as it comes
        self._rewarm_lock = threading.Lock()  # one background warm-up at a time
        self._rewarmer: threading.Thread | None = None  # the last one started

    def add_warmer(self, warm: Callable[[], None]) -> None:
        """Something else to prepare in :meth:`warm` (the app registers its pages' default views)."""
        self._warmers.append(warm)

    def _encoder_for(self, info: dict[str, Any], *, version: str) -> Encoder:
        """The query encoder ``version``'s handles ask for (each version gets this bound to its name),
        loaded once (under its own lock: the requests that need no encoder go on meanwhile). One that
        does not load here is a :class:`lake.search.SearchUnavailable`, and is not tried again for
        :data:`ENCODER_RETRY_SECONDS` (each try may take seconds).

        Encoders are kept per generation: those of the version served (``_encoders``) and of the one
        before (``_encoders_before``, taken over by fingerprint, let go once the new version is warm). A
        request still reading an older version is served from either without moving anything, or from a
        model loaded for it alone: it must not bring the old model back into the new version's set."""
        key = str(info.get("fingerprint"))
        serving = self._handles.version if self._handles else None
        with self._encoder_lock:
            if version == serving:
                self._rotate_encoders(version)
            if version != self._encoders_version:  # a request on an older version, finishing
                kept = self._encoders.get(key) or self._encoders_before.get(key)
                if kept is not None:
                    return kept
            elif key in self._encoders:
                return self._encoders[key]
            elif key in self._encoders_before:  # a new version built with the same model
                self._encoders[key] = self._encoders_before.pop(key)
                return self._encoders[key]
            else:
                return self._load_encoder(info, key, keep=True)
        return self._load_encoder(info, key, keep=False)  # outside the lock: the served version's go on

    def _load_encoder(self, info: dict[str, Any], key: str, *, keep: bool) -> Encoder:
        """Load one encoder; ``keep``: into the served version's set (the caller then holds the encoder lock;
        without, a model for a request on an older version alone, loaded outside it)."""
        failed = self._encoder_failed.get(key)
        if failed is None or time.monotonic() - failed > ENCODER_RETRY_SECONDS:
            try:
                encoder = encoder_from_manifest(info, trace_dir=self.layout.model_cache, allow_download=False)
                self._encoder_failed.pop(key, None)
                if keep:
                    self._encoders[key] = encoder
                return encoder
            except EncoderUnavailable as exc:
                log.error("the lake's encoder does not load on this server: %s", exc)
                self._encoder_failed[key] = time.monotonic()
            except Exception:  # noqa: BLE001 (torch, a model file, a manifest: every cause is a 503 here)
                log.exception("the lake's encoder failed to load on this server")
                self._encoder_failed[key] = time.monotonic()
        raise SearchUnavailable("search by meaning is unavailable on this server: the encoder this lake was built "
                                "with does not load here (the server log says why). Rebuild the lake with the "
                                "packages installed here, or install the lake's models.")

    def _rotate_encoders(self, version: str) -> None:
        """Make ``version`` (the one served) the encoders' current generation, the one before the
        previous generation (under the encoder lock). Tagged with the version, so that two switches in
        quick succession rotate once each, in order, whichever thread gets here first."""
        if self._encoders_version == version:
            return
        if self._encoders_version is not None:
            self._encoders_before, self._encoders = self._encoders, {}
        self._encoders_version = version

    def handles(self) -> LakeHandles:
        """The version this request reads (inside a request: the one its first call got, see the module
        docstring), else the version served now."""
        if not has_request_context():
            return getattr(self._warming, "handles", None) or self._current()
        pinned = g.get(REQUEST_PIN)
        if pinned is None:
            pinned = self._current()
            setattr(g, REQUEST_PIN, pinned)
        return pinned

    def _current(self) -> LakeHandles:
        """The live version's handles, opened anew when the build published another. A lake on object
        storage is looked at every ``POLL_SECONDS``; a new version there downloads in the background
        while this copy answers (a large one takes minutes, which no visitor's request should wait)."""
        if self._remote:
            self._remote.pull_if_stale(background=True, then=self._current)
        with self._lock:
            # the pointer is read under the lock: read before it, a request that read the version before
            # a publish and got the lock after one that read the new version switched the worker back
            version = self.layout.current_version()
            if version is None:
                LakeReader(self.layout)  # raises LakeMissingError with the reason (none built, or too old)
            if self._handles is not None and self._handles.version == version:
                return self._handles
            reader = LakeReader(replace(self.layout, version=version))
            switched = self._handles is not None
            encoders = functools.partial(self._encoder_for, version=str(version))
            self._handles = LakeHandles(str(version), AtlasQueries(reader), SearchEngine(reader, encoders),
                                        GalaxyQueries(reader, encoders))
            log.info("serving lake %s version %s", self.layout.location, version)
            handles = self._handles
        if switched:
            self._switched(handles.version)
        return handles

    def _switched(self, version: str) -> None:
        """``version`` is served now: its encoders are taken over from the version before's by
        fingerprint, and the rest let go once it is warm (a serving process warms it now, in the
        background; the others at the next switch), so a worker holds the encoders of at most two
        versions (:meth:`_encoder_for`)."""
        with self._encoder_lock:
            if self._handles is not None and self._handles.version == version:  # not overtaken meanwhile
                self._rotate_encoders(version)
        if self._serving:
            self._rewarmer = threading.Thread(target=self._rewarm, args=(version,), name="lake-rewarm", daemon=True)
            self._rewarmer.start()

    def _rewarm(self, version: str) -> None:
        with self._rewarm_lock:
            self.warm()
            with self._encoder_lock:
                if self._encoders_version == version:  # else a newer switch rotated since: its warm-up clears
                    self._encoders_before = {}
            if gc.get_freeze_count():  # prepare_worker froze the first version's objects: the new one's too
                freeze_warm_objects(again=True)

    def settle(self, timeout: float = 600.0) -> bool:
        """Wait for the background work a new version started (its download, its warm-up); False if some
        still runs after ``timeout`` seconds (tests, and anything that must see the new version warm)."""
        deadline = time.monotonic() + timeout
        if self._remote and not self._remote.join_pull(timeout):
            return False
        if self._rewarmer is not None:
            self._rewarmer.join(max(0.0, deadline - time.monotonic()))
            return not self._rewarmer.is_alive()
        return True

    @property
    def version(self) -> str | None:
        """The version served now (None before the first request opened the lake)."""
        return self._handles.version if self._handles else None

    def atlas(self) -> AtlasQueries:
        return self.handles().atlas

    def engine(self) -> SearchEngine:
        return self.handles().engine

    def galaxies(self) -> GalaxyQueries:
        """The lake's Galaxy Zoo collection (same pinned version as the rest of the request)."""
        return self.handles().galaxies

    def feedback(self) -> FeedbackStore:
        """People's labels for this lake (outside the lake: they survive rebuilds). Opened under a lock of
        its own: opening waits on the database (another process writing) and must not hold up every
        request of this worker. A store that failed to open is tried again after
        :data:`FEEDBACK_RETRY_SECONDS`; meanwhile the same error answers at once. The store follows the
        served version's lake id: a worker that served a lake published before ids (or a lake since built
        afresh at its path) moves to the lake's own file when the new version is served."""
        lake_id = self.atlas().reader.lake_id
        with self._feedback_lock:
            if self._feedback is None or self._feedback_for != lake_id:
                failed = self._feedback_failed
                if failed is not None and time.monotonic() - failed[0] < FEEDBACK_RETRY_SECONDS:
                    raise FeedbackUnavailable(str(failed[1]), public=failed[1].public_message)  # a new one:
                    # raised again, the stored exception would gather every raise's traceback
                try:
                    self._feedback = FeedbackStore(default_path(self.layout.root, lake_id=lake_id))
                except FeedbackUnavailable as exc:
                    self._feedback_failed = (time.monotonic(), exc)
                    raise
                self._feedback_for, self._feedback_failed = lake_id, None
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
        that fails is logged and skipped: warming up must never stop a worker from serving. From then on
        the service warms each new version it sees, in the background."""
        self._serving = True
        try:
            self._warming.handles = self._current()  # one version for every step, the page caches' keys too
        except LakeMissingError as exc:
            log.warning("%s", exc)
            return
        except Exception:
            log.warning("warm-up skipped: the lake does not open", exc_info=True)
            return
        try:
            self._warm_steps()
        finally:
            self._warming.handles = None

    def _warm_steps(self) -> None:
        def tables() -> None:  # the small tables copied into memory: an entry by date ≈ 2 ms, not ≈ 11
            reader = self.atlas().reader
            held = reader.hold_small_tables()
            log.info("tables held in memory (%.1f MB of data): %s", reader.held_bytes / 1e6,
                     ", ".join(held) or "none (each larger than the budget)")

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

        for step in (tables, galaxies, search, *self._warmers):
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
#: BLAS threads of a serving process once warm (numpy's OpenBLAS): one, because its idle threads spin
#: after each call on the core another worker needs (:func:`atlas.device.cap_thread_pools`).
SERVING_BLAS_THREADS = 1


def prepare_worker(service: LakeService) -> None:
    """What a serving process does once, before its first request (gunicorn.conf.py, ``python app.py``):
    the warm-up (:meth:`LakeService.warm`); torch's and BLAS's threads for single requests; then everything the
    warm-up made (≈ 740,000 objects on the archive: models, cached views) moved out of the garbage
    collector's reach: a full collection walks every tracked object, a ≈ 0.4 s pause on 2 cores of
    whatever request triggered it (the slowest callbacks of bench/dashboard.py)."""
    from atlas.device import cap_thread_pools, set_threads

    service.warm()
    set_threads(SERVING_TORCH_THREADS)
    cap_thread_pools(SERVING_BLAS_THREADS, user_api="blas")
    freeze_warm_objects()


def freeze_warm_objects(*, again: bool = False) -> None:
    """Move every object there is now out of the garbage collector's reach (:func:`prepare_worker`).
    ``again``, once a new version is warm: the frozen objects are let back first, so that the version
    before's cycles (its queries, its cached views, encoders it no longer uses) are collected; frozen,
    they would stay for the process's life, one version's worth per rebuild. One full collection (≈ 0.4 s
    on 2 cores, in the warm-up's thread) per new version."""
    if again:
        gc.unfreeze()
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


class UnknownEntry(LookupError):
    """No entry of this lake on the day a request named."""


def store_mark(*, date: object, interesting: bool | None, user: str, toggle: bool = False) -> str:
    """Store one person's mark of an entry (the JSON API's and the Oddities page's one way in): ``date``
    must name an entry of this lake by its ``YYYY-MM-DD`` date (:class:`lake.filters.DateError`: no such
    date; :class:`UnknownEntry`: no entry that day; a request made by hand may name anything). ``toggle``: a thumb clicked, which clears
    the mark when it is already that (:meth:`atlas.userstate.FeedbackStore.toggle`). Returns the date."""
    day = iso_day(date).isoformat()
    if atlas().entry(day) is None:
        raise UnknownEntry(f"there is no entry for {day}")
    store = feedback()
    if toggle:
        store.toggle(date=day, interesting=bool(interesting), user=user)
    else:
        store.add(date=day, interesting=interesting, user=user)
    return day


def oddities(**kwargs: Any) -> pd.DataFrame:
    return current().oddities(**kwargs)
