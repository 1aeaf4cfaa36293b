"""Maps too large to send to a browser: the map's columns in memory, density rasters, polygon selections.

Why a path of its own: a map of millions of points cannot go to the browser (10M points are ≈ 120 MB
of coordinates, and WebGL in a laptop browser stalls long before that), and joining four Parquet tables
of 10M rows for every zoom costs ≈ 4 s in DuckDB. So, past :data:`LARGE_MAP` points, the app loads the
map's columns once per lake version (≈ 5 s and ≈ 250 MB at 10M points), then answers each view from
memory: a *density raster* of every point in the view (datashader: ≈ 0.35 s for 10M points on one
core), with a stable sample of at most :data:`OVERLAY_POINTS` real points drawn on top for hover and click;
when a view holds at most :data:`OVERLAY_POINTS` points, all of them are drawn and no raster is needed.
A lasso or box selection is counted and listed here on the server over *all* points (shapely's
vectorised point-in-polygon after a bounding-box cut), never from the points the browser happens to hold.

Point-in-polygon runs in shapely rather than in DuckDB because DuckDB's spatial extension is fetched
from extensions.duckdb.org at run time, which an offline machine cannot reach.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Final

import numpy as np
import pandas as pd
import pyarrow as pa

from lake.filters import Filters
from lake.reader import LakeReader

#: Maps with more points than this are served from memory as density rasters plus a sample.
LARGE_MAP: Final = 200_000
#: At most this many real points are drawn over a raster (and a view with fewer is drawn without one).
OVERLAY_POINTS: Final = 20_000
#: The page's first view of a large map draws this smaller sample, in SVG (pages/home.py): 3,000 SVG
#: markers are drawn in ≈ 0.24 s in this project's headless Chromium, where Plotly's WebGL set-up alone
#: takes ≈ 0.5 s (BENCHMARKS.md). The full WebGL sample replaces it once the reader's input rests (or
#: with the first zoom or filter).
FIRST_VIEW_POINTS: Final = 3_000
#: Raster size in pixels: about the map's size on a laptop screen (the figure stretches it).
RASTER_SHAPE: Final = (1000, 620)
#: Maps kept in memory per lake version (each ≈ 25 bytes per point).
MAPS_IN_MEMORY: Final = 2
#: Rows listed for a polygon selection (the count covers all of them).
MAX_SELECTION_ROWS: Final = 50_000
#: Vertices kept of a lasso (simplified beyond that): a lasso drawn by hand sends hundreds.
MAX_POLYGON_VERTICES: Final = 500
#: Vertices a selection polygon may have at all (a dragged lasso sends a few thousand at most).
MAX_POLYGON_INPUT: Final = 50_000
#: Self-crossings a selection polygon may have: repairing a tangled ring (shapely's make_valid) grows
#: faster than their count, a 101-point star (≈ 4,900 crossings) took 5 s of a core and a 201-point one
#: minutes; 500 take ≈ 0.1 s, far more loops than a lasso drawn by hand makes.
MAX_POLYGON_CROSSINGS: Final = 500
_EPOCH: Final = np.datetime64("1970-01-01", "D")


class PolygonError(ValueError):
    """A selection polygon that cannot be used (too few vertices, not numbers, too tangled)."""


@dataclass(frozen=True)
class MapColumns:
    """One map's points as column arrays, in a fixed pseudo-random order (so any prefix of the points
    that pass a mask is a uniform, stable sample: the overview does not flicker between requests)."""

    day: np.ndarray  # int32 days since 1970-01-01 (the entry's date)
    x: np.ndarray  # float32
    y: np.ndarray  # float32
    year: np.ndarray  # int16
    category: np.ndarray  # int16 codes into ``categories``
    categories: tuple[str, ...]
    confidence: np.ndarray  # float32, NaN where none
    cluster: np.ndarray  # int32, -1 where none
    cluster_labels: dict[int, str]
    has_image: np.ndarray  # bool

    def __len__(self) -> int:
        return len(self.day)

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.day, self.x, self.y, self.year, self.category, self.confidence,
                                      self.cluster, self.has_image))

    def mask(self, filters: Filters, *, bounds: tuple[float, float, float, float] | None = None,
             days: np.ndarray | None = None) -> np.ndarray:
        """Points passing the filters (categories, dates, has_image; ``days`` for the filters that need
        the lake, such as a cone), inside ``bounds`` (x0, x1, y0, y1) when given."""
        keep = np.ones(len(self), bool)
        if filters.categories:
            codes = [i for i, c in enumerate(self.categories) if c in set(filters.categories)]
            keep &= np.isin(self.category, np.asarray(codes, np.int16))
        if filters.start is not None:
            keep &= self.day >= _day(filters.start)
        if filters.end is not None:
            keep &= self.day <= _day(filters.end)
        if filters.has_image is not None:
            keep &= self.has_image == filters.has_image
        if days is not None:
            keep &= np.isin(self.day, days)
        if bounds is not None:
            x0, x1, y0, y1 = bounds
            keep &= (self.x >= x0) & (self.x <= x1) & (self.y >= y0) & (self.y <= y1)
        return keep

    def frame(self, index: np.ndarray) -> pd.DataFrame:
        """The points at ``index`` with the columns of a map view (as :meth:`AtlasQueries.map_view`; the
        date as datetime64, which also holds the synthetic scale lakes' dates past year 9999)."""
        cats = np.asarray(self.categories, dtype=object)
        cluster = self.cluster[index]
        return pd.DataFrame({
            "date": _EPOCH + self.day[index].astype("timedelta64[D]"),
            "x": self.x[index], "y": self.y[index], "z": np.full(len(index), np.nan, np.float32),
            "year": self.year[index], "has_image": self.has_image[index],
            "category": cats[self.category[index]], "confidence": self.confidence[index],
            "cluster": pd.arrays.IntegerArray(cluster, mask=cluster < 0),
            "cluster_label": [self.cluster_labels.get(int(c)) for c in cluster],
        })


@dataclass(frozen=True)
class DensityView:
    """A view of a large map: a raster of every point in it (``None`` when all of them are drawn), the
    drawn points, how many points the view holds and the view's extent (x0, x1, y0, y1)."""

    raster: "object | None"  # xarray.DataArray from datashader (counts per category/cluster, or a mean)
    points: pd.DataFrame
    total: int
    extent: tuple[float, float, float, float]


def _day(value) -> int:
    return int(day_numbers([value])[0])


def day_numbers(dates) -> np.ndarray:
    """Dates (``datetime.date`` or ISO text) as int32 days since 1970-01-01, the key of :class:`MapColumns`."""
    return (np.asarray(dates, dtype="datetime64[D]") - _EPOCH).astype(np.int32)


def load_columns(reader: LakeReader, *, embedding: str, method: str) -> MapColumns:
    """Read one map's columns from the lake (one join, ≈ 5 s at 10M points) and shuffle them once.

    Arrow all the way: category names are dictionary-encoded by Arrow, never turned into 10M Python
    strings (that alone took ≈ 15 s at 10M points)."""
    import pyarrow.compute as pc

    con = reader.connection().cursor()  # its own result: the thread's connection may hold an unfinished one
    params = {"emb": embedding, "method": method}
    table = con.sql(
        "SELECT (p.date - DATE '1970-01-01')::INTEGER AS day, p.x, p.y, e.year, e.has_image, "
        "coalesce(c.category, 'Uncategorised') AS category, c.confidence, coalesce(k.cluster, -1) AS cluster "
        "FROM projections p JOIN entries e ON e.date = p.date "
        "LEFT JOIN categories c ON c.date = p.date AND c.source = 'text' "
        "LEFT JOIN clusters k ON k.date = p.date AND k.embedding = p.embedding "
        "WHERE p.embedding = $emb AND p.method = $method",
        params=params,
    ).to_arrow_table()
    labels = con.execute("SELECT DISTINCT cluster, label FROM clusters WHERE embedding = $emb",
                         {"emb": embedding}).fetchall()
    order = np.random.default_rng(0).permutation(table.num_rows)

    def column(name: str, dtype) -> np.ndarray:
        values = table.column(name)
        if pa.types.is_floating(values.type):
            values = values.fill_null(np.nan)
        return values.to_numpy().astype(dtype, copy=False)[order]

    category = pc.dictionary_encode(table.column("category")).combine_chunks()
    return MapColumns(
        day=column("day", np.int32), x=column("x", np.float32), y=column("y", np.float32),
        year=column("year", np.int16), category=category.indices.to_numpy().astype(np.int16)[order],
        categories=tuple(category.dictionary.to_pylist()), confidence=column("confidence", np.float32),
        cluster=column("cluster", np.int32), cluster_labels={int(c): str(label) for c, label in labels},
        has_image=column("has_image", bool),
    )


class MapColumnsCache:
    """The last :data:`MAPS_IN_MEMORY` maps' columns of one lake version (thread-safe; a map is loaded
    once even when several requests ask for it at the same moment)."""

    def __init__(self, reader: LakeReader) -> None:
        self.reader = reader
        self._maps: OrderedDict[tuple[str, str], MapColumns] = OrderedDict()
        self._lock = threading.Lock()  # the dictionaries only: held for microseconds
        self._loading: dict[tuple[str, str], Future[MapColumns]] = {}  # the maps being loaded

    def get(self, *, embedding: str, method: str) -> MapColumns:
        """A map's columns. Loading one takes seconds at 10M points: requests for a map already in
        memory do not wait behind it, and the requests for the map being loaded get that one load's
        result (or its error)."""
        key = (embedding, method)
        with self._lock:
            if key in self._maps:
                self._maps.move_to_end(key)
                return self._maps[key]
            pending = self._loading.get(key)
            if pending is None:
                pending = self._loading[key] = Future()
                loads_it = True
            else:
                loads_it = False
        if not loads_it:
            return pending.result()
        try:
            columns = load_columns(self.reader, embedding=embedding, method=method)
        except BaseException as exc:
            with self._lock:
                self._loading.pop(key, None)
            pending.set_exception(exc)
            raise
        with self._lock:
            self._maps[key] = columns
            self._loading.pop(key, None)
            while len(self._maps) > MAPS_IN_MEMORY:
                self._maps.popitem(last=False)
        pending.set_result(columns)
        return columns


def density_view(columns: MapColumns, filters: Filters, *, color: str,
                 bounds: tuple[float, float, float, float] | None = None,
                 days: np.ndarray | None = None, sample: int = OVERLAY_POINTS) -> DensityView:
    """The raster and overlay sample (at most ``sample`` points) of one view of a large map.

    The raster aggregates what the colouring needs: counts per category or per cluster (shaded as a
    mix of their colours), else the mean year or confidence per pixel.
    """
    import datashader as ds

    keep = columns.mask(filters, bounds=bounds, days=days)
    index = np.flatnonzero(keep)
    total = len(index)
    extent = bounds or _extent(columns, index)
    points = columns.frame(index[:sample])
    if total <= sample:
        return DensityView(None, points, total, extent)
    x0, x1, y0, y1 = extent
    data = pd.DataFrame({"x": columns.x[index], "y": columns.y[index]})
    if color == "category":
        data["c"] = pd.Categorical.from_codes(columns.category[index], categories=list(columns.categories))
        agg = ds.count_cat("c")
    elif color == "cluster":
        data["c"] = pd.Categorical(columns.cluster[index])
        agg = ds.count_cat("c")
    else:
        data["c"] = (columns.year[index] if color == "year" else columns.confidence[index]).astype(np.float32)
        agg = ds.mean("c")
    canvas = ds.Canvas(plot_width=RASTER_SHAPE[0], plot_height=RASTER_SHAPE[1], x_range=(x0, x1), y_range=(y0, y1))
    return DensityView(canvas.points(data, "x", "y", agg=agg), points, total, extent)


def category_counts(columns: MapColumns, filters: Filters, *, days: np.ndarray | None = None) -> pd.DataFrame:
    """Points per category under the filters, most first (what the Map page's chips show)."""
    counts = np.bincount(columns.category[columns.mask(filters, days=days)], minlength=len(columns.categories))
    df = pd.DataFrame({"category": list(columns.categories), "n": counts})
    return df[df.n > 0].sort_values("n", ascending=False, kind="stable").reset_index(drop=True)


def _extent(columns: MapColumns, index: np.ndarray) -> tuple[float, float, float, float]:
    return padded_extent(columns.x[index], columns.y[index], pad=0.02) or (0.0, 1.0, 0.0, 1.0)


def padded_extent(x: np.ndarray, y: np.ndarray, *, pad: float) -> tuple[float, float, float, float] | None:
    """(x0, x1, y0, y1) holding every point, widened by ``pad`` × the span on each side (× 1 where the
    span is zero); None without points. Shared by the large maps' rasters and the map figure's axes."""
    x, y = np.asarray(x), np.asarray(y)
    if not len(x):
        return None
    x0, x1, y0, y1 = float(x.min()), float(x.max()), float(y.min()), float(y.max())
    pad_x, pad_y = pad * (x1 - x0 or 1.0), pad * (y1 - y0 or 1.0)
    return (x0 - pad_x, x1 + pad_x, y0 - pad_y, y1 + pad_y)


def polygon_from(points: Sequence[Sequence[float]]):
    """A shapely polygon from [[x, y], …] (a box's two corners make a rectangle): checked, simplified to
    at most :data:`MAX_POLYGON_VERTICES` vertices, and repaired where it crosses itself (the loops of a
    figure eight both count), unless it crosses itself more than :data:`MAX_POLYGON_CROSSINGS` times:
    no lasso drawn by hand does, and the repair of such a tangle would hold a core for minutes."""
    import shapely

    try:
        xy = np.asarray(points, dtype=float)
    except (TypeError, ValueError) as exc:
        raise PolygonError("a selection polygon is a list of [x, y] number pairs") from exc
    if xy.ndim != 2 or xy.shape[1] != 2 or not np.isfinite(xy).all():
        raise PolygonError("a selection polygon is a list of [x, y] number pairs")
    if len(xy) == 2:  # a box: two opposite corners
        (ax, ay), (bx, by) = xy
        xy = np.array([[ax, ay], [bx, ay], [bx, by], [ax, by]])
    if len(xy) > MAX_POLYGON_INPUT:
        raise PolygonError(f"a selection polygon has at most {MAX_POLYGON_INPUT:,} vertices ({len(xy):,} sent)")
    xy = _simplified(xy)
    if len(xy) < 3:
        raise PolygonError("a selection polygon needs at least 3 vertices (or a box's 2 corners)")
    crossings = self_crossings(xy)
    if crossings > MAX_POLYGON_CROSSINGS:
        raise PolygonError(f"the selection crosses itself {crossings:,} times (at most {MAX_POLYGON_CROSSINGS}): "
                           "draw it again with fewer loops")
    polygon = shapely.make_valid(shapely.Polygon(xy))
    shapely.prepare(polygon)
    return polygon


def _simplified(xy: np.ndarray) -> np.ndarray:
    """The ring through ``xy`` with at most :data:`MAX_POLYGON_VERTICES` vertices (Douglas–Peucker from a
    thousandth of the polygon's span, the tolerance doubled up to a sixty-fourth until few enough
    remain; an outline still more intricate is refused)."""
    import shapely

    if len(xy) <= MAX_POLYGON_VERTICES:
        return xy
    span = float(max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1])))
    for step in range(7):
        ring = shapely.simplify(shapely.LineString(np.vstack([xy, xy[:1]])), span / 1000 * 2**step,
                                preserve_topology=False)
        kept = shapely.get_coordinates(ring)[:-1]
        if len(kept) <= MAX_POLYGON_VERTICES:
            return kept
    raise PolygonError(f"the selection's outline is too intricate ({len(xy):,} vertices that do not simplify to "
                       f"{MAX_POLYGON_VERTICES}): draw it again with fewer loops")


def self_crossings(xy: np.ndarray) -> int:
    """How many times the closed ring through ``xy`` crosses itself: every pair of its edges tested at
    once (vertices are few here), a crossing where each edge has the other's ends on opposite sides.
    Edges that only touch or overlap do not count."""
    a = np.asarray(xy, dtype=float)
    b = np.roll(a, -1, axis=0)

    def side(p: np.ndarray, q: np.ndarray, r: np.ndarray) -> np.ndarray:  # sign of the turn p → q → r
        return np.sign((q[..., 0] - p[..., 0]) * (r[..., 1] - p[..., 1]) - (q[..., 1] - p[..., 1]) * (r[..., 0] - p[..., 0]))

    ai, bi, aj, bj = a[:, None], b[:, None], a[None, :], b[None, :]
    crossing = (side(ai, bi, aj) * side(ai, bi, bj) < 0) & (side(aj, bj, ai) * side(aj, bj, bi) < 0)
    return int(np.triu(crossing, k=1).sum())


def inside_polygon(columns: MapColumns, polygon, filters: Filters, *, days: np.ndarray | None = None) -> np.ndarray:
    """Day numbers of every point of the map inside ``polygon`` that passes the filters, in date order."""
    import shapely

    x0, y0, x1, y1 = polygon.bounds
    index = np.flatnonzero(columns.mask(filters, bounds=(x0, x1, y0, y1), days=days))
    inside = shapely.contains_xy(polygon, columns.x[index], columns.y[index])
    return np.sort(columns.day[index[inside]])


def day_strings(days: np.ndarray) -> list[str]:
    """ISO dates of day numbers."""
    return np.datetime_as_string(_EPOCH + np.asarray(days).astype("timedelta64[D]"), unit="D").tolist()
