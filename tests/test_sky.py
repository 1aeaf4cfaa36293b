"""Object-name extraction and offline resolution (OpenNGC via pyongc)."""

import pytest

from atlas.sky.extract import extract
from atlas.sky.gazetteer import default
from atlas.sky.resolve import objects_for


@pytest.fixture(scope="module")
def g():
    return default()


def keys(text, g):
    return [(m.name, m.key, m.kind) for m in extract(text, g)]


def test_messier_but_not_tanks(g):
    assert keys("An M1 Abrams tank drove past.", g) == []
    assert keys("M1 is the Crab; so is Messier 1, near M 31", g) == [
        ("M1", "M1", "catalogue"), ("Messier 1", "M1", "catalogue"), ("M 31", "M31", "catalogue")]
    assert keys("M200 does not exist", g) == []
    minkowski = extract("Not the Crab: M1-67 and the Twin Jet M2-9.", g)
    assert [(m.name, m.key, m.query) for m in minkowski] == [("M1-67", None, "M 1-67"), ("M2-9", None, "M 2-9")]


def test_ngc_ranges_and_ic(g):
    got = keys("The Rosette (NGC 2237-9) and IC 434.", g)
    assert [k for _, k, _ in got] == ["NGC2237", "NGC2238", "NGC2239", "IC434"]


def test_common_names_across_line_breaks_and_possessives(g):
    got = keys("Inside the Horsehead\nNebula and the Orion Nebula's core; the Pleiades shine.", g)
    assert [(n.replace("\n", " "), kind) for n, _, kind in got] == [
        ("Horsehead Nebula", "common"), ("Orion Nebula", "common"), ("Pleiades", "common")]


def test_common_names_in_any_case_and_beside_letters_that_lower_case_longer(g):
    """Popular names are matched on the lower-cased text; "İ" lower-cases to two characters, so such a
    text takes the case-insensitive pattern and the spans still point at the original text."""
    text = "THE ORION NEBULA and the crab nebula"
    assert [(m.name, m.kind) for m in extract(text, g)] == [("ORION NEBULA", "common"), ("crab nebula", "common")]
    shifted = "İstanbul skies: the Orion Nebula and the Pleiades."
    assert len(shifted.lower()) != len(shifted)
    found = extract(shifted, g)
    assert [m.name for m in found] == ["Orion Nebula", "Pleiades"]
    assert all(shifted[m.start:m.end] == m.name for m in found)


def test_a_name_that_says_no_kind_of_object_must_be_written_as_a_name(g):
    """OpenNGC calls NGC 4438 "Eyes" and NGC 253 "Silver Coin": read in any case, every "naked eyes" made
    NGC 4438 the main object of 78 entries (all drawn at one spot in Virgo). A popular name without a
    kind word (nebula, galaxy, cluster, …) counts only written with a capital, as the archive writes
    every such name it means (157 of its 177 "eyes" and 1 of its 5 "silver coin" are lower case)."""
    def common(text):
        return [m.name for m in extract(text, g) if m.kind == "common"]

    assert common("visible to naked eyes; a Roman silver coin; a browning leaf") == []
    assert common("The Eyes in Virgo, the Silver Coin galaxy and the Pleiades") == ["Eyes", "Silver Coin", "Pleiades"]
    assert common("the crab nebula and the sombrero galaxy") == ["crab nebula", "sombrero galaxy"]
    # a title is in title case: there such a name counts only when the explanation names it too
    from atlas.sky.resolve import objects_for

    def placed(title, text):
        return [(o.canonical_id, o.field) for o in objects_for(title, text, g) if o.ra_deg is not None]

    assert placed("New Eyes for the Hubble Space Telescope", "The telescope's new eyes see farther.") == []
    assert ("NGC4438", "title") in placed("Markarian's Eyes", "Two galaxies known as Markarian's Eyes.")


def test_solar_system_bodies_are_not_sidereal(g):
    objs = objects_for("Jupiter and the Moon", "Comet Lovejoy passed M42.", g)
    bodies = [o for o in objs if o.resolver == "solar-system"]
    assert {o.name for o in bodies} >= {"Jupiter", "Moon", "Comet Lovejoy"}
    assert all(o.ra_deg is None for o in bodies)
    m42 = next(o for o in objs if o.canonical_id == "NGC1976")
    assert abs(m42.ra_deg - 83.82) < 0.01 and abs(m42.dec_deg + 5.39) < 0.01
    # the picture is of Jupiter: M42 in the text is not the entry's target
    assert [o.name for o in objs if o.is_primary] == ["Jupiter"]


def test_primary_prefers_catalogue_objects_to_signpost_stars(g):
    objs = objects_for("A starry night", "Bright Antares shines to the left of globular cluster M4.", g)
    assert [o.canonical_id for o in objs if o.is_primary] == ["NGC6121"]
    only_star = objects_for("A starry night", "Bright Antares shines low.", g)
    assert [(o.name, o.resolver) for o in only_star if o.is_primary] == [("Antares", "bright-stars")]


def test_popular_name_aliases_win_over_openngc(g):
    got = {o.name: o for o in objects_for("", "The Flame Nebula, the Bear Claw Nebula and the Hercules Cluster.", g)}
    assert got["Flame Nebula"].canonical_id == "NGC2024"  # OpenNGC files the name under IC 434
    assert got["Bear Claw Nebula"].canonical_id == "NGC6334"  # not the galaxy NGC 2537
    hercules = got["Hercules Cluster"]  # not in OpenNGC: kept with the designation to ask online
    assert hercules.ra_deg is None and hercules.resolver is None and hercules.canonical_id == "Abell 2151"
    # "Virgo Galaxy Cluster" (24 mentions in the archive) is the cluster, not OpenNGC's "Virgo Galaxy" (M87)
    virgo = objects_for("The Virgo Galaxy Cluster", "Galaxies of the Virgo Galaxy Cluster.", g)
    assert {(o.name, o.canonical_id) for o in virgo} == {("Virgo Galaxy Cluster", "Virgo Cluster")}


def test_star_designations_and_other_catalogues(g):
    text = ("Eta Carinae, 61 Cygni, V838 Mon and HL Tauri; T Tauri stars; HH 24, WR 104, HDE 227018, "
            "SN 1006, 3C 75, ESO 137-001, Sh2-101, Abell S373, CG4 and Kepler-186f.")
    got = [(m.name, m.kind, m.query) for m in extract(text, g)]
    assert [q for _, _, q in got] == [
        "Eta Carinae", "61 Cygni", "V838 Mon", "HL Tauri", "HH 24", "WR 104", "HD 227018", "SN 1006", "3C 75",
        "ESO 137-001", "Sh2-101", "Abell S373", "CG 4", "Kepler-186"]
    assert {kind for name, kind, _ in got[:4]} == {"designation"}


def test_named_bright_stars_are_placed_offline_but_rockets_are_not(g):
    spica = next(o for o in objects_for("Spica and the Moon", "", g) if o.name == "Spica")
    assert spica.resolver == "bright-stars" and abs(spica.ra_deg - 201.298) < 0.01 and abs(spica.dec_deg + 11.161) < 0.01
    assert not [o for o in objects_for("", "An Atlas V rocket lifts off; a peacock watches.", g) if o.ra_deg is not None]


def test_resolution_of_catalogue_aliases(g):
    assert g.resolve_key("M45").canonical_id == "Mel022"  # the Pleiades
    assert g.resolve_key("C63").canonical_id == "NGC7293"  # Caldwell 63 = Helix
    assert g.resolve_common("horsehead nebula").canonical_id == "B033"
    assert g.resolve_key("ABELL2218") is None  # not in OpenNGC: left for the online resolver
    assert g.resolve_common("Bear Claw Nebula").canonical_id == "NGC6334"
    blue = objects_for("", "IC 4592, the Blue Horsehead Nebula", g)
    assert {o.canonical_id for o in blue} == {"IC4592"}  # not the Horsehead (Barnard 33)
    belt = objects_for("", "Alnitak, Alnilam and Mintaka", g)
    assert {o.resolver for o in belt} == {"bright-stars"}  # the star, not OpenNGC's NGC 1990 around it


def test_primary_target_prefers_the_title(g):
    objs = objects_for("The Helix Nebula", "Not far from M31 on the sky? No.", g)
    primary = [o for o in objs if o.is_primary]
    assert len(primary) == 1 and primary[0].field == "title" and primary[0].canonical_id == "NGC7293"


def _tiny_lake(tmp_path, points):
    """A published lake whose entries each have one object at the given (ra, dec)."""
    import datetime as dt

    import pyarrow as pa

    from lake.layout import LakeLayout
    from lake.schema import SCHEMAS
    from lake.writer import LakeWriter

    layout = LakeLayout.at(tmp_path / "lake")
    days = [dt.date(2000, 1, 1) + dt.timedelta(days=i) for i in range(len(points))]
    entries = [{"date": d, "title": f"e{i}", "explanation": "", "media_type": "image", "has_image": False,
                "year": 2000, "source": "test", "content_sha1": "x"} for i, d in enumerate(days)]
    objects = [{"date": d, "name": f"o{i}", "ra_deg": ra, "dec_deg": dec, "resolver": "test", "is_primary": True}
               for i, (d, (ra, dec)) in enumerate(zip(days, points))]
    tables = {name: pa.Table.from_pylist(rows, schema=SCHEMAS[name])
              for name, rows in (("entries", entries), ("objects", objects), ("categories", []))}
    LakeWriter(layout).publish_tables(tables, {"taxonomy": {"categories": []}}, version="tiny")
    return layout


def test_cone_search_wraps_ra_and_handles_poles(tmp_path):
    from lake.queries import AtlasQueries
    from lake.reader import LakeReader

    points = [(359.9, 0.0), (0.1, 0.0), (180.0, 0.0), (10.0, 89.9), (190.0, 89.9), (0.0, -89.95), (0.0, 2.5)]
    a = AtlasQueries(LakeReader(_tiny_lake(tmp_path, points)))
    near_zero = a.cone(0.0, 0.0, 0.5)
    assert near_zero.title.tolist() in (["e0", "e1"], ["e1", "e0"])  # both sides of RA 0/360
    assert near_zero.separation_deg.max() == pytest.approx(0.1, abs=1e-3)
    pole = a.cone(123.0, 90.0, 0.2)  # every RA is close to the pole
    assert sorted(pole.title) == ["e3", "e4"]
    assert a.cone(0.0, -90.0, 0.1).title.tolist() == ["e5"]
    assert a.cone(0.0, 0.0, 2.6).title.tolist()[-1] == "e6"  # nearest first
    assert a.cone(90.0, 0.0, 1.0).empty
    # names typed into the cone search are also looked up among the lake's placed objects
    assert a.object_position("  O3 ") == (10.0, 89.9) and a.object_position("o99") is None


def test_abell_numbers_are_asked_as_the_catalogue_the_entry_speaks_of(g):
    """Abell numbered both planetary nebulae (to 86) and galaxy clusters: "Abell 39" in an entry about a
    planetary nebula is asked as PN A66 39, "Abell 68" in one about a lensing cluster as ACO 68; a
    number past 86, or an entry that says both or neither, is asked as written."""
    def asked(title: str, text: str) -> set[str]:
        return {o.canonical_id for o in objects_for(title, text, g) if o.canonical_id and "Abell" in o.name}

    assert asked("Abell 39: A Planetary Nebula", "Abell 39 is a remarkably simple nebula.") == {"PN A66 39"}
    assert asked("Gravitational Lensing by Abell 68", "Galaxy cluster Abell 68 bends light.") == {"ACO 68"}
    assert asked("Abell 2218: A Galaxy Cluster Lens", "Gravity bends light.") == {"Abell 2218"}
    assert asked("Abell 7", "A faint nebula.") == {"Abell 7"}
    assert asked("Abell 3", "Lensed arcs, as planetary scientists see them.") == {"Abell 3"}  # not a nebula
    assert asked("Abell 33 and Abell 1689", "A planetary nebula, and a cluster of galaxies.") == {"Abell 33", "Abell 1689"}


def test_typed_names_are_found_in_any_case_and_spacing():
    """The Sky page and the cone API look up what a person typed: "m42" and "NGC  2237" were not found
    (the text scanner wants catalogue names as an archive text writes them), nor "vega"."""
    from atlas.sky.resolve import position_of

    m42 = position_of("M 42")
    assert m42 == pytest.approx((83.8187, -5.3897), abs=1e-3)
    assert position_of("m42") == position_of("M  42") == position_of(" orion   nebula ") == m42
    assert position_of("ngc  2237") == position_of("NGC 2237") is not None
    assert position_of("vega") == position_of("Vega") is not None
    assert position_of("Xyzzy") is None and position_of("Saturn") is None  # no fixed position


def test_cone_api_and_search_filter(demo_client):
    client = demo_client
    r = client.get("/api/cone?ra=83.82&dec=-5.39&r=1")
    assert r.status_code == 200 and "2014-04-08" in {x["date"] for x in r.get_json()["results"]}  # M42 entry
    by_name = client.get("/api/cone", query_string={"name": "Orion Nebula", "r": "1"}).get_json()
    assert {x["date"] for x in by_name["results"]} == {x["date"] for x in r.get_json()["results"]}
    assert client.get("/api/cone?ra=400&dec=0&r=1").status_code == 400
    assert client.get("/api/cone?ra=10").status_code == 400
    assert client.get("/api/cone?name=Xyzzy%20Nebula").status_code == 404
    inside = {x["date"] for x in r.get_json()["results"]}
    hits = client.get("/api/search?q=stars&ra=83.82&dec=-5.39&r=1&k=5").get_json()["results"]
    assert hits and {h["date"] for h in hits} <= inside
    entry = client.get("/api/entry/2014-04-08").get_json()
    m42 = next(o for o in entry["objects"] if o["canonical_id"] == "NGC1976")
    assert m42["aladin"].startswith("https://aladin.cds.unistra.fr/AladinLite/?target=83.8")
    assert m42["size_deg"] == pytest.approx(1.5) and "fov=4.5&" in m42["aladin"]  # 3× OpenNGC's 90′


def test_aladin_field_of_view_follows_the_object_size():
    from lake.queries import aladin_fov

    assert aladin_fov(3.2) == 9.6 and aladin_fov(0.001) == 0.1 and aladin_fov(50.0) == 30.0
    assert aladin_fov(None, "*") == 0.5 and aladin_fov(None, "G") == 1.0 and aladin_fov(float("nan")) == 1.0


def _sesame(server, answers: dict[str, str]):
    from urllib.parse import unquote, urlparse

    def handle(h):
        name = unquote(urlparse(h.path).query)
        body = answers.get(name, "#! *** Nothing found *** ")
        h.reply(200, f"# {name}\n{body}\n".encode(), "text/plain")
    server.routes["/sesame/SNV"] = handle


_TAP_CAPABILITIES = b"""<?xml version="1.0" encoding="UTF-8"?>
<vosi:capabilities xmlns:vosi="http://www.ivoa.net/xml/VOSICapabilities/v1.0"
  xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" xmlns:vs="http://www.ivoa.net/xml/VODataService/v1.1"
  xmlns:tr="http://www.ivoa.net/xml/TAPRegExt/v1.0">
 <capability standardID="ivo://ivoa.net/std/TAP" xsi:type="tr:TableAccess">
  <interface xsi:type="vs:ParamHTTP" role="std"><accessURL use="base">http://127.0.0.1/</accessURL></interface>
  <language><name>ADQL</name><version ivo-id="ivo://ivoa.net/std/ADQL#v2.0">2.0</version></language>
  <outputFormat><mime>application/x-votable+xml</mime></outputFormat>
  <outputLimit><default unit="row">10000</default><hard unit="row">2000000</hard></outputLimit>
 </capability>
</vosi:capabilities>"""


def _simbad(server, known: dict[str, tuple[str, float, float, str]], status: int = 200, fail_after: int | None = None):
    """A SIMBAD TAP service on 127.0.0.1: capabilities, and synchronous ADQL queries with an uploaded
    table of names answered from ``known`` (name → main id, ra, dec, otype), null for the others; it
    answers ``status`` (or 503 once ``fail_after`` queries were answered)."""
    import email.parser
    import io

    from astropy.io.votable import from_table, parse_single_table
    from astropy.table import MaskedColumn, Table

    server.adql = []

    def sync(h):
        if status != 200 or (fail_after is not None and len(server.adql) >= fail_after):
            h.reply(status, b"overloaded", "text/plain")
            return
        head = b"Content-Type: " + h.headers["Content-Type"].encode() + b"\r\n\r\n"
        parts = {p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
                 for p in email.parser.BytesParser().parsebytes(head + h.body).get_payload()}
        server.adql.append(parts["QUERY"].decode())
        names = [str(n) for n in parse_single_table(io.BytesIO(parts["names"])).to_table()["user_specified_id"]]
        rows = [known.get(n) for n in names]
        miss = [r is None for r in rows]
        cols = [MaskedColumn([r[i] if r else v for r in rows], name=c, mask=miss)
                for i, (c, v) in enumerate((("main_id", ""), ("ra", 0.0), ("dec", 0.0), ("otype", "")))]
        buf = io.BytesIO()
        from_table(Table([names, *cols], names=["user_specified_id", "main_id", "ra", "dec", "otype"])).to_xml(buf)
        h.reply(200, buf.getvalue(), "application/x-votable+xml")

    server.routes["/simbad/sim-tap/capabilities"] = lambda h: h.reply(200, _TAP_CAPABILITIES, "text/xml")
    server.routes["/simbad/sim-tap/sync"] = sync
    return f"{server.url}/simbad/sim-tap"


def test_online_resolver_asks_simbad_in_one_batch_then_sesame_and_caches(http_server, tmp_path):
    from pipeline.sky.online import OnlineResolver

    simbad = _simbad(http_server, {"Abell 2151": ("ACO  2151", 241.3125, 17.7486, "ClG"),
                                   "Barnard's Loop": ("NAME Barnard's Loop", 86.0, -1.0, "HII")})
    _sesame(http_server, {"Xyzzy Nebula": "%J 10.0 +20.0 = 00:40:00.0 +20:00:00"})
    names = ["Abell 2151", "Barnard's Loop", "Xyzzy Nebula", "Nothing 1"]
    cache = tmp_path / "names.json"
    r = OnlineResolver(cache, simbad, (f"{http_server.url}/sesame/",), timeout=5)
    got = r.resolve(names)
    assert got["Abell 2151"].canonical_id == "ACO 2151" and got["Abell 2151"].object_type == "ClG"
    assert (got["Abell 2151"].ra_deg, got["Abell 2151"].resolver) == (pytest.approx(241.3125), "simbad")
    assert got["Barnard's Loop"].resolver == "simbad"  # a quote in a name: uploaded, never written into ADQL
    assert (got["Xyzzy Nebula"].ra_deg, got["Xyzzy Nebula"].resolver) == (pytest.approx(10.0), "sesame")
    assert got["Nothing 1"] is None
    assert len(http_server.adql) == 1 and "Barnard" not in http_server.adql[0]  # one TAP query for all names
    assert r.asked == {"simbad": 4, "sesame": 2}  # Sesame only for what SIMBAD did not know
    asked = len(http_server.requests)
    again = OnlineResolver(cache, simbad, (f"{http_server.url}/sesame/",)).resolve(names)
    assert again == got and len(http_server.requests) == asked  # answered from the cache in the lake


def test_a_sesame_answer_cut_mid_way_keeps_what_was_learnt_and_a_second_mirror_is_tried(http_server, tmp_path,
                                                                                         free_port):
    """A connection that breaks inside Sesame's answer (astropy passes ConnectionResetError and
    IncompleteRead on as they are) failed the whole build, and what SIMBAD and Sesame had answered
    was lost. It is an outage now: the answers so far are kept, the rest wait for the next build. And
    a second Sesame mirror is asked when the first does not take a connection (before, only the first
    was looked at)."""
    import json
    import socket
    import struct
    from urllib.parse import unquote, urlparse

    from pipeline.sky.online import OnlineResolver

    def handle(h):
        name = unquote(urlparse(h.path).query)
        if name == "Broken Nebula":  # promises 500 bytes, sends a few, then resets the connection
            h.send_response(200)
            h.send_header("Content-Type", "text/plain")
            h.send_header("Content-Length", "500")
            h.end_headers()
            h.wfile.write(b"# Broken Nebula\n%J 1")
            h.wfile.flush()
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            h.connection.close()
            h.close_connection = True
            return
        h.reply(200, f"# {name}\n%J 10.0 +20.0 = 00:40:00.0 +20:00:00\n".encode(), "text/plain")
    http_server.routes["/sesame/SNV"] = handle
    cache = tmp_path / "names.json"
    dead = f"http://127.0.0.1:{free_port}/sesame/"  # nothing listens there
    r = OnlineResolver(cache, None, (dead, f"{http_server.url}/sesame/"), timeout=5)
    got = r.resolve(["Alpha Nebula", "Broken Nebula", "Gamma Nebula"])
    assert got["Alpha Nebula"] is not None and got["Alpha Nebula"].resolver == "sesame"
    assert r.unanswered(["Alpha Nebula", "Broken Nebula", "Gamma Nebula"]) == ["Broken Nebula", "Gamma Nebula"]
    assert "Alpha Nebula" in json.loads(cache.read_text())["resolvers"][r.key]  # saved, for the next build


def test_simbad_down_falls_back_to_sesame(http_server, tmp_path):
    from pipeline.sky.online import OnlineResolver

    simbad = _simbad(http_server, {}, status=503)
    _sesame(http_server, {"Abell 2218": "%J 248.95417 +66.21222 = 16:35:49.0 +66:12:44"})
    got = OnlineResolver(tmp_path / "n.json", simbad, (f"{http_server.url}/sesame/",), timeout=5).resolve(["Abell 2218"])
    assert got["Abell 2218"].resolver == "sesame" and got["Abell 2218"].dec_deg == pytest.approx(66.21222)


def test_build_asks_online_for_the_recorded_designations(http_server, tmp_path, g):
    from pipeline.sky.online import OnlineResolver
    from atlas.sky.resolve import place_online

    simbad = _simbad(http_server, {"Abell 2151": ("ACO 2151", 241.3125, 17.7486, "ClG")})
    per_entry = {"2014-06-25": objects_for("The Hercules Cluster of Galaxies", "Also known as Abell 2151.", g)}
    assert not any(o.is_primary for o in per_entry["2014-06-25"])  # nothing placed offline
    online = OnlineResolver(tmp_path / "names.json", simbad, (), timeout=5)
    objs = place_online(per_entry, online)["2014-06-25"]
    title = next(o for o in objs if o.field == "title")
    assert (title.name, title.resolver, title.is_primary, title.object_type) == ("Hercules Cluster", "simbad", True, "ClG")
    assert title.ra_deg == pytest.approx(241.3125) and sum(o.is_primary for o in objs) == 1
    assert {o.canonical_id for o in objs} == {"ACO 2151"}  # the alias and the designation: one object


def test_a_simbad_outage_mid_way_keeps_the_batches_it_answered(http_server, tmp_path, monkeypatch):
    """SIMBAD answers batch by batch: when it fails at the second batch, the names of the first stay
    placed (before, the whole lookup was thrown away and every name went to Sesame, one by one)."""
    from pipeline.sky import online

    monkeypatch.setattr(online, "SIMBAD_BATCH", 2)
    simbad = _simbad(http_server, {"Abell 2151": ("ACO 2151", 241.3125, 17.7486, "ClG"),
                                   "Abell 1689": ("ACO 1689", 197.875, -1.336, "ClG"),
                                   "Abell 370": ("ACO 370", 39.97, -1.58, "ClG")}, fail_after=1)
    _sesame(http_server, {})
    r = online.OnlineResolver(tmp_path / "n.json", simbad, (f"{http_server.url}/sesame/",), timeout=5)
    got = r.resolve(["Abell 2151", "Abell 1689", "Abell 370", "Nothing 1"])
    assert got["Abell 2151"].resolver == got["Abell 1689"].resolver == "simbad"
    assert got["Abell 370"] is None and len(http_server.adql) == 1
    assert r.asked == {"simbad": 2, "sesame": 2}  # Sesame for the second batch only; it knew neither
    again = online.OnlineResolver(tmp_path / "n.json", simbad, (f"{http_server.url}/sesame/",), timeout=5)
    assert again.resolve(["Abell 2151"])["Abell 2151"].canonical_id == "ACO 2151"  # kept in the cache


def test_unknown_names_are_asked_again_after_a_while_and_answers_are_kept_per_resolver(http_server, tmp_path):
    """"Nobody knows this name" is not kept forever: it is asked again after UNKNOWN_RECHECK_DAYS
    (spread per name over as many again). And the cache answers only for the resolvers that gave the
    answers: a lake built once against another server (a test double, a private mirror) does not take
    that server's answers, or its "unknown", for SIMBAD's; going back to the first server finds its
    answers again."""
    import json

    from pipeline.sky.online import UNKNOWN_RECHECK_DAYS, OnlineResolver, recheck_due

    day, t0 = 86400.0, 1_000_000_000.0
    cache, sesame = tmp_path / "names.json", (f"{http_server.url}/sesame/",)
    _sesame(http_server, {})
    first = OnlineResolver(cache, None, sesame, timeout=5, now=t0)
    assert first.resolve(["Xyzzy Nebula"]) == {"Xyzzy Nebula": None} and first.asked["sesame"] == 1
    soon = OnlineResolver(cache, None, sesame, timeout=5, now=t0 + UNKNOWN_RECHECK_DAYS * day - 1)
    assert soon.unanswered(["Xyzzy Nebula"]) == []  # still known to be unknown
    late = t0 + 2 * UNKNOWN_RECHECK_DAYS * day
    _sesame(http_server, {"Xyzzy Nebula": "%J 10.0 +20.0 = 00:40:00.0 +20:00:00"})  # the catalogue learnt it
    later = OnlineResolver(cache, None, sesame, timeout=5, now=late)
    assert later.unanswered(["Xyzzy Nebula"]) == ["Xyzzy Nebula"]
    assert later.resolve(["Xyzzy Nebula"])["Xyzzy Nebula"].ra_deg == pytest.approx(10.0)
    due = [recheck_due(f"name {i}", t0, now=t0 + d * day) for i in range(200) for d in (1.5 * UNKNOWN_RECHECK_DAYS,)]
    assert 0.2 < sum(due) / len(due) < 0.8  # spread: about half of the names fall due by then

    other = OnlineResolver(cache, f"{http_server.url}/other-simbad/sim-tap", sesame, timeout=5, now=late)
    assert other.unanswered(["Xyzzy Nebula"]) == ["Xyzzy Nebula"]  # another setting's answer is not this one's
    other._save()
    assert len(json.loads(cache.read_text())["resolvers"]) == 2
    back = OnlineResolver(cache, None, sesame, timeout=5, now=late)
    assert back.unanswered(["Xyzzy Nebula"]) == []


def test_a_names_cache_of_the_first_format_is_carried_over_and_a_damaged_one_fails_nothing(tmp_path):
    """A lake built before the cache was kept per resolver has its answers in ``names.json``: they are
    carried into the new file (placements for the default resolvers, the only ones a build used without
    a flag; unknown names taken as learnt on the day, so they fall due over the following weeks, not all
    on the next build), and the old file is left for a builder still on a release that reads it. A cache
    of a shape or format this code does not know is read as empty: its names are asked again, the build
    goes on."""
    import json

    from lake.layout import LakeLayout
    from pipeline.sky.online import UNKNOWN_RECHECK_DAYS, OnlineResolver

    layout, t0 = LakeLayout(tmp_path / "lake"), 1_000_000_000.0
    layout.cache.mkdir(parents=True)
    legacy = layout.cache / "names.json"
    legacy.write_text(json.dumps({"Abell 2218": {"ra_deg": 248.95, "dec_deg": 66.2, "canonical_id": None,
                                                 "object_type": None, "resolver": "sesame"}, "Nothing 1": None}))
    r = OnlineResolver(layout.names_cache, now=t0)
    assert r.cache["Abell 2218"].ra_deg == 248.95 and r.unanswered(["Abell 2218", "Nothing 1"]) == []
    r._save()  # (as a build's resolve does)
    assert OnlineResolver(layout.names_cache, now=t0 + 2 * UNKNOWN_RECHECK_DAYS * 86400).unanswered(["Nothing 1"]) \
        == ["Nothing 1"]
    assert OnlineResolver(layout.names_cache, "http://127.0.0.1:9/sim-tap", (), now=t0).unanswered(["Abell 2218"]) \
        == ["Abell 2218"]  # another resolver's answers are not the default ones'
    assert "resolvers" in json.loads(layout.names_cache.read_text()) and "Abell 2218" in json.loads(legacy.read_text())
    legacy.unlink()  # (else an unreadable file is read as the first format's again)
    for damaged in ("{not json", '{"format": 2, "resolvers": [1]}', '{"format": 3, "anything": {}}', "[1, 2]",
                    json.dumps({"format": 2, "resolvers": {r.key: {"Abell 2218": {"ra": 1}, "Nothing 1": {"unknown_since": "x"}}}})):
        layout.names_cache.write_text(damaged)
        assert OnlineResolver(layout.names_cache, now=t0).unanswered(["Abell 2218", "Nothing 1"]) == ["Abell 2218", "Nothing 1"]


def test_unreachable_resolvers_give_up_fast_and_ask_again_next_time(tmp_path, free_port):
    import time

    from pipeline.sky.online import OnlineResolver

    start = time.perf_counter()
    base = f"http://127.0.0.1:{free_port}"
    r = OnlineResolver(tmp_path / "n.json", f"{base}/simbad/sim-tap", (f"{base}/sesame/",), timeout=60)
    assert r.resolve(["Abell 2218"]) == {"Abell 2218": None}
    # refused connections: no waiting for the timeout, and no name counted as asked
    assert time.perf_counter() - start < 30 and r.asked == {"simbad": 0, "sesame": 0}
    assert "Abell 2218" not in r.cache  # not a definite "unknown": the next build asks again


@pytest.mark.slow
def test_build_resolves_leftover_names_online_and_offline_never_asks(http_server, tmp_path):
    import json

    from lake.reader import LakeReader
    from pipeline.sky.online import resolver_key
    from tests.conftest import run_cli, write_jsonl

    _sesame(http_server, {"Abell 2218": "%J 248.95417 +66.21222 = 16:35:49.0 +66:12:44"})
    dump = write_jsonl(tmp_path / "d.jsonl", [
        {"date": "2020-01-01", "title": "Abell 2218: A Galaxy Cluster Lens", "explanation": "Gravity bends light."},
        {"date": "2020-01-02", "title": "M42 again", "explanation": "The Orion Nebula."},
        {"date": "2020-01-03", "title": "Saturn", "explanation": "Rings."},
        {"date": "2020-01-04", "title": "Comet tails", "explanation": "Comet NEOWISE."}])
    lake = tmp_path / "lake"
    common = ["build", "--collection", "apod", "--no-progress", "--encoder", "offline", "--dump", str(dump), "--lake", str(lake)]
    simbad = _simbad(http_server, {})  # SIMBAD answers, but does not know the name: Sesame places it
    urls = ["--simbad-url", simbad, "--sesame-url", f"{http_server.url}/sesame/"]
    proc = run_cli(*common, *urls)
    assert proc.returncode == 0, proc.stderr[-2000:]
    objs = LakeReader.open(lake).query("SELECT * FROM objects")
    abell = objs[objs.name == "Abell 2218"].iloc[0]
    assert abell.resolver == "sesame" and abell.is_primary and abs(abell.ra_deg - 248.954) < 1e-3
    cached = json.loads((lake / "cache" / "names-v2.json").read_text())["resolvers"]
    assert cached[resolver_key(simbad, (f"{http_server.url}/sesame/",))]["Abell 2218"]["resolver"] == "sesame"
    assert len(http_server.adql) == 1
    offline_lake = tmp_path / "offline"
    before = len(http_server.requests)
    proc = run_cli(*common[:-1], str(offline_lake), "--offline", *urls)
    assert proc.returncode == 0 and len(http_server.requests) == before
    off = LakeReader.open(offline_lake).query("SELECT * FROM objects WHERE name = 'Abell 2218'")
    assert len(off) == 1 and off.resolver.isna().all() and off.ra_deg.isna().all()


@pytest.mark.slow
def test_names_left_by_an_outage_are_asked_by_the_next_build(http_server, tmp_path, free_port):
    """A build while both resolvers are down records the names nobody answered; the next build, with a
    resolver back, asks them again and places them, though no entry changed (before, it skipped the sky
    stage and those objects stayed off the sky until --force); once answered, builds skip the stage again."""
    import json

    from lake.reader import LakeReader
    from tests.conftest import run_cli, write_jsonl

    dump = write_jsonl(tmp_path / "d.jsonl", [
        {"date": "2020-01-01", "title": "Abell 2218: A Galaxy Cluster Lens", "explanation": "Gravity bends light."},
        {"date": "2020-01-02", "title": "M42 again", "explanation": "The Orion Nebula."}])
    lake = tmp_path / "lake"
    common = ["build", "--collection", "apod", "--no-progress", "--encoder", "offline", "--dump", str(dump), "--lake", str(lake)]
    down = f"http://127.0.0.1:{free_port}"
    proc = run_cli(*common, "--simbad-url", f"{down}/simbad/sim-tap", "--sesame-url", f"{down}/sesame/")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "wait for a name resolver" in proc.stderr

    def sky() -> tuple[dict, object]:
        m = json.loads((lake / "current" / "manifest.json").read_text())
        abell = LakeReader.open(lake).query("SELECT * FROM objects WHERE name = 'Abell 2218'").iloc[0]
        return m, abell

    m, abell = sky()
    assert m["sky"]["unanswered_names"] >= 1 and abell.resolver is None
    _sesame(http_server, {"Abell 2218": "%J 248.95417 +66.21222 = 16:35:49.0 +66:12:44"})
    up = ["--simbad-url", _simbad(http_server, {}), "--sesame-url", f"{http_server.url}/sesame/"]
    proc = run_cli(*common, *up)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m, abell = sky()
    assert m["stages"]["sky"]["skipped"] is False and m["sky"]["unanswered_names"] == 0
    assert abell.resolver == "sesame" and abs(abell.ra_deg - 248.954) < 1e-3 and abell.is_primary
    asked = len(http_server.requests)
    proc = run_cli(*common, *up)
    assert proc.returncode == 0, proc.stderr[-2000:]
    m, _ = sky()
    assert m["stages"]["sky"]["skipped"] is True and len(http_server.requests) == asked


def test_a_look_for_a_resolver_back_is_taken_at_most_once_an_hour(tmp_path):
    """Builds whose sky stage left names pending look whether a resolver is back at most once per
    RETRY_PENDING_EVERY: a machine without the network is not made to try on every no-op build."""
    from pipeline.sky.online import RETRY_PENDING_EVERY, retry_due

    cache = tmp_path / "names.json"
    assert retry_due(cache, now=1_000_000.0)  # never looked
    assert not retry_due(cache, now=1_000_000.0 + RETRY_PENDING_EVERY / 2)
    assert retry_due(cache, now=1_000_000.0 + RETRY_PENDING_EVERY + 1)
    assert retry_due(cache, now=1.0)  # a clock set back: looked again, not never
