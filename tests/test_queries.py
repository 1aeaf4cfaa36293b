"""The app's questions to the lake (lake.queries) on a real built lake."""

import datetime as dt

import pytest

from lake.queries import AtlasQueries, Filters, nasa_page_url
from lake.reader import LakeReader

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def atlas(demo_lake):
    return AtlasQueries(LakeReader.open(demo_lake))


def test_map_view_filters_and_thinning(atlas):
    everything = atlas.map_view("text", "umap", Filters())
    assert everything.total == len(everything.points) == atlas.reader.count("entries")
    top = everything.points.category.value_counts().index[0]
    only = atlas.map_view("text", "umap", Filters(categories=(top,)))
    assert 0 < only.total < everything.total and set(only.points.category) == {top}
    feb = atlas.map_view("text", "umap", Filters(start=dt.date(2014, 2, 1), end=dt.date(2014, 2, 28)))
    assert feb.total == 28
    thin = atlas.map_view("text", "umap", Filters(), max_points=20)
    assert thin.thinned and len(thin.points) == 20 and thin.total == everything.total
    again = atlas.map_view("text", "umap", Filters(), max_points=20)
    assert thin.points.date.tolist() == again.points.date.tolist()  # stable subset
    x0, x1 = thin.points.x.min(), thin.points.x.median()
    zoomed = atlas.map_view("text", "umap", Filters(), bounds=(x0, x1, -1e9, 1e9), max_points=20)
    assert zoomed.points.x.between(x0, x1).all()
    assert not everything.cluster_centres.empty


def test_user_text_is_a_parameter_not_sql(atlas):
    evil = ("Galaxy') OR 1=1 --",)
    assert atlas.map_view("text", "umap", Filters(categories=evil)).total == 0
    assert atlas.selection(["2014-01-05' OR '1'='1"]).empty


def test_selection_has_credits_and_nasa_links(atlas):
    df = atlas.selection(["2014-01-07", "2014-01-05", "1900-01-01"])
    assert df.date.tolist() == ["2014-01-05", "2014-01-07"]
    assert {"credit", "copyright", "nasa_page", "category"} <= set(df.columns)
    assert df.nasa_page.iloc[0] == "https://apod.nasa.gov/apod/ap140105.html"
    assert nasa_page_url("1995-06-16") == "https://apod.nasa.gov/apod/ap950616.html"


def test_entry_and_neighbours(atlas):
    from lake.search import SearchEngine, SearchError
    from pipeline.encoders import encoder_from_manifest

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
    page0, total = atlas.category_page(name, Filters(), 0, per_page=5)
    assert total == counts.n.iloc[0] and len(page0) == min(5, total)
    assert page0.confidence.is_monotonic_decreasing
    assert atlas.counts_by_year(Filters()).year.unique().tolist() == [2014]
    assert atlas.text_image_agreement(Filters()).empty  # offline encoder: no image categories
    run = atlas.runs().run_id.iloc[0]
    assert set(atlas.stage_metrics(run).stage) >= {"embed", "project"}
    assert len(atlas.samples(run)) > 0
