"""Search: engine, JSON API (the real Flask app in-process) and CLI on a real built lake."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
from dataclasses import replace

import numpy as np
import pytest
from PIL import Image

from lake.filters import Filters
from lake.reader import LakeReader
from lake.search import SearchEngine, SearchError, rrf, snippet
from atlas.encoders import encoder_from_manifest
from tests.conftest import IMAGES, component_with_id, run_cli

# no module-wide mark: the tests that use the built demo lake are marked slow by conftest, the rest
# (ranking arithmetic) run in the fast tier

@pytest.fixture(scope="module")
def search(demo_lake):
    return SearchEngine(LakeReader.open(demo_lake), encoder_from_manifest)


@pytest.fixture(scope="module")
def client(demo_client):
    return demo_client


def test_feedback_query_moves_toward_the_first_hits_it_has_vectors_for():
    from lake.search import feedback_query

    q = np.array([1.0, 0.0, 0.0], np.float32)
    vectors = {"a": np.array([0.0, 2.0, 0.0]), "b": np.array([0.0, 0.0, 1.0]), "c": np.array([0.0, 1.0, 0.0])}
    # "k" (a keyword-only hit) has no vector and is skipped; the first two with one are a and b
    moved = feedback_query(q * 3, ["k", "a", "b", "c"], vectors, docs=2, weight=0.5)
    np.testing.assert_allclose(moved, [1.0, 0.5 / np.sqrt(2), 0.5 / np.sqrt(2)], rtol=1e-6)
    assert feedback_query(q, ["k"], vectors) is q  # nothing to learn from: the query as it was
    np.testing.assert_allclose(feedback_query(q, ["c"], vectors, docs=5, weight=1.0), [1.0, 1.0, 0.0])


def test_hybrid_feedback_changes_the_dense_side_only_for_text(search, monkeypatch):
    import lake.search as search_module

    with_feedback = [h["date"] for h in search.search("glowing gas and young stars", k=10)]
    pictures = [h["date"] for h in search.search("glowing gas and young stars", k=10, kind="image")]
    monkeypatch.setattr(search_module, "FEEDBACK_DOCS", 0)
    without = [h["date"] for h in search.search("glowing gas and young stars", k=10)]
    assert len(with_feedback) == len(without) == 10 and with_feedback != without
    assert [h["date"] for h in search.search("glowing gas and young stars", k=10, kind="image")] == pictures


def test_pages_of_a_hybrid_search_continue_each_other(search):
    """Deeper pages fetch deeper candidate lists, yet every page is a slice of one order (the fused top
    of fixed depth, then the deep fusion): no entry on two pages, none skipped."""
    from lake.search import FUSION_DEPTH

    pages = [search.search("bright glowing clouds of gas", k=10, offset=o) for o in range(0, 70, 10)]
    dates = [h["date"] for page in pages for h in page]
    assert len(dates) == 70 > FUSION_DEPTH and len(set(dates)) == 70
    assert [h["date"] for h in search.search("bright glowing clouds of gas", k=70)] == dates


@pytest.mark.slow
def test_pages_cut_from_an_ann_index_continue_each_other(tmp_path):
    """An IVF_PQ index's best 50 are not the first 50 of its best 1,000, so pages 5 and 6 of a search
    on a lake with an index (≥ 100k entries) came from lists with different tops: entries repeated or
    skipped. ``paged_list`` keeps the top whatever the depth."""
    from lake import vectors
    from lake.search import DEEP_DEPTH, FUSION_DEPTH, paged_list

    rng = np.random.default_rng(3)
    n, dim = 20_000, 32  # √n partitions: more than the 100 probed, as on a real indexed lake
    x = rng.normal(size=(n, dim)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    dates = [f"d{i:05d}" for i in range(n)]
    vectors.write_table(tmp_path, "text", dates, x, titles=dates, years=[2000] * n, categories=["c"] * n,
                        has_image=[False] * n, ann_min_rows=1000)
    table = vectors.open_table(tmp_path, "text")
    assert [ix.index_type for ix in table.list_indices() if ix.columns == ["vector"]] == ["IvfPq"]
    settings = vectors.ann_search_settings(table)

    def searcher(q):
        return lambda m: vectors.ann_search(table, q, settings=settings, limit=m, columns=["date"])

    queries = (rng.normal(size=dim).astype(np.float32) for _ in range(200))
    fetch = next(f for f in map(searcher, queries)  # a query whose top depends on the depth asked for
                 if [h["date"] for h in f(FUSION_DEPTH)] != [h["date"] for h in f(DEEP_DEPTH)[:FUSION_DEPTH]])
    pages = [paged_list(fetch, end)[end - 10:end] for end in range(10, 110, 10)]
    dates_read = [h["date"] for page in pages for h in page]
    assert len(dates_read) == 100 == len(set(dates_read))
    assert dates_read == [h["date"] for h in paged_list(fetch, 100)[:100]]


def test_narrow_filters_probe_more_partitions(tmp_path):
    """LanceDB pre-filters the probed partitions' rows, so the nearest rows passing a narrow filter lie
    beyond the partitions an unfiltered search probes: with as many probes, a filter passing 1 % of the
    rows lost most of its true top 10 under IVF_PQ. ``AnnSettings.probes`` probes more, in proportion."""
    from lake import vectors

    rng = np.random.default_rng(5)
    n, dim = 20_000, 32
    centres = rng.normal(size=(40, dim))
    x = (centres[rng.integers(0, 40, n)] + 0.8 * rng.normal(size=(n, dim))).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    rare = rng.random(n) < 0.01
    dates = [f"d{i:05d}" for i in range(n)]
    vectors.write_table(tmp_path, "text", dates, x, titles=dates, years=[2000] * n,
                        categories=["rare" if r else "common" for r in rare], has_image=[True] * n, ann_min_rows=1000)
    table = vectors.open_table(tmp_path, "text")
    where = Filters(categories=("rare",)).lance_where(known_categories=["rare", "common"])
    share = table.count_rows(where) / n
    assert share == pytest.approx(rare.mean())
    base = 2  # of the 78 partitions LanceDB trains on 20k vectors
    settings = vectors.ann_search_settings(table)._replace(nprobes=base)
    probes = settings.probes(share=share)
    assert settings.index_type == "IvfPq" and probes == math.ceil(base * vectors.PROBED_SHARE / share)
    assert settings.probes(share=0.5) == base and settings._replace(index_type="IvfHnswSq").probes(share=share) == base

    def recall(share: float | None) -> float:  # without the share, search probes as for any query
        found = []
        for i in rng.choice(n, 30, replace=False):
            truth = set(np.flatnonzero(rare)[np.argsort(-(x[rare] @ x[i]))[:10]])
            hits = vectors.ann_search(table, x[i], settings=settings, limit=10, columns=["date"], where=where,
                                      share=share)
            found.append(len(truth & {int(h["date"][1:]) for h in hits}) / 10)
        return float(np.mean(found))

    fixed, more = recall(None), recall(share)
    assert more >= 0.9 and more > fixed + 0.2, (fixed, more)


def test_rrf_and_snippet():
    scores = rrf([["a", "b", "c"], ["c", "a"]])
    assert max(scores, key=scores.get) == "a" and scores["c"] > scores["b"]
    weighted = rrf([["a", "b"], ["b", "c"]], weights=(1.0, 2.0), k=1)  # a: 1/2; b: 1/3 + 2/2; c: 2/3
    assert weighted == pytest.approx({"a": 0.5, "b": 1 / 3 + 1.0, "c": 2 / 3})
    text = "The Sun rose. A comet with a long tail appeared near the horizon. Birds sang."
    assert snippet(text, "comet tail") == "A comet with a long tail appeared near the horizon."


def test_british_spellings_find_what_the_american_ones_do(search, monkeypatch):
    """The archive spells "color" (32 texts of the demo lake's 2014 months, "colour" none): a British
    speller's keyword search finds those texts, with the sentence that says it as the snippet; without
    the added spelling it found nothing."""
    from lake import search as search_module
    from lake.search import keyword_query

    assert keyword_query("Grey colour of the Centre") == "Grey colour of the Centre gray color center"
    assert keyword_query("color of the gray sky") == "color of the gray sky"  # American words stay as they are
    assert keyword_query("colour color") == "colour color"
    british, american = (search.search(q, k=10, mode="keyword") for q in ("colour", "color"))
    assert len(british) == 10 and [(h["date"], h["snippet"]) for h in british] == [
        (h["date"], h["snippet"]) for h in american]  # the same entries, the same sentences shown
    texts = search.reader.query("SELECT lower(title || ' ' || explanation) AS t FROM entries WHERE "
                                "list_contains($d, strftime(date, '%Y-%m-%d'))", {"d": [h["date"] for h in british]})
    assert len(texts) == 10 and texts.t.str.contains("color").all()
    monkeypatch.setattr(search_module, "keyword_query", lambda q: q)
    assert search.search("colour", k=10, mode="keyword") == []


def test_the_page_and_the_api_say_which_spellings_were_also_searched(client):
    """A person who typed "grey colour" is told that "gray" and "color" were searched too (not in dense
    mode, which reads no words), on the search page and in the API's answer."""
    from pages import search as page

    assert client.get("/api/search?q=grey+colour&k=3").get_json()["also_searched"] == ["gray", "color"]
    assert client.get("/api/search?q=grey+colour&k=3&mode=dense").get_json()["also_searched"] == []
    assert client.get("/api/search?q=gray+color&k=3").get_json()["also_searched"] == []
    with client.application.app_context():
        said = str(page.layout(q="grey colour", mode="keyword"))
        assert "also searched as the archive spells it: gray, color" in said
        assert "also searched" not in str(page.layout(q="gray color", mode="keyword"))


def test_the_pager_offers_only_pages_with_results(client, search):
    """An 18-result query offered 20 pages, 18 of them empty: the pager now reaches one page past the
    current one while results go on, and a page past the end says so and links back."""
    from pages import search as page
    from pages.ids import Search

    query = next(q for q in ("comet", "galaxy", "nebula", "moon")
                 if 10 < len(search.search(q, k=100, mode="keyword")) < 100)
    n = len(search.search(query, k=100, mode="keyword"))
    last = -(-n // 10)

    with client.application.app_context():
        first = component_with_id(page.layout(q=query, mode="keyword", page="1"), Search.PAGE)
        assert first.max_value == 2 and first.style is None
        end = component_with_id(page.layout(q=query, mode="keyword", page=str(last)), Search.PAGE)
        assert end.max_value == last
        past = page.layout(q=query, mode="keyword", page=str(last + 1))
        assert f"Page {last + 1} is past the last result" in str(past) and component_with_id(past, Search.PAGE).style == page.HIDDEN


def test_a_hybrid_hit_says_where_it_stood_in_the_lists_fused_into_it(search, client):
    """A fused score (0.039…) tells a reader nothing: each hybrid hit carries its rank in the keyword
    list (``words``) and in the dense list after the feedback (``meaning``), and the results page shows them."""
    q = "comet with a long tail"
    keyword = [h["date"] for h in search.search(q, k=50, mode="keyword")]
    hits = search.search(q, k=10)
    assert all(h["matched"]["words"] or h["matched"]["meaning"] for h in hits)
    for h in hits:
        words = h["matched"]["words"]
        assert (keyword[words - 1] == h["date"]) if words else h["date"] not in keyword
    assert any(h["matched"]["words"] and h["matched"]["meaning"] for h in hits)
    deeper = search.search(q, k=60)  # lists 1,000 deep now: the first results say what they said
    assert [h["matched"] for h in deeper[:10]] == [h["matched"] for h in hits]
    assert "matched" not in search.search(q, k=3, mode="dense")[0]
    body = client.get("/api/search?q=comet+with+a+long+tail&k=3").get_json()
    assert [r["matched"] for r in body["results"]] == [h["matched"] for h in hits[:3]]
    from pages import search as page

    first = hits[0]["matched"]
    said = " and ".join(f"{name} #{first[name]}" for name in ("words", "meaning") if first[name])
    with client.application.app_context():
        assert f"matches {said}" in str(page.layout(q=q))
        assert "matches" not in str(page.layout(q=q, mode="dense"))  # a cosine score there
        said = str(page.layout(q=q, kind="image"))  # the dense list ranks pictures there
        assert "picture #" in said and "meaning #" not in said


def test_modes_find_relevant_entries(search):
    for mode in ("dense", "keyword", "hybrid"):
        hits = search.search("open cluster of young stars", k=5, mode=mode)
        assert len(hits) == 5 and hits[0]["snippet"]
        assert any(h["category"] == "Star Cluster" for h in hits), mode
    dense = search.search("stellar nursery", k=5, mode="dense")
    assert sum(h["category"] == "Nebula" for h in dense) >= 3
    assert any("nursery" not in (h["title"] + h["snippet"]).lower() for h in dense)  # found by meaning


def test_filters_are_applied_inside_the_query(search):
    hits = search.search("stars", k=10, filters=Filters(categories=("Galaxy",)))
    assert hits and all(h["category"] == "Galaxy" for h in hits)
    import datetime as dt

    feb = search.search("stars", k=10, filters=Filters(start=dt.date(2014, 2, 1), end=dt.date(2014, 2, 28)))
    assert feb and all("2014-02-01" <= h["date"] <= "2014-02-28" for h in feb)
    pics = search.search("stars", k=10, mode="keyword", filters=Filters(has_image=True))
    assert pics and all(h["has_image"] for h in pics)
    with pytest.raises(SearchError, match="unknown category"):
        search.search("stars", filters=Filters(categories=("Galaxy' OR 1=1 --",)))


def test_similar_and_picture_search(search):
    import datetime as dt

    hits = search.similar(dt.date(2014, 1, 7), k=5)
    assert len(hits) == 5 and all(h["date"] != "2014-01-07" for h in hits)
    date = search.reader.query("SELECT strftime(date, '%Y-%m-%d') AS d FROM entries WHERE has_image LIMIT 1").d[0]
    picture = Image.open(IMAGES / f"{date}.jpg")
    found, categories = search.picture_search(picture, k=3)
    assert found[0]["date"] == date and found[0]["score"] > 0.99  # its own picture comes first
    for kind in ("text", "title", "multimodal"):  # across modalities through the learned space
        assert len(search.picture_search(picture, k=3, kind=kind)[0]) == 3
    cats = search.categorise_image(picture)
    assert cats == categories
    assert len(cats) == 5 and cats[0]["category"] in search.categories
    assert 0 < sum(c["probability"] for c in cats) <= 1.0001


def test_upload_categories_blend_the_vote_with_the_lakes_picture_probe(search):
    """The app classifies an upload by the build's rule: the look-alikes' vote blended with the probe it
    saved (weights read from the lake, softmax of the centred picture)."""
    from atlas.encoders.align import AlignHead, CategoryVote, PictureProbe

    layout = search.reader.layout
    rule = search.reader.manifest["taxonomy"]["picture_categories"]
    assert rule["probe"]["model"].startswith("fitted")
    with np.load(layout.class_vectors) as z:
        probe, captions = PictureProbe.from_fields(z), z["caption_probs"]
        vote = CategoryVote(k=int(z["vote_k"]), tau=float(z["vote_tau"]))
    head = AlignHead.load(layout.align_head)
    assert probe.share == rule["probe"]["share"] and list(probe.dates) == list(head.dates)
    date = search.reader.query("SELECT strftime(date, '%Y-%m-%d') AS d FROM entries WHERE has_image LIMIT 1").d[0]
    picture = Image.open(IMAGES / f"{date}.jpg")
    vector = search._upload_picture(picture)
    centred = (vector - probe.mean) / np.linalg.norm(vector - probe.mean)
    logits = centred @ probe.weights + probe.bias
    linear = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    saved = search._class_vectors()["probe"]
    search._classes["probe"] = replace(probe, share=0.5)  # the demo lake's share may be 0: make it count
    try:
        got = {c["category"]: c["probability"] for c in search.categorise_image(picture, top=3)}
    finally:
        search._classes["probe"] = saved
    expected = 0.5 * head.category_votes(vector[None, :], captions, vote=vote)[0] + 0.5 * linear
    assert got == {search._classes["names"][i]: round(float(expected[i]), 4) for i in np.argsort(-expected)[:3]}


def test_text_to_picture_search(search):
    """kind=image from words: only entries with pictures come back, ranked through the learned space."""
    hits = search.search("the Moon's cratered surface", kind="image", mode="dense", k=5)
    assert len(hits) == 5 and all(h["has_image"] for h in hits)
    with_pictures = search.reader.query("SELECT count(*) AS n FROM entries WHERE has_image").n[0]
    assert len(search.search("aurora", kind="image", mode="dense", k=100)) == with_pictures


def test_api_search_and_entry(client):
    r = client.get("/api/search?q=comet%20with%20a%20tail&k=3&mode=hybrid")
    assert r.status_code == 200
    body = r.get_json()
    assert len(body["results"]) == 3 and {"date", "title", "score", "snippet", "url"} <= set(body["results"][0])
    r = client.get("/api/search?q=stars&k=5&category=Nebula&from=2014-02-01&to=2014-04-30&has_image=false")
    nebulae = r.get_json()["results"]
    assert r.status_code == 200 and nebulae and all(x["category"] == "Nebula" and not x["has_image"] for x in nebulae)
    page2 = client.get("/api/search?q=stars&k=5&page=2").get_json()["results"]
    page1 = client.get("/api/search?q=stars&k=5").get_json()["results"]
    assert not {x["date"] for x in page1} & {x["date"] for x in page2}
    e = client.get("/api/entry/2014-01-07").get_json()
    assert e["title"].startswith("M7") and e["categories"][0]["top3"]
    s = client.get("/api/similar/2014-01-07?k=4&kind=title").get_json()
    assert len(s["results"]) == 4
    assert client.get("/api/entry/2014-12-30").status_code == 404


def test_a_hits_thumbnail_is_served_under_the_name_its_content_gives(client):
    """Results name each stored picture by its content (``/thumbs/DATE-SHA.jpg``): the app serves it, for
    good (the name never shows other bytes), and serves nothing a thumbnail name cannot be."""
    hits = client.get("/api/search?q=stars&k=10&has_image=true").get_json()["results"]
    src = hits[0]["picture"]["src"]
    assert hits[0]["picture"]["kind"] == "lake" and re.fullmatch(r"/thumbs/\d{4}-\d\d-\d\d-[0-9a-f]{12}\.jpg", src)
    r = client.get(src)
    assert r.status_code == 200 and r.mimetype == "image/jpeg" and r.cache_control.max_age == 31536000
    assert hashlib.sha1(r.data).hexdigest()[:12] == src[-16:-4]
    for bad in (f"/thumbs/{hits[0]['date']}-{'0' * 12}.jpg", "/thumbs/latest.jpg", "/thumbs/2014-01-01-ABC.jpg"):
        assert client.get(bad).status_code == 404, bad
    escape = client.get("/thumbs/..%2Fcurrent%2Fmanifest.json.jpg")  # no thumbnail route: the app's page shell
    assert escape.mimetype == "text/html" and b"schema_version" not in escape.data


@pytest.mark.parametrize("url,fragment", [  # what needs the lake; the request checks alone are in test_api.py
    ("/api/search?q=", "empty"),
    ("/api/search?q=" + "a" * 10_000, "limit"),
    ("/api/search?q=stars&mode=magic", "mode must be"),
    ("/api/search?q=stars&kind=sound", "kind must be"),
    ("/api/search?q=stars&kind=aligned", "kind must be"),
    ("/api/search?q=stars&category=Nope", "unknown category"),
    ("/api/similar/2014-01-07?kind=aligned", "kind must be"),
    ("/api/search?q=stars&kind=image&has_image=false", "cannot be combined"),
])
def test_hostile_input_gets_a_clear_4xx(client, url, fragment):
    r = client.get(url)
    assert 400 <= r.status_code < 500, r.data[:300]
    assert fragment in r.get_json()["error"]


@pytest.mark.parametrize("q", ["'; DROP TABLE entries; --", "<script>alert(1)</script>", "\" OR 1=1 --", "body:*",
                               "NOT AND OR ((("])
def test_sql_html_and_query_syntax_are_just_text(client, q):
    r = client.get("/api/search", query_string={"q": q, "k": 5})
    assert r.status_code == 200
    assert isinstance(r.get_json()["results"], list)
    assert client.get("/api/entry/2014-01-07").status_code == 200  # the tables are still there


def _png(size=(64, 64), mode="RGB") -> bytes:
    buf = io.BytesIO()
    Image.new(mode, size, "white" if mode == "RGB" else 1).save(buf, format="PNG")
    return buf.getvalue()


def test_upload_limits(client):
    ok = client.post("/api/search/image?k=3", data={"image": (io.BytesIO(_png()), "a.png", "image/png")},
                     content_type="multipart/form-data")
    assert ok.status_code == 200 and len(ok.get_json()["results"]) == 3
    wrong_type = client.post("/api/search/image", data={"image": (io.BytesIO(b"%PDF-1.4"), "a.pdf", "application/pdf")},
                             content_type="multipart/form-data")
    assert wrong_type.status_code == 400 and "unsupported type" in wrong_type.get_json()["error"]
    for label in ("", "application/octet-stream"):  # no type (Python's requests) or a generic one (curl, .webp)
        unlabelled = client.post("/api/search/image?k=3", data={"image": (io.BytesIO(_png()), "a.png", label)},
                                 content_type="multipart/form-data")
        assert unlabelled.status_code == 200, (label, unlabelled.get_json())
    fake = client.post("/api/search/image", data={"image": (io.BytesIO(b"<html>"), "a.png", "image/png")},
                       content_type="multipart/form-data")
    assert fake.status_code == 400 and "not a JPEG, PNG, GIF or WebP picture" in fake.get_json()["error"]
    tiff = io.BytesIO()
    Image.new("RGB", (64, 64)).save(tiff, format="TIFF")  # declared PNG: the bytes decide, not the label
    tiff = client.post("/api/search/image", data={"image": (io.BytesIO(tiff.getvalue()), "a.png", "image/png")},
                       content_type="multipart/form-data")
    assert tiff.status_code == 400 and "not a JPEG, PNG, GIF or WebP picture" in tiff.get_json()["error"]
    bomb = client.post("/api/search/image", data={"image": (io.BytesIO(_png((9000, 9000), "1")), "b.png", "image/png")},
                       content_type="multipart/form-data")
    assert bomb.status_code == 400 and "limit" in bomb.get_json()["error"]
    thin = client.post("/api/search/image?k=3", data={"image": (io.BytesIO(_png((100_000, 1))), "t.png", "image/png")},
                       content_type="multipart/form-data")  # 177 bytes: its centre is encoded, not a 22M×224 resize
    assert thin.status_code == 200 and len(thin.get_json()["results"]) == 3
    huge = client.post("/api/search/image", data={"image": (io.BytesIO(b"\0" * (9 * 2**20)), "h.png", "image/png")},
                       content_type="multipart/form-data")
    assert huge.status_code == 413
    missing = client.post("/api/search/image", data={}, content_type="multipart/form-data")
    assert missing.status_code == 400 and "'image'" in missing.get_json()["error"]


def _upload_state(filename: str, *, kind: str = "image", cats: list[str] | None = None, start: str | None = None,
                  end: str | None = None, image: str = "any") -> list[dict]:
    """The Search page's state sent with an upload: the kind and the filters as its controls stand."""
    from pages.ids import Search

    return [{"id": Search.UPLOAD, "property": "filename", "value": filename},
            {"id": Search.KIND, "property": "value", "value": kind},
            {"id": Search.CATS, "property": "value", "value": cats or []},
            {"id": Search.DATES, "property": "start_date", "value": start},
            {"id": Search.DATES, "property": "end_date", "value": end},
            {"id": Search.IMAGE, "property": "value", "value": image}]


def _upload_on_the_page(client, picture: bytes, state: list[dict]) -> list[str]:
    """The dates of the entries the Search page lists for a dropped picture (through Dash's endpoint)."""
    import base64
    import re

    from pages.ids import Search

    client.get("/search")  # Dash registers page callbacks on the first request
    reply = client.post("/_dash-update-component", json={
        "output": f"..{Search.RESULTS}.children...{Search.PAGE}.style..",
        "outputs": [{"id": Search.RESULTS, "property": "children"}, {"id": Search.PAGE, "property": "style"}],
        "inputs": [{"id": Search.UPLOAD, "property": "contents",
                    "value": "data:image/jpeg;base64," + base64.b64encode(picture).decode()}],
        "state": state, "changedPropIds": [f"{Search.UPLOAD}.contents"]})
    assert reply.status_code == 200, reply.data[:300]
    return list(dict.fromkeys(re.findall(r"/entry/(\d{4}-\d{2}-\d{2})", json.dumps(reply.get_json()))))


def test_a_picture_dropped_on_the_page_searches_under_its_filters(client):
    """The page's category, date and picture filters hold for a dropped picture as for words (before, a
    picture searched the whole archive whatever the filters said)."""
    picture = (IMAGES / "2014-01-20.jpg").read_bytes()
    everything = _upload_on_the_page(client, picture, _upload_state("p.jpg"))
    assert everything[0] == "2014-01-20" and len(everything) == 10  # its own picture first
    later = _upload_on_the_page(client, picture, _upload_state("p.jpg", start="2014-02-01", end="2014-03-31"))
    assert later and all("2014-02-01" <= d <= "2014-03-31" for d in later)
    def text_category(day: str) -> str:  # what the category filter reads
        return next(c["category"] for c in client.get(f"/api/entry/{day}").get_json()["categories"] if c["source"] == "text")

    category = text_category("2014-01-20")
    same = _upload_on_the_page(client, picture, _upload_state("p.jpg", kind="text", cats=[category]))
    assert same and all(text_category(d) == category for d in same)
    assert {text_category(d) for d in everything} != {category}  # without the filter, others come too


def test_page_upload_near_the_limit_reaches_the_callback(client):
    """A picture just under the upload limit, sent by the Search page's upload box (base64 inside a Dash
    callback's JSON, 4/3 of its bytes), is answered by the page, not refused by the server's request bound."""
    import base64

    from atlas.images import MAX_UPLOAD_BYTES
    from pages.ids import Search

    noise = np.random.default_rng(0).integers(0, 256, (1500, 1500, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(noise).save(buf, format="PNG", compress_level=0)
    picture = buf.getvalue()
    assert 0.8 * MAX_UPLOAD_BYTES < len(picture) < MAX_UPLOAD_BYTES  # base64: past the picture limit
    client.get("/search")  # Dash registers page callbacks on the first request
    payload = {
        "output": f"..{Search.RESULTS}.children...{Search.PAGE}.style..",
        "outputs": [{"id": Search.RESULTS, "property": "children"}, {"id": Search.PAGE, "property": "style"}],
        "inputs": [{"id": Search.UPLOAD, "property": "contents",
                    "value": "data:image/png;base64," + base64.b64encode(picture).decode()}],
        "state": _upload_state("noise.png"),
        "changedPropIds": [f"{Search.UPLOAD}.contents"],
    }
    reply = client.post("/_dash-update-component", json=payload)
    assert reply.status_code == 200, reply.data[:300]
    assert "look like noise.png" in json.dumps(reply.get_json())
    from atlas.images import MAX_REQUEST_BYTES

    flood = client.post("/_dash-update-component", data=b"x" * (MAX_REQUEST_BYTES + 1), content_type="application/json")
    assert flood.status_code == 413  # and every request has a bound


def test_api_picture_categories_and_text_to_picture(client):
    picture = (IMAGES / "2014-01-20.jpg").read_bytes()
    r = client.post("/api/categories/image?top=3", data={"image": (io.BytesIO(picture), "p.jpg", "image/jpeg")},
                    content_type="multipart/form-data")
    assert r.status_code == 200
    cats = r.get_json()["categories"]
    assert len(cats) == 3 and cats[0]["probability"] >= cats[1]["probability"] >= cats[2]["probability"]
    both = client.post("/api/search/image?kind=text&k=4", data={"image": (io.BytesIO(picture), "p.jpg", "image/jpeg")},
                       content_type="multipart/form-data").get_json()
    assert both["kind"] == "text" and len(both["results"]) == 4 and both["categories"]
    bad_top = client.post("/api/categories/image?top=0", data={"image": (io.BytesIO(picture), "p.jpg", "image/jpeg")},
                          content_type="multipart/form-data")
    assert bad_top.status_code == 400
    for mode in ("hybrid", "dense", "keyword"):  # every mode returns pictures only
        words = client.get(f"/api/search?q=galaxy&kind=image&k=20&mode={mode}").get_json()
        assert words["kind"] == "image" and words["results"] and all(h["has_image"] for h in words["results"])


def test_cli_search_with_a_picture(demo_lake):
    proc = run_cli("search", "--image", str(IMAGES / "2014-01-20.jpg"), "--k", "3", "--json", "--lake", str(demo_lake))
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["results"][0]["date"] == "2014-01-20" and out["categories"]
    neither = run_cli("search", "--lake", str(demo_lake))
    assert neither.returncode == 2 and "either a query or --image" in neither.stderr


def test_cli_search_with_an_encoder_that_cannot_load_is_one_line(demo_lake, tmp_path, capsys):
    """The lake's encoder not loadable here (an OpenCLIP lake without its weights, other weights than the
    build's: here the manifest names another fingerprint) ended a shell search in a traceback; the API
    answers it with a 503."""
    import shutil

    from pipeline import cli

    copy = tmp_path / "lake"
    shutil.copytree(demo_lake, copy, symlinks=True, ignore=shutil.ignore_patterns("thumbs"))
    manifest = copy / "current" / "manifest.json"
    data = json.loads(manifest.read_text())
    data["encoder"]["fingerprint"] = "0" * 16
    manifest.write_text(json.dumps(data))
    assert cli.main(["search", "comets", "--mode", "dense", "--lake", str(copy)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the encoder available here") and "rebuild the lake" in err and "Traceback" not in err


def test_cli_search_json(demo_lake):
    proc = run_cli("search", "meteor shower", "-k", "4", "--json", "--lake", str(demo_lake))
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(proc.stdout)
    assert len(results) == 4 and {"date", "title", "score"} <= set(results[0])
    # the query encoder loads as the app's does: from the text tower the build saved in the lake's model
    # cache, without importing sentence-transformers (several seconds of every shell search)
    assert "query encoder offline loaded" in proc.stderr and "the build's saved text trace" in proc.stderr
    assert len(json.loads(run_cli("search", "meteor shower", "--limit", "2", "--json", "--lake",
                                  str(demo_lake)).stdout)) == 2
    bad = run_cli("search", "x", "--k", "0", "--lake", str(demo_lake))
    assert bad.returncode == 2 and "k must be" in bad.stderr
    filtered = run_cli("search", "stars", "--category", "Galaxy", "--json", "--lake", str(demo_lake))
    assert filtered.returncode == 0, filtered.stderr[-2000:]
    galaxies = json.loads(filtered.stdout)
    assert galaxies and all(r["category"] == "Galaxy" for r in galaxies)


def test_lancedb_path_agrees_with_in_memory_path(demo_lake, monkeypatch):
    """Large lakes search through LanceDB (pre-filtered); small ones in memory. Same answers."""
    import datetime as dt

    import lake.search as search_module

    small = SearchEngine(LakeReader.open(demo_lake), encoder_from_manifest)
    small.similar(dt.date(2014, 1, 7), k=1)  # loads the in-memory table and texts before the switch
    monkeypatch.setattr(search_module, "ANN_MIN_ROWS", 10)
    large = SearchEngine(LakeReader.open(demo_lake), encoder_from_manifest)
    f = Filters(categories=("Nebula", "Galaxy"), start=dt.date(2014, 2, 1))
    for engine in (small, large):
        engine._encoder = small.encoder
    a = small.search("dusty clouds", k=8, mode="dense", filters=f)
    b = large.search("dusty clouds", k=8, mode="dense", filters=f)
    assert large._in_memory("text") is None and small._in_memory("text") is not None
    memory = small._in_memory("text")  # the share of rows the filter passes, counted by LanceDB, as search probes by it
    assert large._shares[("text", large._where(f))] == pytest.approx(memory.mask(f).mean())
    assert [h["date"] for h in a] == [h["date"] for h in b]
    assert [h["snippet"] for h in a] == [h["snippet"] for h in b]
    # hybrid: large lakes skip the dense side's pseudo-relevance feedback (a second ANN query)
    large_hybrid = [h["date"] for h in large.search("dusty clouds", k=8, filters=f)]
    monkeypatch.setattr(search_module, "FEEDBACK_DOCS", 0)
    assert [h["date"] for h in small.search("dusty clouds", k=8, filters=f)] == large_hybrid
    assert [h["date"] for h in small.similar(dt.date(2014, 1, 7), k=5)] == \
        [h["date"] for h in large.similar(dt.date(2014, 1, 7), k=5)]


def test_cone_filter_in_both_search_paths(demo_lake, monkeypatch):
    """A sky cone is turned into dates through the lake's objects table, then applied in either path."""
    import datetime as dt

    import lake.search as search_module
    from lake.queries import AtlasQueries

    reader = LakeReader.open(demo_lake)
    target = AtlasQueries(reader).sky_points(Filters()).iloc[0]
    cone = (float(target.ra_deg), float(target.dec_deg), 90.0)  # a hemisphere: a few entries whatever the target
    inside = {d.isoformat() for d in AtlasQueries(reader).matching_dates(Filters(cone=cone))}
    assert 3 <= len(inside) < reader.count("entries")
    small = SearchEngine(reader, encoder_from_manifest)
    small.similar(dt.date(2014, 1, 7), k=1)  # loads the in-memory table before the switch
    monkeypatch.setattr(search_module, "ANN_MIN_ROWS", 10)
    large = SearchEngine(LakeReader.open(demo_lake), encoder_from_manifest)
    large._encoder = small.encoder
    f = Filters(cone=cone)
    a = small.search("stars", k=3, mode="dense", filters=f)
    b = large.search("stars", k=3, mode="dense", filters=f)
    assert len(a) == 3 and [h["date"] for h in a] == [h["date"] for h in b]
    assert {h["date"] for h in a} <= inside
    assert {h["date"] for h in small.search("stars", k=3, mode="keyword", filters=f)} <= inside
    # a cone holding more entries than a filter may list is refused with what to do
    monkeypatch.setattr(search_module, "MAX_CONE_DATES", len(inside) - 1)
    with pytest.raises(SearchError, match="give a smaller radius"):
        small.search("stars", k=3, filters=f)
    narrower = Filters(cone=(cone[0], cone[1], 1.0))
    assert len(AtlasQueries(reader).matching_dates(narrower)) < len(inside)
    small.search("stars", k=3, filters=narrower)  # a smaller cone still searches


def test_a_serving_process_is_ready_before_its_first_request(demo_lake):
    """services.prepare_worker, what gunicorn.conf.py and `python app.py` run in their own process: the
    query encoder loaded, one torch thread and one BLAS thread, the warm-up's objects frozen out of the
    garbage collector."""
    import subprocess
    import sys
    from pathlib import Path

    code = """
import gc, sys, torch
from threadpoolctl import threadpool_info
from app import create_app
from services import EXTENSION, prepare_worker
service = create_app(lake=sys.argv[1]).server.extensions[EXTENSION]
assert not service._encoders and gc.get_freeze_count() == 0
blas = lambda: [pool["num_threads"] for pool in threadpool_info() if pool["user_api"] == "blas"]
before = blas()
prepare_worker(service)
print(max(before), max(blas()), torch.get_num_threads(), len(service._encoders), gc.get_freeze_count())
"""
    env = {k: v for k, v in os.environ.items() if k not in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", code, str(demo_lake)], capture_output=True, text=True, timeout=300,
                         cwd=Path(__file__).resolve().parent.parent, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    blas_before, blas, threads, encoders, frozen = map(int, out.stdout.split()[-5:])
    assert threads == 1 and encoders >= 1 and frozen > 10_000
    assert blas == 1 and (blas_before > 1 or os.cpu_count() == 1)  # numpy's BLAS had one per core before


def test_a_lake_whose_encoder_does_not_load_here_answers_503_and_is_not_retried(demo_lake, tmp_path, caplog):
    """A lake built with other model versions (fingerprint differs): search says so as a 503 — not a 500
    — and the encoder (seconds to load) is not tried again on every request; browsing still works."""
    import shutil

    from app import create_app

    lake = tmp_path / "lake"
    shutil.copytree(demo_lake, lake, symlinks=True)
    manifest = lake / "current" / "manifest.json"
    m = json.loads(manifest.read_text())
    m["encoder"]["fingerprint"] = "built-elsewhere"
    manifest.write_text(json.dumps(m))
    client = create_app(lake=lake).server.test_client()
    with caplog.at_level("ERROR", logger="services"):
        first = client.get("/api/search?q=comet")
        second = client.get("/api/search?q=galaxy")
    assert first.status_code == second.status_code == 503
    assert "unavailable on this server" in first.get_json()["error"] and str(lake) not in first.get_json()["error"]
    assert sum("does not load on this server" in r.message for r in caplog.records) == 1  # tried once
    assert client.get("/api/entry/2014-01-07").status_code == 200
