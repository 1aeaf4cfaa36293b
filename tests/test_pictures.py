"""Where each entry's picture comes from (lake/pictures.py): the one rule every page and the API use."""

from __future__ import annotations

import pytest

from lake.pictures import full_size_url, picture_of, safe_url, youtube_still


def test_stored_thumbnail_comes_first():
    p = picture_of(image_path="thumbs/2014-01-02-0123456789ab.jpg", url="https://apod.nasa.gov/apod/image/1401/a.jpg",
                   media_type="image")
    assert p.kind == "lake" and p.src == "/thumbs/2014-01-02-0123456789ab.jpg"
    assert p.link.startswith("https://apod.nasa.gov/")
    # a lake built before thumbnails were named by their content
    assert picture_of(image_path="thumbs/2014-01-02.jpg", url=None, media_type="image").src == "/thumbs/2014-01-02.jpg"


@pytest.mark.parametrize("path", ["thumbs/../manifest.json", "/etc/passwd", "thumbs/2014-01-02.png",
                                  "cutouts/2014-01-02.jpg", 'thumbs/2014-01-02-"x.jpg'])
def test_a_stored_path_reaches_a_page_only_when_it_names_a_served_thumbnail(path):
    url = "https://apod.nasa.gov/apod/image/1401/a.jpg"
    assert picture_of(image_path=path, url=url, media_type="image").src == url


def test_picture_without_thumbnail_loads_from_nasa():
    url = "https://apod.nasa.gov/apod/image/1401/m7_fenyes_960.jpg"
    p = picture_of(image_path=None, url=url, media_type="image")
    assert p.kind == "nasa" and p.src == url and "apod.nasa.gov" in p.origin


@pytest.mark.parametrize("url,still", [
    ("https://www.youtube.com/embed/hwQTH0IGrwE?rel=0", "https://img.youtube.com/vi/hwQTH0IGrwE/hqdefault.jpg"),
    ("//youtube.com/embed/abc_DEF-123?rel=0", "https://img.youtube.com/vi/abc_DEF-123/hqdefault.jpg"),
    ("https://youtu.be/hwQTH0IGrwE", "https://img.youtube.com/vi/hwQTH0IGrwE/hqdefault.jpg"),
    ("//player.vimeo.com/video/108650530?title=0", None),
])
def test_videos_get_a_still_or_a_badge(url, still):
    p = picture_of(image_path=None, url=url, media_type="video")
    assert p.kind == "video" and p.src == still and p.link == safe_url(url)
    assert youtube_still(url) == still


@pytest.mark.parametrize("url", ["javascript:alert(1)", "data:image/png;base64,AAAA", "ftp://x/y.jpg",
                                 "https://a.b/c d.jpg", 'https://a.b/"onerror=x', None, ""])
def test_only_http_urls_reach_a_page(url):
    assert safe_url(url) is None
    p = picture_of(image_path=None, url=url, media_type="image")
    assert p.kind == "none" and p.src is None and p.link is None


def test_protocol_relative_becomes_https():
    assert safe_url("//apod.nasa.gov/x.jpg") == "https://apod.nasa.gov/x.jpg"
    assert picture_of(image_path=None, url=None, media_type="other").kind == "none"


def test_full_size_link_only_to_http_urls():
    page = "https://apod.nasa.gov/apod/ap150101.html"
    assert full_size_url(hdurl="https://apod.nasa.gov/big.jpg", url="https://apod.nasa.gov/x.jpg", page=page) == \
        "https://apod.nasa.gov/big.jpg"
    assert full_size_url(hdurl="javascript:alert(1)", url="//apod.nasa.gov/x.jpg", page=page) == \
        "https://apod.nasa.gov/x.jpg"
    assert full_size_url(hdurl="ftp://x/y.jpg", url=None, page=page) == page
