"""Where an entry's picture comes from, decided in one place for every page, the API and the export.

* ``lake``: a thumbnail the build stored (the 2,998 public-domain pictures bundled with the repo, and
  any the build downloaded) — served by the app, works offline.
* ``nasa``: no stored thumbnail, but the entry is a picture on apod.nasa.gov: the browser loads it from
  its NASA URL, lazily; when that fails (offline, moved), the page shows a placeholder linking out.
* ``video``: a video. YouTube videos show YouTube's own still for the video; other videos (Vimeo, NASA
  pages) get a "video" badge linking to the player.
* ``none``: nothing to show (``other`` media); a badge links to the NASA page.

Only ``http(s)`` URLs are ever put into a page (``javascript:`` and other schemes are dropped); a
protocol-relative ``//host/…`` becomes ``https://host/…``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from lake.layout import THUMB_STEM

_YOUTUBE = re.compile(r"(?:youtube(?:-nocookie)?\.com/(?:embed/|watch\?v=|v/)|youtu\.be/)([A-Za-z0-9_-]{6,20})")


@dataclass(frozen=True)
class Picture:
    kind: str  # lake | nasa | video | none
    src: str | None  # what an <img> shows; None → a badge instead
    link: str | None  # where clicking "see the original" goes
    origin: str  # said to users: where the picture comes from

    def to_dict(self) -> dict[str, str | None]:
        return asdict(self)


def safe_url(url: str | None) -> str | None:
    """``url`` when it is http(s) (protocol-relative made https), else None."""
    if not url:
        return None
    url = str(url).strip()
    if url.startswith("//"):
        url = "https:" + url
    return url if re.match(r"https?://[^\s\"'<>]+$", url, re.IGNORECASE) else None


def full_size_url(*, hdurl: str | None, url: str | None, page: str) -> str:
    """Where "full-size image" goes: the archive's high-resolution URL, else its URL, else the entry's
    NASA page — only http(s) URLs (:func:`safe_url`)."""
    return safe_url(hdurl) or safe_url(url) or page


def youtube_still(url: str | None) -> str | None:
    match = _YOUTUBE.search(url or "")
    return f"https://img.youtube.com/vi/{match.group(1)}/hqdefault.jpg" if match else None


def picture_of(*, image_path: str | None, url: str | None, media_type: str | None) -> Picture:
    """How to show one entry's picture (see the module docstring for the cases); ``image_path`` is the
    entries table's, the stored thumbnail relative to the lake (None: none stored)."""
    original = safe_url(url)
    if image_path and _lake_path(image_path):
        return Picture("lake", f"/{image_path}", original, "thumbnail stored in this lake")
    if media_type == "image" and original:
        return Picture("nasa", original, original, "loaded from apod.nasa.gov (not stored in this lake)")
    if media_type == "video":
        still = youtube_still(original)
        if still:
            return Picture("video", still, original, "video still from YouTube")
        return Picture("video", None, original, "video (no still available)")
    return Picture("none", None, original, "no picture")


def _lake_path(image_path: str) -> bool:
    """Whether ``image_path`` names a thumbnail the app serves (``thumbs/<stem>.jpg``)."""
    folder, _, name = image_path.partition("/")
    return folder == "thumbs" and name.endswith(".jpg") and THUMB_STEM.fullmatch(name[:-4]) is not None


def picture_for(row: Mapping[str, Any]) -> dict[str, str | None]:
    """:func:`picture_of` for an entry row (``image_path``, ``url``, ``media_type``), as a dict."""
    path = row.get("image_path")
    return picture_of(image_path=path if isinstance(path, str) else None, url=row.get("url"),
                      media_type=row.get("media_type")).to_dict()
