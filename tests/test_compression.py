"""Compressed responses (app.py ``_enable_compression``): what a browser accepts it gets, byte-exact once
decoded; Dash's component bundles are compressed once per encoding and kept, nothing else is kept."""

from __future__ import annotations

import gzip
import json
import re

import brotli
import pytest
from backports import zstd

DECODERS = {"gzip": gzip.decompress, "br": brotli.decompress, "zstd": zstd.decompress}


@pytest.fixture
def server(tmp_path):
    """A new app (its own bundle cache) over a folder with no lake: its pages, bundles and router callback
    are served all the same."""
    from app import create_app

    app = create_app(lake=tmp_path / "no-lake")
    app.server.config["TESTING"] = True
    return app.server


def same_page(a: bytes, b: bytes) -> bool:
    """Two bodies alike but for the id Dash puts fresh in every page it serves (its config's "end_id")."""
    def masked(body: bytes) -> bytes:
        return re.sub(rb'"end_id":"[^"]*"', b'"end_id":""', body)
    return masked(a) == masked(b)


def bundle_paths(client) -> list[str]:
    page = client.get("/").get_data(as_text=True)
    return re.findall(r'src="(/_dash-component-suites/[^"]+)"', page)


def test_pages_and_bundles_come_in_the_encoding_the_browser_accepts(server):
    client = server.test_client()
    bundles = bundle_paths(client)
    assert len(bundles) >= 8  # React, the renderer, the component libraries
    biggest = max(bundles, key=lambda p: len(client.get(p).data))
    for path in ("/", biggest):
        plain = client.get(path)
        assert "Content-Encoding" not in plain.headers and plain.status_code == 200
        for encoding, decode in DECODERS.items():
            got = client.get(path, headers={"Accept-Encoding": encoding})
            assert got.headers["Content-Encoding"] == encoding and "Accept-Encoding" in got.headers["Vary"]
            assert len(got.data) < len(plain.data) / 2 and same_page(decode(got.data), plain.data)
    # a browser gets the first of zstd, Brotli, gzip it offers (to a remote plain-HTTP site: gzip and deflate)
    assert client.get(biggest, headers={"Accept-Encoding": "gzip, deflate"}).headers["Content-Encoding"] == "gzip"
    assert client.get(biggest, headers={"Accept-Encoding": "gzip, deflate, br, zstd"}).headers["Content-Encoding"] == "zstd"


def test_assets_are_sent_compressed_and_revalidate_to_304(server):
    """Dash sends the assets folder as streams (Bootstrap's CSS, Aladin Lite): compressed too, in an encoding
    a stream takes (deflate over plain HTTP), and a browser's revalidation by ETag still answers 304."""
    import zlib

    client = server.test_client()
    with client.get("/assets/atlas.css") as plain:
        body = plain.data
    with client.get("/assets/atlas.css", headers={"Accept-Encoding": "gzip, deflate"}) as got:
        assert got.headers["Content-Encoding"] == "deflate" and zlib.decompress(got.data) == body
        tag = got.headers["ETag"]
    with client.get("/assets/atlas.css", headers={"Accept-Encoding": "gzip, deflate", "If-None-Match": tag}) as again:
        assert again.status_code == 304 and not again.data
    assert "Accept-Ranges" not in got.headers  # a compressed stream offers no byte ranges


def test_a_byte_range_is_sent_as_it_is(server):
    """A 206 answer's Content-Range counts the file's own bytes: compressing it would send bytes that
    match no range of anything."""
    client = server.test_client()
    with client.get("/assets/atlas.css") as plain:
        body = plain.data
    with client.get("/assets/atlas.css", headers={"Accept-Encoding": "gzip, deflate", "Range": "bytes=10-109"}) as part:
        assert part.status_code == 206 and "Content-Encoding" not in part.headers
        assert part.headers["Content-Range"] == f"bytes 10-109/{len(body)}" and part.data == body[10:110]


def test_only_the_bundles_are_kept_compressed(server):
    client = server.test_client()
    cache = server.config["COMPRESS_CACHE_BACKEND"]()
    bundle = bundle_paths(client)[0]
    first = client.get(bundle, headers={"Accept-Encoding": "gzip"}).data
    assert len(cache) == 1 and client.get(bundle, headers={"Accept-Encoding": "gzip"}).data == first
    # the same file by another fingerprint, a query, or a HEAD request: the same entry, no second compression
    stem, fingerprint, rest = bundle.split(".", 2)
    assert re.fullmatch(r"v[\w-]+m[0-9a-f]+", fingerprint)
    for other in (f"{stem}.v0m1.{rest}", f"{bundle}?cache-buster=1"):
        assert client.get(other, headers={"Accept-Encoding": "gzip"}).data == first
    assert client.head(bundle, headers={"Accept-Encoding": "gzip"}).headers["Content-Length"] == str(len(first))
    assert len(cache) == 1
    kept = dict(cache._items)
    # the page router's callback (what a page load posts first): compressed, decoded intact, never kept
    reply = client.post("/_dash-update-component", headers={"Accept-Encoding": "gzip"}, json={
        "output": ".._pages_content.children..._pages_store.data..",
        "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
        "inputs": [{"id": "_pages_location", "property": "pathname", "value": "/metrics"},
                   {"id": "_pages_location", "property": "search", "value": ""}],
        "changedPropIds": ["_pages_location.pathname"], "state": []})
    assert reply.status_code == 200 and reply.headers["Content-Encoding"] == "gzip"
    assert "No data lake yet" in json.dumps(json.loads(gzip.decompress(reply.data)))
    assert dict(cache._items) == kept and len(cache) == 1


def test_the_bundle_cache_keeps_its_bound_and_drops_the_oldest_first():
    from app import BundleCache

    cache = BundleCache(prefix="/_dash-component-suites/", max_bytes=10)
    cache.set("gzip;", b"never")  # the empty key: a response that is not a bundle
    cache.set("gzip;/a", b"aaaa")
    cache.set("gzip;/b", b"bbbb")
    assert cache.get("gzip;") is None and cache.get("gzip;/a") == b"aaaa"  # /a used last: /b goes first
    cache.set("gzip;/c", b"cccc")
    assert cache.get("gzip;/b") is None and cache.get("gzip;/a") == b"aaaa" and cache.get("gzip;/c") == b"cccc"
    cache.set("gzip;/d", b"d" * 11)  # bigger than the whole cache: not kept, nothing evicted for it
    assert cache.get("gzip;/d") is None and cache.get("gzip;/c") == b"cccc"
    cache.set("gzip;/a", b"a")  # replaced: its size counts once
    cache.set("gzip;/e", b"eeee")
    assert [cache.get(f"gzip;/{k}") for k in "ace"] == [b"a", b"cccc", b"eeee"]
