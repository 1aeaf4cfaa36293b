"""The questions the app asks of the lake, as parameterised DuckDB queries and LanceDB searches.

Pages call these methods and never see file names or SQL. Every user-supplied value goes in as a query
parameter; table and column names come only from this module.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from lake import density, oddities
from lake.density import DensityView, MapColumnsCache
from lake.filters import NO_SKY, Filters, separation_sql
from lake.manifest import LakeMissingError
from lake.reader import LakeReader
from lake.records import json_value, record
from lake.pictures import picture_for
from lake.schema import EMBEDDING_KINDS, EXPLANATION_TEXT, PROJECTION_METHODS

#: Largest number of points sent to the browser for one map view; more are thinned deterministically.
MAX_MAP_POINTS = 60_000

NASA_PAGE = "https://apod.nasa.gov/apod/ap{yymmdd}.html"
LICENCE_NOTE = (
    "APOD texts and images: NASA Astronomy Picture of the Day (Robert Nemiroff & Jerry Bonnell, "
    "https://apod.nasa.gov). Entries with a copyright value belong to their authors; entries without one "
    "are NASA/public domain per the APOD API, but check the credit column. Please credit APOD and the "
    "image authors when you reuse this data."
)


ALADIN = "https://aladin.cds.unistra.fr/AladinLite/"

#: Great-circle separation (degrees) of an object row ``o`` from ($ra0, $ra0_dec).
_SEPARATION_SQL = separation_sql("o", "$ra0", "$ra0_dec")


def aladin_fov(size_deg: float | None, object_type: str | None = None) -> float:
    """Three times the object's catalogued size, within 0.1–30°, so it fills the view with some sky
    around it; half a degree for a star, one degree when the size is unknown."""
    size = json_value(size_deg)  # NULL sizes arrive as NaN from DataFrames
    if size is not None and size > 0:
        return round(min(30.0, max(0.1, 3.0 * size)), 3)
    return 0.5 if object_type in ("*", "**") else 1.0


def aladin_url(ra: float, dec: float, fov: float = 1.0, survey: str = "P/DSS2/color") -> str:
    """A link that opens Aladin Lite centred on (ra, dec) with a field of view of ``fov`` degrees."""
    from urllib.parse import urlencode

    return ALADIN + "?" + urlencode({"target": f"{ra:.5f} {dec:+.5f}", "fov": f"{fov:g}", "survey": survey})


def nasa_page_url(date: str) -> str:
    d = dt.date.fromisoformat(date)
    return NASA_PAGE.format(yymmdd=d.strftime("%y%m%d"))


#: SQL: entry ``e`` has an explanation (:data:`lake.schema.EXPLANATION_TEXT`).
_HAS_EXPLANATION = f"regexp_matches(e.explanation, '{EXPLANATION_TEXT}')"

_BASE_FROM = (
    "FROM entries e LEFT JOIN categories c ON c.date = e.date AND c.source = 'text'"
)


@dataclass
class MapView:
    points: pd.DataFrame
    total: int  # points matching the filters (before thinning)
    thinned: bool
    bounds: tuple[float, float, float, float] | None = None
    cluster_centres: pd.DataFrame = field(default_factory=pd.DataFrame)


class AtlasQueries:
    def __init__(self, reader: LakeReader) -> None:
        self.reader = reader
        self._columns = MapColumnsCache(reader)
        self._map_sizes: dict[tuple[str, str], int] = {}
        self._anomalies: pd.DataFrame | None = None
        self._anomaly_percentiles: pd.DataFrame | None = None
        self._category_order: list[str] | None = None
        self._category_totals: dict[str, int] | None = None
        self._available_maps: list[tuple[str, str]] | None = None

    def _where(self, filters: Filters | None) -> tuple[str, dict[str, Any]]:
        """The filters as SQL over ``e`` (entries) and ``c`` (text categories), with their parameters."""
        filters = filters or Filters()
        if filters.cone is not None:
            self._require_sky()
        return filters.sql()

    def _require_sky(self) -> None:
        """A sky cone on a lake without sky positions: the lake's limit (the API's 503), not an empty
        answer (nothing there) nor the request's fault."""
        if not self.has_sky():
            raise LakeMissingError(self.reader.layout.location, NO_SKY)

    # -- vocabulary -----------------------------------------------------------------------------
    @property
    def manifest(self) -> dict[str, Any]:
        return self.reader.manifest

    def map_fit(self) -> str | None:
        """Which fit the maps' coordinates come from (the build that last fitted them; None for a lake that
        does not say). A daily build places its new entries on the maps without moving a point, so an
        outline drawn on a map holds as long as this stays the same; a new fit moves every point."""
        fit = (self.manifest.get("projection") or {}).get("fit") or {}
        return str(fit["run_id"]) if fit.get("run_id") else None

    def category_order(self) -> list[str]:
        """The text categories, most frequent in the whole lake first (ties by name), then the taxonomy's
        categories no entry has: the order the pages give colours in, so that a category keeps its colour
        whatever a view's filters leave (colouring each view by its own frequencies swapped them, e.g.
        Galaxy became blue when the map was filtered to galaxies). Read once per lake version."""
        if self._category_order is None:
            counted = list(self.category_totals())
            taxonomy = self.manifest.get("taxonomy", {}).get("categories") or []
            self._category_order = list(dict.fromkeys(counted + taxonomy))
        return self._category_order

    def category_totals(self) -> dict[str, int]:
        """Entries per text category in the whole lake, most first (ties by name); a category of the
        taxonomy no entry has is absent. The filters offer such a one disabled, with its count, rather
        than as a choice that draws an empty map. Read once per lake version."""
        if self._category_totals is None:
            counted = self.reader.query(
                "SELECT category, count(*) AS n FROM categories WHERE source = 'text' AND category IS NOT NULL "
                "GROUP BY 1 ORDER BY n DESC, category") if "categories" in self.reader.tables else None
            self._category_totals = {} if counted is None else dict(zip(counted.category, counted.n.astype(int)))
        return self._category_totals

    def category_names(self) -> list[str]:
        names = self.manifest.get("taxonomy", {}).get("categories")
        if names:
            return list(names)
        if "categories" not in self.reader.tables:  # a Galaxy Zoo-only lake: no APOD collection
            raise LakeMissingError(self.reader.layout.location, "This lake has no APOD collection yet.")
        return self.reader.query("SELECT DISTINCT category FROM categories ORDER BY 1").category.tolist()

    @property
    def has_entries(self) -> bool:
        """False for a lake built with ``--collection gz2`` only (no APOD tables)."""
        return "entries" in self.reader.tables

    def _require_apod(self) -> None:
        """A Galaxy Zoo-only lake has no APOD tables: say so (a 503 in the API), not a missing table's error."""
        if not self.has_entries:
            raise LakeMissingError(self.reader.layout.location, "This lake has no APOD collection yet.")

    def date_range(self) -> tuple[dt.date, dt.date]:
        self._require_apod()
        # clamped to Python's dates: the synthetic 10M-point scale lakes run past year 9999
        row = self.reader.query("SELECT min(date) AS lo, least(max(date), DATE '9999-12-31') AS hi FROM entries").iloc[0]
        return pd.Timestamp(row.lo).date(), pd.Timestamp(row.hi).date()

    def available_maps(self) -> list[tuple[str, str]]:
        """(embedding, method) of every map the lake has. Read once per lake version: the Map page asks
        on every load and every redraw (≈ 3 ms a query on the archive)."""
        if self._available_maps is None:
            df = self.reader.query("SELECT DISTINCT embedding, method FROM projections")
            have = set(zip(df.embedding, df.method))
            self._available_maps = [(k, m) for k in EMBEDDING_KINDS for m in PROJECTION_METHODS if (k, m) in have]
        return list(self._available_maps)

    # -- map ------------------------------------------------------------------------------------
    def map_view(
        self,
        *,
        embedding: str,
        method: str,
        filters: Filters,
        bounds: tuple[float, float, float, float] | None = None,
        max_points: int = MAX_MAP_POINTS,
    ) -> MapView:
        """Points of one map under the filters; inside ``bounds`` (x0, x1, y0, y1) when zoomed.

        Past ``max_points`` a stable pseudo-random subset is returned (ordered by a hash of the date),
        so zooming in reveals more points without the overview flickering between requests.
        """
        filter_sql, params = self._where(filters)
        params |= {"emb": embedding, "method": method}
        where = f"p.embedding = $emb AND p.method = $method AND {filter_sql}"
        if bounds:
            where += " AND p.x BETWEEN $x0 AND $x1 AND p.y BETWEEN $y0 AND $y1"
            params |= dict(zip(("x0", "x1", "y0", "y1"), map(float, bounds)))
        body = (
            f"FROM projections p JOIN entries e ON e.date = p.date "
            f"LEFT JOIN categories c ON c.date = p.date AND c.source = 'text' "
            f"LEFT JOIN clusters k ON k.date = p.date AND k.embedding = p.embedding WHERE {where}"
        )
        total = int(self.reader.connection().execute(f"SELECT count(*) {body}", params).fetchone()[0])
        sql = (
            "SELECT strftime(p.date, '%Y-%m-%d') AS date, p.x, p.y, p.z, e.title, e.year, e.has_image, "
            "coalesce(c.category, 'Uncategorised') AS category, c.confidence, k.cluster, k.label AS cluster_label "
            f"{body}"
        )
        thinned = total > max_points
        if thinned:
            sql += " ORDER BY hash(p.date) LIMIT $limit"
            params["limit"] = max_points
        points = self.reader.query(sql, params)
        centres = pd.DataFrame()
        if not points.empty and points.cluster.notna().any():
            grouped = points.groupby(["cluster", "cluster_label"], as_index=False)
            centres = grouped.agg(x=("x", "median"), y=("y", "median"), n=("date", "size"))
        return MapView(points, total, thinned, bounds, centres)

    def map_size(self, *, embedding: str, method: str) -> int:
        """Points of one map (before filters); cached, the published tables never change. A map the lake
        lacks has 0 and is not cached (the names come from clients: a cache keyed by any string grows)."""
        key = (embedding, method)
        if key not in self.available_maps():
            return 0
        if key not in self._map_sizes:
            self._map_sizes[key] = int(self.reader.connection().execute(
                "SELECT count(*) FROM projections WHERE embedding = $emb AND method = $method",
                {"emb": embedding, "method": method}).fetchall()[0][0])
        return self._map_sizes[key]

    def is_large_map(self, *, embedding: str, method: str) -> bool:
        """Whether this 2-D map is served as density rasters (:mod:`lake.density`) instead of points."""
        return method != "umap3d" and self.map_size(embedding=embedding, method=method) > density.LARGE_MAP

    def selects_on_server(self, *, embedding: str, method: str) -> bool:
        """Whether a lasso or box on this 2-D map is counted on the server (:meth:`polygon_selection`): the
        browser holds only a sample of its points (a map thinned past :data:`MAX_MAP_POINTS`, or a density
        raster's overlay), so the points it sends back are a share of those inside the shape."""
        return method != "umap3d" and self.map_size(embedding=embedding, method=method) > MAX_MAP_POINTS

    def _filter_days(self, filters: Filters):
        """Day numbers allowed by the filters that need the lake (a cone, a date list), else None."""
        if filters.cone is None and filters.dates is None:
            return None
        return density.day_numbers(self.matching_dates(filters))

    def density_map(self, *, embedding: str, method: str, filters: Filters, color: str,
                    bounds: tuple[float, float, float, float] | None = None,
                    sample: int = density.OVERLAY_POINTS) -> DensityView:
        """A view of a large map: raster of all its points plus a stable sample of at most ``sample``
        points (see :mod:`lake.density`)."""
        columns = self._columns.get(embedding=embedding, method=method)
        return density.density_view(columns, filters, color=color, bounds=bounds, days=self._filter_days(filters),
                                    sample=sample)

    def map_category_counts(self, *, embedding: str, method: str, filters: Filters) -> pd.DataFrame:
        """Points per category of a large map under the filters, from memory (the SQL of
        :meth:`counts_by_category` takes ≈ 0.6 s at 10M entries)."""
        columns = self._columns.get(embedding=embedding, method=method)
        return density.category_counts(columns, filters, days=self._filter_days(filters))

    def polygon_selection(self, *, embedding: str, method: str, polygon: list[list[float]], filters: Filters,
                          limit: int = density.MAX_SELECTION_ROWS) -> tuple[pd.DataFrame, int]:
        """Entries of a map inside a lasso/box ``polygon`` ([[x, y], …] in map coordinates), counted over
        every point of the map on the server: the first ``limit`` rows (date order) and the full count."""
        shape = density.polygon_from(polygon)
        columns = self._columns.get(embedding=embedding, method=method)
        days = density.inside_polygon(columns, shape, filters, days=self._filter_days(filters))
        return self.selection(density.day_strings(days[:limit]), filters), len(days)

    def counts_by_category(self, filters: Filters, *, embedding: str | None = None,
                           method: str | None = None) -> pd.DataFrame:
        """Entries per category under the filters; with ``embedding`` and ``method``, only the entries that
        map has (the image map holds the entries with a picture: its chips counted the whole archive)."""
        where, params = self._where(filters)
        if embedding is not None and method is not None:
            where += (" AND e.date IN (SELECT p.date FROM projections p "
                      "WHERE p.embedding = $emb AND p.method = $method)")
            params = params | {"emb": embedding, "method": method}
        return self.reader.query(
            f"SELECT coalesce(c.category, 'Uncategorised') AS category, count(*) AS n {_BASE_FROM} "
            f"WHERE {where} GROUP BY 1 ORDER BY n DESC",
            params,
        )

    # -- selections and downloads ---------------------------------------------------------------
    def selection(self, dates: list[str], filters: Filters | None = None) -> pd.DataFrame:
        """Full rows (with credits, copyright and categories) for the selected dates that pass the
        filters, in date order."""
        if not dates:
            return pd.DataFrame(columns=["date", "title", "nasa_page", "category", "confidence", "credit", "copyright"])
        where, params = self._where(filters)
        df = self.reader.query(
            "SELECT strftime(e.date, '%Y-%m-%d') AS date, e.title, c.category, round(c.confidence, 3) AS confidence, "
            "e.media_type, e.url, e.hdurl, e.credit, e.copyright, e.rights_note, e.explanation "
            "FROM (SELECT DISTINCT try_cast(unnest($dates) AS DATE) AS date) s JOIN entries e ON e.date = s.date "
            f"LEFT JOIN categories c ON c.date = e.date AND c.source = 'text' WHERE {where} "
            "ORDER BY e.date",
            {"dates": list(dates)} | params,
        )
        df.insert(2, "nasa_page", [nasa_page_url(d) for d in df.date])
        return df

    # -- categories page ------------------------------------------------------------------------
    def counts_by_year(self, filters: Filters) -> pd.DataFrame:
        where, params = self._where(filters)
        return self.reader.query(
            f"SELECT e.year, coalesce(c.category, 'Uncategorised') AS category, count(*) AS n {_BASE_FROM} "
            f"WHERE {where} GROUP BY ALL ORDER BY e.year",
            params,
        )

    def confidences(self, filters: Filters) -> pd.DataFrame:
        where, params = self._where(filters)
        return self.reader.query(
            f"SELECT c.category, c.confidence {_BASE_FROM} WHERE c.category IS NOT NULL AND {where}",
            params,
        )

    def text_image_agreement(self, filters: Filters) -> pd.DataFrame:
        """Per text category: how often the picture's category agrees (lakes with ``source = 'image'``
        categories: CLIP's, or the offline learned space's)."""
        where, params = self._where(filters)
        return self.reader.query(
            "SELECT c.category, count(*) AS n, avg(CASE WHEN i.category = c.category THEN 1 ELSE 0 END) AS agreement "
            f"{_BASE_FROM} JOIN categories i ON i.date = e.date AND i.source = 'image' "
            f"WHERE {where} GROUP BY 1 ORDER BY n DESC",
            params,
        )

    def picture_categories(self) -> int:
        """How many entries have a category from their picture (0: the lake has none at all)."""
        return int(self.reader.query("SELECT count(*) AS n FROM categories WHERE source = 'image'").n[0])

    def category_page(self, category: str, filters: Filters, *, page: int, per_page: int = 24) -> tuple[pd.DataFrame, int]:
        filter_sql, params = self._where(filters)
        params |= {"cat": category}
        where = f"c.category = $cat AND {filter_sql}"
        total = int(self.reader.connection().execute(f"SELECT count(*) {_BASE_FROM} WHERE {where}", params).fetchone()[0])
        df = self.reader.query(
            "SELECT strftime(e.date, '%Y-%m-%d') AS date, e.title, e.image_path, e.url, e.media_type, c.confidence "
            f"{_BASE_FROM} WHERE {where} ORDER BY c.confidence DESC, e.date LIMIT $limit OFFSET $offset",
            params | {"limit": per_page, "offset": max(0, page) * per_page},
        )
        df["picture"] = [picture_for(r) for r in df[["image_path", "url", "media_type"]].to_dict("records")]
        return df, total

    def hover_card(self, date: str) -> dict[str, Any] | None:
        """Title, text category and picture of one entry: what the map's hover card shows (the map sends
        only each point's date to the browser, so the card is filled on hover)."""
        df = self.reader.query(
            "SELECT e.title, e.image_path, e.url, e.media_type, c.category FROM entries e "
            "LEFT JOIN categories c ON c.date = e.date AND c.source = 'text' WHERE e.date = $d",
            {"d": dt.date.fromisoformat(date)})
        if df.empty:
            return None
        row = df.iloc[0].to_dict()
        return {"date": date, "title": row["title"], "category": json_value(row["category"]),
                "picture": picture_for(row)}

    # -- entry page -----------------------------------------------------------------------------
    def has_entry(self, day: dt.date) -> bool:
        """Whether the lake holds an APOD entry of ``day`` (False for a lake without the collection)."""
        if not self.has_entries:
            return False
        return bool(self.reader.connection().execute("SELECT count(*) FROM entries WHERE date = $d",
                                                     {"d": day}).fetchone()[0])

    def entry(self, date: str) -> dict[str, Any] | None:
        self._require_apod()  # a Galaxy Zoo-only lake: no APOD entry to find (not a missing table)
        df = self.reader.query(
            "SELECT strftime(date, '%Y-%m-%d') AS date, * EXCLUDE (date) FROM entries WHERE date = $d",
            {"d": dt.date.fromisoformat(date)},
        )
        if df.empty:
            return None
        row = record(df.iloc[0].to_dict())
        row["nasa_page"] = nasa_page_url(date)
        row["picture"] = picture_for(row)
        return row

    def entry_categories(self, date: str) -> pd.DataFrame:
        return self.reader.query(
            "SELECT source, category, confidence, top3_categories, top3_scores FROM categories WHERE date = $d",
            {"d": dt.date.fromisoformat(date)},
        )

    # -- cluster lists ---------------------------------------------------------------------------
    def clusters(self, embedding: str) -> pd.DataFrame:
        """The clusters of one embedding: id, label, size."""
        self._require_apod()
        return self.reader.query(
            "SELECT cluster, any_value(label) AS label, count(*) AS size FROM clusters WHERE embedding = $emb "
            "GROUP BY cluster ORDER BY cluster", {"emb": embedding})

    def cluster_members(self, embedding: str, cluster: int, *, limit: int | None = None) -> pd.DataFrame:
        """Members of one cluster, for taking away: dates, titles, credits, rights and a licence note; the
        first ``limit`` by date when given (a cluster of a large lake can hold hundreds of thousands)."""
        self._require_apod()
        df = self.reader.query(
            "SELECT strftime(e.date, '%Y-%m-%d') AS date, e.title, c.category, e.credit, e.copyright, e.rights_note, "
            "e.url, k.label AS cluster_label FROM clusters k JOIN entries e ON e.date = k.date "
            "LEFT JOIN categories c ON c.date = e.date AND c.source = 'text' "
            "WHERE k.embedding = $emb AND k.cluster = $cl ORDER BY e.date"
            + (" LIMIT $limit" if limit is not None else ""),
            {"emb": embedding, "cl": int(cluster)} | ({"limit": int(limit)} if limit is not None else {}))
        df["nasa_page"] = [nasa_page_url(d) for d in df.date]
        df["licence_note"] = LICENCE_NOTE
        return df

    # -- oddities -------------------------------------------------------------------------------
    def has_anomalies(self) -> bool:
        return "anomalies" in self.reader.tables

    def anomaly_scores(self, filters: Filters | None = None) -> pd.DataFrame:
        """Every (filtered) entry's detector scores with its title, text category and picture facts.

        The unfiltered table (the Oddities page's first view, and every re-rank after a mark) is read
        once per lake version; treat it as read-only."""
        if not self.has_anomalies():
            raise LookupError("this lake has no anomaly scores; rebuild it with `python -m pipeline build`")
        unfiltered = filters is None or filters == Filters()
        if unfiltered and self._anomalies is not None:
            return self._anomalies
        filter_sql, params = self._where(filters)
        df = self.reader.query(
            "SELECT strftime(e.date, '%Y-%m-%d') AS date, e.title, c.category, e.has_image, e.image_path, e.url, "
            "e.media_type, "
            f"{_HAS_EXPLANATION} AS has_explanation, "
            f"a.* EXCLUDE (date) {_BASE_FROM} JOIN anomalies a ON a.date = e.date WHERE {filter_sql}", params)
        if unfiltered:
            self._anomalies = df
        return df

    def dates_without_explanation(self) -> list[str]:
        """ISO dates of the entries the archive has no explanation for, in date order: those the anomaly
        stage leaves to the detectors that do not read the explanation."""
        return self.reader.query("SELECT strftime(e.date, '%Y-%m-%d') AS date FROM entries e "
                                 f"WHERE NOT {_HAS_EXPLANATION} ORDER BY 1").date.tolist()

    def anomaly_percentiles(self) -> pd.DataFrame:
        """Each detector's percentile among all the lake's entries, indexed by date: "odder than 99 % of
        entries" means of the archive, whatever the page is filtered to. Computed once per lake version."""
        if self._anomaly_percentiles is None:
            self._anomaly_percentiles = oddities.percentiles_by_date(self.anomaly_scores())
        return self._anomaly_percentiles

    def has_sky(self) -> bool:
        return "objects" in self.reader.tables

    def entry_objects(self, date: str) -> pd.DataFrame:
        if not self.has_sky():
            return pd.DataFrame(columns=["name", "canonical_id", "ra_deg", "dec_deg", "object_type", "resolver"])
        return self.reader.query(
            "SELECT * EXCLUDE (date) FROM objects "
            "WHERE date = $d ORDER BY is_primary DESC, field DESC, span_start",
            {"d": dt.date.fromisoformat(date)},
        )

    def object_position(self, name: str) -> tuple[float, float] | None:
        """Where the lake placed an object of this name or canonical id (e.g. "Eta Carinae", placed online
        when the lake was built); the most frequent position when mentions disagree."""
        if not self.has_sky():
            return None
        df = self.reader.query(
            "SELECT ra_deg, dec_deg, count(*) AS n FROM objects WHERE ra_deg IS NOT NULL AND "
            "(lower(regexp_replace(name, '\\s+', ' ', 'g')) = $n OR lower(canonical_id) = $n) "
            "GROUP BY ra_deg, dec_deg ORDER BY n DESC LIMIT 1",
            {"n": " ".join(name.lower().split())},
        )
        return None if df.empty else (float(df.ra_deg[0]), float(df.dec_deg[0]))

    def sky_points(self, filters: Filters) -> pd.DataFrame:
        """One point per entry whose primary target is placed on the sky (has RA/Dec).

        Entries whose primary target is a solar-system body (no fixed position) or was not resolved are
        left out: they cannot be drawn, and the Sky page's count must match the points it draws.
        """
        if not self.has_sky():
            return pd.DataFrame(columns=["date", "title", "category", "name", "canonical_id", "ra_deg", "dec_deg"])
        where, params = self._where(filters)
        return self.reader.query(
            "SELECT strftime(e.date, '%Y-%m-%d') AS date, e.title, coalesce(c.category, 'Uncategorised') AS category, "
            "o.name, o.canonical_id, o.ra_deg, o.dec_deg, e.has_image "
            f"{_BASE_FROM} JOIN objects o ON o.date = e.date AND o.is_primary AND o.ra_deg IS NOT NULL "
            f"WHERE {where} ORDER BY e.date",
            params,
        )

    def cone(self, ra: float, dec: float, radius: float, *, filters: Filters | None = None,
             limit: int = 500) -> pd.DataFrame:
        """Entries with a resolved object within ``radius`` degrees of (ra, dec), nearest first: the first
        ``limit``, each with ``total``, how many there are in all (a list cut at ``limit`` must not read as
        the whole count)."""
        self._require_sky()
        where, params = self._where(filters)
        params |= {"ra0": float(ra), "ra0_dec": float(dec), "r": float(radius), "limit": int(limit)}
        return self.reader.query(
            "SELECT strftime(e.date, '%Y-%m-%d') AS date, any_value(e.title) AS title, "
            "any_value(coalesce(c.category, 'Uncategorised')) AS category, "
            f"arg_min(o.name, {_SEPARATION_SQL}) AS name, round(min({_SEPARATION_SQL}), 4) AS separation_deg, "
            "count(*) OVER () AS total "
            f"{_BASE_FROM} JOIN objects o ON o.date = e.date AND o.ra_deg IS NOT NULL "
            f"WHERE {_SEPARATION_SQL} <= $r AND {where} GROUP BY e.date ORDER BY separation_deg, e.date LIMIT $limit",
            params,
        )

    def matching_dates(self, filters: Filters, *, limit: int | None = None) -> list[dt.date]:
        """Dates of the entries that pass ``filters``, in order (the first ``limit``). Search uses it to
        turn a sky cone into dates, since LanceDB and the in-memory vectors have no objects table to
        evaluate the cone on."""
        where, params = self._where(filters)
        tail = ""
        if limit is not None:
            tail, params = " LIMIT $limit", {**params, "limit": int(limit)}
        df = self.reader.query(f"SELECT e.date {_BASE_FROM} WHERE {where} ORDER BY e.date{tail}", params)
        return [pd.Timestamp(d).date() for d in df.date]

    # -- metrics page ---------------------------------------------------------------------------
    def runs(self) -> pd.DataFrame:
        """The builds recorded in the lake, newest first: run id, start and wall seconds (first sample to
        last record; the stages' sum overstates it, as background stages overlap the others). Empty for a
        lake without a metrics table."""
        if "metrics" not in self.reader.tables:
            return pd.DataFrame(columns=["run_id", "started", "seconds"])
        return self.reader.query(
            "SELECT run_id, min(timestamp) AS started, "
            "epoch(max(timestamp)) - epoch(min(timestamp)) AS seconds "
            "FROM metrics GROUP BY run_id ORDER BY started DESC"
        )

    def stage_metrics(self, run_id: str) -> pd.DataFrame:
        """One run's stages in run order: wall seconds, items, items/s, peak RSS; and, for the run that
        made this lake version (its manifest records them), CPU seconds (the encoder's process counted
        in the embed stage's) and where a stage ran (the background worker's stages overlap the others,
        so their wall time is not time the build waited). Older runs: CPU NaN, place empty."""
        df = self.reader.query(
            "SELECT process AS stage, duration_seconds, items, items_per_second, peak_rss_bytes "
            "FROM metrics WHERE record = 'stage' AND run_id = $run ORDER BY timestamp",
            {"run": run_id},
        )
        recorded = self.manifest.get("stages", {}) if self.manifest.get("run_id") == run_id else {}
        df["cpu_seconds"] = [recorded.get(s, {}).get("cpu_seconds", float("nan")) for s in df.stage]
        df["ran_in"] = [recorded.get(s, {}).get("ran_in") or ("main process" if s in recorded else "")
                        for s in df.stage]
        return df

    def samples(self, run_id: str) -> pd.DataFrame:
        return self.reader.query(
            "SELECT timestamp, process, duration_seconds, cpu_percent, rss_bytes, gpu_name, "
            "gpu_utilization_percent, gpu_memory_used_bytes, gpu_memory_total_bytes "
            "FROM metrics WHERE record = 'sample' AND run_id = $run ORDER BY timestamp",
            {"run": run_id},
        )
