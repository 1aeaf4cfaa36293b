"""Page layouts on the demo lake, as the page functions return them (what the browser tests cannot
reach cheaply: every kind of entry, and lakes that lack a collection)."""

from __future__ import annotations

import pytest

from lake.layout import LakeLayout
from lake.writer import LakeWriter
from pages.ids import Entry


@pytest.fixture(scope="module")
def entry_page(demo_app):
    from pages import entry

    def render(date: str) -> str:
        with demo_app.server.test_request_context(f"/entry/{date}"):
            return str(entry.layout(entry_day=date))
    return render


def test_an_entry_without_a_picture_says_why_it_has_no_picture_neighbours(entry_page):
    page = entry_page("2014-01-01")  # an image entry whose picture is not bundled: text vectors only
    assert "This entry has no picture, so it has no picture vector." in page
    assert "no vector of this kind (no image)" not in page  # the old words, said of every empty tab
    assert Entry.TABS in page


def test_the_original_link_says_what_it_opens(entry_page):
    assert "Full-size image ↗" in entry_page("2014-01-20")
    video = entry_page("2014-02-24")
    assert "Open the video ↗" in video and "Full-size image" not in video
    other = entry_page("2014-01-12")  # neither picture nor video: NASA's page is the only original
    assert "Open on apod.nasa.gov" in other and "Full-size image" not in other and "Open the video" not in other


def test_an_entry_names_its_copyright_owner_once(entry_page):
    page = entry_page("2014-01-01")  # © Jay Ouellet: named after the picture's origin, in the © line and the list
    assert page.count("Jay Ouellet") == 1 and "© Jay Ouellet — reuse needs the owner's permission" in page


def test_sky_objects_are_named_by_kind_not_by_catalogue_code(entry_page):
    page = entry_page("2014-01-10")  # the Helix Nebula: OpenNGC type "PN"
    assert "(NGC7293, planetary nebula)" in page and ", PN)" not in page


def test_object_type_names():
    from atlas.sky.types import object_type_name

    assert object_type_name("Cl+N") == "star cluster and nebula" and object_type_name("GlCl") == "globular cluster"
    assert object_type_name("Xyz?") == "Xyz?" and object_type_name(None) is None and object_type_name("") is None


def test_an_entry_page_on_a_galaxy_zoo_only_lake_says_so(tmp_path):
    from app import create_app

    layout = LakeLayout.at(tmp_path / "gz2-only")
    LakeWriter(layout).publish_tables({}, {"collections": ["gz2"]}, version="only-galaxies")
    app = create_app(lake=layout.root)
    from pages import entry  # registers its page: after an app exists
    with app.server.test_request_context("/entry/2014-01-07"):
        page = str(entry.layout(entry_day="2014-01-07"))
    assert "no APOD collection" in page and "No data lake yet" in page
    client = app.server.test_client()  # the page says what the lake lacks: no 404 for the entry's path
    assert client.get("/entry/2014-01-07").status_code == 200 and client.get("/entry/2014-02-30").status_code == 404
    assert create_app(lake=tmp_path / "no-lake").server.test_client().get("/entry/2014-01-07").status_code == 200


def test_a_lake_without_build_metrics_says_so_on_the_metrics_page(tmp_path):
    """No metrics table (a Galaxy Zoo-only lake made by hand here; a lake copied without it) used to end
    in a DuckDB CatalogException."""
    from app import create_app

    layout = LakeLayout.at(tmp_path / "no-metrics")
    LakeWriter(layout).publish_tables({}, {"collections": ["gz2"]}, version="no-metrics")
    app = create_app(lake=layout.root)
    from pages import metrics  # registers its page: after an app exists
    with app.server.test_request_context("/metrics"):
        page = str(metrics.layout())
    assert "This lake has no build metrics recorded." in page


def test_categories_page_blames_the_years_not_the_lake_when_they_hold_no_picture_category(tmp_path):
    """A year range whose entries have no picture category used to be told the lake has none at all
    ('rebuild it')."""
    import datetime as dt

    import pyarrow as pa

    from app import create_app
    from lake.schema import SCHEMAS

    days = [dt.date(2001, 1, 1), dt.date(2002, 1, 1)]
    entries = [{"date": d, "title": f"e{d.year}", "explanation": "", "media_type": "image", "has_image": d.year == 2001,
                "year": d.year, "source": "test", "content_sha1": "x"} for d in days]
    cats = [{"date": d, "source": source, "category": "Galaxy", "confidence": 0.9, "top3_categories": ["Galaxy"] * 3,
             "top3_scores": [0.9, 0.05, 0.05]} for d in days for source in ("text", "image") if source == "text" or d.year == 2001]
    layout = LakeLayout.at(tmp_path / "lake")
    LakeWriter(layout).publish_tables({"entries": pa.Table.from_pylist(entries, schema=SCHEMAS["entries"]),
                                       "categories": pa.Table.from_pylist(cats, schema=SCHEMAS["categories"]),
                                       "objects": SCHEMAS["objects"].empty_table()},
                                      {"taxonomy": {"categories": ["Galaxy"]}}, version="two-years")
    app = create_app(lake=layout.root)
    from pages import categories  # registers its page: after an app exists
    with app.server.test_request_context("/categories"):
        *_, all_years = categories.chart_view((2001, 2002))
        *_, later = categories.chart_view((2002, 2002))
    assert "Graph" in type(all_years).__name__
    assert "No entry in these years has a picture category (1 in the whole lake" in str(later)
    assert "rebuild" not in str(later)


@pytest.mark.parametrize("path, search, shows", [
    ("/entry/2014-01-10", "?date=2014-01-20", "NGC7293"),  # the path names the entry, not a query parameter
    ("/entry/2014-01-10", "", "NGC7293"),
    ("/entry/20140110", "", "No such entry"),  # the API's date format only
    ("/entry/2014-W02-5", "", "No such entry"),
    ("/entry/2014-02-30", "", "No such entry"),
])
def test_the_entry_page_shows_the_entry_its_path_names(demo_client, path, search, shows):
    from tests.conftest import fire_callback

    reply = fire_callback(demo_client, "_pages_location.pathname",
                          {"_pages_location.pathname": path, "_pages_location.search": search})
    page = str(reply["_pages_content"])
    assert shows in page
    assert ("Full-size image" in page) == (shows != "No such entry")  # 2014-01-20's page has one too


@pytest.mark.parametrize("path, status", [
    ("/", 200), ("/sky", 200), ("/sky/", 200), ("/search?q=nebula", 200), ("/entry/2014-01-10", 200),
    ("/skyy", 404), ("/entry/1990-01-01", 404), ("/entry/2014-02-30", 404), ("/entry/20140110", 404),
    ("/entry/2014-01-10/more", 404),
])
def test_a_path_that_names_no_page_answers_404(demo_client, path, status):
    """Dash served every path as a page with 200; the body is still the app, which says what is not there."""
    reply = demo_client.get(path)
    assert reply.status_code == status and reply.mimetype == "text/html"


def test_a_cone_radius_of_zero_is_refused_and_an_empty_one_is_one_degree(demo_app):
    from pages import sky

    with demo_app.server.test_request_context("/sky"):
        assert "between 0 and 180 degrees" in str(sky.cone_search(1, None, 83.8, -5.4, 0, None, None))
        assert "within 1° of RA 83.800°" in str(sky.cone_search(1, None, 83.8, -5.4, None, None, None))


def test_the_galaxies_page_answers_the_input_used_last(tmp_path):
    """Upload after typing a galaxy, then change "how many": the look-alikes of the upload, not the typed
    galaxy's neighbours (both inputs still hold a value; the page used to go back to the galaxy)."""
    from app import create_app

    create_app(lake=tmp_path / "no-lake")  # pages register with an app
    from pages.galaxies import asked_for
    from pages.ids import Galaxies

    typed = asked_for(trigger=Galaxies.OBJID, contents=None, objid="8647474690312307154", previous=None)
    upload = asked_for(trigger=Galaxies.UPLOAD, contents="data:image/jpeg;base64,AA==",
                       objid="8647474690312307154", previous=typed)
    assert (typed, upload) == ("objid", "upload")
    for control in (Galaxies.K, Galaxies.SPACE):
        assert asked_for(trigger=control, contents="data:…", objid="8647474690312307154", previous=upload) == "upload"
        assert asked_for(trigger=control, contents="data:…", objid="8647474690312307154", previous=typed) == "objid"
    assert asked_for(trigger=Galaxies.OBJID, contents="data:…", objid="", previous="objid") == "upload"  # emptied
    assert asked_for(trigger=None, contents=None, objid="8647474690312307154", previous=None) == "objid"  # from the URL
    assert asked_for(trigger=Galaxies.K, contents=None, objid="", previous=None) is None


def test_how_many_galaxies_takes_what_is_typed_and_says_what_it_kept(tmp_path):
    """The box sends any number (its old max of 50 made the browser send None for 60, which showed 10)."""
    from app import create_app

    create_app(lake=tmp_path / "no-lake")
    from pages.galaxies import DEFAULT_NEIGHBOURS, MAX_NEIGHBOURS, neighbour_count

    assert neighbour_count(None) == (DEFAULT_NEIGHBOURS, "")
    assert neighbour_count(25) == (25, "")
    k, said = neighbour_count(100)
    assert k == MAX_NEIGHBOURS and "100 asked" in said and f"between 1 and {MAX_NEIGHBOURS}" in said
    assert neighbour_count(0)[0] == 1 and neighbour_count(-4)[0] == 1
    assert neighbour_count(2.6) == (3, "3 shown (2.6 asked; between 1 and 50 are listed)")
    assert neighbour_count(float("nan")) == (DEFAULT_NEIGHBOURS, "")
    assert neighbour_count(float("inf"))[0] == MAX_NEIGHBOURS  # 1e999 from a hand-made request: no 500


@pytest.mark.parametrize("module, component", [("home", "Map"), ("sky", "Sky"), ("search", "Search")])
def test_category_filters_disable_categories_no_entry_has(demo_app, module, component):
    """A category of the taxonomy no entry has is offered disabled, each with its count: choosing one
    drew an empty map and said nothing."""
    import importlib

    from pages import ids
    from tests.conftest import component_with_id

    page = importlib.import_module(f"pages.{module}")
    with demo_app.server.test_request_context("/"):
        from services import atlas
        totals = atlas().category_totals()
        names = atlas().category_names()
        dropdown = component_with_id(page.layout(), getattr(ids, component).CATS)
    assert [o["value"] for o in dropdown.options] == names
    empty = [n for n in names if not totals.get(n)]
    assert empty, "the demo lake's four months leave some category empty"
    for option in dropdown.options:
        count = totals.get(option["value"], 0)
        assert option["disabled"] == (count == 0) and option["label"] == f"{option['value']} ({count:,})"


def test_a_long_query_is_quoted_short_and_the_box_holds_what_the_search_takes(demo_app):
    """A 600-character query made the results' heading 2,500 px wide; the box took what the search refuses."""
    from lake.search import MAX_QUERY_CHARS
    from pages import search
    from pages.ids import Search
    from tests.conftest import component_with_id

    q = "nebula " + "n" * 600
    with demo_app.server.test_request_context("/search"):
        page = search.layout(q=q)
    heading = str(component_with_id(page, Search.RESULTS).children)
    assert f"“{q[:search.QUOTED_CHARS - 1]}…”" in heading and q not in heading
    assert component_with_id(page, Search.Q).maxLength == MAX_QUERY_CHARS
    assert search.quoted("  red   planet ") == "red planet"
