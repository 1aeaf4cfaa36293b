import datetime as dt
import json
from urllib.parse import parse_qs, urlparse

import pytest

from pipeline.sources import SourceError
from pipeline.sources.nasa import NasaApodClient, date_pages, load


def _entries(start: dt.date, end: dt.date) -> list[dict]:
    out, d = [], start
    while d <= end:
        out.append({"date": d.isoformat(), "title": f"Entry {d}", "explanation": "Stars.",
                    "media_type": "image", "url": f"https://example.invalid/{d}.jpg"})
        d += dt.timedelta(days=1)
    return out


def _api(state: dict):
    def handle(h):
        q = parse_qs(urlparse(h.path).query)
        assert q["api_key"] == ["TESTKEY"]
        state["calls"] = state.get("calls", 0) + 1
        if state.pop("fail_next", None):
            h.reply(429, b'{"error": "slow down"}', headers={"Retry-After": "0"})
            return
        if state.get("bad_json"):
            h.reply(200, b"<html>Service Unavailable</html>", "text/html")
            return
        start, end = (dt.date.fromisoformat(q[k][0]) for k in ("start_date", "end_date"))
        h.reply(200, json.dumps(_entries(start, end)).encode())
    return handle


def _client(server, tmp_path, **kw) -> NasaApodClient:
    return NasaApodClient(api_url=f"{server.url}/planetary/apod", api_key="TESTKEY", cache_dir=tmp_path / "cache",
                          backoff_seconds=0.01, **kw)


def test_date_pages_cover_range_without_overlap():
    pages = list(date_pages(dt.date(2020, 1, 1), dt.date(2020, 3, 1), 30))
    assert pages[0] == (dt.date(2020, 1, 1), dt.date(2020, 1, 30))
    assert pages[-1][1] == dt.date(2020, 3, 1)
    assert all(b[0] == a[1] + dt.timedelta(days=1) for a, b in zip(pages, pages[1:]))


def test_fetches_date_range_in_pages_and_caches(http_server, tmp_path):
    state: dict = {}
    http_server.routes["/planetary/apod"] = _api(state)
    client = _client(http_server, tmp_path, page_days=10)
    batch = load(client, dt.date(2021, 1, 1), dt.date(2021, 1, 25))
    assert [r["date"] for r in batch.records][:2] == ["2021-01-01", "2021-01-02"]
    assert len(batch.records) == 25 and state["calls"] == 3
    again = load(_client(http_server, tmp_path, page_days=10), dt.date(2021, 1, 1), dt.date(2021, 1, 25))
    assert again.fingerprint == batch.fingerprint and state["calls"] == 3  # all pages from the cache


def test_429_then_success(http_server, tmp_path):
    state = {"fail_next": True}
    http_server.routes["/planetary/apod"] = _api(state)
    records = _client(http_server, tmp_path).fetch(dt.date(2021, 2, 1), dt.date(2021, 2, 3), progress=False)
    assert len(records) == 3 and state["calls"] == 2


def test_bad_json_is_a_clear_error_and_keeps_earlier_pages(http_server, tmp_path):
    state: dict = {}
    http_server.routes["/planetary/apod"] = _api(state)
    client = _client(http_server, tmp_path, page_days=5)
    client.fetch(dt.date(2021, 3, 1), dt.date(2021, 3, 5), progress=False)
    state["bad_json"] = True
    with pytest.raises(SourceError, match="invalid JSON for 2021-03-06..2021-03-10"):
        client.fetch(dt.date(2021, 3, 1), dt.date(2021, 3, 10), progress=False)
    assert (tmp_path / "cache" / "2021-03-01_2021-03-05.json").is_file()


def test_persistent_server_error_gives_up(http_server, tmp_path):
    http_server.routes["/planetary/apod"] = lambda h: h.reply(503, b"{}")
    with pytest.raises(SourceError, match="HTTP 503"):
        _client(http_server, tmp_path, max_retries=2).fetch(dt.date(2021, 1, 1), dt.date(2021, 1, 2), progress=False)


def test_a_spent_allowance_says_to_set_a_key_and_that_a_rerun_goes_on(http_server, tmp_path):
    """429 after every retry said only "HTTP 429"; DEMO_KEY allows 30 requests an hour."""
    http_server.routes["/planetary/apod"] = lambda h: h.reply(429, b'{"error": "slow down"}',
                                                              headers={"Retry-After": "0"})
    with pytest.raises(SourceError, match=r"too many requests \(HTTP 429\).*set NASA_API_KEY.*goes on from where"):
        _client(http_server, tmp_path, max_retries=1).fetch(dt.date(2021, 1, 1), dt.date(2021, 1, 2), progress=False)


def test_an_unreachable_api_never_prints_the_key(tmp_path, caplog):
    """requests quotes the whole URL in its connection errors; the key must not reach a log or an error."""
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = NasaApodClient(api_url=f"http://127.0.0.1:{port}/planetary/apod", api_key="SECRETKEY123",
                            cache_dir=tmp_path / "cache", max_retries=1, backoff_seconds=0.01)
    with caplog.at_level("WARNING"), pytest.raises(SourceError) as failed:
        client.fetch(dt.date(2021, 1, 1), dt.date(2021, 1, 2), progress=False)
    assert "unreachable" in str(failed.value) and "SECRETKEY123" not in str(failed.value)
    assert failed.value.__cause__ is None and failed.value.__suppress_context__
    assert caplog.records and not any("SECRETKEY123" in r.getMessage() for r in caplog.records)


def test_rejected_key(http_server, tmp_path):
    http_server.routes["/planetary/apod"] = lambda h: h.reply(403, b'{"error": {"code": "API_KEY_INVALID"}}')
    with pytest.raises(SourceError, match="NASA_API_KEY"):
        _client(http_server, tmp_path).fetch(dt.date(2021, 1, 1), dt.date(2021, 1, 2), progress=False)


def test_api_beside_other_sources_asks_only_for_the_days_after_them(http_server, tmp_path):
    """`--source dump --source nasa` (or bundled): the API fills in after the latest day the other sources
    hold; `--start` still asks from that day; every record of the dump is kept."""
    from lake.layout import LakeLayout
    from pipeline.config import BuildConfig
    from pipeline.stages import load_sources

    state: dict = {}
    http_server.routes["/planetary/apod"] = _api(state)
    today = dt.date.today()
    dump = tmp_path / "dump.jsonl"
    dump.write_text("\n".join(json.dumps(r) for r in _entries(today - dt.timedelta(days=40),
                                                               today - dt.timedelta(days=3))) + "\n")
    common = dict(dump_paths=[dump], nasa_api_url=f"{http_server.url}/planetary/apod", nasa_api_key="TESTKEY",
                  lake=LakeLayout.at(tmp_path / "lake"))
    dumped, api = load_sources(BuildConfig(sources=["dump", "nasa"], **common))
    assert len(dumped.records) == 38
    assert [r["date"] for r in api.records] == [(today - dt.timedelta(days=d)).isoformat() for d in (2, 1, 0)]
    asked = [parse_qs(urlparse(r).query) for r in http_server.requests]
    assert [q["start_date"] for q in asked] == [[(today - dt.timedelta(days=2)).isoformat()]]
    start = today - dt.timedelta(days=5)
    dumped, api = load_sources(BuildConfig(sources=["dump", "nasa"], start=start, **common))
    assert api.records[0]["date"] == start.isoformat() and dumped.records[0]["date"] == start.isoformat()
