"""lake.filters: one filter type, validated on construction, rendered for DuckDB, LanceDB and numpy.

The agreement test runs the same filters through all three backends over one small synthetic table, so
a rule changed in one renderer and not the others fails here (no lake build needed: fast tier).
"""

from __future__ import annotations

import dataclasses
import datetime as dt

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from lake.filters import Cone, FilterError, Filters

CATS = ["Galaxy", "Nebula", "Comet", "It's Odd"]  # a quote in a real taxonomy name must still work


def test_keyword_only_and_normalised():
    with pytest.raises(TypeError):
        Filters(("Galaxy",))  # type: ignore[misc]
    f = Filters(categories=["Galaxy"], start="2014-01-02", end=dt.datetime(2014, 3, 1, 12), cone=(10, -5, 2))
    assert f.categories == ("Galaxy",) and f.start == dt.date(2014, 1, 2) and f.end == dt.date(2014, 3, 1)
    assert f.cone == Cone(10.0, -5.0, 2.0)
    assert Filters(start="", end=None) == Filters()
    with pytest.raises(dataclasses.FrozenInstanceError):
        f.start = None  # type: ignore[misc]


@pytest.mark.parametrize("kwargs,fragment", [
    ({"categories": "Galaxy"}, "not one string"),
    ({"categories": ("Galaxy", "")}, "non-empty name"),
    ({"categories": (3,)}, "non-empty name"),
    ({"start": "2014-02-30"}, "date like"),
    ({"end": 20140201}, "date like"),
    ({"start": dt.date(2014, 3, 1), "end": dt.date(2014, 2, 1)}, "is after"),
    ({"has_image": "yes"}, "has_image"),
    ({"cone": (361, 0, 1)}, "0 ≤ ra ≤ 360"),
    ({"cone": (10, -91, 1)}, "-90 ≤ dec ≤ 90"),
    ({"cone": (10, 0, 0)}, "0 < radius ≤ 180"),
    ({"cone": (10, 0, float("nan"))}, "radius"),
    ({"cone": (10, 0)}, "(ra, dec, radius)"),
    ({"dates": "2014-01-01"}, "not one string"),
    ({"dates": ["2014-01-01' OR '1'='1"]}, "date like"),
])
def test_bad_values_fail_on_construction_with_a_message(kwargs, fragment):
    with pytest.raises(FilterError) as err:
        Filters(**kwargs)
    assert fragment in str(err.value)


def test_unknown_categories_are_refused_before_lancedb_sees_them():
    evil = Filters(categories=("Galaxy' OR 1=1 --",))
    with pytest.raises(FilterError, match="unknown category"):
        evil.lance_where(known_categories=CATS)
    assert evil.unknown_categories(CATS) == ["Galaxy' OR 1=1 --"]
    # DuckDB takes it as a parameter: the text never reaches the SQL
    sql, params = evil.sql()
    assert "OR 1=1" not in sql and params["f_categories"] == ["Galaxy' OR 1=1 --"]


def test_no_filters_render_as_no_restriction():
    assert Filters().sql() == ("TRUE", {})
    assert Filters().lance_where(known_categories=[]) is None
    assert Filters().mask(columns={"date": np.array(["2014-01-01"])}).tolist() == [True]
    assert Filters(dates=[]).lance_where(known_categories=[]) == "false"


def test_a_cone_must_be_resolved_before_lancedb_or_numpy():
    f = Filters(cone=(10, 10, 1))
    with pytest.raises(FilterError, match="with_dates"):
        f.lance_where(known_categories=CATS)
    resolved = f.with_dates(["2014-01-03", dt.date(2014, 1, 2)])
    assert resolved.cone is None and resolved.dates == (dt.date(2014, 1, 2), dt.date(2014, 1, 3))


# -- the three backends agree ----------------------------------------------------------------------

def _rows(n: int = 120) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    dates = [dt.date(2012, 12, 1) + dt.timedelta(days=4 * i) for i in range(n)]  # across three years
    cats = [CATS[i] if i < len(CATS) else None for i in rng.integers(0, len(CATS) + 1, n)]  # some uncategorised
    return pd.DataFrame({"date": dates, "category": cats, "has_image": rng.random(n) < 0.4,
                         "ra": rng.uniform(0, 360, n), "dec": rng.uniform(-90, 90, n)})


CASES = [
    Filters(),
    Filters(categories=("Galaxy",)),
    Filters(categories=("Nebula", "It's Odd")),
    Filters(start=dt.date(2014, 2, 1)),
    Filters(end=dt.date(2014, 2, 1)),
    Filters(start=dt.date(2014, 2, 1), end=dt.date(2014, 2, 1)),
    Filters(has_image=True),
    Filters(has_image=False, categories=("Comet", "Galaxy"), start=dt.date(2014, 1, 15), end=dt.date(2014, 3, 31)),
    Filters(dates=[dt.date(2014, 1, 5), dt.date(2014, 3, 1), dt.date(2020, 1, 1)]),
    Filters(dates=[]),
    Filters(start=dt.date(2013, 1, 1)),  # whole years: written on the year column for LanceDB
    Filters(end=dt.date(2013, 12, 31), has_image=True),
    Filters(start=dt.date(2013, 1, 1), end=dt.date(2013, 12, 31), categories=("Galaxy", "Comet")),
    Filters(start=dt.date(2013, 1, 1), end=dt.date(2014, 2, 1)),
    Filters(start=dt.date(2013, 1, 2), end=dt.date(2013, 12, 30)),
    Filters(start=dt.date(2013, 3, 15), has_image=False),  # partial first year, then whole years
    Filters(end=dt.date(2014, 2, 10)),  # whole years, then the days of the last
    Filters(start=dt.date(2012, 12, 20), end=dt.date(2014, 1, 10), categories=("Nebula",)),
    Filters(start=dt.date(2013, 12, 31), end=dt.date(2014, 1, 1)),
]


def _duckdb(rows: pd.DataFrame, f: Filters) -> list[str]:
    con = duckdb.connect()
    con.register("rows_df", rows)
    con.execute("CREATE TABLE entries AS SELECT date::DATE AS date, has_image FROM rows_df")
    con.execute("CREATE TABLE categories AS SELECT date::DATE AS date, 'text' AS source, category FROM rows_df "
                "WHERE category IS NOT NULL")
    con.execute("CREATE TABLE objects AS SELECT date::DATE AS date, ra AS ra_deg, dec AS dec_deg FROM rows_df")
    where, params = f.sql()
    df = con.execute("SELECT strftime(e.date, '%Y-%m-%d') AS d FROM entries e LEFT JOIN categories c "
                     f"ON c.date = e.date AND c.source = 'text' WHERE {where} ORDER BY 1", params).df()
    return df.d.tolist()


def _columns(rows: pd.DataFrame) -> dict[str, np.ndarray]:
    return {"date": np.array([d.isoformat() for d in rows.date]),
            "category": np.array([c if isinstance(c, str) else "" for c in rows.category]),
            "has_image": rows.has_image.to_numpy(bool)}


@pytest.fixture(scope="module")
def lance_table(tmp_path_factory):
    import lancedb

    rows = _rows()
    cols = _columns(rows)
    vectors = np.random.default_rng(1).random((len(rows), 4), dtype=np.float32)
    table = pa.table({
        "date": pa.array(cols["date"].tolist(), pa.string()),
        "year": pa.array([d.year for d in rows.date], pa.int16()),
        "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.reshape(-1)), 4),
        "category": pa.array([c or None for c in cols["category"].tolist()], pa.string()),
        "has_image": pa.array(cols["has_image"].tolist(), pa.bool_()),
    })
    db = lancedb.connect(str(tmp_path_factory.mktemp("lance")))
    return db.create_table("t", data=table)


@pytest.mark.parametrize("f", CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_duckdb_numpy_and_lancedb_select_the_same_rows(f, lance_table):
    rows = _rows()
    cols = _columns(rows)
    by_sql = _duckdb(rows, f)
    by_mask = sorted(cols["date"][f.mask(columns=cols)].tolist())
    query = lance_table.search()
    where = f.lance_where(known_categories=CATS)
    if where:
        query = query.where(where, prefilter=True)
    by_lance = sorted(r["date"] for r in query.select(["date"]).limit(len(rows)).to_list())
    assert by_sql == by_mask == by_lance
    if f == Filters():
        assert len(by_sql) == len(rows)


def test_date_ranges_go_on_the_year_column_where_they_cover_whole_years():
    """LanceDB reads the ``year`` column's bitmap index faster than the date's B-tree, so the whole years
    of a range are written on ``year`` and only the days of a partly covered first or last year on
    ``date`` (the agreement test above checks that each selects the same rows as DuckDB and numpy)."""
    def where(start, end):
        return Filters(start=start, end=end).lance_where(known_categories=CATS)

    assert where("2013-01-01", "2014-12-31") == "year >= 2013 AND year <= 2014"  # the year slider's
    assert where("2013-01-01", "2013-12-31") == "year = 2013"
    assert where(None, "2013-12-31") == "year <= 2013"
    assert where("2013-03-15", None) == "((date >= '2013-03-15' AND date <= '2013-12-31') OR (year >= 2014))"
    assert where("2013-03-15", "2016-02-01") == ("((date >= '2013-03-15' AND date <= '2013-12-31') OR "
                                                 "(year >= 2014 AND year <= 2015) OR "
                                                 "(date >= '2016-01-01' AND date <= '2016-02-01'))")
    assert where("2013-03-15", "2013-04-01") == "date >= '2013-03-15' AND date <= '2013-04-01'"
    both = Filters(start="2013-03-15", categories=("Galaxy",)).lance_where(known_categories=CATS)
    assert both == "category IN ('Galaxy') AND ((date >= '2013-03-15' AND date <= '2013-12-31') OR (year >= 2014))"


def test_cone_in_duckdb_matches_the_great_circle_distance():
    rows = _rows()
    f = Filters(cone=(100.0, 20.0, 40.0))
    ra, dec = np.radians(rows.ra), np.radians(rows.dec)
    cos_sep = np.sin(dec) * np.sin(np.radians(20)) + np.cos(dec) * np.cos(np.radians(20)) * np.cos(ra - np.radians(100))
    inside = rows.date[np.degrees(np.arccos(np.clip(cos_sep, -1, 1))) <= 40.0]
    expected = sorted(d.isoformat() for d in inside)
    assert expected and _duckdb(rows, f) == expected
    both = Filters(cone=(100.0, 20.0, 40.0), has_image=True)
    assert set(_duckdb(rows, both)) == set(expected) & set(_duckdb(rows, Filters(has_image=True)))
