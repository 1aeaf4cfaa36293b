"""Online name resolution for the names OpenNGC cannot place.

SIMBAD first, through astroquery's SIMBAD client: one TAP query per batch of names (uploaded as a
table, never written into the ADQL) returns SIMBAD's main identifier, ICRS position and object type.
Names SIMBAD does not know go to CDS Sesame (SIMBAD, NED, then VizieR) through astropy's resolver.
Every request has a timeout, an unreachable server is detected with one quick TCP connect, and the
answers are cached in the lake, so a rebuild asks only about names it has never asked about. The cache is
kept per resolver setting (a lake built once against a test server or a mirror never takes that
server's answers for SIMBAD's), and a "nobody knows this name" answer is asked again after
:data:`UNKNOWN_RECHECK_DAYS` (spread over a second such period, so the daily build asks a few names a
day, not all of them on one day): the catalogues learn names. With ``--offline`` nothing here runs."""

from __future__ import annotations

import hashlib
import http.client
import json
import logging
import math
import socket
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import requests

from lake import atomic
from atlas.environment import SESAME_URLS, SIMBAD_TAP_URL

log = logging.getLogger(__name__)

SIMBAD_BATCH = 500
#: Days before a name neither SIMBAD nor Sesame knew is asked again (plus up to as many again, fixed per
#: name, so that the names learnt by a first build do not all fall due on the same day).
UNKNOWN_RECHECK_DAYS = 30
#: Version of the names cache's file; a flat file of the first version is carried over as the answers of
#: the default resolvers, its "unknown" answers (which carry no date) as learnt on the day (see _read_cache).
NAMES_CACHE_FORMAT = 2
_ADQL = ("SELECT u.user_specified_id, b.main_id, b.ra, b.dec, b.otype FROM TAP_UPLOAD.names AS u "
         "LEFT JOIN ident AS i ON i.id = u.user_specified_id LEFT JOIN basic AS b ON b.oid = i.oidref")


@dataclass(frozen=True)
class Placement:
    ra_deg: float
    dec_deg: float
    canonical_id: str | None  # SIMBAD's main identifier when SIMBAD answered
    object_type: str | None
    resolver: str  # simbad | sesame


class ServiceDown(Exception):
    """The service did not answer; the names stay unasked, to be retried by the next build."""


def reachable(url: str, timeout: float) -> bool:
    """One quick TCP connect, so an offline machine gives up at once instead of timing out per name."""
    u = urlparse(url)
    try:
        with socket.create_connection((u.hostname, u.port or (443 if u.scheme == "https" else 80)),
                                      timeout=min(timeout, 3.0)):
            return True
    except (OSError, TypeError):
        return False


def any_reachable(simbad_url: str | None, sesame_urls: tuple[str, ...], timeout: float = 2.0) -> bool:
    """Whether SIMBAD or any Sesame mirror takes a TCP connection. A build asks names left pending by
    an outage again only then: a machine without the network would otherwise re-read their entries on
    every build, for nothing."""
    return any(reachable(url, timeout) for url in (simbad_url, *sesame_urls) if url)


#: Seconds between two looks, by builds whose sky stage is otherwise unchanged, at whether a resolver is
#: back for names left pending (a machine without the network, whose names stay pending, would otherwise
#: pay a connection attempt, or a DNS time-out, on every no-op build).
RETRY_PENDING_EVERY = 3600.0


def retry_due(names_cache: Path, *, every: float = RETRY_PENDING_EVERY, now: float | None = None) -> bool:
    """Whether a build may look now (at most once per ``every`` seconds per lake; the time of the last
    look is kept beside the names cache, outside the published lake)."""
    stamp = names_cache.with_name(names_cache.stem + "-retried.json")
    now = time.time() if now is None else now
    try:
        last = float(json.loads(stamp.read_text()).get("at", 0.0))
    except (OSError, ValueError, AttributeError):
        last = 0.0
    if 0 <= now - last < every:
        return False
    atomic.write_json(stamp, {"at": now})
    return True


class _TimeoutSession(requests.Session):
    """pyvo sends its requests without a timeout; this session adds one to each."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, *args, **kwargs):  # type: ignore[override]
        kwargs.setdefault("timeout", self.default_timeout)
        return super().request(*args, **kwargs)


class SimbadResolver:
    def __init__(self, tap_url: str = SIMBAD_TAP_URL, timeout: float = 10.0) -> None:
        self.tap_url, self.timeout = tap_url, timeout

    def _client(self):
        from astroquery.simbad import SimbadClass
        from pyvo.dal import TAPService

        url, session = self.tap_url, _TimeoutSession(self.timeout)

        class _Simbad(SimbadClass):  # astroquery's client, pointed at the configured TAP endpoint
            @property
            def tap(self):  # type: ignore[override]
                if self._tap is None:
                    self._tap = TAPService(url, session=session)
                return self._tap

        return _Simbad()

    def lookup(self, names: list[str]) -> Iterator[dict[str, Placement | None]]:
        """SIMBAD's answers, one batch of :data:`SIMBAD_BATCH` names at a time (None: SIMBAD does not know
        the name). Raises ServiceDown at the batch it could not ask; the batches before are answered."""
        from astropy.table import Table

        client = self._client()
        for i in range(0, len(names), SIMBAD_BATCH):
            batch, out = names[i:i + SIMBAD_BATCH], {}
            try:
                rows = client.query_tap(_ADQL, names=Table({"user_specified_id": batch}))
            except Exception as exc:  # pyvo raises DALServiceError, requests errors, XML errors…
                raise ServiceDown(f"SIMBAD TAP at {self.tap_url}: {exc}") from exc
            for row in rows:
                name, main_id, otype = (_value(row, c) for c in ("user_specified_id", "main_id", "otype"))
                ra, dec = _float(_value(row, "ra")), _float(_value(row, "dec"))
                if name and main_id and ra is not None and dec is not None and name not in out:
                    out[name] = Placement(ra, dec, " ".join(main_id.split()), otype, "simbad")
            yield {n: out.get(n) for n in batch}


class SesameResolver:
    def __init__(self, urls: tuple[str, ...] = SESAME_URLS, timeout: float = 5.0) -> None:
        self.urls, self.timeout = tuple(urls), timeout

    def lookup(self, names: Iterable[str]) -> Iterable[tuple[str, Placement | None]]:
        """Yields (name, answer) one name at a time; stops with ServiceDown when no server answers."""
        from astropy.coordinates import name_resolve
        from astropy.utils.data import conf

        with ExitStack() as stack:
            stack.enter_context(conf.set_temp("remote_timeout", self.timeout))
            stack.enter_context(name_resolve.sesame_url.set(list(self.urls)))
            for name in names:
                try:
                    c = name_resolve.get_icrs_coordinates(name, cache=False)
                except name_resolve.NameResolveError as exc:
                    if "All Sesame queries failed" in str(exc):
                        raise ServiceDown(f"Sesame at {self.urls[0]}: {exc}") from exc
                    yield name, None  # a definite "unknown name"
                    continue
                # a connection that broke mid-answer (astropy passes these on as they are): the service,
                # not the name; the rest wait for the next build, as in an outage
                except (OSError, http.client.HTTPException) as exc:
                    raise ServiceDown(f"Sesame at {self.urls[0]}: {type(exc).__name__}: {exc}") from exc
                yield name, Placement(float(c.ra.deg), float(c.dec.deg), None, None, "sesame")


def resolver_key(simbad_url: str | None, sesame_urls: tuple[str, ...]) -> str:
    """What the names cache files its answers under: the resolvers asked (another server's answers, or its
    "unknown", are not this setting's)."""
    return json.dumps([simbad_url, list(sesame_urls)])


def recheck_due(name: str, unknown_since: float, *, now: float) -> bool:
    """Whether a name nobody knew at ``unknown_since`` is to be asked again at ``now``."""
    spread = int(hashlib.sha1(name.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF  # fixed per name, in [0, 1]
    return now - unknown_since >= (1.0 + spread) * UNKNOWN_RECHECK_DAYS * 86400.0 or now < unknown_since


class OnlineResolver:
    """SIMBAD (batched) then Sesame, behind a cache kept in the lake, per resolver setting (name → answer,
    or the time neither knew it; names asked while a service was down are not cached and are asked again,
    and unknown names are asked again once :func:`recheck_due` says so)."""

    def __init__(self, cache_path: Path, simbad_url: str | None = SIMBAD_TAP_URL,
                 sesame_urls: tuple[str, ...] = SESAME_URLS, timeout: float = 5.0, progress: bool = False,
                 now: float | None = None) -> None:
        self.cache_path, self.progress, self.timeout = cache_path, progress, timeout
        self.now = time.time() if now is None else now
        self.simbad = SimbadResolver(simbad_url, timeout=2 * timeout) if simbad_url else None
        self.sesame = SesameResolver(sesame_urls, timeout) if sesame_urls else None
        self.key = resolver_key(simbad_url, tuple(sesame_urls))
        self._others, mine = _read_cache(cache_path, self.key, now=self.now)
        self.cache: dict[str, Placement | None] = {}
        self.unknown_since: dict[str, float] = {}
        for name, answer in mine.items():
            try:  # an answer of another shape is asked again, not a failed build
                if "unknown_since" in answer:
                    self.unknown_since[name] = float(answer["unknown_since"])
                    self.cache[name] = None
                else:
                    self.cache[name] = Placement(**answer)
            except (TypeError, ValueError):
                continue
        self.asked = {"simbad": 0, "sesame": 0}

    def resolve(self, names: list[str]) -> dict[str, Placement | None]:
        """The placements of ``names`` (None: unknown, or not answered; :meth:`unanswered` tells which).
        The sky stage warns of the names left waiting, those it kept from earlier builds included."""
        todo = self.unanswered(list(dict.fromkeys(names)))
        if todo:
            try:
                left = self._ask_simbad(todo)
                self._ask_sesame(left)
            finally:  # whatever stopped it, what the services answered is kept
                self._save()
        return {n: self.cache.get(n) for n in names}

    def unanswered(self, names: list[str]) -> list[str]:
        """Those of ``names`` to be asked (never asked, asked while both services were down, or unknown
        long enough to be asked again): a build keeps their entries pending and asks again."""
        return [n for n in names if n not in self.cache
                or (self.cache[n] is None and recheck_due(n, self.unknown_since.get(n, 0.0), now=self.now))]

    def _answer(self, name: str, placement: Placement | None) -> None:
        self.cache[name] = placement
        if placement is None:
            self.unknown_since[name] = self.now
        else:
            self.unknown_since.pop(name, None)

    def _save(self) -> None:
        mine = {k: asdict(v) if v else {"unknown_since": self.unknown_since.get(k, 0.0)} for k, v in self.cache.items()}
        atomic.write_json(self.cache_path, {"format": NAMES_CACHE_FORMAT, "resolvers": {**self._others, self.key: mine}})

    def _ask_simbad(self, todo: list[str]) -> list[str]:
        """Names SIMBAD did not place (unknown to it, or not asked because it went down)."""
        if self.simbad is None or not reachable(self.simbad.tap_url, self.timeout):
            return todo
        found: dict[str, Placement | None] = {}
        try:
            for answers in self.simbad.lookup(todo):
                found.update(answers)
                self.asked["simbad"] += len(answers)
                for name, placement in answers.items():
                    if placement is not None:
                        self._answer(name, placement)
        except ServiceDown as exc:  # the batches it answered are kept
            log.warning("%s; falling back to Sesame for the %d names it did not answer", exc, len(todo) - len(found))
        log.info("SIMBAD placed %d of %d names", sum(p is not None for p in found.values()), len(todo))
        return [n for n in todo if found.get(n) is None]

    def _ask_sesame(self, left: list[str]) -> None:
        from tqdm.auto import tqdm

        if not left or self.sesame is None or not any(reachable(u, self.timeout) for u in self.sesame.urls):
            return  # (every mirror: the second is there for when the first is down)
        try:
            for i, (name, placement) in enumerate(tqdm(self.sesame.lookup(left), total=len(left), desc="sesame",
                                                       unit="name", disable=not self.progress), 1):
                self.asked["sesame"] += 1
                self._answer(name, placement)
                if i % 50 == 0:  # an interrupted first build keeps what it learnt
                    self._save()
        except ServiceDown as exc:
            log.warning("%s; the remaining names will be asked by the next build", exc)


#: The file the first format of the names cache was kept in (beside :attr:`LakeLayout.names_cache`): read
#: once, to carry its answers over; left as it was, for a builder still on a release that reads it.
LEGACY_NAMES_FILE = "names.json"


def _load(path: Path) -> dict | None:
    """A JSON object read from ``path``; None when there is none or it is not one (with a warning)."""
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("names cache %s unreadable (%s): its names are asked again", path, exc)
        return None
    return raw if isinstance(raw, dict) else None


def _read_cache(path: Path, key: str, *, now: float) -> tuple[dict[str, dict], dict[str, Any]]:
    """The names cache's other resolver settings, and this setting's answers. A damaged file, or one of
    a format this code does not know, is read as empty with a warning (its names are asked again)
    rather than failing the build: it only saves asking. Without a file of this format, the first
    format's file beside it is carried over: its placements count for the default resolvers (the only
    ones a build used without a flag), its unknown names are taken as learnt ``now`` (so that they fall
    due over the following days, not all on the next build)."""
    raw = _load(path)
    if raw is not None and raw.get("format") == NAMES_CACHE_FORMAT:
        resolvers = raw.get("resolvers")
        sections = {k: v for k, v in resolvers.items() if isinstance(k, str) and isinstance(v, dict)} \
            if isinstance(resolvers, dict) else {}
        return {k: v for k, v in sections.items() if k != key}, sections.get(key, {})
    if raw is not None and "format" in raw:
        log.warning("names cache %s is of another format (%r): its names are asked again", path, raw.get("format"))
        return {}, {}
    legacy = raw if raw is not None else _load(path.with_name(LEGACY_NAMES_FILE))
    if not legacy:
        return {}, {}
    flat = {n: (v if v else {"unknown_since": now}) for n, v in legacy.items()
            if isinstance(n, str) and (v is None or isinstance(v, dict))}
    default_key = resolver_key(SIMBAD_TAP_URL, SESAME_URLS)
    return ({default_key: flat}, {}) if key != default_key else ({}, flat)


def _value(row, column: str) -> str | float | None:
    """A cell of an astropy row, None when masked (SIMBAD's LEFT JOIN leaves unknown names empty)."""
    import numpy as np

    v = row[column]
    if np.ma.is_masked(v):
        return None
    return v.strip() or None if isinstance(v, str) else v


def _float(value) -> float | None:
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f
