"""The galaxy cutout fetcher against a real HTTP server on 127.0.0.1: many galaxies, 429 with
Retry-After, timeouts, corrupt and non-image answers, and resuming an interrupted fetch."""

from __future__ import annotations

import time
from urllib.parse import parse_qs, urlsplit

import pytest
from PIL import Image

from atlas.images import ImageLimits
from lake.layout import LakeLayout
from pipeline.cutouts import CutoutService, fetch_cutouts
from pipeline.fetch import PoliteFetcher
from tests.galaxy_pictures import render

LIMITS = ImageLimits(max_bytes=2_000_000, max_pixels=20_000_000)
GALAXIES = [(f"86474746903{i:08d}", 10.0 + i * 0.01, -0.5 + i * 0.001) for i in range(40)]


def _position(handler) -> tuple[float, float]:
    q = parse_qs(urlsplit(handler.path).query)
    return float(q["ra"][0]), float(q["dec"][0])


def _fetch(layout: LakeLayout, url: str, galaxies=GALAXIES, *, timeout: float = 2.0, retries: int = 2):
    waits: list[float] = []
    fetcher = PoliteFetcher(layout.download_cache, LIMITS, retries=retries, backoff=0.01, timeout=timeout,
                            sleep=waits.append)
    report = fetch_cutouts(galaxies, layout, service=CutoutService(url + "/cutout", scale=0.3, size=64),
                           fetcher=fetcher, limits=LIMITS)
    return report, waits


def test_every_galaxy_gets_one_consistently_scaled_cutout(http_server, tmp_path):
    asked = []

    def cutout(h):
        ra, dec = _position(h)
        q = parse_qs(urlsplit(h.path).query)
        asked.append((q["scale"][0], q["width"][0], q["height"][0]))
        h.reply(200, render("spiral", seed=int(ra * 1000), size=100), "image/jpeg")

    http_server.routes["/cutout"] = cutout
    layout = LakeLayout(tmp_path / "lake")
    report, _ = _fetch(layout, http_server.url)
    assert report.fetched == len(GALAXIES) and not report.failed
    assert set(asked) == {("0.3", "64", "64")}  # one angular scale for the whole catalogue
    for objid, _, _ in GALAXIES:
        with Image.open(layout.cutout(objid)) as img:
            assert img.size == (64, 64)  # a 100-px answer is brought to the service's size
    assert not any(layout.download_cache.glob("*"))  # raw bodies are not kept twice


def test_rate_limit_timeout_corrupt_and_html(http_server, tmp_path):
    bad = {g[0]: kind for g, kind in zip(GALAXIES[:4], ("busy", "slow", "corrupt", "html"))}
    by_ra = {round(g[1], 6): g[0] for g in GALAXIES}
    calls: dict[str, int] = {}

    def cutout(h):
        ra, _ = _position(h)
        objid = by_ra[round(ra, 6)]
        calls[objid] = calls.get(objid, 0) + 1
        kind = bad.get(objid)
        if kind == "busy" and calls[objid] < 3:
            h.reply(429, b"slow down", "text/plain", {"Retry-After": "3"})
        elif kind == "slow":
            time.sleep(1.0)
            h.reply(200, render("smooth", seed=1), "image/jpeg")
        elif kind == "corrupt":
            h.reply(200, render("smooth", seed=2)[:300], "image/jpeg")
        elif kind == "html":
            h.reply(200, b"<html>maintenance</html>", "text/html")
        else:
            h.reply(200, render("smooth", seed=3), "image/jpeg")

    http_server.routes["/cutout"] = cutout
    layout = LakeLayout(tmp_path / "lake")
    report, waits = _fetch(layout, http_server.url, GALAXIES[:8], timeout=0.4, retries=2)
    assert report.fetched == 5  # the 4 good ones and the rate-limited one after its retries
    assert calls[GALAXIES[0][0]] == 3 and waits.count(3.0) == 2  # Retry-After honoured twice
    reasons = " | ".join(report.failed)
    assert sum(report.failed.values()) == 3
    assert "timed out" in reasons or "after 3 tries" in reasons
    assert "damaged or truncated" in reasons and "not an image" in reasons
    for objid, kind in bad.items():
        assert layout.cutout(objid).is_file() == (kind == "busy")
    # no body is cached for next time; the corrupt and the HTML answers are remembered as refused for a day
    assert sorted(p.suffix for p in layout.download_cache.glob("*")) == [".refused", ".refused"]


def test_an_interrupted_fetch_resumes_with_what_is_missing(http_server, tmp_path):
    served = []

    def cutout(h):
        ra, _ = _position(h)
        served.append(ra)
        h.reply(200, render("smooth", seed=int(ra * 1000)), "image/jpeg")

    http_server.routes["/cutout"] = cutout
    layout = LakeLayout(tmp_path / "lake")
    first, _ = _fetch(layout, http_server.url, GALAXIES[:15])  # "interrupted" after 15 galaxies
    assert first.fetched == 15
    served.clear()
    second, _ = _fetch(layout, http_server.url)
    assert second.present == 15 and second.fetched == len(GALAXIES) - 15
    assert len(served) == len(GALAXIES) - 15  # nothing downloaded twice


def test_a_limited_fetch_fetches_the_next_part_each_time(http_server, tmp_path):
    """``--cutout-limit 15`` counts galaxies still without a cutout: the second build fetches the next
    15 (it counted the 15 already there, and fetched nothing)."""
    http_server.routes["/cutout"] = lambda h: h.reply(200, render("smooth", seed=int(_position(h)[0] * 1000)),
                                                      "image/jpeg")
    layout = LakeLayout(tmp_path / "lake")
    fetcher = PoliteFetcher(layout.download_cache, LIMITS, retries=0, timeout=2.0)
    service = CutoutService(http_server.url + "/cutout", scale=0.3, size=64)
    for part in (1, 2):
        report = fetch_cutouts(GALAXIES, layout, service=service, fetcher=fetcher, limits=LIMITS, limit=15)
        assert report.fetched == 15 and report.present == 15 * (part - 1)
    assert {o for o, _, _ in GALAXIES if layout.cutout(o).is_file()} == {o for o, _, _ in GALAXIES[:30]}


def test_a_fetch_from_another_service_replaces_the_cutouts_it_did_not_make(http_server, tmp_path):
    """Cutouts were kept by galaxy alone: pointed at another survey (or another scale), a fetch found
    every galaxy "present" and kept the first survey's pictures. Each cutout's service is recorded now;
    another service's cutouts are fetched again, and one it cannot fetch keeps its old picture."""
    import json

    from pipeline.cutouts import cutout_sources

    def survey(colour: str):
        def cutout(h):
            ra, _ = _position(h)
            if colour == "red" and round(ra, 6) == GALAXIES[0][1]:
                h.reply(404, b"no such field", "text/plain")
                return
            h.reply(200, render("smooth", seed=int(ra * 1000), size=64), "image/jpeg")
        return cutout

    http_server.routes["/sdss"], http_server.routes["/legacy"] = survey("grey"), survey("red")
    layout = LakeLayout(tmp_path / "lake")
    fetcher = PoliteFetcher(layout.download_cache, LIMITS, retries=0, timeout=2.0)
    galaxies = GALAXIES[:6]
    sdss = CutoutService(http_server.url + "/sdss", scale=0.3, size=64)
    assert fetch_cutouts(galaxies, layout, service=sdss, fetcher=fetcher, limits=LIMITS).fetched == 6
    first = {o: layout.cutout(o).read_bytes() for o, _, _ in galaxies}
    legacy = CutoutService(http_server.url + "/legacy", scale=0.3, size=64)
    report = fetch_cutouts(galaxies, layout, service=legacy, fetcher=fetcher, limits=LIMITS)
    assert (report.present, report.fetched, report.replaced, sum(report.failed.values())) == (0, 5, 5, 1)
    recorded = json.loads(layout.cutout_sources.read_text())
    assert recorded[galaxies[0][0]] == sdss.key and layout.cutout(galaxies[0][0]).read_bytes() == first[galaxies[0][0]]
    assert {recorded[o] for o, _, _ in galaxies[1:]} == {legacy.key}
    assert report.sources == cutout_sources(layout)  # what the stage reads instead of listing the folder again
    assert fetch_cutouts(galaxies, layout, service=legacy, fetcher=fetcher, limits=LIMITS).present == 5
    finer = CutoutService(http_server.url + "/legacy", scale=0.2, size=64)  # another scale: other pictures
    assert fetch_cutouts(galaxies[1:], layout, service=finer, fetcher=fetcher, limits=LIMITS).replaced == 5


def test_cutouts_fetched_before_sources_were_recorded_count_as_the_default_service(tmp_path):
    from pipeline.cutouts import cutout_sources

    layout = LakeLayout(tmp_path / "lake")
    layout.cutouts.mkdir(parents=True)
    layout.cutout("587722981741363294").write_bytes(b"jpeg")
    assert cutout_sources(layout) == {"587722981741363294": CutoutService().key}


def test_offline_builds_refuse_to_fetch():
    from pipeline.config import BuildConfig

    with pytest.raises(ValueError, match="--offline forbids the network"):
        BuildConfig(fetch_cutouts=True, offline=True)
