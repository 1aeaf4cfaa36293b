"""Plotly figure builders for the pages: plain data in, a ``go.Figure`` out.

Why a module of its own: the page callbacks mix three jobs (read the lake, shape the data into a figure,
fill the other outputs). Building the figure from plain pandas data, with no Dash, no lake and no
callback context, lets each figure be unit-tested in milliseconds (``tests/test_figures.py``) and
reused by another page or a notebook. The callbacks only query the lake and call these functions.

Every builder accepts an empty frame (with the expected columns) and returns a figure with no points
rather than raising: a filter that matches nothing is an ordinary state of the pages.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from html import escape
from typing import Any, Final

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go

from lake.density import padded_extent

log = logging.getLogger(__name__)

#: Qualitative colours for categories and clusters: the n-th most frequent category gets the n-th colour.
#: D3's ten, then the next colours of colorcet's ``glasbey_category10`` (Glasbey et al. 2007: each as far as
#: possible from all before it) whose CIELAB lightness is 40-72, chroma at least 30 and distance (ΔE*76) from
#: every colour kept before it at least 25, so every one shows on the white map and on the dark sky alike.
#: The 22 categories used to end in D3's category20 shades, near-twins of the first ten (Galaxy and Rocket
#: Launch ΔE ≈ 3), and Aurora's navy vanished on the sky.
PALETTE: Final = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                  "#bcbd22", "#17becf", "#b80080", "#6b6500", "#028268", "#ff6f76", "#798cff", "#dd00ff",
                  "#ff018d", "#b75700", "#6f8957", "#ff07d6", "#d99c00", "#845cff", "#bd004a", "#d6a266"]
#: Colour of entries with no cluster (HDBSCAN noise) when the map is coloured by cluster.
NO_CLUSTER_COLOUR: Final = "#cccccc"
#: The map's "colour by" choices and their labels (the label also titles the colour bar).
MAP_COLOURS: Final = {"category": "Category", "cluster": "Cluster", "year": "Year", "confidence": "Confidence"}
#: Past this many points the 2-D map draws smaller markers, so dense maps stay readable.
DENSE_MAP: Final = 20_000
#: At most this many cluster labels are written on the 2-D map (the largest clusters).
MAX_CLUSTER_LABELS: Final = 30
#: A cluster label's longest text (its category and first terms, cut after a whole term).
MAX_LABEL_CHARS: Final = 40
#: A label's size as a share of the map's extent, for a map drawn about 1,000 × 550 px (the Map page's
#: 68vh on a laptop): ≈ 6 px per character of the 10-px font, and 16 px of height.
LABEL_CHAR_WIDTH: Final = 0.006
LABEL_HEIGHT: Final = 0.03
#: The map sends each point's entry as its *day number* (days since 1970-01-01) in ``customdata``: ~6
#: bytes of JSON per point instead of ~80 (date, title, category), which made the 11k-point map's payload
#: 876 kB; x and y go as binary float32 arrays. Hover, click and selection turn it back into a date
#: (:func:`date_of`); the hover card asks the server for the rest.
EPOCH: Final = dt.date(1970, 1, 1)
#: Columns carried as ``customdata`` on every sky point (date first: a click opens that entry).
SKY_CUSTOMDATA: Final = ("date", "title", "name")
SELECTION_COLOUR: Final = "#ffb000"
SKY_BACKGROUND: Final = "#0b1020"

_HIDDEN_AXIS: Final = {"showgrid": False, "zeroline": False, "showticklabels": False, "title": ""}
#: Right margin of the 2-D map (pixels) per colouring, where its legend or colour bar sits. Fixed, not
#: grown by Plotly to fit them, so the plot area is known before Plotly has run and the map's preview
#: picture (:func:`map_preview`) covers exactly the plot area the points will be drawn in.
MAP_RIGHT_MARGIN: Final = {"category": 200, "cluster": 0, "year": 90, "confidence": 110}
#: Share of the points' span added on each side of a 2-D map's axes.
MAP_PAD: Final = 0.03
#: Pixel size of the map's preview picture: about the plot area of a 1400-pixel-wide window.
PREVIEW_SIZE: Final = (1200, 680)


def day_numbers(dates: Iterable[Any]) -> np.ndarray:
    """ISO dates (or dates, or a datetime64 array) as int32 days since 1970-01-01, the map points'
    ``customdata``."""
    values = dates.to_numpy() if isinstance(dates, pd.Series) else dates
    if isinstance(values, np.ndarray) and np.issubdtype(values.dtype, np.datetime64):
        return values.astype("datetime64[D]").astype(np.int64).astype(np.int32)
    days = pd.to_datetime(pd.Series(list(dates), dtype=object), format="ISO8601").to_numpy("datetime64[D]")
    return days.astype(np.int64).astype(np.int32)


def date_of(custom: Any) -> str:
    """The ISO date of a map point's ``customdata`` (a day number; the Sky map's list starts with the date)."""
    if isinstance(custom, (list, tuple)):
        custom = custom[0]
    if isinstance(custom, str):
        return custom
    return (EPOCH + dt.timedelta(days=int(custom))).isoformat()


def category_colours(categories: Iterable[str]) -> dict[str, str]:
    """Palette colour per category in the given order (most frequent first), cycling past 24. The pages
    pass the lake's order (:meth:`lake.queries.AtlasQueries.category_order`), so a category has one
    colour on every page and under every filter."""
    return {cat: PALETTE[i % len(PALETTE)] for i, cat in enumerate(categories)}


def _by_frequency(categories: pd.Series) -> list[str]:
    return categories.value_counts().index.tolist()


def colours_of(categories: Iterable[str], colours: Mapping[str, str]) -> dict[str, str]:
    """Each of ``categories`` → its colour in ``colours`` (the lake's fixed colours), grey for one they
    lack (e.g. Uncategorised): the map, the sky, the per-year chart and the Map page's chips alike."""
    return {cat: colours.get(cat, NO_CLUSTER_COLOUR) for cat in categories}


def _category_key(categories: pd.Series, colours: Mapping[str, str] | None) -> dict[str, str]:
    """Legend order (most frequent in this view first) → colour: from ``colours`` where given
    (:func:`colours_of`), else by this view's own frequencies."""
    return _colours_in(_by_frequency(categories), colours)


def _colours_in(order: list[str], colours: Mapping[str, str] | None) -> dict[str, str]:
    """Each category of ``order`` → its colour: the lake's fixed ``colours`` where given, else the
    palette in this order."""
    return category_colours(order) if colours is None else colours_of(order, colours)


# -- map (home page) -------------------------------------------------------------------------------

def map_scatter(
    points: pd.DataFrame,
    *,
    color: str = "category",
    three_d: bool = False,
    cluster_centres: pd.DataFrame | None = None,
    uirevision: str | None = None,
    density: Any = None,
    extent: tuple[float, float, float, float] | None = None,
    svg: bool = False,
    colours: Mapping[str, str] | None = None,
) -> go.Figure:
    """The embedding map: one WebGL scatter (``Scatter3d`` when ``three_d``; SVG ``scatter`` with ``svg``)
    of ``points``.

    A large map (:mod:`lake.density`) also passes ``density``, a datashader aggregate of every point in the
    view, and ``extent`` (x0, x1, y0, y1): the raster is shaded in the same colours as the points, laid
    under them as an image, and the axes are fixed to the extent so both line up.

    ``points`` has the columns of :class:`lake.queries.MapView` points (``x``, ``y``, ``z``, ``date``,
    ``title``, ``category``, ``has_image``, ``cluster``, ``year``, ``confidence``). It may be a thinned
    sample of a >60k-point map or only the points inside a zoomed view: the figure is the same, and
    ``uirevision`` (the same for the overview and its zooms) keeps the user's zoom when it is redrawn.
    Colouring by category draws one trace per category, most frequent first, so the legend toggles
    categories, in ``colours`` (the lake's fixed colour per category, which the pages pass; without it,
    by this view's frequencies); by cluster, palette colours per cluster id (grey for none); by year or
    confidence, a Viridis scale. Hover text is off: the page draws its own card from ``customdata``.

    ``svg`` is for the page's first figure of a large map, a few thousand points: in SVG they are drawn in
    less time than Plotly takes to set up WebGL (three contexts; ≈ 0.5 s on a software renderer,
    BENCHMARKS.md *Plotly alone in this browser*). The WebGL figure replaces it once the reader's input
    rests (pages/home.py ``upgrade_map``): SVG redraws each zoom more slowly than WebGL.
    """
    if color not in MAP_COLOURS:
        raise ValueError(f"unknown map colouring {color!r}; expected one of {sorted(MAP_COLOURS)}")
    size = 3 if three_d else (4 if len(points) > DENSE_MAP else 6)
    # traces and labels are gathered, then handed to the figure at once: add_trace / add_annotation
    # copy and re-validate what the figure already holds each time (≈ 0.2 s for 30 cluster labels)
    traces: list[dict[str, Any]] = []  # plain dicts: go.Figure deep-copies trace objects handed to it
    days = pd.Series(day_numbers(points.date).astype(object), index=points.index)  # once, not per trace

    def trace(part: pd.DataFrame, name: str | None, marker: dict) -> dict[str, Any]:
        # a JSON list, not a binary array: dcc.Graph reads event customdata from the figure's own data,
        # where a binary array is still its {dtype, bdata} spec and point lookups would find nothing. An
        # object array is written as a list too, and Plotly checks it as one array, not number by number
        # (≈ 30 ms less per 11k-point figure than a Python list)
        common = dict(mode="markers", name=name, customdata=days[part.index].to_numpy(), hoverinfo="none",
                      marker=marker, showlegend=name is not None)
        if three_d:
            return dict(type="scatter3d", x=part.x.to_numpy(), y=part.y.to_numpy(), z=part.z.to_numpy(), **common)
        return dict(type="scatter" if svg else "scattergl", x=part.x.to_numpy(np.float32),
                    y=part.y.to_numpy(np.float32), **common)

    if density is not None:
        size = 3
    key = _category_key(points.category, colours) if color == "category" else {}
    if color == "category":
        parts = dict(tuple(points.groupby("category", sort=False)))  # one pass, not a mask per category
        for cat, colour in key.items():
            part = parts[cat]
            # over a raster, the legend counts are the drawn sample's, not the view's
            label = cat if density is not None else f"{cat} ({len(part):,})"
            traces.append(trace(part, label, {"size": size, "color": colour}))
    elif color == "cluster":
        # one trace per palette colour, not a colour string per point (≈ 10 bytes of JSON each)
        colours = pd.Series([_cluster_colour(c) for c in points.cluster.fillna(-1).astype(int)], index=points.index)
        for colour, part in points.groupby(colours, sort=False):
            traces.append(trace(part, None, {"size": size, "color": colour}))
    else:
        traces.append(trace(points, None, {"size": size, "color": points[color], "colorscale": "Viridis",
                                           "showscale": True,
                                           # the title along the bar and the bar's top below the modebar
                                           # (the title sat under the toolbar's buttons)
                                           "colorbar": {"title": {"text": MAP_COLOURS[color], "side": "right"},
                                                        "thickness": 12, "len": 0.9, "y": 0, "yanchor": "bottom"}}))
    fig = go.Figure(data=traces)
    if density is not None and extent is not None:
        x0, x1, y0, y1 = extent
        shades = {**(colours or {}), **key}  # the raster's categories may include some the sample lacks
        fig.add_layout_image(source=density_image(density, color=color, colours=shades, values=points.get(color)),
                             xref="x", yref="y", x=x0, y=y1, sizex=x1 - x0, sizey=y1 - y0, sizing="stretch",
                             layer="below", xanchor="left", yanchor="top")
    if not three_d and cluster_centres is not None and not cluster_centres.empty:
        fig.update_layout(annotations=[
            {"x": x, "y": y, "text": text, "showarrow": False, "font": {"size": 10, "color": "#111"},
             "bgcolor": "rgba(255,255,255,0.7)"}
            for x, y, text in cluster_labels(cluster_centres, extent=extent or map_extent(points))])
    fig.update_layout(
        template=_scatter_template(), margin={"l": 0, "r": 0, "t": 0, "b": 0}, uirevision=uirevision,
        dragmode="orbit" if three_d else "lasso",
        legend={"itemsizing": "constant", "font": {"size": 11}, "y": 0.94, "yanchor": "top"},
        xaxis=_HIDDEN_AXIS, yaxis=_HIDDEN_AXIS, hovermode="closest",
    )
    if three_d:
        fig.update_layout(scene={"xaxis": _HIDDEN_AXIS, "yaxis": _HIDDEN_AXIS, "zaxis": _HIDDEN_AXIS})
    else:
        fig.update_layout(margin={"r": MAP_RIGHT_MARGIN[color], "autoexpand": False})
    if extent is not None and not three_d:
        fig.update_xaxes(range=list(extent[:2]))
        fig.update_yaxes(range=list(extent[2:]))
    return fig


@lru_cache(maxsize=1)
def _scatter_template() -> go.layout.Template:
    """plotly_white's layout and scatter styles only: the named template holds every trace type's styles,
    and Plotly copies a template into each figure (≈ 10 ms of a map's ≈ 40 ms build)."""
    import plotly.io as pio

    white = pio.templates["plotly_white"]
    return go.layout.Template(layout=white.layout, data={"scattergl": white.data.scattergl,
                                                         "scatter": white.data.scatter,
                                                         "scatter3d": white.data.scatter3d})


def short_label(text: str, *, limit: int = MAX_LABEL_CHARS) -> str:
    """A cluster label cut to ``limit`` characters after its last whole term ("Galaxy: galaxy, m81, m"
    read as a word cut in two), with an ellipsis when it was cut."""
    text = " ".join(str(text).split())
    if len(text) <= limit:
        return text
    head = text[:limit - 1]
    cut = max(head.rfind(", "), head.rfind(": ") + 1)
    return (head[:cut] if cut > 0 else head).rstrip(" ,:") + "…"


def cluster_labels(centres: pd.DataFrame, *, extent: tuple[float, float, float, float] | None = None
                   ) -> list[tuple[float, float, str]]:
    """(x, y, text) of the cluster labels a map shows: the largest clusters first, up to
    :data:`MAX_CLUSTER_LABELS`, leaving out a label that would cover one already placed (30 labels at
    their centres piled up over the dense middle of the archive's maps, unreadable). ``extent``: the
    map's (x0, x1, y0, y1); else the centres' own."""
    top = centres.sort_values("n", ascending=False)
    x0, x1, y0, y1 = extent or (top.x.min(), top.x.max(), top.y.min(), top.y.max())
    width, height = max(x1 - x0, 1e-9), max(y1 - y0, 1e-9)
    placed: list[tuple[float, float, str]] = []
    def half_width(text: str) -> float:
        return len(text) * LABEL_CHAR_WIDTH * width / 2

    for row in top.itertuples():
        text = short_label(row.cluster_label)
        # two labels of the same height overlap where they are closer than a height, and than half widths
        if all(abs(row.x - x) >= half_width(text) + half_width(t) or abs(row.y - y) >= LABEL_HEIGHT * height
               for x, y, t in placed):
            placed.append((float(row.x), float(row.y), text))
        if len(placed) == MAX_CLUSTER_LABELS:
            break
    return placed


def map_extent(points: pd.DataFrame) -> tuple[float, float, float, float] | None:
    """Axis ranges (x0, x1, y0, y1) holding every point with a :data:`MAP_PAD` margin; None without points.

    Fixed ranges instead of Plotly's autorange: the preview picture must know where each point lands."""
    return padded_extent(points.x.to_numpy(), points.y.to_numpy(), pad=MAP_PAD)


def sendable(fig: go.Figure) -> dict[str, Any]:
    """The figure as Dash sends it to the browser: plain JSON types, arrays as Plotly's base64 specs.

    Cached views keep this form (``pages._common.by_lake_version``): Dash serialises a ``go.Figure`` again
    on every request by walking every point (≈ 35 ms for the sky map and its titles), the plain form in
    ≈ 1 ms."""
    import json

    import plotly.io as pio

    return json.loads(pio.to_json(fig, validate=False))


def _array(value: Any) -> np.ndarray:
    """A figure array as numpy: a list, or a base64 spec ``{"dtype": "f4", "bdata": …}`` of the sent form."""
    import base64

    if isinstance(value, dict) and "bdata" in value:
        data = np.frombuffer(base64.b64decode(value["bdata"]), dtype=np.dtype(value["dtype"]))
        return data.reshape(value["shape"]) if "shape" in value and isinstance(value["shape"], list) else data
    return np.asarray(value if value is not None else [])


def map_preview(fig: go.Figure | dict[str, Any], *, size: tuple[int, int] = PREVIEW_SIZE) -> str | None:
    """A picture of a 2-D map figure's plot area as a data URI: its raster, then its points in trace
    order, sizes and colours (colour scales included). None for a figure it cannot picture (3-D, no
    fixed axis ranges, no points). Takes the figure or its sent form (:func:`sendable`).

    Why: Plotly needs ≈ 1 s of a slow machine's main thread before the first point shows (its script,
    three WebGL contexts, the first draw). The page lays this picture, made on the server and cached with
    the view, under the graph: it shows as soon as the page does, and Plotly's opaque paper covers it once
    the interactive map is drawn. Cluster labels, legend and colour bar come with Plotly.

    Points alone are a palette PNG (a few dozen colours on transparency: ≈ 5 ms to encode, ≈ 50 kB for the
    archive); over a density raster, a WebP.
    """
    import base64
    import io

    from PIL import Image

    fig = sendable(fig) if isinstance(fig, go.Figure) else fig
    layout = fig.get("layout", {})
    xr, yr = layout.get("xaxis", {}).get("range"), layout.get("yaxis", {}).get("range")
    traces = [t for t in fig.get("data", []) if t.get("type") in ("scattergl", "scatter") and len(_array(t.get("x")))]
    if xr is None or yr is None or not traces or xr[1] == xr[0] or yr[1] == yr[0]:
        return None
    width, height = size
    index = np.zeros((height, width), np.int32)  # palette entry per pixel; 0: no point
    palette: dict[tuple[int, ...], int] = {}
    for trace in traces:  # in trace order, as Plotly draws them: later traces on top
        x = np.rint((_array(trace["x"]).astype(float) - xr[0]) / (xr[1] - xr[0]) * width).astype(np.int64)
        y = np.rint((yr[1] - _array(trace["y"]).astype(float)) / (yr[1] - yr[0]) * height).astype(np.int64)
        marker = trace.get("marker", {})
        radius = max(float(marker.get("size") or 6) / 2, 1.0)
        span = np.arange(-int(radius), int(radius) + 1)
        dy, dx = (d.ravel() for d in np.meshgrid(span, span, indexing="ij"))
        disc = dx * dx + dy * dy <= radius * radius
        rows, cols = y[:, None] + dy[disc], x[:, None] + dx[disc]  # every pixel of every point's disc
        inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
        colours, inverse = np.unique(_marker_colours(marker, len(x)), axis=0, return_inverse=True)
        entries = np.array([palette.setdefault(tuple(int(v) for v in c), len(palette) + 1) for c in colours])
        point_entry = entries[inverse.ravel()]
        index[rows[inside], cols[inside]] = np.broadcast_to(point_entry[:, None], rows.shape)[inside]
    table = np.zeros((len(palette) + 1, 4), np.uint8)
    for colour, entry in palette.items():
        table[entry] = (*colour, 255)
    rasters = [layer for layer in layout.get("images", []) if str(layer.get("source", "")).startswith("data:image")]
    buffer = io.BytesIO()
    if not rasters and len(table) <= 256:
        image = Image.fromarray(index.astype(np.uint8), "P")
        image.putpalette(table[:, :3].ravel().tolist())
        image.save(buffer, format="PNG", compress_level=3, transparency=0)
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
    image = Image.new("RGBA", size, (255, 255, 255, 0))
    for layer in rasters:  # a large map's density raster, placed as Plotly places it
        raster = Image.open(io.BytesIO(base64.b64decode(layer["source"].split(",", 1)[1]))).convert("RGBA")
        left = round((layer["x"] - xr[0]) / (xr[1] - xr[0]) * width)
        top = round((yr[1] - layer["y"]) / (yr[1] - yr[0]) * height)
        box = (round(layer["sizex"] / (xr[1] - xr[0]) * width), round(layer["sizey"] / (yr[1] - yr[0]) * height))
        image.alpha_composite(raster.resize(box), (left, top))
    pixels = np.array(image)
    drawn = index > 0
    pixels[drawn] = table[index[drawn]]
    # method 1: a quarter of the default encoder effort (≈ 25 ms instead of 60 ms) for as small a file
    Image.fromarray(pixels, "RGBA").save(buffer, format="WEBP", quality=70, method=1)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _marker_colours(marker: dict[str, Any], n: int) -> np.ndarray:
    """RGB (n × 3, uint8) per point of a (sent) trace's marker: one colour, or numbers on its colour scale
    (min..max, as Plotly scales them, in 128 steps so a picture's palette stays small; missing numbers
    grey)."""
    from plotly.colors import hex_to_rgb, unlabel_rgb

    def rgb(colour: str) -> tuple[float, ...]:
        return tuple(float(v) for v in (hex_to_rgb(colour) if colour.startswith("#") else unlabel_rgb(colour)))

    colour = marker.get("color", PALETTE[0])
    if isinstance(colour, str):
        return np.tile(np.array(rgb(colour), np.uint8), (n, 1))
    values = np.array([np.nan if v is None else v for v in colour], float) if isinstance(colour, list) \
        else _array(colour).astype(float)
    scale = marker.get("colorscale") or [[0.0, "#440154"], [1.0, "#fde725"]]
    at = np.array([float(stop) for stop, _ in scale])
    stops = np.array([rgb(c) for _, c in scale])
    finite = np.isfinite(values)
    lo, hi = (float(values[finite].min()), float(values[finite].max())) if finite.any() else (0.0, 1.0)
    t = np.clip((np.where(finite, values, lo) - lo) / ((hi - lo) or 1.0), 0, 1)
    t = np.rint(t * 127) / 127
    channels = np.stack([np.interp(t, at, stops[:, k]) for k in range(3)], axis=1)
    channels[~finite] = rgb(NO_CLUSTER_COLOUR)
    return np.rint(channels).astype(np.uint8)


def _cluster_colour(cluster: int) -> str:
    return PALETTE[cluster % len(PALETTE)] if cluster >= 0 else NO_CLUSTER_COLOUR


def density_image(aggregate: Any, *, color: str, colours: dict[str, str],
                  values: pd.Series | None = None) -> str:
    """A datashader aggregate shaded as a WebP data URI in the map's colours.

    Counts per category or cluster mix their colours (eq_hist alpha, so sparse regions stay visible);
    a mean year or confidence uses Viridis over the drawn points' range, the range of the colour bar.
    WebP keeps a 1000×620 raster ≈ 2.5× smaller than PNG (≈ 210 kB vs 550 kB for 10M points); at its
    fastest effort (``method=0``) it encodes in ≈ 55 ms instead of ≈ 190 ms for ≈ 15 % more bytes, paid
    on every zoom of a large map.
    """
    import base64
    import io

    import datashader.transfer_functions as tf

    from PIL import Image

    if color in ("category", "cluster"):
        names = aggregate.coords[aggregate.dims[2]].values
        key = [colours.get(c, NO_CLUSTER_COLOUR) if color == "category" else _cluster_colour(int(c)) for c in names]
        picture = Image.fromarray(mixed_colours(aggregate, key), mode="RGBA")
    else:
        span = None
        if values is not None and values.notna().any():
            span = (float(values.min()), float(values.max()))
        picture = tf.shade(aggregate, cmap=px.colors.sequential.Viridis, how="linear", span=span).to_pil()
    buffer = io.BytesIO()
    picture.save(buffer, format="WEBP", quality=80, method=0)
    return "data:image/webp;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def mixed_colours(aggregate: Any, colours: Sequence[str], *, band: int = 64) -> np.ndarray:
    """(H, W, 4) RGBA of a datashader count aggregate (y, x, category): each pixel mixes its categories'
    ``colours`` by their counts, with eq_hist alpha on its total. The same pixels as datashader's
    ``shade(aggregate, color_key=…, how="eq_hist")`` (tests/test_figures.py), made in bands of rows.

    Why not that call: it makes about a dozen whole-raster (H, W, C) temporaries, ≈ 30 MB each at a
    dozen categories, fresh memory that the kernel faults in on every zoom of a large map. On a 1M map
    that was ≈ 0.2 s of a ≈ 0.37 s zoom callback, and a server thread's first zooms took up to ≈ 1.1 s,
    nearly all of the extra in the kernel (huge-page faults). A band's temporaries are ≈ 3 MB, reused
    from the heap: ≈ 0.09 s against ≈ 0.2 s on the same aggregate, and the zoom callback ≈ 0.2 s."""
    import datashader.transfer_functions as tf
    import xarray as xr
    from datashader.colors import rgb

    counts = aggregate.transpose(*aggregate.dims[:2], aggregate.dims[2]).data
    palette = np.array([rgb(c) for c in colours], dtype=np.float32).reshape(-1, 3)
    h, w = counts.shape[:2]
    out = np.zeros((h, w, 4), dtype=np.uint8)
    total = np.empty((h, w), dtype=np.uint32)
    for top in range(0, h, band):
        block = counts[top:top + band]
        block_total = block.sum(axis=2, dtype=np.uint32)
        total[top:top + band] = block_total
        with np.errstate(divide="ignore", invalid="ignore"):  # empty pixels: alpha 0 below
            mixed = (block.astype(np.float32) @ palette) / block_total[..., None]
        out[top:top + band, :, :3] = np.nan_to_num(mixed).astype(np.uint8)  # truncated, as datashader does
    plane = xr.DataArray(total, dims=aggregate.dims[:2], coords={d: aggregate.coords[d] for d in aggregate.dims[:2]})
    out[..., 3] = tf.shade(plane, cmap="black", how="eq_hist").data.view(np.uint8).reshape(h, w, 4)[..., 3]
    return out


# -- sky page --------------------------------------------------------------------------------------

def mollweide(ra_deg: Sequence[float] | np.ndarray | pd.Series,
              dec_deg: Sequence[float] | np.ndarray | pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Equal-area all-sky projection, RA 0 in the middle and increasing to the left (as seen on the sky).

    Computed here so the sky map is plain WebGL scatter traces and needs no map data from a CDN.
    x spans [-2√2, 2√2] and y [-√2, √2].
    """
    lon = np.radians(((-np.asarray(ra_deg, float) + 180.0) % 360.0) - 180.0)
    lat = np.radians(np.asarray(dec_deg, float))
    theta = lat.copy()
    for _ in range(30):  # Newton's method on 2θ + sin 2θ = π sin φ
        denom = 2 + 2 * np.cos(2 * theta)
        residual = 2 * theta + np.sin(2 * theta) - np.pi * np.sin(lat)
        step = np.where(denom > 1e-9, residual / np.maximum(denom, 1e-9), 0)
        theta -= step
    return 2 * np.sqrt(2) / np.pi * lon * np.cos(theta), np.sqrt(2) * np.sin(theta)


@lru_cache(maxsize=1)
def _sky_grid_lines() -> tuple[np.ndarray, np.ndarray]:
    """Meridians (both sides of RA 180°) and parallels as one polyline, NaN between lines: computed once,
    drawn as one trace (18 separate traces made the sky figure take twice as long to build)."""
    xs, ys = [], []
    dec = np.linspace(-90, 90, 91)
    for ra in (0.001, 30, 60, 90, 120, 150, 179.999, 180.001, 210, 240, 270, 300, 330):
        x, y = mollweide(np.full_like(dec, ra), dec)
        xs += [x, [np.nan]]
        ys += [y, [np.nan]]
    ra = np.linspace(180.001, 540 - 0.001, 181) % 360
    for d in (-60, -30, 0, 30, 60):
        x, y = mollweide(ra, np.full_like(ra, d))
        xs += [x, [np.nan]]
        ys += [y, [np.nan]]
    return np.concatenate(xs).astype(np.float32), np.concatenate(ys).astype(np.float32)


def _sky_grid(fig: go.Figure) -> None:
    x, y = _sky_grid_lines()
    fig.add_trace(go.Scattergl(x=x, y=y, mode="lines", line={"color": "#3a4466", "width": 1}, hoverinfo="skip",
                               showlegend=False, connectgaps=False, name="grid"))
    for h in (0, 6, 12, 18):
        hx, hy = mollweide([h * 15 + 0.001], [0])
        fig.add_annotation(x=hx[0], y=hy[0], text=f"{h}h", showarrow=False, font={"color": "#8893b8", "size": 10})


def sky_map(points: pd.DataFrame, *, selected: Iterable[str] = (),
            colours: Mapping[str, str] | None = None) -> go.Figure:
    """All-sky Mollweide map: a coordinate grid, one trace per category, and rings around ``selected`` dates.

    ``points`` has the columns of :meth:`lake.queries.AtlasQueries.sky_points` (``date``, ``title``,
    ``category``, ``name``, ``ra_deg``, ``dec_deg``). Rows without a position (solar-system primaries)
    are left out, so each legend count is the number of markers drawn. The grid traces come first and
    have no legend entry; clicks read the entry date from ``customdata[0]``.
    """
    placed = points.dropna(subset=["ra_deg", "dec_deg"])
    if len(placed) < len(points):
        log.debug("sky map: %d of %d points have no position", len(points) - len(placed), len(points))
    # the hover shows title and name through Plotly's HTML subset: archive text goes in escaped
    placed = placed.assign(title=[escape(str(t)) for t in placed.title],
                           name=[escape(str(n)) if isinstance(n, str) else n for n in placed.name])
    fig = go.Figure()
    _sky_grid(fig)
    traces = []
    for cat, colour in _category_key(placed.category, colours).items():
        part = placed[placed.category == cat]
        x, y = mollweide(part.ra_deg, part.dec_deg)
        traces.append(go.Scattergl(
            x=x, y=y, mode="markers", name=f"{cat} ({len(part):,})", marker={"size": 5, "color": colour},
            customdata=part[list(SKY_CUSTOMDATA)].to_numpy(),
            hovertemplate="%{customdata[1]}<br>%{customdata[0]} · %{customdata[2]}<extra></extra>"))
    fig.add_traces(traces)  # one call: add_trace copies the figure's data each time
    chosen = placed[placed.date.isin(list(selected))]
    if not chosen.empty:
        x, y = mollweide(chosen.ra_deg, chosen.dec_deg)
        fig.add_trace(go.Scattergl(
            x=x, y=y, mode="markers", name=f"Map selection ({len(chosen):,})",
            marker={"size": 11, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": SELECTION_COLOUR}},
            customdata=chosen[list(SKY_CUSTOMDATA)].to_numpy(),
            hovertemplate="%{customdata[1]}<br>%{customdata[0]} · %{customdata[2]}<extra>selected</extra>"))
    # the legend starts below the mode bar (top right), as on the map
    fig.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, legend={"font": {"size": 11}, "y": 0.94, "yanchor": "top"},
                      template="plotly_dark",
                      paper_bgcolor=SKY_BACKGROUND, plot_bgcolor=SKY_BACKGROUND,
                      xaxis={"visible": False, "range": [-2.9, 2.9]},
                      yaxis={"visible": False, "range": [-1.45, 1.45], "scaleanchor": "x"}, hovermode="closest")
    return fig


# -- categories page -------------------------------------------------------------------------------

def category_counts_bar(counts: pd.DataFrame, *, colours: Mapping[str, str] | None = None) -> go.Figure:
    """Horizontal bars of entries per category (``category``, ``n``), the largest at the top, each in its
    category's colour (``colours``: the lake's fixed ones, as on the map and the per-year chart beside
    it; else the palette in this order), so a bar reads as the same category everywhere on the page.

    ``counts`` comes largest first (as :meth:`counts_by_category` returns it); bars are drawn bottom-up.
    """
    order = counts["category"].tolist()
    key = _colours_in(order, colours)
    fig = px.bar(counts.iloc[::-1], x="n", y="category", orientation="h", title="Entries per category",
                 labels={"n": "entries", "category": ""}, template="plotly_white", height=560)
    return fig.update_traces(marker_color=[key[c] for c in reversed(order)])


def category_years_bar(per_year: pd.DataFrame, *, order: Sequence[str] = (),
                       colours: Mapping[str, str] | None = None) -> go.Figure:
    """Stacked bars of entries per year (``year``, ``category``, ``n``), one colour per category.

    ``order`` (usually largest category first) fixes the stacking and legend order. ``colours`` (the
    lake's fixed colours, which the page passes; grey for one it lacks, e.g. Uncategorised, as on the
    map) colour them, else the map's palette in ``order``
    (:func:`category_colours`): the taxonomy's 22 categories get 22 colours (Plotly's default cycle of
    10 gave, e.g., Earth/Atmospheric and Comet the same blue).
    """
    order = list(order) or list(dict.fromkeys(per_year["category"]))
    return px.bar(per_year, x="year", y="n", color="category", title="Per year", template="plotly_white",
                  labels={"n": "entries"}, height=560, category_orders={"category": order},
                  color_discrete_map=_colours_in(order, colours))


def confidence_box(confidences: pd.DataFrame) -> go.Figure:
    """Box plot of the top category's confidence (``category``, ``confidence``), highest median first."""
    order = confidences.groupby("category").confidence.median().sort_values(ascending=False).index.tolist()
    fig = px.box(confidences, x="category", y="confidence", title="Confidence of the top category",
                 template="plotly_white", category_orders={"category": order}, height=560, points=False)
    fig.update_xaxes(tickangle=45, title="")
    return fig


def agreement_bar(agreement: pd.DataFrame) -> go.Figure:
    """Share of entries per category (``category``, ``agreement`` in 0..1) whose image category matches
    their text category; the x axis is fixed to [0, 1] so categories compare at a glance. Categories in
    the frame's order from the top (most pictures first), every one named (at 420 px Plotly labelled
    every other bar); the hover adds ``n``, the pictures behind a share."""
    fig = px.bar(agreement, x="agreement", y="category", orientation="h", template="plotly_white", height=560,
                 title="Image category agrees with text category", range_x=[0, 1],
                 labels={"category": "", "agreement": "share of pictures"},
                 hover_data=["n"] if "n" in agreement else None)
    if "n" in agreement:
        fig.update_traces(hovertemplate="%{y}: %{x:.0%} of %{customdata[0]:,} pictures<extra></extra>")
    fig.update_yaxes(autorange="reversed", dtick=1)
    fig.update_xaxes(tickformat=".0%")
    return fig


# -- metrics page ----------------------------------------------------------------------------------

def stage_durations_bar(stages: pd.DataFrame) -> go.Figure:
    """Wall time per pipeline stage (``stage``, ``duration_seconds``), in run order top to bottom, as the
    table beside it lists them (Plotly draws a horizontal bar chart's first category at the bottom)."""
    fig = px.bar(stages, x="duration_seconds", y="stage", orientation="h", template="plotly_white",
                 title="Wall time per stage (s)", labels={"duration_seconds": "seconds", "stage": ""})
    fig.update_yaxes(autorange="reversed")
    return fig


def resource_samples_lines(samples: pd.DataFrame) -> go.Figure:
    """CPU %, resident memory (MB) and, if the build machine had a GPU, GPU utilisation over the run.

    One facet row per metric with its own y scale, one line colour per process. ``samples`` has the
    columns of :meth:`lake.queries.AtlasQueries.samples` (``duration_seconds``, ``process``,
    ``cpu_percent``, ``rss_bytes``, ``gpu_name``, ``gpu_utilization_percent``).
    """
    samples = samples.assign(rss_mb=samples.rss_bytes / 2**20)
    has_gpu = bool(samples.gpu_name.notna().any())
    cols = ["cpu_percent", "rss_mb"] + (["gpu_utilization_percent"] if has_gpu else [])
    long = samples.melt(id_vars=["duration_seconds", "process"], value_vars=cols, var_name="metric")
    # the samples are the build's whole process tree (main, encoder, worker): lines coloured by the
    # main process's stage, while the worker runs its own beside it
    fig = px.line(long, x="duration_seconds", y="value", facet_row="metric", color="process", template="plotly_white",
                  color_discrete_sequence=PALETTE,
                  title="Resource samples of the build's processes (main, encoder, background worker)" + ("" if has_gpu else " (no GPU on the build machine)"),
                  labels={"duration_seconds": "seconds since the build started", "process": "stage"}, height=560)
    fig.update_yaxes(matches=None)
    fig.layout.annotations = ()  # the facet labels ("metric=cpu_percent"): the y titles say it in words
    rows = len(cols)
    for i, col in enumerate(cols):  # facet row 1 is the bottom one
        fig.update_yaxes(title_text=SAMPLE_AXES[col], row=rows - i, col=1)
    return fig


#: The resource samples' y axes: what each line is, in its unit.
SAMPLE_AXES: Final = {"cpu_percent": "CPU % (100 = one core)", "rss_mb": "memory (RSS, MB, all processes summed)",
                      "gpu_utilization_percent": "GPU utilisation %"}


# -- galaxies page -------------------------------------------------------------------------------------

#: Colours of the Galaxy Zoo classes on the morphology map.
GALAXY_CLASS_COLOURS: Final = {"smooth": "#d62728", "featured": "#1f77b4", "uncertain": "#9e9e9e",
                               "star_or_artifact": "#bcbd22"}


def galaxy_map(points: pd.DataFrame, *, highlight: Sequence[str] = ()) -> go.Figure:
    """The collection's morphology (or picture) map: WebGL traces per Galaxy Zoo class (one legend entry
    each) and cluster, so the hover text is the trace's own and every point carries only its row number
    in ``points`` as ``customdata`` (a click picks the galaxy, the lasso selects for download: the page
    turns rows back into objids, with the key of the map it drew: ``GalaxyQueries.objids_at``). A plain
    list, as on the entries' map (dcc.Graph looks event customdata up in the figure's own data, where a
    binary array is still undecoded). Per-point objid and label
    strings made the 19,761-galaxy figure 1.2 MB of JSON. ``highlight`` (objids) rings the current
    neighbourhood."""
    fig = go.Figure()
    rows = np.arange(len(points), dtype=np.int32)
    xs, ys, labels = points.x.to_numpy(), points.y.to_numpy(), points.cluster_label.fillna("").to_numpy()
    size = 3 if len(points) > DENSE_MAP / 2 else 5
    for cls, colour in GALAXY_CLASS_COLOURS.items():
        in_class = (points.gz_class == cls).to_numpy()
        if not in_class.any():
            continue
        for i, label in enumerate(sorted(set(labels[in_class]))):
            part = in_class & (labels == label)
            fig.add_trace(go.Scattergl(
                x=xs[part], y=ys[part], customdata=rows[part].tolist(), mode="markers",
                name=f"{cls.replace('_', ' ')} ({int(in_class.sum()):,})", legendgroup=cls, showlegend=i == 0,
                hovertemplate=f"{escape(label) or 'no cluster'}<extra>{escape(cls.replace('_', ' '))}</extra>",
                marker={"size": size, "color": colour, "opacity": 0.6}))
    chosen = np.flatnonzero(points.objid.isin(list(highlight)).to_numpy())
    if len(chosen):
        fig.add_trace(go.Scattergl(x=xs[chosen], y=ys[chosen], mode="markers",
                                   name="neighbourhood", customdata=rows[chosen].tolist(), hoverinfo="skip",
                                   marker={"size": 11, "color": "rgba(0,0,0,0)",
                                           "line": {"color": SELECTION_COLOUR, "width": 2}}))
    fig.update_layout(template="plotly_white", margin={"l": 0, "r": 0, "t": 0, "b": 0}, dragmode="lasso",
                      xaxis=_HIDDEN_AXIS, yaxis=_HIDDEN_AXIS, hovermode="closest", uirevision="galaxy-map",
                      legend={"itemsizing": "constant", "y": 0.98, "yanchor": "top"})
    return fig
