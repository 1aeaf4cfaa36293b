"""The polite picture fetcher against a real HTTP server on 127.0.0.1: redirects, 404, 429, slow
answers, corrupt JPEGs, HTML posing as a picture, the concurrency cap and resuming."""

from __future__ import annotations

import io
import threading
import time

import pytest
from PIL import Image

from atlas.images import ImageLimits, ImageRejected
from pipeline.fetch import PoliteFetcher

LIMITS = ImageLimits(max_bytes=2_000_000, max_pixels=20_000_000, thumb_size=64)


def _jpeg(colour=(200, 30, 30)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 30), colour).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def fetcher(tmp_path):
    waits: list[float] = []
    f = PoliteFetcher(tmp_path / "downloads", LIMITS, retries=2, backoff=0.01, timeout=0.5, sleep=waits.append)
    f.waits = waits  # type: ignore[attr-defined]
    return f


def test_redirect_404_and_retry_after(http_server, fetcher):
    jpeg = _jpeg()
    http_server.routes["/img/a.jpg"] = lambda h: h.reply(200, jpeg, "image/jpeg")
    http_server.routes["/old/a.jpg"] = lambda h: h.reply(301, b"", "text/plain", {"Location": "/img/a.jpg"})
    assert fetcher.fetch(f"{http_server.url}/old/a.jpg") == jpeg
    with pytest.raises(ImageRejected, match="HTTP 404"):
        fetcher.fetch(f"{http_server.url}/missing.jpg")
    assert sum("/missing.jpg" in r for r in http_server.requests) == 1  # a 404 is not retried
    calls = []

    def busy_then_ok(h):
        calls.append(1)
        if len(calls) < 3:
            h.reply(429, b"slow down", "text/plain", {"Retry-After": "7"})
        else:
            h.reply(200, jpeg, "image/jpeg")

    http_server.routes["/busy.jpg"] = busy_then_ok
    assert fetcher.fetch(f"{http_server.url}/busy.jpg") == jpeg
    assert fetcher.waits == [7.0, 7.0]  # the server's Retry-After, twice


def test_server_errors_back_off_then_give_up(http_server, fetcher):
    http_server.routes["/down.jpg"] = lambda h: h.reply(503, b"", "text/plain")
    with pytest.raises(ImageRejected, match="after 3 tries"):
        fetcher.fetch(f"{http_server.url}/down.jpg")
    assert fetcher.waits == [0.01, 0.02]  # exponential backoff


def test_a_connection_that_breaks_inside_the_body_is_retried(http_server, fetcher):
    """The server promises the whole picture, sends half and hangs up (a dropped link): that is tried
    again, as a refused connection is, not counted as a failure at once."""
    jpeg, calls = _jpeg(), []

    def breaks_once(h):
        calls.append(1)
        if len(calls) > 1:
            return h.reply(200, jpeg, "image/jpeg")
        h.send_response(200)
        h.send_header("Content-Type", "image/jpeg")
        h.send_header("Content-Length", str(len(jpeg)))
        h.end_headers()
        h.wfile.write(jpeg[: len(jpeg) // 2])
        h.wfile.flush()
        h.close_connection = True

    http_server.routes["/broken.jpg"] = breaks_once
    assert fetcher.fetch(f"{http_server.url}/broken.jpg") == jpeg and len(calls) == 2
    assert fetcher.waits == [0.01]


def test_the_report_counts_a_kind_of_failure_once_whatever_the_pictures_sizes(http_server, fetcher):
    """Two pictures over the byte limit are one reason in the report, not one reason per size."""
    for name, size in (("big", 3_000_000), ("bigger", 4_500_000)):
        http_server.routes[f"/{name}.jpg"] = lambda h, size=size: (
            h.send_response(200), h.send_header("Content-Type", "image/jpeg"),
            h.send_header("Content-Length", str(size)), h.end_headers())
    report = fetcher.fetch_all([f"{http_server.url}/big.jpg", f"{http_server.url}/bigger.jpg"])
    assert dict(report.failed) == {"download over the 2,000,000-byte limit": 2}


def test_slow_server_times_out(http_server, fetcher):
    http_server.routes["/slow.jpg"] = lambda h: (time.sleep(1.5), h.reply(200, _jpeg(), "image/jpeg"))
    report = fetcher.fetch_all([f"{http_server.url}/slow.jpg"])
    assert report.fetched == 0 and list(report.failed) and "after 3 tries" in list(report.failed)[0]


def test_html_and_corrupt_pictures_never_become_thumbnails(http_server, fetcher, tmp_path):
    from lake.layout import LakeLayout
    from pipeline.images import attach_images

    http_server.routes["/page.jpg"] = lambda h: h.reply(200, b"<html>moved</html>", "text/html")
    http_server.routes["/fake.jpg"] = lambda h: h.reply(200, b"<html>not a picture</html>", "image/jpeg")
    http_server.routes["/cut.jpg"] = lambda h: h.reply(200, _jpeg()[:200], "image/jpeg")
    http_server.routes["/good.jpg"] = lambda h: h.reply(200, _jpeg(), "image/jpeg")
    layout = LakeLayout(tmp_path / "lake")
    fetch = PoliteFetcher(layout.download_cache, LIMITS, retries=0, timeout=2)
    urls = [f"{http_server.url}/{n}.jpg" for n in ("page", "fake", "cut", "good")]
    report = fetch.fetch_all(urls)
    # the HTML page is refused by its content type, the fake and the torn JPEG once they fail to decode
    assert report.fetched == 1 and dict(report.failed) == {
        "download is 'text/html', not an image": 1, "not a JPEG, PNG, GIF or WebP picture": 1,
        "a damaged or truncated picture": 1}
    assert [fetch.cached(u) for u in urls] == [False, False, False, True]
    # the refusals are remembered: a second run (or the images stage after the fetch) asks the server
    # nothing for a day, and says why they failed
    asked = len(http_server.requests)
    again = fetch.fetch_all(urls)
    assert len(http_server.requests) == asked and again.cached == 1 and dict(again.failed) == dict(report.failed)
    import os

    for record in layout.download_cache.glob("*.refused"):  # a day later, the server may have mended them
        os.utime(record, (record.stat().st_atime - 86_401, record.stat().st_mtime - 86_401))
    fetch.fetch_all(urls)
    assert len(http_server.requests) == asked + 3
    import datetime as dt

    rows = [{"date": dt.date(2014, 1, i + 1), "media_type": "image", "url": u, "source": "bundled"}
            for i, u in enumerate(urls)]
    _, images = attach_images(rows, layout, LIMITS, index={}, allow_download=False, progress=False)
    assert [r["has_image"] for r in rows] == [False, False, False, True]
    assert images.thumbnails == 1 and not images.rejected  # nothing but the good picture was kept to try


def test_a_bad_body_an_older_build_cached_is_dropped_and_remembered(tmp_path):
    """Older builds cached a download without decoding it: the images stage, failing on it, drops it and
    remembers the refusal, so later builds neither read it again nor count it as a fetched picture."""
    import datetime as dt

    from atlas.hashing import sha1_text
    from lake.layout import LakeLayout
    from pipeline.images import attach_images, refusal_record

    layout = LakeLayout(tmp_path / "lake")
    url = "https://apod.nasa.gov/apod/image/1401/torn.jpg"
    layout.download_cache.mkdir(parents=True)
    (layout.download_cache / sha1_text(url)).write_bytes(_jpeg()[:200])
    rows = [{"date": dt.date(2014, 1, 1), "media_type": "image", "url": url, "source": "bundled"}]
    _, images = attach_images(rows, layout, LIMITS, index={}, allow_download=False, progress=False)
    assert rows[0]["has_image"] is False and images.rejected == {"a damaged or truncated picture": 1}
    assert not (layout.download_cache / sha1_text(url)).exists()
    assert refusal_record(layout.download_cache, url).read_text() == "a damaged or truncated picture"
    assert not PoliteFetcher(layout.download_cache, LIMITS).cached(url)


def test_at_most_four_at_once_and_resume(http_server, tmp_path):
    active, peak, lock = [0], [0], threading.Lock()
    # requests are answered two by two: a fetcher asking one at a time leaves the first waiting for a
    # partner that never comes (it fails after 10 s), whatever the scheduler does
    pairs = threading.Barrier(2, timeout=10)

    def slowish(h):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        pairs.wait()
        time.sleep(0.15)  # long enough for the other two of four to arrive
        with lock:
            active[0] -= 1
        h.reply(200, _jpeg(), "image/jpeg")

    for i in range(16):
        http_server.routes[f"/p{i}.jpg"] = slowish
    urls = [f"{http_server.url}/p{i}.jpg" for i in range(16)]
    fetcher = PoliteFetcher(tmp_path / "dl", LIMITS, concurrency=4, timeout=5)
    first = fetcher.fetch_all(urls[:10])
    assert first.fetched == 10 and 2 <= peak[0] <= 4
    before = len(http_server.requests)
    again = fetcher.fetch_all(urls)  # an interrupted run resumes: cached pictures are not asked again
    assert again.cached == 10 and again.fetched == 6 and len(http_server.requests) - before == 6
    with pytest.raises(ValueError, match="between 1 and 4"):
        PoliteFetcher(tmp_path / "dl", LIMITS, concurrency=8)


def test_an_offline_build_downloads_no_picture(http_server, tmp_path):
    """``--offline`` with a dump whose entries name picture URLs: the images stage asks no server (the
    entries keep no local picture); without ``--offline`` the same stage downloads them."""
    from lake.layout import LakeLayout
    from pipeline.config import BuildConfig
    from pipeline.runner import Runner
    from pipeline.stages import STAGES
    from tests.conftest import archive_rows, write_jsonl

    rows = archive_rows("2014-01-01", "2014-01-03")
    for i, row in enumerate(rows):
        http_server.routes[f"/a{i}.jpg"] = lambda h: h.reply(200, _jpeg(), "image/jpeg")
        row.pop("image_file", None)
        row.update(media_type="image", url=f"{http_server.url}/a{i}.jpg", hdurl=None)
    dump = write_jsonl(tmp_path / "dump.jsonl", rows)
    first_two = [s for s in STAGES if s.name in ("ingest", "images")]
    offline = BuildConfig(lake=LakeLayout.at(tmp_path / "offline"), sources=["dump"], dump_paths=[dump], offline=True, progress=False)
    Runner(first_two).run(offline)
    assert http_server.requests == []
    online = BuildConfig(lake=LakeLayout.at(tmp_path / "online"), sources=["dump"], dump_paths=[dump], progress=False)
    Runner(first_two).run(online)
    assert len(http_server.requests) == len(rows)
