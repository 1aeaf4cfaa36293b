"""Unit tests of the page figure builders (pages/figures.py) and the component id registry (pages/ids.py).

The builders take plain DataFrames, so these tests need no lake, no Dash server and no browser; they check
what a reader of the figure relies on: which traces, how many points, which colour per category, which
axis ranges, what the hover and click handlers find in ``customdata``, and that empty data is drawn as an
empty figure instead of an error.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from pages import figures, ids
from pages.figures import PALETTE

PAGES = Path(__file__).resolve().parent.parent / "pages"

MAP_COLUMNS = ["date", "x", "y", "z", "title", "year", "has_image", "category", "confidence", "cluster",
               "cluster_label"]
SKY_COLUMNS = ["date", "title", "category", "name", "canonical_id", "ra_deg", "dec_deg"]


def _dates(n: int, start: str = "2014-01-01") -> list[str]:
    return [d.strftime("%Y-%m-%d") for d in pd.date_range(start, periods=n, freq="D")]


@pytest.fixture
def points() -> pd.DataFrame:
    """Ten map points, categories interleaved: 5 Galaxy, 3 Nebula, 2 Planet; two without a cluster."""
    cats = ["Nebula", "Galaxy", "Planet", "Galaxy", "Nebula", "Galaxy", "Galaxy", "Planet", "Nebula", "Galaxy"]
    return pd.DataFrame({
        "date": _dates(10),
        "x": np.arange(10, dtype=float),
        "y": np.arange(10, dtype=float) * 2,
        "z": np.arange(10, dtype=float) * 3,
        "title": [f"Title {i}" for i in range(10)],
        "year": [2014] * 5 + [2015] * 5,
        "has_image": [True, False] * 5,
        "category": cats,
        "confidence": np.linspace(0.1, 1.0, 10),
        "cluster": [0, 1, 2, np.nan, 25, 0, 1, np.nan, 3, 4],
        "cluster_label": ["c0", "c1", "c2", None, "c25", "c0", "c1", None, "c3", "c4"],
    })


def _big_points(n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "date": [(dt.date(1900, 1, 1) + dt.timedelta(days=i)).isoformat() for i in range(n)], "x": rng.normal(size=n), "y": rng.normal(size=n), "z": rng.normal(size=n),
        "title": "t", "year": 2000, "has_image": False, "category": rng.choice(["A", "B", "C"], size=n, p=[.5, .3, .2]),
        "confidence": 0.5, "cluster": 1.0, "cluster_label": "k",
    })


# -- map -------------------------------------------------------------------------------------------

def test_map_by_category_draws_one_trace_per_category_most_frequent_first(points):
    fig = figures.map_scatter(points, color="category")
    assert [t.type for t in fig.data] == ["scattergl"] * 3
    assert [t.name for t in fig.data] == ["Galaxy (5)", "Nebula (3)", "Planet (2)"]
    assert [t.marker.color for t in fig.data] == PALETTE[:3]
    assert all(t.showlegend for t in fig.data)
    galaxy = points[points.category == "Galaxy"]
    assert list(fig.data[0].x) == galaxy.x.tolist() and list(fig.data[0].y) == galaxy.y.tolist()
    assert sum(len(t.x) for t in fig.data) == len(points)


def test_map_points_carry_their_entry_as_a_compact_day_number(points):
    """Each point's customdata is its entry's day number (a 4-byte binary array in the payload); the
    hover card, the click and the selection turn it back into the date."""
    import plotly.io as pio

    fig = figures.map_scatter(points, color="category")
    seen = []
    for trace in fig.data:
        assert trace.hoverinfo == "none"  # the page draws its own card, asked from the server on hover
        assert all(isinstance(day, int) for day in trace.customdata)
        for day in trace.customdata:
            date = figures.date_of(int(day))
            src = points.set_index("date").loc[date]
            assert trace.name.startswith(src.category)
            seen.append(date)
    assert sorted(seen) == sorted(points.date)
    assert figures.date_of(0) == "1970-01-01" and figures.date_of(["2014-01-07", "x"]) == "2014-01-07"
    assert '"x":{"dtype":"f4","bdata"' in pio.to_json(fig).replace(" ", "")  # coordinates as binary arrays


def test_map_by_cluster_uses_palette_per_cluster_and_grey_without_cluster(points):
    fig = figures.map_scatter(points, color="cluster")
    assert all(t.showlegend is False for t in fig.data)
    # one trace per colour (a colour string per point would cost ≈ 10 bytes of JSON each)
    assert all(isinstance(t.marker.color, str) for t in fig.data)
    assert len({t.marker.color for t in fig.data}) == len(fig.data)
    colour_of = {figures.date_of(int(day)): t.marker.color for t in fig.data for day in t.customdata}
    expected = [PALETTE[0], PALETTE[1], PALETTE[2], figures.NO_CLUSTER_COLOUR, PALETTE[25 % len(PALETTE)],
                PALETTE[0], PALETTE[1], figures.NO_CLUSTER_COLOUR, PALETTE[3], PALETTE[4]]
    assert [colour_of[d] for d in points.date] == expected


@pytest.mark.parametrize(("color", "title"), [("year", "Year"), ("confidence", "Confidence")])
def test_map_by_number_uses_a_colour_scale_with_a_titled_bar(points, color, title):
    fig = figures.map_scatter(points, color=color)
    (trace,) = fig.data
    assert list(trace.marker.color) == points[color].tolist()
    assert trace.marker.showscale is True
    assert trace.marker.colorbar.title.text == title
    assert trace.marker.colorscale[0][1] == "#440154"  # Viridis starts dark purple


def test_map_in_3d_uses_scatter3d_orbit_and_hides_the_scene_axes(points):
    centres = pd.DataFrame({"cluster": [0], "cluster_label": ["c0"], "x": [1.0], "y": [1.0], "n": [9]})
    fig = figures.map_scatter(points, color="category", three_d=True, cluster_centres=centres)
    assert {t.type for t in fig.data} == {"scatter3d"}
    assert list(fig.data[0].z) == points[points.category == "Galaxy"].z.tolist()
    assert fig.data[0].marker.size == 3
    assert fig.layout.dragmode == "orbit"
    assert fig.layout.scene.xaxis.showticklabels is False and fig.layout.scene.zaxis.showgrid is False
    assert not fig.layout.annotations  # cluster labels are 2-D only


def test_map_in_2d_lassos_hides_axes_and_keeps_the_zoom_across_redraws(points):
    fig = figures.map_scatter(points, uirevision="text/umap")
    assert fig.layout.dragmode == "lasso"
    assert fig.layout.uirevision == "text/umap"
    assert fig.layout.xaxis.showticklabels is False and fig.layout.yaxis.zeroline is False
    assert fig.layout.hovermode == "closest"


def test_map_labels_the_thirty_largest_clusters_with_short_names(points):
    # 35 centres far enough apart for every label (one column of seven per x, rows 10 % of the height apart)
    centres = pd.DataFrame({"cluster": range(35), "cluster_label": [f"Galaxy: cluster {i}, " + "spiral, " * 8
                                                                     for i in range(35)],
                            "x": np.arange(35) // 7 * 100.0, "y": np.arange(35) % 7 * 10.0, "n": np.arange(35)})
    fig = figures.map_scatter(points, cluster_centres=centres, extent=(0, 400, 0, 60))
    texts = [a.text for a in fig.layout.annotations]
    assert len(texts) == figures.MAX_CLUSTER_LABELS == 30
    assert texts[0].startswith("Galaxy: cluster 34, ")  # largest first
    assert not any(t.startswith(("Galaxy: cluster 0,", "Galaxy: cluster 4,")) for t in texts)  # five smallest left out
    assert all(len(t) <= figures.MAX_LABEL_CHARS and t.endswith("spiral…") for t in texts)  # cut after a whole term
    assert (fig.layout.annotations[0].x, fig.layout.annotations[0].y) == (400.0, 60.0)


def test_a_cluster_label_that_would_cover_a_larger_cluster_s_is_left_out():
    centres = pd.DataFrame({"cluster": [0, 1, 2, 3], "cluster_label": ["Nebula: orion", "Nebula: horsehead",
                                                                       "Galaxy: m31", "Planet: mars"],
                            "x": [50.0, 51.0, 50.0, 90.0], "y": [50.0, 50.5, 60.0, 50.5], "n": [90, 80, 70, 60]})
    placed = figures.cluster_labels(centres, extent=(0, 100, 0, 100))
    assert [t for _, _, t in placed] == ["Nebula: orion", "Galaxy: m31", "Planet: mars"]  # horsehead sat on orion
    assert figures.short_label("Galaxy: galaxy, m81, m82, spiral, bode") == "Galaxy: galaxy, m81, m82, spiral, bode"
    assert figures.short_label("Supernova: supernova, remnant, cassiopeia, crab", limit=40) == "Supernova: supernova, remnant…"


def test_map_draws_small_markers_for_a_thinned_60k_view_and_every_point_it_is_given():
    big = _big_points(60_000)
    fig = figures.map_scatter(big, uirevision="text/umap")  # its speed: bench/dashboard.py
    assert sum(len(t.x) for t in fig.data) == 60_000  # the builder never thins: the lake query does
    assert {t.marker.size for t in fig.data} == {4}
    assert [t.name for t in fig.data][0].startswith("A (")
    # a zoomed refinement is the same figure over fewer points, with the same uirevision (zoom kept)
    zoomed = figures.map_scatter(big[(big.x.abs() < 0.1)], uirevision="text/umap")
    assert zoomed.layout.uirevision == fig.layout.uirevision
    assert {t.marker.size for t in zoomed.data} == {6}


def test_map_of_no_points_is_an_empty_figure_not_an_error():
    empty = pd.DataFrame(columns=MAP_COLUMNS)
    for color in ("category", "cluster"):  # one trace per category / colour: none
        assert len(figures.map_scatter(empty, color=color).data) == 0
    for color in ("year", "confidence"):
        (trace,) = figures.map_scatter(empty, color=color).data
        assert len(trace.x) == 0


def test_map_rejects_an_unknown_colouring(points):
    with pytest.raises(ValueError, match="colouring"):
        figures.map_scatter(points, color="brightness")


def _decode(uri: str) -> np.ndarray:
    import base64
    import io

    from PIL import Image

    assert uri.startswith(("data:image/png;base64,", "data:image/webp;base64,"))
    return np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGBA")).astype(int)


def _pixel(fig, image: np.ndarray, x: float, y: float) -> np.ndarray:
    """The preview's pixel where Plotly puts (x, y) in the plot area."""
    (x0, x1), (y0, y1) = fig.layout.xaxis.range, fig.layout.yaxis.range
    h, w = image.shape[:2]
    return image[int(round((y1 - y) / (y1 - y0) * h)), int(round((x - x0) / (x1 - x0) * w))]


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)])


def test_map_extent_pads_the_points_span_and_has_none_without_points(points):
    x0, x1, y0, y1 = figures.map_extent(points)
    assert (x0, x1) == pytest.approx((-0.27, 9.27)) and (y0, y1) == pytest.approx((-0.54, 18.54))
    assert figures.map_extent(points.iloc[:0]) is None


def test_map_preview_puts_each_point_where_plotly_draws_it_in_its_trace_colour(points):
    fig = figures.map_scatter(points, extent=figures.map_extent(points))
    assert fig.layout.margin.r == figures.MAP_RIGHT_MARGIN["category"] and fig.layout.margin.autoexpand is False
    image = _decode(figures.map_preview(fig, size=(200, 100)))
    assert image.shape == (100, 200, 4)
    colours = {t.name.split(" (")[0]: t.marker.color for t in fig.data}
    for row in points.itertuples():
        pixel = _pixel(fig, image, row.x, row.y)
        assert pixel[3] == 255 and np.abs(pixel[:3] - _rgb(colours[row.category])).max() <= 24, row
    assert image[5, 190, 3] == 0  # no point there: transparent, the page shows through
    assert (image[..., 3] > 0).mean() < 0.05  # discs of the marker's size, not blobs


@pytest.mark.parametrize("color", ["year", "confidence"])
def test_map_preview_colours_numbers_on_the_figure_colour_scale(points, color):
    fig = figures.map_scatter(points, color=color, extent=figures.map_extent(points))
    image = _decode(figures.map_preview(fig, size=(200, 100)))
    low, high = points.iloc[0], points.iloc[-1]  # the smallest and largest value of both columns
    assert np.abs(_pixel(fig, image, low.x, low.y)[:3] - _rgb("#440154")).max() <= 24  # Viridis ends
    assert np.abs(_pixel(fig, image, high.x, high.y)[:3] - _rgb("#fde725")).max() <= 24


@pytest.mark.parametrize("categories", [12, 1])
def test_mixed_colours_are_the_pixels_of_datashaders_own_shading(categories):
    """The large map's raster is shaded in bands of rows to keep its temporaries small: every pixel must
    be the one datashader's shade gives the whole aggregate (mixed colours, eq_hist alpha), including
    empty pixels, a band's edge and an empty view."""
    import datashader.transfer_functions as tf
    import xarray as xr

    rng = np.random.default_rng(categories)
    h, w = 150, 90  # bands of 64 rows: the last one is short
    counts = rng.poisson(rng.gamma(0.5, 2.0, (h, w, 1)), (h, w, categories)).astype(np.uint32)
    counts[rng.random((h, w)) < 0.4] = 0
    assert (counts.sum(axis=2) > 0).sum() > 1000
    names = [f"c{i}" for i in range(categories)]
    colours = [PALETTE[i % len(PALETTE)] for i in range(categories)]
    for data in (counts, np.zeros_like(counts)):
        agg = xr.DataArray(data, dims=("y", "x", "cat"), coords={"y": np.arange(h), "x": np.arange(w), "cat": names})
        ours = figures.mixed_colours(agg, colours)
        theirs = tf.shade(agg, color_key=dict(zip(names, colours)), how="eq_hist").data.view(np.uint8).reshape(h, w, 4)
        assert np.array_equal(ours[..., 3], theirs[..., 3])
        seen = theirs[..., 3] > 0
        assert np.array_equal(ours[seen], theirs[seen]) and (ours[~seen, 3] == 0).all()
        assert seen.any() == data.any()


def test_map_preview_lays_a_density_raster_under_the_points():
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGBA", (10, 10), (200, 0, 0, 255)).save(buffer, format="PNG")
    raster = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    fig = figures.map_scatter(pd.DataFrame({**{c: [] for c in MAP_COLUMNS}}).astype({"x": float, "y": float}),
                              extent=(0.0, 10.0, 0.0, 10.0))
    fig.add_scattergl(x=[5.0], y=[5.0], marker={"color": "#00ff00", "size": 6})
    fig.add_layout_image(source=raster, xref="x", yref="y", x=0, y=10, sizex=5, sizey=10, sizing="stretch")
    image = _decode(figures.map_preview(fig, size=(100, 100)))
    assert np.abs(image[50, 20, :3] - [200, 0, 0]).max() <= 24  # the raster's left half
    assert image[50, 80, 3] == 0  # beyond the raster
    assert np.abs(_pixel(fig, image, 5.0, 5.0)[:3] - [0, 255, 0]).max() <= 24  # the point on top


def test_map_preview_only_pictures_a_2d_map_with_fixed_axes(points):
    assert figures.map_preview(figures.map_scatter(points)) is None  # autorange: positions unknown
    assert figures.map_preview(figures.map_scatter(points, three_d=True, extent=(0, 1, 0, 1))) is None
    assert figures.map_preview(figures.map_scatter(points.iloc[:0], extent=(0, 1, 0, 1))) is None


# -- sky -------------------------------------------------------------------------------------------

def test_mollweide_centre_poles_edges_and_ra_increasing_to_the_left():
    x, y = figures.mollweide([0, 90, 270, 0, 0, 180.0001], [0, 0, 0, 90, -90, 0])
    assert (x[0], y[0]) == pytest.approx((0, 0))
    assert x[1] < 0 < x[2]  # RA 90° is drawn left of the centre, as on the sky
    assert x[1] == pytest.approx(-x[2])
    assert (x[3], y[3]) == pytest.approx((0, np.sqrt(2)))
    assert (x[4], y[4]) == pytest.approx((0, -np.sqrt(2)))
    assert abs(x[5]) == pytest.approx(2 * np.sqrt(2), rel=1e-4)


def test_mollweide_solves_the_auxiliary_angle_equation_at_every_latitude():
    dec = np.array([-89.0, -60.0, -30.0, -5.0, 10.0, 45.0, 75.0, 89.5])
    ra = np.full_like(dec, 300.0)  # 60° east of RA 0 on the sky: drawn right of the centre
    x, y = figures.mollweide(ra, dec)
    theta = np.arcsin(y / np.sqrt(2))
    phi = np.radians(dec)
    assert 2 * theta + np.sin(2 * theta) == pytest.approx(np.pi * np.sin(phi), abs=1e-9)
    assert x == pytest.approx(2 * np.sqrt(2) / np.pi * np.radians(60.0) * np.cos(theta))


def test_mollweide_keeps_every_point_inside_the_ellipse_and_is_equal_area():
    rng = np.random.default_rng(1)
    ra, dec = rng.uniform(0, 360, 2000), np.degrees(np.arcsin(rng.uniform(-1, 1, 2000)))  # uniform on the sphere
    x, y = figures.mollweide(ra, dec)
    assert np.all(x**2 / 8 + y**2 / 2 <= 1 + 1e-9)
    # equal area: uniformly spread sky points fall into the northern and the |y| < half bands evenly
    assert abs((y > 0).mean() - 0.5) < 0.05
    band = np.abs(y) < np.sqrt(2) / 2  # this band covers 2·(θ + sinθcosθ)/π of the ellipse, θ = π/6
    theta = np.pi / 6
    assert abs(band.mean() - 2 * (2 * theta + np.sin(2 * theta)) / (2 * np.pi)) < 0.04


@pytest.fixture
def sky_points() -> pd.DataFrame:
    return pd.DataFrame({
        "date": _dates(6, "2014-03-01"),
        "title": [f"Sky {i}" for i in range(6)],
        "category": ["Nebula", "Galaxy", "Nebula", "Nebula", "Galaxy", "Planet"],
        "name": ["M 42", "M 31", "M 8", "M 20", "M 33", "Mars"],
        "canonical_id": ["M 42", "M 31", "M 8", "M 20", "M 33", "Mars"],
        "ra_deg": [83.8, 10.7, 270.9, 270.6, 23.5, np.nan],
        "dec_deg": [-5.4, 41.3, -24.4, -23.0, 30.7, np.nan],
    })


def test_a_category_keeps_the_lake_colour_whatever_the_view_leaves(points, sky_points):
    """The pages pass the lake's colours: a filtered view (here, without Galaxy, so Nebula is the most
    frequent) keeps each category's colour, on the map, its large-map raster and the sky; the legend
    still lists the view's categories most frequent first. Without them, a view ranks its own (before:
    Nebula turned blue once the galaxies were filtered out)."""
    fixed = figures.category_colours(["Galaxy", "Nebula", "Planet", "Mars"])
    view = points[points.category != "Galaxy"]
    fig = figures.map_scatter(view, colours=fixed)
    assert [(t.name.split(" (")[0], t.marker.color) for t in fig.data] == [("Nebula", fixed["Nebula"]),
                                                                            ("Planet", fixed["Planet"])]
    assert [t.marker.color for t in figures.map_scatter(view).data] == PALETTE[:2]  # the view's own order
    unknown = figures.map_scatter(view.assign(category="Comet"), colours=fixed)
    assert unknown.data[0].marker.color == figures.NO_CLUSTER_COLOUR
    sky = {t.name.split(" (")[0]: t.marker.color for t in _sky_parts(figures.sky_map(sky_points, colours=fixed))[1]}
    assert sky == {"Nebula": fixed["Nebula"], "Galaxy": fixed["Galaxy"]}
    per_year = pd.DataFrame({"year": [2014, 2014], "category": ["Planet", "Nebula"], "n": [3, 1]})
    bars = figures.category_years_bar(per_year, order=["Planet", "Nebula"], colours=fixed)
    assert {t.name: t.marker.color for t in bars.data} == {"Planet": fixed["Planet"], "Nebula": fixed["Nebula"]}


def _sky_parts(fig):
    grid = [t for t in fig.data if t.mode == "lines"]
    markers = [t for t in fig.data if t.mode == "markers"]
    return grid, markers


def test_sky_map_has_a_grid_then_one_trace_per_category_of_placed_entries(sky_points):
    fig = figures.sky_map(sky_points)
    grid, markers = _sky_parts(fig)
    assert len(grid) == 1  # meridians (both sides of RA 180°) and parallels: one polyline
    assert sum(np.isnan(np.asarray(grid[0].x, float))) == 13 + 5
    assert all(t.showlegend is False and t.hoverinfo == "skip" for t in grid)
    assert fig.data[:len(grid)] == tuple(grid)
    assert [t.name for t in markers] == ["Nebula (3)", "Galaxy (2)"]  # Mars has no position: not drawn
    assert [t.marker.color for t in markers] == PALETTE[:2]
    assert {t.type for t in fig.data} == {"scattergl"}
    assert [a.text for a in fig.layout.annotations] == ["0h", "6h", "12h", "18h"]
    x, y = figures.mollweide([83.8], [-5.4])
    assert markers[0].x[0] == pytest.approx(x[0]) and markers[0].y[0] == pytest.approx(y[0])


def test_sky_map_hover_and_click_data_start_with_the_date(sky_points):
    fig = figures.sky_map(sky_points)
    _, markers = _sky_parts(fig)
    nebulae = markers[0]
    assert [row[0] for row in nebulae.customdata] == ["2014-03-01", "2014-03-03", "2014-03-04"]
    assert [row[2] for row in nebulae.customdata] == ["M 42", "M 8", "M 20"]
    assert "%{customdata[0]}" in nebulae.hovertemplate and "%{customdata[1]}" in nebulae.hovertemplate


def test_sky_map_hover_shows_archive_markup_as_text(sky_points):
    hostile = sky_points.assign(title=sky_points.title.where(sky_points.index != 0, "<b>Orion</b> & <a href='x'>co</a>"))
    nebulae = _sky_parts(figures.sky_map(hostile))[1][0]
    assert nebulae.customdata[0][1] == "&lt;b&gt;Orion&lt;/b&gt; &amp; &lt;a href=&#x27;x&#x27;&gt;co&lt;/a&gt;"
    assert nebulae.customdata[0][0] == "2014-03-01"  # the date clicks read is untouched


def test_sky_map_rings_the_map_selection(sky_points):
    fig = figures.sky_map(sky_points, selected=["2014-03-02", "2014-03-06", "1999-01-01"])
    _, markers = _sky_parts(fig)
    ring = markers[-1]
    assert ring.name == "Map selection (1)"  # 2014-03-06 (Mars) has no position, 1999 is not in the data
    assert ring.marker.line.color == figures.SELECTION_COLOUR and ring.marker.color == "rgba(0,0,0,0)"
    assert [row[0] for row in ring.customdata] == ["2014-03-02"]
    assert "selected" in ring.hovertemplate
    assert not any(t.name and t.name.startswith("Map selection") for t in _sky_parts(figures.sky_map(sky_points))[1])


def test_sky_map_frames_the_whole_sky_on_a_dark_background(sky_points):
    layout = figures.sky_map(sky_points).layout
    assert tuple(layout.xaxis.range) == (-2.9, 2.9) and tuple(layout.yaxis.range) == (-1.45, 1.45)
    assert layout.yaxis.scaleanchor == "x"  # round sky, not stretched
    assert layout.xaxis.visible is False and layout.yaxis.visible is False
    assert layout.plot_bgcolor == layout.paper_bgcolor == figures.SKY_BACKGROUND


def test_sky_map_of_no_points_is_just_the_grid():
    fig = figures.sky_map(pd.DataFrame(columns=SKY_COLUMNS), selected=["2014-01-01"])
    grid, markers = _sky_parts(fig)
    assert len(grid) == 1 and markers == []


# -- categories ------------------------------------------------------------------------------------

def test_category_counts_bar_puts_the_largest_category_on_top():
    counts = pd.DataFrame({"category": ["Galaxy", "Nebula", "Planet"], "n": [50, 30, 5]})
    fig = figures.category_counts_bar(counts)
    (bar,) = fig.data
    assert bar.type == "bar" and bar.orientation == "h"
    assert list(bar.y) == ["Planet", "Nebula", "Galaxy"]  # drawn bottom-up: the first row ends on top
    assert list(bar.x) == [5, 30, 50]
    assert fig.layout.title.text == "Entries per category"
    fixed = {"Galaxy": "#111111", "Nebula": "#222222"}  # the lake's colours; Planet has none: grey, as on the map
    (bar,) = figures.category_counts_bar(counts, colours=fixed).data
    assert list(bar.marker.color) == [figures.NO_CLUSTER_COLOUR, "#222222", "#111111"]
    assert len(set(figures.category_counts_bar(counts).data[0].marker.color)) == 3  # the palette: one colour each


def test_category_years_bar_stacks_categories_in_the_given_order():
    per_year = pd.DataFrame({"year": [2000, 2000, 2001, 2001], "category": ["A", "B", "A", "B"], "n": [1, 2, 3, 4]})
    fig = figures.category_years_bar(per_year, order=["B", "A"])
    assert [t.name for t in fig.data] == ["B", "A"]
    assert fig.layout.barmode == "relative"
    b = fig.data[0]
    assert list(b.x) == [2000, 2001] and list(b.y) == [2, 4]
    assert fig.data[0].marker.color != fig.data[1].marker.color


def test_category_years_bar_gives_every_category_of_the_taxonomy_its_own_map_colour():
    names = [f"Category {i}" for i in range(22)]
    per_year = pd.DataFrame({"year": [2014] * 22, "category": names, "n": list(range(22, 0, -1))})
    fig = figures.category_years_bar(per_year, order=names)
    colours = {t.name: t.marker.color for t in fig.data}
    assert len(set(colours.values())) == 22
    assert colours == figures.category_colours(names)  # as the map colours them, most frequent first


def test_confidence_box_orders_categories_by_median_confidence():
    conf = pd.DataFrame({"category": ["Low"] * 3 + ["High"] * 3 + ["Mid"] * 3,
                         "confidence": [0.1, 0.2, 0.9, 0.8, 0.85, 0.9, 0.5, 0.5, 0.6]})
    fig = figures.confidence_box(conf)
    assert {t.type for t in fig.data} == {"box"}
    assert tuple(fig.layout.xaxis.categoryarray) == ("High", "Mid", "Low")
    assert fig.layout.xaxis.tickangle == 45


def test_agreement_bar_is_scaled_zero_to_one():
    agree = pd.DataFrame({"category": ["Galaxy", "Nebula"], "n": [10, 5], "agreement": [0.8, 0.2]})
    fig = figures.agreement_bar(agree)
    assert tuple(fig.layout.xaxis.range) == (0, 1)
    assert list(fig.data[0].x) == [0.8, 0.2] and fig.data[0].orientation == "h"
    assert fig.layout.yaxis.autorange == "reversed"  # the largest category on top, as in the counts chart
    many = figures.agreement_bar(pd.DataFrame({"category": [f"Category {i}" for i in range(22)], "n": 10,
                                               "agreement": 0.5}))
    assert many.layout.yaxis.dtick == 1 and many.layout.height == 560  # all 22 named, not every other one
    assert fig.data[0].hovertemplate.startswith("%{y}: %{x:.0%} of %{customdata[0]:,} pictures")  # what it rests on
    assert list(fig.data[0].customdata[:, 0]) == [10, 5]


def test_category_charts_accept_empty_frames():
    assert all(len(t.x) == 0 for t in figures.category_counts_bar(pd.DataFrame(columns=["category", "n"])).data)
    assert len(figures.category_years_bar(pd.DataFrame(columns=["year", "category", "n"])).data) == 0
    box = figures.confidence_box(pd.DataFrame(columns=["category", "confidence"]))
    assert all(len(t.y if t.y is not None else []) == 0 for t in box.data)
    assert all(len(t.x) == 0 for t in figures.agreement_bar(pd.DataFrame(columns=["category", "agreement"])).data)


# -- metrics ---------------------------------------------------------------------------------------

def test_stage_durations_bar_lists_stages_in_run_order():
    stages = pd.DataFrame({"stage": ["ingest", "embed", "project"], "duration_seconds": [1.5, 30.0, 4.2]})
    fig = figures.stage_durations_bar(stages)
    (bar,) = fig.data
    assert list(bar.y) == ["ingest", "embed", "project"] and list(bar.x) == [1.5, 30.0, 4.2]
    assert bar.orientation == "h"
    assert fig.layout.yaxis.autorange == "reversed"  # the first stage on top, as the table lists them


def _samples(gpu: bool) -> pd.DataFrame:
    return pd.DataFrame({
        "duration_seconds": [0.0, 1.0, 2.0, 0.0, 1.0],
        "process": ["build"] * 3 + ["embed"] * 2,
        "cpu_percent": [10.0, 20.0, 30.0, 40.0, 50.0],
        "rss_bytes": [2**20, 2**21, 2**22, 3 * 2**20, 2**20],
        "gpu_name": ["RTX"] * 5 if gpu else [None] * 5,
        "gpu_utilization_percent": [5.0] * 5 if gpu else [None] * 5,
    })


def _metrics_of(fig) -> set[str]:
    """The metrics a samples figure shows, read from its y-axis titles (which carry the units)."""
    titles = {fig.layout[k].title.text for k in fig.layout if k.startswith("yaxis")}
    assert not any(a.text.startswith("metric=") for a in fig.layout.annotations)  # no raw column names
    return {metric for metric, title in figures.SAMPLE_AXES.items() if title in titles}


def test_resource_samples_without_gpu_show_cpu_and_memory_in_mb():
    fig = figures.resource_samples_lines(_samples(gpu=False))
    assert _metrics_of(fig) == {"cpu_percent", "rss_mb"}
    assert "no GPU" in fig.layout.title.text
    assert {t.name for t in fig.data} == {"build", "embed"}
    assert len({t.line.color for t in fig.data}) == 2  # one colour per process
    rss = [list(t.y) for t in fig.data if t.name == "build" and max(t.y) < 10]  # the MB facet
    assert rss == [[1.0, 2.0, 4.0]]
    assert fig.layout.yaxis.matches is None and fig.layout.yaxis2.matches is None  # own scale per facet


def test_resource_samples_with_gpu_add_a_utilisation_row():
    fig = figures.resource_samples_lines(_samples(gpu=True))
    assert _metrics_of(fig) == {"cpu_percent", "rss_mb", "gpu_utilization_percent"}
    assert "no GPU" not in fig.layout.title.text
    assert len(fig.data) == 2 * 3


def test_resource_samples_of_an_empty_run_do_not_fail():
    fig = figures.resource_samples_lines(_samples(gpu=False).iloc[:0])
    assert sum(len(t.x) for t in fig.data) == 0


# -- component ids ---------------------------------------------------------------------------------

def test_component_ids_are_unique_and_keep_the_strings_the_browser_tests_use():
    every = ids.all_ids()
    assert len(set(every.values())) == len(every)
    assert every["App.NAV_SEARCH"] == "nav-search" and every["App.MAP_SELECTION"] == "map-selection"
    assert every["Map.GRAPH"] == "map-graph" and every["Sky.ALADIN_STATUS"] == "sky-aladin-status"


def test_pages_write_no_component_id_as_a_string_literal():
    literal = re.compile(r"""\b(?:id|html_for)=["']|\b(?:Input|Output|State)\(\s*["']|triggered_id\s*==\s*["']""")
    offenders = [f"{p.name}:{n}: {line.strip()}" for p in sorted(PAGES.glob("*.py")) if p.name != "ids.py"
                 for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if literal.search(line)]
    assert offenders == []


# -- galaxies map ----------------------------------------------------------------------------------

def test_galaxy_map_points_carry_their_row_as_customdata_and_hover_their_cluster():
    """One legend entry per class, one trace per (class, cluster) whose hover text is its cluster; each
    point's customdata is its row in the points table (a small integer, no per-point strings), so the
    click and the lasso map back to objids on the server."""
    import plotly.io as pio

    points = pd.DataFrame({
        "objid": [f"864747469031230{i:04d}" for i in range(7)],
        "x": np.arange(7, dtype=np.float32), "y": -np.arange(7, dtype=np.float32),
        "gz_class": ["smooth", "featured", "smooth", "featured", "smooth", "uncertain", "featured"],
        "cluster_label": ["smooth · smooth", "featured · bar", "smooth · <odd>", "featured · bar",
                          "smooth · smooth", None, "featured · spiral arms"]})
    fig = figures.galaxy_map(points, highlight=[points.objid[3]])
    classes = [t for t in fig.data if t.name != "neighbourhood"]
    assert [t.name for t in classes if t.showlegend] == ["smooth (3)", "featured (3)", "uncertain (1)"]
    assert sorted(int(r) for t in classes for r in t.customdata) == list(range(7))
    for t in classes:
        rows = [int(r) for r in t.customdata]
        assert {points.gz_class[r] for r in rows} == {t.legendgroup}
        assert list(t.x) == points.x[rows].tolist()
        (label,) = {points.cluster_label[r] for r in rows}
        shown = "no cluster" if pd.isna(label) else label.replace("<", "&lt;").replace(">", "&gt;")  # escaped
        assert t.hovertemplate.startswith(shown + "<extra>")
    ring = fig.data[-1]
    assert ring.name == "neighbourhood" and [int(r) for r in ring.customdata] == [3]
    payload = pio.to_json(fig).replace(" ", "")
    assert '"customdata":[1,3]' in payload and points.objid[0] not in payload
    sent = json.loads(pio.to_json(fig))["data"]  # parsed: orjson writes "·" as is, json as \u00b7
    assert sum("featured · bar" in t["hovertemplate"] for t in sent if "hovertemplate" in t) == 1
    assert all(isinstance(r, int) for t in sent for r in t["customdata"])  # no per-point strings
    assert '"x":{"dtype":"f4","bdata"' in payload  # coordinates as binary arrays


def _lab(hex_colour: str) -> np.ndarray:
    """CIELAB of an sRGB colour (D65)."""
    c = np.array([int(hex_colour[i:i + 2], 16) / 255 for i in (1, 3, 5)])
    c = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    xyz = np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]) @ c
    f = np.cbrt(np.maximum(xyz / np.array([0.95047, 1.0, 1.08883]), 0.008856))
    return np.array([116 * f[1] - 16, 500 * (f[0] - f[1]), 200 * (f[1] - f[2])])


def test_the_taxonomys_categories_get_colours_a_reader_can_tell_apart():
    """22 categories on one map: no two of their colours closer than ΔE 25 (the palette ended in near-twins
    of its first colours, ΔE ≈ 3 for Galaxy and Rocket Launch), and every one mid-light, so it shows on
    the white map and on the dark sky."""
    labs = [_lab(c) for c in PALETTE[:22]]
    closest = min(np.linalg.norm(a - b) for i, a in enumerate(labs) for b in labs[i + 1:])
    assert closest >= 25, closest
    assert all(40 <= lab[0] <= 75 for lab in labs)
