"""Oddities through the JSON API and the CLI on the demo lake: ranking, feedback, exports, concurrency."""

from __future__ import annotations

import gzip
import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from lake.reader import LakeReader
from pages.ids import Oddities
from tests.conftest import IMAGES, in_threads

pytestmark = pytest.mark.slow


def test_anomaly_table_in_the_lake(demo_lake):
    reader = LakeReader.open(demo_lake)
    df = reader.query("SELECT * FROM anomalies")
    assert len(df) == reader.count("entries") and sorted(df["rank"]) == list(range(1, len(df) + 1))
    pictures = df[df.has_picture]
    assert len(pictures) == reader.manifest["counts"]["with_image"] and pictures.cross_modal.notna().all()
    assert df[~df.has_picture].cross_modal.isna().all() and df.text_knn.notna().all()
    assert reader.manifest["anomaly"]["k"] == 10 and "caption_mismatch" in reader.manifest["anomaly"]["detectors"]


def test_oddities_feedback_rerank_and_export(demo_client):
    c = demo_client
    first = c.get("/api/oddities?k=5&user=alice").get_json()
    assert first["total"] > 100 and len(first["results"]) == 5 and all(r["why"] for r in first["results"])
    top = first["results"][0]["date"]
    ok = c.post("/api/feedback", json={"date": top, "interesting": False, "user": "alice"})
    assert ok.status_code == 200
    after = c.get("/api/oddities?k=5&user=alice").get_json()["results"]
    assert top not in [r["date"] for r in after]  # alice's "not interesting" moved it to the end
    assert c.get("/api/oddities?k=5&user=bob").get_json()["results"][0]["date"] == top  # bob's list is his own
    picture_list = c.get("/api/oddities?k=3&detector=picture_vs_text_neighbours").get_json()["results"]
    assert len(picture_list) == 3 and all("text neighbours' pictures" in r["why"] for r in picture_list)
    csv = c.get("/api/oddities/export?format=csv&user=alice")
    assert csv.status_code == 200 and "attachment" in csv.headers["Content-Disposition"]
    table = pd.read_csv(io.BytesIO(csv.data))
    assert table.date.iloc[-1] == top and {"cross_modal", "why", "score"} <= set(table.columns)
    parquet = pd.read_parquet(io.BytesIO(c.get("/api/oddities/export?format=parquet").data))
    assert len(parquet) == first["total"]
    labels = pd.read_csv(io.BytesIO(c.get("/api/feedback/export").data))
    assert (labels.date == top).any() and set(labels.columns) == {"date", "interesting", "user", "at"}


def test_the_marks_export_names_people_by_pseudonym_not_by_what_marks_as_them(demo_client):
    """The export is public; the Oddities page's per-browser id (or a name sent to the API) marks as that
    person, so the export shows a pseudonym instead: the same for the same person, so marks still group
    by person. A name that is a spreadsheet formula cannot reach the file either."""
    from atlas.userstate import pseudonym

    c = demo_client
    top, second = (r["date"] for r in c.get("/api/oddities?k=2").get_json()["results"])
    browser, formula = "3f9c2a7be01d44c8", '=HYPERLINK("http://example.invalid","x")'
    for user, day in ((browser, top), (browser, second), (formula, top)):
        assert c.post("/api/feedback", json={"date": day, "interesting": True, "user": user}).status_code == 200
    csv = c.get("/api/feedback/export?format=csv")
    assert csv.headers["Content-Type"] == "text/csv; charset=utf-8"
    parquet = c.get("/api/feedback/export?format=parquet").data
    for body in (csv.data, parquet):
        assert browser.encode() not in body and b"HYPERLINK" not in body
    marks = pd.read_parquet(io.BytesIO(parquet))
    assert marks.user.str.fullmatch(r"u-[0-9a-f]{12}").all()
    mine = marks[marks.user == pseudonym(browser)]
    assert {top, second} <= set(mine.date) and pseudonym(formula) != pseudonym(browser)
    assert (pd.read_csv(io.BytesIO(csv.data)).user == marks.user).all()


@pytest.mark.parametrize("body,status,fragment", [
    ({"date": "2014-01-07"}, 400, "send JSON"),
    ({"date": "2014-13-01", "interesting": True}, 400, "a date like"),
    ({"date": "1990-01-01", "interesting": True}, 404, "no entry"),
    ({"date": "2014-01-07", "interesting": "yes"}, 400, "true, false or null"),
    ({"date": "2014-01-07", "interesting": 1}, 400, "true, false or null"),  # 1 == True in Python, not in JSON
    ({"date": "2014-01-07", "interesting": True, "usr": "me"}, 400, "unknown field 'usr'"),
    ({"date": "2014-01-07", "interesting": True, "user": {"a": 1}}, 400, "user must be a string"),
    ({"date": "20140107", "interesting": True}, 400, "a date like"),
    ({"date": 20140107, "interesting": True}, 400, "a date like"),
])
def test_bad_feedback_gets_a_clear_error(demo_client, body, status, fragment):
    r = demo_client.post("/api/feedback", json=body)
    assert r.status_code == status and fragment in r.get_json()["error"]
    assert demo_client.get("/api/oddities?detector=nope").status_code == 400
    assert demo_client.get("/api/oddities/export?format=xls").status_code == 400


def test_a_state_folder_that_cannot_be_written_is_a_clear_503_and_the_list_still_answers(demo_lake, tmp_path,
                                                                                          monkeypatch):
    from app import create_app

    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("COSMIC_ATLAS_STATE", str(blocked / "state"))
    c = create_app(lake=demo_lake).server.test_client()
    listed = c.get("/api/oddities?k=3&user=alice")
    assert listed.status_code == 200 and len(listed.get_json()["results"]) == 3  # the detectors' own order
    top = listed.get_json()["results"][0]["date"]
    stored = c.post("/api/feedback", json={"date": top, "interesting": True, "user": "alice"})
    assert stored.status_code == 503 and "COSMIC_ATLAS_STATE" in stored.get_json()["error"]
    assert str(tmp_path) not in stored.get_json()["error"]  # the path and the OS error go to the log only
    # a thumb on the Oddities page says the same where the list's note stands (before: nothing happened)
    response = _thumb(c, date=top, user="alice")
    assert Oddities.VERSION not in response  # the list is not refreshed: nothing changed
    note = json.dumps(response[Oddities.NOTE])
    assert "Your mark was not stored" in note and "COSMIC_ATLAS_STATE" in note and str(tmp_path) not in note
    # the folder fixed: the store is tried again after a while (until then the failure answers at once)
    blocked.unlink()
    assert c.post("/api/feedback", json={"date": top, "interesting": True, "user": "alice"}).status_code == 503
    import services
    monkeypatch.setattr(services, "FEEDBACK_RETRY_SECONDS", 0.0)
    stored = c.post("/api/feedback", json={"date": top, "interesting": True, "user": "alice"})
    assert stored.status_code == 200 and c.get("/api/oddities?k=3&user=alice").get_json()["results"][0]["date"] == top
    # a damaged labels' file: a 503 that says so, not a 500
    damaged = tmp_path / "damaged-state"
    damaged.mkdir()
    monkeypatch.setenv("COSMIC_ATLAS_STATE", str(damaged))
    from atlas.userstate import default_path
    default_path(demo_lake).write_bytes(b"this is not a database at all, only text" * 50)
    c = create_app(lake=demo_lake).server.test_client()
    assert c.get("/api/oddities?k=3&user=alice").status_code == 200  # the detectors' order
    refused = c.post("/api/feedback", json={"date": top, "interesting": True, "user": "alice"})
    assert refused.status_code == 503 and "damaged" in refused.get_json()["error"]
    assert str(tmp_path) not in refused.get_json()["error"]


def _thumb(c, *, date: object, user: str) -> dict:
    """Click a thumbs-up on the Oddities page as Dash's renderer does: the callback's response."""
    c.get("/oddities")  # Dash registers page callbacks on the first request
    dep = next(d for d in c.get("/_dash-dependencies").get_json()
               if f"{Oddities.VERSION}.data" in d["output"] and not d.get("clientside_function"))
    thumb = {"date": date, "label": "up", "type": Oddities.THUMB}
    reply = c.post("/_dash-update-component", json={
        "output": dep["output"],
        "outputs": [{"id": o.split(".")[0], "property": o.split(".", 1)[1]} for o in dep["output"].strip(".").split("...")],
        "inputs": [[{"id": thumb, "property": "n_clicks", "value": 1}]],
        "state": [{"id": Oddities.USER, "property": "data", "value": user},
                  {"id": Oddities.VERSION, "property": "data", "value": 3}],
        "changedPropIds": [json.dumps(thumb, separators=(",", ":")) + ".n_clicks"]})
    assert reply.status_code == 200, reply.data[:500]
    return reply.get_json()["response"]


def test_a_thumb_for_no_entry_is_refused_as_the_api_refuses_it(demo_client):
    """The page's thumbs take the API's checks: a hand-made click naming a date with no entry stored a
    mark for it, and a date that is no date failed the callback."""
    from atlas.userstate import pseudonym

    c = demo_client
    for date in ("1990-01-01", "x", 20140107):
        response = _thumb(c, date=date, user="mallory")
        assert Oddities.NOTE in response, (date, response)
        note = json.dumps(response[Oddities.NOTE])
        assert "Your mark was not stored: there is no entry for" in note, note
    assert pseudonym("mallory") not in set(pd.read_csv(io.BytesIO(c.get("/api/feedback/export").data)).user)
    top = c.get("/api/oddities?k=1").get_json()["results"][0]["date"]
    assert Oddities.VERSION in _thumb(c, date=top, user="mallory")  # a real entry is marked, the list refreshed
    assert pseudonym("mallory") in set(pd.read_csv(io.BytesIO(c.get("/api/feedback/export").data)).user)


def test_twenty_clients_clicking_at_once_lose_nothing(demo_app):
    dates = LakeReader.open(demo_app.server.extensions["cosmic_atlas"].layout.root).query(
        "SELECT strftime(date, '%Y-%m-%d') AS d FROM entries ORDER BY date LIMIT 5").d.tolist()

    def client(i: int) -> None:
        c = demo_app.server.test_client()
        for d in dates:
            r = c.post("/api/feedback", json={"date": d, "interesting": i % 2 == 0, "user": f"crowd{i}"})
            assert r.status_code == 200, r.get_data(as_text=True)

    from atlas.userstate import pseudonym

    assert in_threads(client, 20) == []
    history = pd.read_csv(io.BytesIO(demo_app.server.test_client().get("/api/feedback/export").data))
    assert history.user.isin({pseudonym(f"crowd{i}") for i in range(20)}).sum() == 20 * len(dates)


def test_cluster_lists_download(demo_client):
    clusters = demo_client.get("/api/clusters/text").get_json()["clusters"]
    assert clusters and sum(c["size"] for c in clusters) == 120
    first = clusters[0]
    plain = demo_client.get(f"/api/clusters/text/{first['cluster']}?format=csv").data
    table = pd.read_csv(io.BytesIO(plain))
    assert len(table) == first["size"] and {"date", "title", "credit", "copyright", "licence_note"} <= set(table.columns)
    packed = demo_client.get(f"/api/clusters/text/{first['cluster']}?format=csv", headers={"Accept-Encoding": "gzip"})
    assert packed.headers["Content-Encoding"] == "gzip" and gzip.decompress(packed.data) == plain  # as browsers get it
    body = demo_client.get("/api/clusters/image/0?format=parquet").data
    assert len(pd.read_parquet(io.BytesIO(body))) > 0
    assert b"apod.nasa.gov" in pq.read_schema(io.BytesIO(body)).metadata[b"licence"]  # the terms travel along
    assert demo_client.get("/api/clusters/sound").status_code == 400
    assert demo_client.get("/api/clusters/text/9999").status_code == 404
    minus = demo_client.get("/api/clusters/text/-1")  # Flask's <int:…> did not match it: the endpoint list
    assert minus.status_code == 404 and minus.get_json()["error"] == "no cluster -1 in the text map"


def test_the_oddities_export_says_what_it_left_out(demo_client, monkeypatch):
    """The API exports the ranked list up to its row cap and says how many rows it left out (before, the
    list was cut silently; the cluster export already said so)."""
    import api

    total = demo_client.get("/api/oddities?k=1").get_json()["total"]
    whole = demo_client.get("/api/oddities/export?format=csv")
    assert "X-Rows-Omitted" not in whole.headers and len(pd.read_csv(io.BytesIO(whole.data))) == total
    monkeypatch.setattr(api, "MAX_EXPORT_ROWS", 10)
    capped = demo_client.get("/api/oddities/export?format=csv")
    assert len(pd.read_csv(io.BytesIO(capped.data))) == 10 and int(capped.headers["X-Rows-Omitted"]) == total - 10


def test_cli_oddities_answers_without_the_marks_store_and_exports_the_whole_list(demo_lake, tmp_path, monkeypatch,
                                                                               capsys, caplog):
    """As the API: where people's marks cannot be read, the CLI lists and exports the detectors' own order
    (before, it stopped with an error); its export holds every row, with the licence note."""
    import logging

    from pipeline import cli

    blocked = tmp_path / "a-file-not-a-folder"
    blocked.write_text("")
    monkeypatch.setenv("COSMIC_ATLAS_STATE", str(blocked / "state"))
    out = tmp_path / "oddities.parquet"
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        assert cli.main(["oddities", "--export", str(out), "--lake", str(demo_lake)]) == 0
    assert "without your marks" in caplog.text
    table = pq.read_table(out)
    assert table.num_rows == LakeReader.open(demo_lake).count("entries") and b"licence" in table.schema.metadata
    assert "licence_note" in table.column_names
    capsys.readouterr()
    assert cli.main(["oddities", "-k", "3", "--lake", str(demo_lake)]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    assert cli.main(["search", "--image", str(IMAGES / "2014-01-20.jpg"), "-k", "0", "--lake", str(demo_lake)]) == 2
    assert "k must be between 1 and 100" in capsys.readouterr().err


def test_the_pages_download_is_the_list_as_shown_and_puts_no_browser_id_in_a_url(demo_client):
    """The Oddities page's list download comes through its callback (a POST): its links carried the
    browser's id, which is enough to mark as that browser, in a URL (histories, proxies' logs)."""
    import base64

    from tests.conftest import fire_callback

    demo_client.get("/oddities")  # Dash registers page callbacks on the first request
    user = "0123456789abcdef"
    listed = demo_client.get(f"/api/oddities?k=2&user={user}").get_json()["results"]
    assert demo_client.post("/api/feedback", json={"date": listed[0]["date"], "interesting": False,
                                                   "user": user}).status_code == 200
    values = {f"{Oddities.EXPORT_CSV}.n_clicks": 1, f"{Oddities.DETECTOR}.value": "combined",
              f"{Oddities.USER}.data": user}
    sent = fire_callback(demo_client, f"{Oddities.EXPORT_CSV}.n_clicks", values)[Oddities.DOWNLOAD]["data"]
    assert sent["filename"] == "oddities-combined.csv" and sent["base64"]
    rows = pd.read_csv(io.BytesIO(base64.b64decode(sent["content"])), dtype={"date": str})
    assert rows.date.iloc[-1] == listed[0]["date"] and {"why", "combined"} <= set(rows.columns)
    layout = json.dumps(demo_client.post("/_dash-update-component", json={
        "output": ".._pages_content.children..._pages_store.data..",
        "outputs": [{"id": "_pages_content", "property": "children"}, {"id": "_pages_store", "property": "data"}],
        "inputs": [{"id": "_pages_location", "property": "pathname", "value": "/oddities"},
                   {"id": "_pages_location", "property": "search", "value": ""}],
        "state": [], "changedPropIds": ["_pages_location.pathname"]}).get_json())
    assert "user=" not in layout and "/api/oddities/export" not in layout
