"""The NASA APOD API (``api.nasa.gov/planetary/apod``), fetched by date range.

The range is split into pages of ``page_days`` days; each finished page is cached as raw JSON under the
lake's cache so an interrupted or repeated fetch does not ask again. 429 and 5xx answers are retried
with exponential backoff (honouring ``Retry-After``); an answer that is not JSON stops the fetch with a
:class:`SourceError` that names the page — pages fetched so far stay cached.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import requests

from lake import atomic
from atlas.hashing import sha1_json
from pipeline.sources import RawBatch, SourceError

log = logging.getLogger(__name__)

FIRST_APOD = dt.date(1995, 6, 16)
RETRY_STATUS = {429, 500, 502, 503, 504}


def date_pages(start: dt.date, end: dt.date, page_days: int) -> Iterator[tuple[dt.date, dt.date]]:
    """Consecutive inclusive windows of at most ``page_days`` days covering ``start..end``."""
    if page_days < 1:
        raise ValueError("page_days must be at least 1")
    cursor = start
    while cursor <= end:
        stop = min(end, cursor + dt.timedelta(days=page_days - 1))
        yield cursor, stop
        cursor = stop + dt.timedelta(days=1)


class NasaApodClient:
    def __init__(
        self,
        *,
        api_url: str,
        api_key: str,
        cache_dir: Path,
        page_days: int = 30,
        max_retries: int = 5,
        backoff_seconds: float = 1.0,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.api_url = api_url
        self.api_key = api_key
        self.cache_dir = cache_dir
        self.page_days = page_days
        self.max_retries = max_retries
        self.backoff_seconds = backoff_seconds
        self.timeout = timeout
        self.session = session or requests.Session()
        self.requests_made = 0

    def _cache_file(self, start: dt.date, end: dt.date) -> Path:
        return self.cache_dir / f"{start.isoformat()}_{end.isoformat()}.json"

    def fetch_page(self, start: dt.date, end: dt.date) -> list[dict[str, Any]]:
        cached = self._cache_file(start, end)
        if cached.is_file():
            return json.loads(cached.read_text(encoding="utf-8"))
        params = {
            "api_key": self.api_key,
            "start_date": start.isoformat(),
            "end_date": end.isoformat(),
            "thumbs": "true",
        }
        body = self._get_with_retry(params, label=f"{start}..{end}")
        try:
            data = json.loads(body)
        except json.JSONDecodeError as exc:
            raise SourceError(
                f"NASA APOD API returned invalid JSON for {start}..{end} ({exc}); "
                "pages fetched before this one are cached, re-run to continue"
            ) from exc
        if isinstance(data, dict):  # an error object, or a single entry for one-day ranges
            if "date" not in data:
                raise SourceError(f"NASA APOD API error for {start}..{end}: {data.get('msg', data)}")
            data = [data]
        if not isinstance(data, list):
            raise SourceError(f"NASA APOD API returned {type(data).__name__} for {start}..{end}")
        if end < dt.date.today():  # today's page may still change
            atomic.write_json(cached, data)
        return data

    def _get_with_retry(self, params: dict[str, str], *, label: str) -> str:
        for attempt in range(self.max_retries + 1):
            wait = self.backoff_seconds * (2**attempt)
            try:
                self.requests_made += 1
                resp = self.session.get(self.api_url, params=params, timeout=self.timeout)
            except requests.RequestException as exc:
                # requests' messages quote the whole URL, key included: the key is never printed
                said = str(exc).replace(self.api_key, "***") if self.api_key else str(exc)
                if attempt == self.max_retries:
                    raise SourceError(f"NASA APOD API unreachable for {label}: {said}") from None
                log.warning("NASA API %s: %s; retrying in %.1fs", label, said, wait)
                time.sleep(wait)
                continue
            if resp.status_code in RETRY_STATUS and attempt < self.max_retries:
                retry_after = resp.headers.get("Retry-After", "")
                if retry_after.isdigit():
                    wait = min(float(retry_after), 60.0)
                log.warning("NASA API %s: HTTP %d; retrying in %.1fs", label, resp.status_code, wait)
                time.sleep(wait)
                continue
            if resp.status_code == 403 or resp.status_code == 401:
                raise SourceError(
                    f"NASA APOD API refused the key (HTTP {resp.status_code}); set NASA_API_KEY "
                    "to a key from https://api.nasa.gov"
                )
            if resp.status_code == 429:  # after every retry: the key's hourly allowance is spent
                advice = "DEMO_KEY allows 30 requests an hour: set" if self.api_key == "DEMO_KEY" else "Wait, or set"
                raise SourceError(
                    f"NASA APOD API: too many requests (HTTP 429) for {label}, still after {self.max_retries} "
                    f"retries. {advice} NASA_API_KEY to your own key from https://api.nasa.gov (1,000 an hour); "
                    "the pages already fetched are kept, so the same command goes on from where this one stopped")
            if resp.status_code != 200:
                raise SourceError(f"NASA APOD API HTTP {resp.status_code} for {label}: {resp.text[:200]}")
            return resp.text
        raise SourceError(f"NASA APOD API: gave up on {label} after {self.max_retries} retries")

    def fetch(self, start: dt.date, end: dt.date, progress: bool = True) -> list[dict[str, Any]]:
        from tqdm import tqdm

        pages = list(date_pages(start, end, self.page_days))
        records: list[dict[str, Any]] = []
        for page_start, page_end in tqdm(pages, desc="NASA API pages", unit="page", disable=not progress):
            records.extend(self.fetch_page(page_start, page_end))
        return records


def load(client: NasaApodClient, start: dt.date | None, end: dt.date | None, *, progress: bool = True) -> RawBatch:
    start = start or FIRST_APOD
    end = end or dt.date.today()
    if start < FIRST_APOD:
        raise SourceError(f"--start {start} is before the first APOD ({FIRST_APOD})")
    records = client.fetch(start, end, progress=progress)
    for rec in records:
        rec.setdefault("record_source", "api.nasa.gov")
    return RawBatch(
        source="nasa",
        records=records,
        fingerprint=sha1_json(records),
        notes={"start": start.isoformat(), "end": end.isoformat(), "requests": client.requests_made},
    )
