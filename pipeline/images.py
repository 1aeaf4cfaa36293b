"""Images stage: a JPEG thumbnail per image entry, from a bundled file or a downloaded ``url``.

Untrusted images are checked before decoding: a byte cap while downloading, a content-type check, and a
pixel cap that turns Pillow's decompression-bomb warning into a rejection. A rejected image leaves its
entry as a text-only entry; the reason is counted in the build summary.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from lake import atomic
from lake.layout import LakeLayout
from atlas.hashing import sha1_bytes, sha1_text
from atlas.images import ImageLimits, ImageRejected, check_image, decode_image, thumbnail_jpeg

log = logging.getLogger(__name__)


class RetryableDownload(ImageRejected):
    """A failed download worth trying again (429, 5xx), with the server's Retry-After if it gave one."""

    def __init__(self, message: str, retry_after: float | None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


def retryable_status(status: int, headers) -> RetryableDownload | None:
    """The error to retry for an HTTP status (429 and 5xx), with the server's Retry-After if any."""
    if status != 429 and status < 500:
        return None
    value = (headers or {}).get("Retry-After", "")
    retry_after = float(value) if value.strip().replace(".", "", 1).isdigit() else None
    return RetryableDownload(f"download failed: HTTP {status}", retry_after)


#: How long a URL whose answer was refused for good (an HTTP error that is not retried, not a picture,
#: a torn picture, over a limit) is not asked for again: the images stage right after ``--fetch-images``,
#: and every later build, would otherwise download it again. After that the server may have mended it.
REFUSED_FOR_SECONDS = 24 * 3600.0


def refusal_record(cache_dir: Path, url: str) -> Path:
    """Where the download cache keeps why ``url``'s answer was refused (beside its body's place)."""
    return cache_dir / f"{sha1_text(url)}.refused"


def remember_refusal(cache_dir: Path, url: str, reason: str) -> None:
    """Record that ``url``'s answer was refused (and drop a body cached for it by older code)."""
    (cache_dir / sha1_text(url)).unlink(missing_ok=True)
    atomic.write_text(refusal_record(cache_dir, url), reason)


def _recent_refusal(cache_dir: Path, url: str) -> str | None:
    record = refusal_record(cache_dir, url)
    try:
        if time.time() - record.stat().st_mtime < REFUSED_FOR_SECONDS:
            return record.read_text(encoding="utf-8").strip() or "refused"
    except OSError:  # none (or unreadable): ask
        pass
    return None


def download(url: str, cache_dir: Path, limits: ImageLimits, session: requests.Session, timeout: float = 30) -> bytes:
    """Fetch ``url`` (cached by URL hash) with a streaming byte cap and a content-type check. The body
    is kept only once it reads as a whole picture (:func:`atlas.images.check_image`): HTML sent as
    ``image/jpeg`` or a torn JPEG raises :class:`ImageRejected`, and so does a 404. A refusal is
    remembered for :data:`REFUSED_FOR_SECONDS` (no second request in that time; before, a bad body was
    cached and failed every later build, and was never asked for again)."""
    cached = cache_dir / sha1_text(url)
    if cached.is_file():
        return cached.read_bytes()
    if (reason := _recent_refusal(cache_dir, url)) is not None:
        raise ImageRejected(f"{reason} (at the last try, less than a day ago)")
    try:
        data = _body(url, limits, session, timeout)
        check_image(data, limits)
    except RetryableDownload:
        raise
    except ImageRejected as exc:
        remember_refusal(cache_dir, url, str(exc).split(" (")[0])
        raise
    atomic.write_bytes(cached, data)
    return data


def _body(url: str, limits: ImageLimits, session: requests.Session, timeout: float) -> bytes:
    """``url``'s body, refused (:class:`ImageRejected`) on an HTTP error, another content type or a size
    past the byte cap."""
    with session.get(url, stream=True, timeout=timeout) as resp:
        if resp.status_code != 200:
            raise retryable_status(resp.status_code, resp.headers) or ImageRejected(
                f"download failed: HTTP {resp.status_code}")
        ctype = resp.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype and not ctype.startswith("image/"):
            raise ImageRejected(f"download is {ctype!r}, not an image")
        declared = resp.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > limits.max_bytes:
            raise ImageRejected(f"download is {int(declared):,} bytes, over the {limits.max_bytes:,}-byte limit")
        chunks, total = [], 0
        for chunk in resp.iter_content(64 * 1024):
            total += len(chunk)
            if total > limits.max_bytes:
                raise ImageRejected(f"download exceeds the {limits.max_bytes:,}-byte limit")
            chunks.append(chunk)
    return b"".join(chunks)


@dataclass
class ImageReport:
    thumbnails: int = 0
    reused: int = 0
    downloaded: int = 0
    rejected: Counter = field(default_factory=Counter)


def _local_file(row: dict[str, Any], downloads: Path, allow_download: bool, fetched_only: bool) -> Path | None:
    """The file on this disk a row's picture comes from (a bundled picture, one ``--fetch-images`` saved
    for a bundled entry in ``downloads``, or a downloaded picture already in ``downloads``, which is what a
    download would read); None when it must be downloaded or there is none. A file here is stamped, so an
    unchanged one is not read again (before, every build read and hashed each downloaded original)."""
    if row.get("image_file"):
        return Path(row["image_file"])
    url = row.get("url")
    if not url:
        return None
    cached = downloads / sha1_text(url)
    if allow_download and row["source"] != "bundled":
        return cached if cached.is_file() else None
    return cached if fetched_only else None


def _source_bytes(row: dict[str, Any], local: Path | None, layout: LakeLayout, limits: ImageLimits, session,
                  allow_download: bool) -> bytes | None:
    """The picture's bytes: from ``local`` (the row's :func:`_local_file`) or downloaded."""
    if local is not None:
        if local.is_file():
            return local.read_bytes()
        if row.get("image_file"):
            raise ImageRejected(f"image file {local} does not exist")
        return None  # a bundled entry whose picture `--fetch-images` never put in the download cache
    url = row.get("url")
    if url and allow_download and row["source"] != "bundled":
        return download(url, layout.download_cache, limits, session)
    return None


def _stamp(path: Path | None) -> list[Any] | None:
    """A local source file's path and :func:`lake.atomic.file_stamp` (None: not one, or absent)."""
    stamp = atomic.file_stamp(path) if path is not None else None
    return [str(path), *stamp] if stamp is not None else None


def attach_images(
    rows: list[dict[str, Any]],
    layout: LakeLayout,
    limits: ImageLimits,
    *,
    index: dict[str, dict[str, Any]],
    allow_download: bool = True,
    use_fetched: bool = True,
    progress: bool = True,
) -> tuple[dict[str, dict[str, Any]], ImageReport]:
    """Add image columns to ``rows`` in place and return the updated thumbnail index.

    ``index`` maps a date to what its thumbnail was made from (``src``, the source's hash; ``stamp``, a
    local source file's path, size, times and inode) and the thumbnail's hash and size. A thumbnail
    whose local source file has the same stamp is reused without reading the file (3,000 bundled pictures:
    ≈ 0.3 s a build); one whose source bytes hash the same, without decoding anything.
    """
    from tqdm import tqdm

    report = ImageReport()
    new_index: dict[str, dict[str, Any]] = {}
    session = requests.Session()
    downloads = layout.download_cache
    for row in tqdm(rows, desc="images", unit="entry", disable=not progress, mininterval=1.0):
        row.update(has_image=False, image_path=None, image_width=None, image_height=None, image_sha1=None)
        if row["media_type"] != "image":
            continue
        day = row["date"].isoformat()
        local = _local_file(row, downloads, allow_download, use_fetched)
        stamp = _stamp(local)
        if local is not None and stamp is None and not row.get("image_file"):
            continue  # a bundled entry whose picture was never fetched
        known = index.get(day)
        kept = known is not None and layout.thumb(day, known["sha1"]).is_file()
        if kept and stamp and known.get("stamp") == stamp:
            # the same local file as last time (path, size, times, inode): not even read again
            new_index[day] = known
            report.reused += 1
            _set_image(row, layout, known)
            continue
        try:
            data = _source_bytes(row, local, layout, limits, session, allow_download)
            if data is None:
                continue
            src = sha1_bytes(data)
            if kept and known["src"] == src:
                entry = {**known, "stamp": stamp}
                report.reused += 1
            else:
                jpeg, w, h = thumbnail_jpeg(decode_image(data, limits), limits.thumb_size)
                entry = {"src": src, "sha1": sha1_bytes(jpeg), "width": w, "height": h, "stamp": stamp}
                # a new name for new content: the live version's thumbnail stays as it is until the
                # version that names this one is published
                atomic.write_bytes(layout.thumb(day, entry["sha1"]), jpeg)
                report.thumbnails += 1
        except (ImageRejected, requests.RequestException) as exc:
            report.rejected[str(exc).split(" (")[0]] += 1
            log.debug("%s: image rejected: %s", day, exc)
            if isinstance(exc, ImageRejected) and local is not None and local.parent == downloads:
                # a body an older build cached without decoding it: not read again for every build
                remember_refusal(downloads, row["url"], str(exc).split(" (")[0])
            continue
        new_index[day] = entry
        _set_image(row, layout, entry)
    return new_index, report


def _set_image(row: dict[str, Any], layout: LakeLayout, entry: dict[str, Any]) -> None:
    thumb = layout.thumb(row["date"].isoformat(), entry["sha1"])
    row.update(has_image=True, image_path=thumb.relative_to(layout.root).as_posix(), image_width=entry["width"],
               image_height=entry["height"], image_sha1=entry["sha1"])
