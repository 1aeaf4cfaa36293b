"""Polite bulk download of the archive's pictures (``python -m pipeline build --fetch-images``).

NASA's servers are shared: at most ``concurrency`` (≤ 4) requests at once, a timeout on every request,
retries with exponential backoff on 429 / 5xx / network errors (``Retry-After`` honoured, capped),
no retry on other 4xx, at most 5 redirects. Every body goes through :func:`pipeline.images.download`:
a streaming byte cap and a content-type check, cached by URL in the lake's download cache — so an
interrupted fetch resumes where it stopped, and a picture is never downloaded twice. A body is kept
only once it reads as a whole picture (see :func:`pipeline.images.download`): HTML sent as
``image/jpeg`` or a torn file is counted as failed, and the refusal is remembered for a day
(:data:`pipeline.images.REFUSED_FOR_SECONDS`) before the URL is asked for again.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import requests

from atlas.hashing import sha1_text
from atlas.images import ImageLimits, ImageRejected
from pipeline.images import RetryableDownload, download

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_CONCURRENCY = 4
MAX_RETRY_AFTER = 60.0
USER_AGENT = "CosmicAtlas/1 (+https://github.com/cosmic-atlas; polite bulk fetch of APOD pictures)"


@dataclass
class FetchReport:
    fetched: int = 0
    cached: int = 0
    failed: Counter = field(default_factory=Counter)


class PoliteFetcher:
    def __init__(self, cache_dir: Path, limits: ImageLimits, *, concurrency: int = MAX_CONCURRENCY,
                 retries: int = 3, backoff: float = 1.0, timeout: float = 30.0,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        if not 1 <= concurrency <= MAX_CONCURRENCY:
            raise ValueError(f"concurrency must be between 1 and {MAX_CONCURRENCY} (NASA's servers are shared)")
        self.cache_dir, self.limits = cache_dir, limits
        self.concurrency, self.retries, self.backoff, self.timeout = concurrency, retries, backoff, timeout
        self._sleep = sleep
        self._local = threading.local()

    def _session(self) -> requests.Session:
        """One session per worker thread (requests sessions are not thread-safe)."""
        if not hasattr(self._local, "session"):
            s = requests.Session()
            s.max_redirects = 5
            s.headers["User-Agent"] = USER_AGENT
            self._local.session = s
        return self._local.session

    def cached(self, url: str) -> bool:
        return (self.cache_dir / sha1_text(url)).is_file()

    def fetch(self, url: str) -> bytes:
        """The body of ``url`` (from the cache when there), retrying what is worth retrying."""
        for attempt in range(self.retries + 1):
            try:
                return download(url, self.cache_dir, self.limits, self._session(), timeout=self.timeout)
            except RetryableDownload as exc:
                wait = exc.retry_after if exc.retry_after is not None else self.backoff * 2 ** attempt
                last: Exception = exc
            # (ChunkedEncodingError: the connection broke inside the body, a truncated answer)
            except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
                wait, last = self.backoff * 2 ** attempt, exc
            if attempt < self.retries:
                self._sleep(min(wait, MAX_RETRY_AFTER))
        raise ImageRejected(f"download failed after {self.retries + 1} tries: {failure_reason(last)}")

    def fetch_all(self, urls: Iterable[str], *, progress: bool = False) -> FetchReport:
        """Fetch every URL into the cache; failures are counted by reason, never raised."""
        report = FetchReport()
        todo = []
        for url in dict.fromkeys(urls):
            if self.cached(url):
                report.cached += 1
            else:
                todo.append(url)
        report.fetched, report.failed = self.each(todo, self.fetch, desc="fetch pictures", unit="picture",
                                                  progress=progress)
        log.info("fetch: %d downloaded, %d already cached, %d failed %s", report.fetched, report.cached,
                 sum(report.failed.values()), dict(report.failed))
        return report

    def each(self, items: list[T], work: Callable[[T], object], *, desc: str, unit: str,
             progress: bool = False) -> tuple[int, Counter]:
        """Run ``work`` on every item, at most :attr:`concurrency` at once, with a progress bar: the
        number that succeeded, and the failures (:class:`ImageRejected`, request errors) counted by
        reason, never raised — one bad picture must not stop a bulk download."""
        from tqdm import tqdm

        done, failed = 0, Counter()
        lock = threading.Lock()

        def one(item: T) -> None:
            nonlocal done
            try:
                work(item)
                outcome = None
            except (ImageRejected, requests.RequestException) as exc:
                outcome = failure_reason(exc)
            with lock:
                if outcome is None:
                    done += 1
                else:
                    failed[outcome] += 1

        with ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="fetch") as pool, \
                tqdm(total=len(items), desc=desc, unit=unit, disable=not progress) as bar:
            for _ in pool.map(one, items):
                bar.update(1)
        return done, failed


def failure_reason(exc: Exception) -> str:
    """A failure's reason as the fetch report counts it: one key per kind of failure, so the picture's
    own numbers (its size in bytes or pixels) are left out ("download over the 25,000,000-byte limit")."""
    text = str(exc).split(" (")[0]
    if isinstance(exc, requests.Timeout):
        return "download timed out"
    if isinstance(exc, requests.TooManyRedirects):
        return "too many redirects"
    if isinstance(exc, requests.ConnectionError):
        return "connection failed"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "connection broke during the download"
    return _OWN_SIZE.sub(r"\1 over", text)[:120]


#: "download is 31,457,280 bytes, over …", "image is 20000x20000 pixels, over …": the size is the picture's
_OWN_SIZE = re.compile(r"^(download|image) is [\d,x]+ (?:bytes|pixels), over")
