"""The app's questions to the lake (lake.queries) on a real built lake."""

import datetime as dt
import threading

import pytest

from lake.filters import Filters
from lake.queries import AtlasQueries, nasa_page_url
from lake.reader import LakeReader
from tests.conftest import in_threads

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def atlas(demo_lake):
    return AtlasQueries(LakeReader.open(demo_lake))


def test_map_view_filters_and_thinning(atlas):
    everything = atlas.map_view(embedding="text", method="umap", filters=Filters())
    assert everything.total == len(everything.points) == atlas.reader.count("entries")
    top = everything.points.category.value_counts().index[0]
    only = atlas.map_view(embedding="text", method="umap", filters=Filters(categories=(top,)))
    assert 0 < only.total < everything.total and set(only.points.category) == {top}
    feb = atlas.map_view(embedding="text", method="umap", filters=Filters(start=dt.date(2014, 2, 1), end=dt.date(2014, 2, 28)))
    assert feb.total == 28
    thin = atlas.map_view(embedding="text", method="umap", filters=Filters(), max_points=20)
    assert thin.thinned and len(thin.points) == 20 and thin.total == everything.total
    again = atlas.map_view(embedding="text", method="umap", filters=Filters(), max_points=20)
    assert thin.points.date.tolist() == again.points.date.tolist()  # stable subset
    x0, x1 = thin.points.x.min(), thin.points.x.median()
    zoomed = atlas.map_view(embedding="text", method="umap", filters=Filters(), bounds=(x0, x1, -1e9, 1e9), max_points=20)
    assert len(zoomed.points) > 0 and zoomed.points.x.between(x0, x1).all()
    assert not everything.cluster_centres.empty


def test_category_order_is_the_whole_lake_s_and_names_every_category(atlas):
    """The order the pages colour categories in: the lake's most frequent first, whatever a view keeps,
    then the taxonomy's categories no entry has (so each has a colour ready)."""
    counts = atlas.counts_by_category(Filters())
    order = atlas.category_order()
    assert order[:len(counts)] == counts.sort_values(["n", "category"], ascending=[False, True]).category.tolist()
    assert set(order) == set(counts.category) | set(atlas.category_names()) and len(order) == len(set(order))
    assert atlas.category_order() is order  # read once per lake version


def test_user_text_is_a_parameter_not_sql(atlas):
    evil = ("Galaxy') OR 1=1 --",)
    assert atlas.map_view(embedding="text", method="umap", filters=Filters(categories=evil)).total == 0
    assert atlas.selection(["2014-01-05' OR '1'='1"]).empty


def test_selection_has_credits_and_nasa_links(atlas):
    df = atlas.selection(["2014-01-07", "2014-01-05", "1900-01-01"])
    assert df.date.tolist() == ["2014-01-05", "2014-01-07"]
    assert {"credit", "copyright", "nasa_page", "category"} <= set(df.columns)
    assert df.nasa_page.iloc[0] == "https://apod.nasa.gov/apod/ap140105.html"
    assert nasa_page_url("1995-06-16") == "https://apod.nasa.gov/apod/ap950616.html"


def test_entry_and_neighbours(atlas):
    from lake.search import SearchEngine, SearchError
    from atlas.encoders import encoder_from_manifest

    e = atlas.entry("2014-01-07")
    assert e["title"].startswith("M7") and e["nasa_page"].endswith("ap140107.html")
    assert atlas.entry("2014-12-31") is None
    search = SearchEngine(atlas.reader, encoder_from_manifest)  # what the entry page asks for neighbours
    nb = search.similar(dt.date(2014, 1, 7), kind="text", k=5)
    assert len(nb) == 5 and "2014-01-07" not in {h["date"] for h in nb}
    scores = [h["score"] for h in nb]
    assert scores == sorted(scores, reverse=True)
    no_image = atlas.reader.query("SELECT strftime(date, '%Y-%m-%d') AS d FROM entries WHERE NOT has_image").d[0]
    with pytest.raises(LookupError):  # no picture, no image vector
        search.similar(dt.date.fromisoformat(no_image), kind="image")
    with pytest.raises(SearchError):
        search.similar(dt.date(2014, 1, 7), kind="bogus")


def test_category_pages_and_counts(atlas):
    counts = atlas.counts_by_category(Filters())
    assert counts.n.sum() == atlas.reader.count("entries")
    name = counts.category.iloc[0]
    page0, total = atlas.category_page(name, Filters(), page=0, per_page=5)
    assert total == counts.n.iloc[0] and len(page0) == min(5, total)
    assert page0.confidence.is_monotonic_decreasing
    assert atlas.counts_by_year(Filters()).year.unique().tolist() == [2014]
    agree = atlas.text_image_agreement(Filters())  # the offline lake has picture categories (learned space)
    assert agree.n.sum() == atlas.reader.manifest["counts"]["with_image"] and agree.agreement.between(0, 1).all()
    run = atlas.runs().run_id.iloc[0]
    stages = atlas.stage_metrics(run).set_index("stage")
    assert set(stages.index) >= {"embed", "project"}
    assert stages.loc["embed", "cpu_seconds"] > 0 and stages.cpu_seconds.notna().all()  # the manifest's run
    assert set(stages.ran_in) <= {"main process", "worker process"} and "main process" in set(stages.ran_in)
    assert len(atlas.samples(run)) > 0


def test_category_totals_count_each_category_the_entries_have(atlas):
    totals = atlas.category_totals()
    counts = atlas.counts_by_category(Filters()).set_index("category").n
    assert totals == {k: int(v) for k, v in counts.items() if k != "Uncategorised"}
    ranked = sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))  # most first, ties by name
    assert list(totals.items()) == ranked and all(n > 0 for n in totals.values())


def test_category_counts_of_one_map_count_its_points(atlas):
    """The Map's chips under the image map count the entries that map draws (those with a picture), not
    the whole archive."""
    image_map = atlas.map_view(embedding="image", method="umap", filters=Filters(), max_points=10**6)
    counts = atlas.counts_by_category(Filters(), embedding="image", method="umap").set_index("category").n
    assert counts.sum() == image_map.total < atlas.reader.count("entries")
    assert counts.to_dict() == image_map.points.category.value_counts().to_dict()
    text = atlas.counts_by_category(Filters(), embedding="text", method="umap")
    assert text.n.sum() == atlas.reader.count("entries")


def test_sky_count_is_entries_with_a_placed_primary_target(atlas):
    """The Sky page counts (and draws) entries whose primary target has RA/Dec, not solar-system ones."""
    q = atlas.reader.query
    unplaced = int(q("SELECT count(DISTINCT date) AS n FROM objects WHERE is_primary AND ra_deg IS NULL").n[0])
    placed = int(q("SELECT count(DISTINCT date) AS n FROM objects WHERE is_primary AND ra_deg IS NOT NULL").n[0])
    assert unplaced > 0  # e.g. the Moon or a planet as primary target: what the old count included
    points = atlas.sky_points(Filters())
    assert len(points) == placed and points.date.is_unique
    assert points.ra_deg.notna().all() and points.dec_deg.notna().all()
    galaxies = atlas.sky_points(Filters(categories=("Galaxy",)))
    assert 0 < len(galaxies) < len(points) and set(galaxies.category) == {"Galaxy"}


def test_one_filter_type_for_every_query(atlas):
    everything = int(atlas.counts_by_category(Filters()).n.sum())
    with_picture = int(atlas.counts_by_category(Filters(has_image=True)).n.sum())
    without = int(atlas.counts_by_category(Filters(has_image=False)).n.sum())
    assert 0 < with_picture < everything == with_picture + without
    target = atlas.sky_points(Filters()).iloc[0]
    near = atlas.cone(target.ra_deg, target.dec_deg, 5.0, limit=10_000)
    inside = atlas.matching_dates(Filters(cone=(target.ra_deg, target.dec_deg, 5.0)))
    assert target.date in set(near.date)
    assert [d.isoformat() for d in inside] == sorted(near.date)  # the cone rule and the cone query agree
    first = atlas.cone(target.ra_deg, target.dec_deg, 5.0, limit=2)
    assert first.date.tolist() == near.date.tolist()[:2] and set(first.total) == {len(near)}  # cut, not the count
    on_map = atlas.map_view(embedding="text", method="umap", filters=Filters(cone=(target.ra_deg, target.dec_deg, 5.0)))
    assert sorted(on_map.points.date) == sorted(near.date)


def test_rows_come_back_without_nan(atlas):
    import json

    no_image = atlas.reader.query("SELECT strftime(date, '%Y-%m-%d') AS d FROM entries WHERE NOT has_image").d[0]
    row = atlas.entry(no_image)
    assert row["image_width"] is None and row["has_image"] is False
    json.dumps(row, allow_nan=False)  # NaN would make invalid JSON


def test_each_thread_queries_through_its_own_cursor_on_one_database(demo_lake, monkeypatch):
    """Server threads each get a connection of their own (DuckDB connections are not for sharing), but
    the lake's views are registered once, on one database: 8 threads querying at once agree with the
    main thread, and only one database was opened."""
    import duckdb

    opened = []
    real_connect = duckdb.connect
    monkeypatch.setattr(duckdb, "connect", lambda *a, **k: opened.append(a) or real_connect(*a, **k))
    reader = LakeReader.open(demo_lake)
    sql = "SELECT count(*), sum(length(title)) FROM entries WHERE date >= ?"
    expected = reader.connection().execute(sql, [dt.date(2014, 1, 15)]).fetchone()
    seen = []

    def work(_: int) -> None:
        con = reader.connection()
        seen.append(con)
        for _ in range(20):
            assert con.execute(sql, [dt.date(2014, 1, 15)]).fetchone() == expected

    errors = in_threads(work, 8)
    assert not errors and expected[0] > 0
    assert len({id(c) for c in seen}) == 8 and reader.connection() not in seen
    assert len(opened) == 1


def test_a_serving_reader_holds_its_small_tables_in_memory_with_the_same_rows(demo_lake):
    """A serving process copies the small tables into DuckDB's memory (an entry by date ≈ 2 ms instead
    of ≈ 11 through the view of its Parquet file), smallest first within a budget; larger ones stay
    views; every query answers alike, in every thread, also while the copy is made."""
    from lake.reader import data_bytes

    first = LakeReader.open(demo_lake)
    day = first.query("SELECT strftime(min(date), '%Y-%m-%d') AS d FROM entries").d[0]
    before = (AtlasQueries(first).entry(day), first.query("SELECT * FROM categories ORDER BY date, source"),
              first.query("SELECT * FROM projections ORDER BY ALL"))
    sizes = {name: data_bytes(first.layout.table(name)) for name in first.tables}
    largest = max(sizes, key=sizes.get)
    def copied_while_queried() -> tuple[LakeReader, AtlasQueries, list[str]]:
        """A fresh reader whose tables are copied while three threads query it."""
        reader = LakeReader.open(demo_lake)
        queries = AtlasQueries(reader)
        answers, errors, started, done = [], [], threading.Barrier(4), threading.Event()

        def ask() -> None:
            started.wait()
            while not done.is_set() or not answers:
                try:
                    answers.append(queries.entry(day) == before[0] and
                                   reader.query("SELECT count(*) AS n FROM categories").n[0] == len(before[1]))
                except Exception as exc:  # noqa: BLE001 - the test asserts there are none
                    errors.append(exc)
                    return

        threads = [threading.Thread(target=ask) for _ in range(3)]
        for t in threads:
            t.start()
        started.wait()
        held = reader.hold_small_tables(budget=sum(sizes.values()) - 1)  # all but the largest fit
        done.set()
        for t in threads:
            t.join()
        assert not errors and answers and all(answers)
        return reader, queries, held

    for _ in range(5):
        reader, queries, held = copied_while_queried()
        assert set(held) == set(sizes) - {largest} and reader.held_bytes == sum(sizes.values()) - sizes[largest]
    kinds = dict(reader.query("SELECT table_name AS name, table_type AS kind FROM information_schema.tables").values)
    assert kinds[largest] == "VIEW" and kinds["categories"] == "BASE TABLE"
    after = (queries.entry(day), reader.query("SELECT * FROM categories ORDER BY date, source"),
             reader.query("SELECT * FROM projections ORDER BY ALL"))
    assert after[0] == before[0] and all(a.equals(b) for a, b in zip(after[1:], before[1:]))
    assert reader.hold_small_tables() == [largest]  # the rest are held already; the default budget fits it
    assert not in_threads(lambda i: queries.entry(day), 2)


def test_map_names_from_clients_are_not_cached(atlas, demo_lake):
    """The Map and Galaxies pages pass the map's names from the browser: an unknown one answers empty
    and leaves no cache entry behind (a cache keyed by any string a client sends grows without end)."""
    from lake.galaxies import GalaxyQueries

    assert atlas.map_size(embedding="text", method="umap") > 0
    for i in range(50):
        assert atlas.map_size(embedding=f"x{i}" * 1000, method="umap") == 0
    assert set(atlas._map_sizes) <= set(atlas.available_maps())
    g = GalaxyQueries(LakeReader.open(demo_lake), encoder_factory=lambda info: None)  # maps need no encoder
    assert len(g.map_points("morphology")) > 0 and g.map_points("no such space").empty
    assert set(g._map_points) == {"morphology"}
