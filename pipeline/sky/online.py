"""Online name resolution for the names OpenNGC cannot place.

SIMBAD first, through astroquery's SIMBAD client: one TAP query per batch of names (uploaded as a
table, never written into the ADQL) returns SIMBAD's main identifier, ICRS position and object type.
Names SIMBAD does not know go to CDS Sesame (SIMBAD, NED, then VizieR) through astropy's resolver.
Every request has a timeout, an unreachable server is detected with one quick TCP connect, and the
answers are cached in the lake, so a rebuild asks only about names it has never asked about. With
``--offline`` nothing here runs."""

from __future__ import annotations

import http.client
import json
import logging
import math
import socket
import time
from collections.abc import Iterable
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import urlparse

import requests

from lake import atomic
from atlas.environment import SESAME_URLS, SIMBAD_TAP_URL

log = logging.getLogger(__name__)

SIMBAD_BATCH = 500
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

    def lookup(self, names: list[str]) -> dict[str, Placement | None]:
        """SIMBAD's answer per name; None when SIMBAD does not know the name. Raises ServiceDown."""
        from astropy.table import Table

        client, out = self._client(), {}
        for i in range(0, len(names), SIMBAD_BATCH):
            batch = names[i:i + SIMBAD_BATCH]
            try:
                rows = client.query_tap(_ADQL, names=Table({"user_specified_id": batch}))
            except Exception as exc:  # pyvo raises DALServiceError, requests errors, XML errors…
                raise ServiceDown(f"SIMBAD TAP at {self.tap_url}: {exc}") from exc
            for row in rows:
                name, main_id, otype = (_value(row, c) for c in ("user_specified_id", "main_id", "otype"))
                ra, dec = _float(_value(row, "ra")), _float(_value(row, "dec"))
                if name and main_id and ra is not None and dec is not None and name not in out:
                    out[name] = Placement(ra, dec, " ".join(main_id.split()), otype, "simbad")
        return {n: out.get(n) for n in names}


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


class OnlineResolver:
    """SIMBAD (batched) then Sesame, behind a cache kept in the lake (name → answer, or null for names
    neither knows; names asked while a service was down are not cached and are asked again)."""

    def __init__(self, cache_path: Path, simbad_url: str | None = SIMBAD_TAP_URL,
                 sesame_urls: tuple[str, ...] = SESAME_URLS, timeout: float = 5.0, progress: bool = False) -> None:
        self.cache_path, self.progress, self.timeout = cache_path, progress, timeout
        self.simbad = SimbadResolver(simbad_url, timeout=2 * timeout) if simbad_url else None
        self.sesame = SesameResolver(sesame_urls, timeout) if sesame_urls else None
        raw = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
        self.cache: dict[str, Placement | None] = {k: Placement(**v) if v else None for k, v in raw.items()}
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
        """Those of ``names`` no service has answered yet (asked while both were down, or never asked):
        a build keeps their entries pending and asks again."""
        return [n for n in names if n not in self.cache]

    def _save(self) -> None:
        atomic.write_json(self.cache_path, {k: asdict(v) if v else None for k, v in self.cache.items()})

    def _ask_simbad(self, todo: list[str]) -> list[str]:
        """Names SIMBAD did not place (unknown to it, or all of them when it is down)."""
        if self.simbad is None or not reachable(self.simbad.tap_url, self.timeout):
            return todo
        try:
            found = self.simbad.lookup(todo)
        except ServiceDown as exc:
            log.warning("%s; falling back to Sesame", exc)
            return todo
        self.asked["simbad"] += len(todo)
        for name, placement in found.items():
            if placement is not None:
                self.cache[name] = placement
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
                self.cache[name] = placement
                if i % 50 == 0:  # an interrupted first build keeps what it learnt
                    self._save()
        except ServiceDown as exc:
            log.warning("%s; the remaining names will be asked by the next build", exc)


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
