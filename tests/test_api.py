"""The JSON API's routing and request checks, on a bare Flask app with the blueprint (no Dash, no lake).

The bare app gets a catch-all HTML route like the one Dash pages registers, so these tests show that
``/api/...`` paths never fall through to the app shell.
"""

from __future__ import annotations

import pytest
from flask import Flask

import api


@pytest.fixture(scope="module")
def client():
    server = Flask(__name__)

    @server.route("/", defaults={"path": ""})
    @server.route("/<path:path>")
    def shell(path: str) -> str:  # what Dash answers for any page path
        return "<html>app shell</html>"

    api.register(server)
    server.config["TESTING"] = True
    return server.test_client()


@pytest.mark.parametrize("path", ["/api/nope", "/api/search/nope", "/api/entries/2014-01-01", "/api/", "/api"])
def test_unknown_api_path_is_a_json_404_naming_the_endpoints(client, path):
    r = client.get(path)
    assert r.status_code == 404 and r.is_json, r.data[:200]
    body = r.get_json()
    assert "no API endpoint" in body["error"]
    for endpoint in ("GET /api/search", "GET /api/similar/<date>", "GET /api/entry/<date>", "GET /api/cone",
                     "POST /api/search/image"):
        assert endpoint in body["error"] and endpoint in body["endpoints"]


@pytest.mark.parametrize("method", ["post", "put", "delete"])
def test_unknown_api_path_with_any_method_is_json(client, method):
    r = getattr(client, method)("/api/nope")
    assert r.status_code == 404 and r.is_json


def test_known_path_with_the_wrong_method_is_a_json_405(client):
    r = client.get("/api/search/image")
    assert r.status_code == 405 and r.is_json
    assert "use POST" in r.get_json()["error"] and "POST" in r.headers["Allow"]
    assert client.post("/api/search").status_code == 405


def test_the_galaxy_upload_path_asked_with_get_is_a_405_not_an_objid(client):
    """``curl /api/galaxies/similar`` without ``-F`` is a GET, which the catalogue galaxy's route
    ``/galaxies/<objid>`` took: "'similar' is not a Galaxy Zoo objid"."""
    r = client.get("/api/galaxies/similar")
    assert r.status_code == 405 and r.is_json and r.headers["Allow"] == "POST"
    assert "POST the picture" in r.get_json()["error"]


@pytest.mark.parametrize("path", ["/api/search/image", "/api/categories/image", "/api/galaxies/similar"])
def test_parameters_sent_as_form_fields_are_refused_not_ignored(client, path):
    """``curl -F image=@x.jpg -F k=3`` answered with the default k and said nothing."""
    import io

    r = client.post(path, data={"image": (io.BytesIO(b"not read"), "x.jpg", "image/jpeg"), "k": "3"},
                    content_type="multipart/form-data")
    assert r.status_code == 400 and r.is_json
    assert r.get_json()["error"].startswith("form field 'k' is not read: parameters go in the query string (?k=")
    as_text = client.post(path, data={"image": "photo.jpg"}, content_type="multipart/form-data")  # -F image=photo.jpg
    assert as_text.status_code == 400 and "as a file in multipart form field 'image'" in as_text.get_json()["error"]


@pytest.mark.parametrize("path,said", [("/api/feedback", 'send JSON {"date"'),
                                       ("/api/galaxies/selection", "POST a JSON list of objids")])
def test_a_json_body_sent_as_a_form_is_told_its_content_type(client, path, said):
    """``curl -d '{...}'`` without ``-H 'Content-Type: application/json'`` sends a urlencoded form."""
    r = client.post(path, data='{"date": "2015-04-01", "interesting": true}',
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 400
    assert r.get_json()["error"].startswith(said) and "Content-Type: application/json" in r.get_json()["error"]


def test_pages_outside_api_still_reach_the_app(client):
    r = client.get("/sky")
    assert r.status_code == 200 and b"app shell" in r.data


@pytest.mark.parametrize("url,fragment", [
    ("/api/search?q=stars&k=0", "between 1 and 100"),
    ("/api/search?q=stars&k=ten", "whole number"),
    ("/api/search?q=stars&colour=red", "unknown parameter"),
    ("/api/search?q=stars&from=2014-02-30", "date like"),
    ("/api/search?q=stars&from=2014-03-01&to=2014-02-01", "after"),
    ("/api/search?q=stars&has_image=maybe", "has_image"),
    ("/api/search?q=stars&ra=10", "ra and dec"),
    ("/api/search?q=stars&ra=400&dec=0", "ra must be between"),
    ("/api/cone?ra=10&dec=95", "dec must be between"),
    ("/api/cone", "give ra, dec and r"),
    ("/api/cone?name=" + "M" * 201, "at most 200 characters"),
    ("/api/similar/not-a-date", "date like"),
    ("/api/entry/2014-01-01?x=1", "unknown parameter 'x'; this endpoint takes none"),
    ("/api/clusters/text/abc", "cluster must be a whole number"),
    ("/api/clusters/text/1.5", "cluster must be a whole number"),
    ("/api/search?q=stars&k=1000", "between 1 and 100"),
    ("/api/similar/20140107", "date like"),
    ("/api/search?q=stars&k=5&k=50", "'k' is given more than once"),
    ("/api/cone?ra=10&dec=20&r=1&r=30", "'r' is given more than once"),
])
def test_known_endpoint_with_a_bad_parameter_is_a_json_400(client, url, fragment):
    r = client.get(url)
    assert r.status_code == 400 and r.is_json, r.data[:300]
    assert fragment in r.get_json()["error"]


def test_a_missing_entry_is_a_404_but_a_bug_is_not(client, monkeypatch, tmp_path):
    import datetime as dt

    import pyarrow as pa

    from app import create_app
    from lake.layout import LakeLayout
    from lake.schema import SCHEMAS
    from lake.writer import LakeWriter

    layout = LakeLayout.at(tmp_path / "lake")  # a real lake of one entry: 2014-01-01 is not in it
    entries = [{"date": dt.date(2001, 1, 1), "title": "one", "explanation": "", "media_type": "image",
                "has_image": False, "year": 2001, "source": "test", "content_sha1": "x"}]
    LakeWriter(layout).publish_tables({"entries": pa.Table.from_pylist(entries, schema=SCHEMAS["entries"]),
                                       "categories": SCHEMAS["categories"].empty_table(),
                                       "objects": SCHEMAS["objects"].empty_table()},
                                      {"taxonomy": {"categories": []}}, version="one")
    app_client = create_app(lake=layout.root).server.test_client()
    assert app_client.get("/api/entry/2001-01-01").status_code == 200
    r = app_client.get("/api/entry/2014-01-01")
    assert r.status_code == 404 and "no entry for 2014-01-01" in r.get_json()["error"]

    def broken():
        raise KeyError("some_setting")

    monkeypatch.setattr(api, "engine", broken)
    r = client.get("/api/search?q=stars")
    assert r.status_code == 500 and "some_setting" not in r.get_json()["error"]


def test_what_a_lake_lacks_is_a_503_that_says_so_not_an_empty_answer_or_a_400(tmp_path):
    """A lake built without the sky stage, and without the Galaxy Zoo collection: a cone (on its own or
    as a search filter) and every galaxy request answer 503 with the reason, as a lake without APOD
    does. Before, the cone answered 200 with nothing in it (as if the sky were empty there), a cone
    search and the galaxy requests blamed the request (400), and ``space=image`` spoke of pictures."""
    from app import create_app
    from bench.synthetic_lake import write_synthetic_lake

    layout = write_synthetic_lake(tmp_path / "lake", n=200)  # APOD entries, no objects, no galaxies
    app_client = create_app(lake=layout.root).server.test_client()
    for url, reason in (("/api/cone?ra=10&dec=20&r=5", "no sky positions"),
                        ("/api/search?q=synthetic&mode=keyword&ra=10&dec=20&r=5", "no sky positions"),
                        ("/api/galaxies", "no Galaxy Zoo collection"),
                        ("/api/galaxies/587722981741363294", "no Galaxy Zoo collection"),
                        ("/api/galaxies/587722981741363294?space=image", "no Galaxy Zoo collection")):
        r = app_client.get(url)
        assert r.status_code == 503 and reason in r.get_json()["error"], (url, r.status_code, r.get_json())
        assert str(tmp_path) not in r.get_json()["error"]  # the lake is named by its setting, not its path
    assert app_client.get("/api/entry/1000-01-01").status_code == 200  # the rest still answers
