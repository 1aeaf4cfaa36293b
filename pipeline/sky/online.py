"""Online name resolution for names OpenNGC cannot place: CDS Sesame (SIMBAD, then NED, then VizieR)
through astropy's resolver, with a short timeout and a cache kept in the lake, so a rebuild asks only
about names it has never asked about. With ``--offline`` nothing here runs."""

from __future__ import annotations

import json
import logging
import socket
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlparse

from lake import atomic

log = logging.getLogger(__name__)

DEFAULT_URLS = ("https://cds.unistra.fr/cgi-bin/nph-sesame/", "http://vizier.cfa.harvard.edu/viz-bin/nph-sesame/")


class SesameResolver:
    def __init__(self, cache_path: Path, urls: tuple[str, ...] = DEFAULT_URLS, timeout: float = 5.0,
                 progress: bool = False) -> None:
        self.cache_path = cache_path
        self.progress = progress
        self.urls = tuple(urls)
        self.timeout = timeout
        self.cache: dict[str, list[float] | None] = (
            json.loads(cache_path.read_text()) if cache_path.is_file() else {})
        self.queries = 0

    def reachable(self) -> bool:
        """One quick TCP connect to the first server, so an offline machine gives up at once."""
        url = urlparse(self.urls[0])
        try:
            with socket.create_connection((url.hostname, url.port or (443 if url.scheme == "https" else 80)),
                                          timeout=min(self.timeout, 3.0)):
                return True
        except OSError:
            return False

    def resolve(self, names: list[str]) -> dict[str, tuple[float, float] | None]:
        from astropy.coordinates import name_resolve
        from astropy.utils.data import conf
        from tqdm.auto import tqdm

        todo = [n for n in dict.fromkeys(names) if n not in self.cache]
        if todo and self.reachable():
            with ExitStack() as stack:
                stack.enter_context(conf.set_temp("remote_timeout", self.timeout))
                stack.enter_context(name_resolve.sesame_url.set(list(self.urls)))
                for name in tqdm(todo, desc="sesame", unit="name", disable=not self.progress):
                    self.queries += 1
                    try:
                        c = name_resolve.get_icrs_coordinates(name, cache=False)
                        self.cache[name] = [float(c.ra.deg), float(c.dec.deg)]
                    except name_resolve.NameResolveError as exc:
                        if "All Sesame queries failed" in str(exc):
                            log.warning("Sesame unreachable while resolving %r; will retry next build", name)
                            break
                        self.cache[name] = None  # a definite "unknown name": not asked again
                    if self.queries % 50 == 0:  # an interrupted first build keeps what it learnt
                        atomic.write_json(self.cache_path, self.cache)
            atomic.write_json(self.cache_path, self.cache)
        elif todo:
            log.info("Sesame not reachable: %d names stay unresolved (use --offline to skip this check)", len(todo))
        return {n: (tuple(self.cache[n]) if self.cache.get(n) else None) for n in names}  # type: ignore[misc]
