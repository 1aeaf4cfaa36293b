"""The Galaxy Zoo collection end to end: built into the demo lake beside APOD (pictures fetched from a
local cutout service), answered through the JSON API and the CLI."""

from __future__ import annotations

import io
import json

import pandas as pd
import pyarrow.parquet as pq
import pytest

from lake.galaxies import MAX_SELECTION, GalaxyError
from tests.conftest import DEMO_GALAXIES, DEMO_PICTURED, run_cli
from tests.galaxy_pictures import render


def _upload(client, picture: bytes, k: int = 10):
    return client.post(f"/api/galaxies/similar?k={k}", data={"image": (io.BytesIO(picture), "galaxy.jpg", "image/jpeg")},
                       content_type="multipart/form-data")


def test_the_collection_sits_beside_apod(demo_client, demo_lake):
    from lake.reader import LakeReader

    info = demo_client.get("/api/galaxies").get_json()
    assert info["galaxies"] == DEMO_GALAXIES and info["with_picture"] == DEMO_PICTURED and info["picture_search"]
    assert set(info["base_rates"]) == {"smooth", "features", "bar", "spiral", "odd"}
    reader = LakeReader.open(demo_lake)
    assert {"entries", "categories", "projections", "galaxies", "galaxy_maps"} <= set(reader.tables)
    assert reader.count("galaxies") == DEMO_GALAXIES
    assert reader.manifest["counts"]["galaxies"] == DEMO_GALAXIES and reader.manifest["counts"]["entries"] > 100
    spaces = reader.query("SELECT space, count(*) AS n FROM galaxy_maps GROUP BY 1 ORDER BY 1")
    assert spaces.to_dict("list") == {"space": ["image", "morphology"], "n": [DEMO_PICTURED, DEMO_GALAXIES]}


@pytest.mark.parametrize("kind, wanted", [("spiral", "featured"), ("smooth", "smooth")])
def test_an_uploaded_galaxy_finds_galaxies_of_its_kind(demo_client, kind, wanted):
    body = _upload(demo_client, render(kind, seed=987_654)).get_json()
    found = body["galaxies"]
    assert len(found) == 10 and [g["distance"] for g in found] == sorted(g["distance"] for g in found)
    share = sum(g["gz_class"] == wanted for g in found) / len(found)
    base = demo_client.get("/api/galaxies").get_json()["classes"].get(wanted, 0) / DEMO_GALAXIES
    assert share >= 0.8 > base  # the look-alikes are of the uploaded kind, far above the collection's share
    assert all(g["picture"].startswith("/cutouts/gz2/") for g in found)
    assert demo_client.get(found[0]["picture"]).status_code == 200
    morph = {m["answer"]: m for m in body["morphology"]}
    assert set(morph) == {"smooth", "features", "bar", "spiral", "odd"}
    key = "features" if wanted == "featured" else "smooth"
    own, rnd = morph[key]["neighbours"], morph[key]["random"]
    assert own["low"] <= own["value"] <= own["high"] and own["low"] > rnd["high"]  # beyond any random 10
    sky = body["sky_dispersion"]
    assert sky["random_low_deg"] <= sky["random_median_deg"] <= sky["random_high_deg"]
    assert 0 <= sky["percentile"] <= 100


def test_morphology_neighbours_of_a_catalogue_galaxy(demo_client):
    start = demo_client.get("/api/galaxies/8647474690312307154?k=5").get_json()
    assert start["galaxy"]["objid"] == "8647474690312307154" and start["query"]["found"] == 5
    assert "8647474690312307154" not in [g["objid"] for g in start["galaxies"]]
    by_picture = demo_client.get("/api/galaxies/8647474690312307154?k=5&space=image").get_json()
    assert len(by_picture["galaxies"]) == 5
    padded = demo_client.get("/api/galaxies/8647474690312307154%20?k=5")  # a pasted id with a space
    assert padded.status_code == 200 and padded.get_json()["galaxies"] == start["galaxies"]


def test_a_galaxy_without_a_picture_has_morphology_neighbours_and_says_it_has_no_picture(demo_client, demo_lake):
    """The demo lake's cutout service has no picture of every tenth galaxy, as SDSS has none for some:
    such a galaxy has morphology neighbours (listed without a picture), its picture neighbours are a
    clear 404, and it is never one of a picture's look-alikes."""
    from lake.reader import LakeReader

    reader = LakeReader.open(demo_lake)
    bare = reader.query("SELECT objid FROM galaxies WHERE NOT has_image ORDER BY objid").objid.tolist()
    assert len(bare) == DEMO_GALAXIES - DEMO_PICTURED
    assert reader.manifest["stages"]["gz2_cutouts"]["manifest"]["gz2_cutouts"]["last_fetch"]["failed"]
    own = demo_client.get(f"/api/galaxies/{bare[0]}?k=5")
    assert own.status_code == 200 and own.get_json()["galaxy"]["picture"] is None
    by_picture = demo_client.get(f"/api/galaxies/{bare[0]}?k=5&space=image")
    assert by_picture.status_code == 404 and "has no picture" in by_picture.get_json()["error"]
    found = _upload(demo_client, render("spiral", seed=5), k=50).get_json()["galaxies"]
    assert len(found) == 50 and not {g["objid"] for g in found} & set(bare)
    assert all(g["picture"] for g in found)


def test_bad_galaxy_requests_say_what_to_fix(demo_client):
    assert demo_client.get("/api/galaxies/12ab").status_code == 400
    missing = demo_client.get("/api/galaxies/1234567890")
    assert missing.status_code == 404 and "no galaxy" in missing.get_json()["error"]
    assert demo_client.get("/api/galaxies/8647474690312307154?k=500").status_code == 400
    assert demo_client.get("/api/galaxies/8647474690312307154?space=colour").status_code == 400
    not_picture = _upload(demo_client, b"<html>no</html>")
    assert not_picture.status_code == 400
    assert demo_client.get("/api/galaxies/selection?objid=1;DROP").status_code == 400
    # digits of other scripts ('²', '٣') pass str.isdigit but are no objid
    assert demo_client.get("/api/galaxies/%C2%B2%C2%B2").status_code == 400
    assert demo_client.get("/api/galaxies/selection?objid=%D9%A3%D9%A4").status_code == 400


def test_selection_downloads(demo_client):
    ids = ["8647474690312307154", "8647474690312307877"]
    csv = demo_client.get("/api/galaxies/selection?objid=" + ",".join(ids) + "&format=csv")
    df = pd.read_csv(io.BytesIO(csv.data), dtype={"objid": str})
    assert df.objid.tolist() == ids and "p_bar" in df and df.licence_note.str.contains("Willett").all()
    parquet = demo_client.post("/api/galaxies/selection?format=parquet", json=ids)
    assert pd.read_parquet(io.BytesIO(parquet.data)).objid.tolist() == ids
    assert b"Willett" in pq.read_schema(io.BytesIO(parquet.data)).metadata[b"licence"]  # the terms travel along
    assert "X-Objids-Not-Found" not in parquet.headers
    # a 19-digit id as a JSON number is another (rounded) number by the time it arrives: refused, not lost
    rounded = demo_client.post("/api/galaxies/selection?format=json", json=[int(ids[0]), ids[1]])
    assert rounded.status_code == 400 and "as strings" in rounded.get_json()["error"]
    partly = demo_client.post("/api/galaxies/selection?format=json", json=[ids[0], "123456789", ids[1]])
    assert [r["objid"] for r in partly.get_json()] == ids and partly.headers["X-Objids-Not-Found"] == "1"
    none = demo_client.post("/api/galaxies/selection?format=csv", json=["123456789", 42])
    assert none.status_code == 404 and "none of the 2 objids" in none.get_json()["error"]
    too_many = [str(10**18 + i) for i in range(MAX_SELECTION + 1)]
    over = demo_client.post("/api/galaxies/selection?format=csv", json=too_many)
    assert over.status_code == 400 and f"at most {MAX_SELECTION:,}" in over.get_json()["error"]
    from services import galaxies

    with demo_client.application.app_context(), pytest.raises(GalaxyError, match="at most"):
        galaxies().selection(too_many)  # the Galaxies page's download goes through the same bound


def test_galaxies_picked_on_the_map_are_the_drawn_maps_and_a_stale_map_picks_none(demo_client, demo_lake):
    """The map's points carry their row in the map (19-digit objids per point made the figure 1.2 MB);
    the page keeps the key of the map it drew, and rows of a map an earlier build drew (the page stayed
    open through a rebuild) are refused with the reason instead of naming other galaxies."""
    from lake.galaxies import MAP_CHANGED
    from pages.ids import Galaxies
    from tests.conftest import fire_callback

    demo_client.get("/galaxies")  # Dash registers page callbacks on the first request
    maps = pq.read_table(demo_lake / "current" / "galaxy_maps.parquet").to_pandas()
    in_order = sorted(maps[maps.space == "morphology"].objid)
    drawn = fire_callback(demo_client, f"{Galaxies.MAP_SPACE}.value",
                          {f"{Galaxies.MAP_SPACE}.value": "morphology", f"{Galaxies.SOURCES}.data": []})
    key = drawn[Galaxies.MAP_KEY]["data"]
    rows = [5, 0, 17]
    for map_key, want, said in ((key, sorted(in_order[r] for r in rows), "3 galaxies selected"),
                                ("an-earlier-map", [], MAP_CHANGED)):
        state = {f"{Galaxies.MAP_SPACE}.value": "morphology", f"{Galaxies.MAP_KEY}.data": map_key}
        got = fire_callback(demo_client, f"{Galaxies.MAP}.selectedData",
                            {**state, f"{Galaxies.MAP}.selectedData": {"points": [{"customdata": r} for r in rows]}})
        assert got[Galaxies.SELECTION]["data"] == want and got[Galaxies.SELECTION_COUNT]["children"] == said
        clicked = fire_callback(demo_client, f"{Galaxies.MAP}.clickData",
                                {**state, f"{Galaxies.MAP}.clickData": {"points": [{"customdata": 17}]}})
        if want:
            assert clicked[Galaxies.OBJID]["value"] == in_order[17] and Galaxies.SELECTION_COUNT not in clicked
        else:
            assert Galaxies.OBJID not in clicked and clicked[Galaxies.SELECTION_COUNT]["children"] == MAP_CHANGED


def test_a_galaxy_maps_key_holds_through_a_build_that_leaves_it_and_changes_with_it(demo_lake, tmp_path):
    """What the page's row numbers mean survives a rebuild that did not touch the galaxy map (an APOD-only
    daily build), and changes with one that did."""
    import os
    import shutil

    import pyarrow as pa

    from lake.galaxies import GalaxyQueries
    from lake.layout import LakeLayout
    from lake.reader import LakeReader
    from lake.writer import LakeWriter
    from tests.conftest import republish_categories

    shutil.copytree(demo_lake, tmp_path / "lake", symlinks=True, copy_function=os.link)
    layout = LakeLayout.at(tmp_path / "lake")

    def queries() -> GalaxyQueries:
        return GalaxyQueries(LakeReader(layout), encoder_factory=lambda info: None)  # maps need no encoder

    first = queries()
    key = first.map_key("morphology")
    assert first.objids_at("morphology", [0, 1], drawn=key) == sorted(first.map_points("morphology").objid)[:2]
    republish_categories(layout, "apod-only")
    assert queries().map_key("morphology") == key
    moved = LakeReader(layout).query("SELECT * FROM galaxy_maps")
    moved["x"] = moved["x"] + 1.0
    LakeWriter(layout).publish_tables({"galaxy_maps": pa.Table.from_pandas(moved, preserve_index=False)},
                                      json.loads(layout.manifest.read_text()), version="galaxies-refitted")
    now = queries()
    assert now.map_key("morphology") != key
    with pytest.raises(GalaxyError, match="reload the page"):
        now.objids_at("morphology", [0, 1], drawn=key)


def test_cli_upload_and_neighbours(demo_lake, tmp_path):
    picture = tmp_path / "spiral.jpg"
    picture.write_bytes(render("spiral", seed=42))
    out = run_cli("galaxies", "--lake", str(demo_lake), "--image", str(picture), "--k", "5", "--json")
    assert out.returncode == 0, out.stderr[-2000:]
    body = json.loads(out.stdout)
    assert len(body["galaxies"]) == 5 and body["morphology"] and body["sky_dispersion"]
    table = run_cli("galaxies", "--lake", str(demo_lake), "--objid", "8647474690312307154")
    assert table.returncode == 0 and "random 10" in table.stdout and "sky dispersion" in table.stdout
    bad = run_cli("galaxies", "--lake", str(demo_lake), "--objid", "99")
    assert bad.returncode == 2 and "no galaxy" in bad.stderr
