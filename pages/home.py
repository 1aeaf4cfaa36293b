"""Map (home): every entry on a 2-D/3-D map of one embedding, filtered, coloured, selectable."""

from __future__ import annotations

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from lake.exports import table_bytes
from lake.manifest import LakeMissingError
from lake import density
from lake.density import MAX_SELECTION_ROWS, DensityView, PolygonError
from lake.queries import LICENCE_NOTE, MapView
from lake.schema import EMBEDDING_KINDS
from pages import figures
from pages._common import (all_years, atlas, by_lake_version, category_options, entry_path, filters_from,
                           fixed_category_colours, missing_lake_notice, page_heading, parse_list, picture_element,
                           url_parameters, vocabulary, year_value, years_row)
from pages.ids import App, Map

dash.register_page(__name__, path="/", name="Map", title="Cosmic Atlas · Map")

METHODS = {"umap": "UMAP", "tsne": "t-SNE", "umap3d": "3-D UMAP"}
COLOURS = figures.MAP_COLOURS
#: Rows of a large map's selection listed in the table (the browser need not hold 50,000 rows).
MAX_LISTED_ROWS = 1_000
GRID_COLUMNS = [
    {"field": "date", "cellRenderer": "markdown", "width": 120},  # its links open in this tab (the default)
    {"field": "title", "flex": 2},
    {"field": "category", "width": 150},
    # the classifier's probability as a percentage (as the entry pages show it), not 0.41700000000000004
    {"field": "confidence", "width": 120, "type": "rightAligned",
     "valueFormatter": {"function": "params.value == null ? '' : d3.format('.0%')(params.value)"}},
    {"field": "credit", "flex": 1},
    {"field": "copyright", "flex": 1},
]


def _choice(value, allowed, default):
    return value if value in allowed else default


@url_parameters
def layout(emb: str = "text", method: str = "umap", color: str = "category", cats: str = "",
           years: str = "", sel: str = "", **_ignored) -> html.Div:
    try:
        a, names, lo, hi = vocabulary()
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    selected = [d for d in parse_list(sel) if len(d) == 10]
    emb, method, color = _choice(emb, EMBEDDING_KINDS, "text"), _choice(method, METHODS, "umap"), _choice(color, COLOURS, "category")
    maps = a.available_maps()
    method = settled_method(emb, method, maps)
    chosen_cats = [c for c in parse_list(cats) if c in names]
    year_range = year_value(years, lo.year, hi.year)  # what the slider will hold
    # the first view is drawn with the page (no callback round trip before the map appears), over a
    # picture of it that shows before Plotly has drawn
    (figure, count, note, chips, thinned), preview = first_view(emb, method, color, chosen_cats, year_range)
    controls = dbc.Row([
        dbc.Col([dbc.Label("Embedding", html_for=Map.EMB),
                 dcc.Dropdown(id=Map.EMB, value=emb, clearable=False,
                              options=[{"label": k.title(), "value": k, "disabled": not any(e == k for e, _ in maps)}
                                       for k in EMBEDDING_KINDS])], md=2),
        dbc.Col([dbc.Label("Method"),
                 dbc.RadioItems(id=Map.METHOD, options=method_options(emb, maps), value=method, inline=True)], md=3),
        dbc.Col([dbc.Label("Colour by"),
                 dbc.RadioItems(id=Map.COLOR, options=[{"label": v, "value": k} for k, v in COLOURS.items()],
                                value=color, inline=True)], md=3),
        dbc.Col([dbc.Label("Categories", html_for=Map.CATS),
                 dcc.Dropdown(id=Map.CATS, options=category_options(names), value=chosen_cats,
                              multi=True, placeholder="All categories")], md=4),
    ], className="g-2 mb-2")
    return dbc.Container([
        page_heading("Map of the archive"),
        controls,
        years_row(Map.YEARS, lo.year, hi.year, years),
        dbc.Row([
            dbc.Col(html.Div(count, id=Map.COUNT, className="fw-semibold"), width="auto"),
            dbc.Col(html.Div(note, id=Map.NOTE, className="text-muted small"), className="pt-1"),
        ], className="mb-1"),
        html.Div([
            html.Img(src=preview, alt="", className="atlas-map-preview",
                     style={"width": f"calc(100% - {figures.MAP_RIGHT_MARGIN[color]}px)"}) if preview else None,
            dcc.Loading(dcc.Graph(id=Map.GRAPH, figure=figure, config={"displaylogo": False, "scrollZoom": True},
                                  style={"height": "68vh"}, clear_on_unhover=True), delay_show=400),
            # in the frame, whose corner is the graph's: the point's bbox is relative to the graph (outside it,
            # the card sat a header's height above the point, under the graph's stacking layer)
            dcc.Tooltip(id=Map.TOOLTIP, direction="right"),
        ], className="atlas-map-frame"),
        dcc.Store(id=Map.THINNED, data=thinned),
        dcc.Store(id=Map.FIT, data=a.map_fit()),  # the fit the drawn map comes from (a lasso's coordinates)
        dcc.Store(id=Map.UPGRADE),
        html.Div(chips, id=Map.CATEGORY_COUNTS, className="small my-2"),
        # None: the URL named no selection, so the one this browser tab made last is taken back (restoreSelection)
        dcc.Store(id=Map.PAGE_SELECTION, data=selected if sel else None),
        dcc.Location(id=Map.GO, refresh="callback-nav"),
        html.Hr(),
        dbc.Row([
            dbc.Col(html.H5(id=Map.SELECTION_TITLE, children="Selection"), width="auto"),
            dbc.Col([
                # enabled by fill_table once there is something to download (they did nothing before)
                dbc.Button("Download CSV", id=Map.DL_CSV, size="sm", color="secondary", className="me-2", disabled=True),
                dbc.Button("Download Parquet", id=Map.DL_PARQUET, size="sm", color="secondary", className="me-2",
                           disabled=True),
                dbc.Button("Clear", id=Map.CLEAR, size="sm", color="link"),
            ]),
        ], className="align-items-center"),
        html.Div("Use the lasso or box tool on the map to select entries.", className="text-muted small mb-2"),
        html.Div(id=Map.TABLE_HOLDER),  # the table, once there is a selection (fill_table)
        dcc.Download(id=Map.DOWNLOAD),
        dbc.Row([
            dbc.Col(html.Span("Take a cluster away:", className="small fw-semibold"), width="auto"),
            dbc.Col(dcc.Dropdown(id=Map.CLUSTER_PICK, placeholder="a cluster of this map", clearable=True), md=5),
            dbc.Col(html.Div(id=Map.CLUSTER_LINKS), width="auto"),
        ], className="align-items-center mt-3 g-2"),
        html.Div(LICENCE_NOTE, className="text-muted small my-3"),
    ], fluid=True)


def method_options(emb: str, maps: list[tuple[str, str]]) -> list[dict]:
    """The method choices of one embedding: a method the lake has no map of for it is shown disabled
    (the build makes the 3-D UMAP of the multimodal vectors only)."""
    return [{"label": v, "value": k, "disabled": (emb, k) not in maps} for k, v in METHODS.items()]


def settled_method(emb: str, method: str, maps: list[tuple[str, str]]) -> str:
    """``method`` when the lake has that map of ``emb``, else the first method it has (else ``method``)."""
    if (emb, method) in maps:
        return method
    return next((m for m in METHODS if (emb, m) in maps), method)


@callback(
    Output(Map.METHOD, "options"),
    Output(Map.METHOD, "value"),
    Input(Map.EMB, "value"),
    State(Map.METHOD, "value"),
    prevent_initial_call=True,
)
def methods_of_embedding(emb, method):
    """Another embedding chosen: its methods, and the method moved to one it has (3-D UMAP of the text
    vectors drew a flat UMAP under a "3-D UMAP" button, and its zoom found no points)."""
    maps = atlas().available_maps()
    settled = settled_method(emb, method, maps)
    return method_options(emb, maps), no_update if settled == method else settled


def _bounds(relayout: dict | None) -> tuple[float, float, float, float] | None:
    keys = ("xaxis.range[0]", "xaxis.range[1]", "yaxis.range[0]", "yaxis.range[1]")
    if relayout and all(k in relayout for k in keys):
        return tuple(float(relayout[k]) for k in keys)  # type: ignore[return-value]
    return None


def _render(view: MapView, emb: str, method: str, color: str):
    # cluster labels belong to the cluster colouring (30 annotations also cost ≈ 80 ms of drawing)
    # the overview's axes are fixed to its points (the preview picture must know where each one lands);
    # a zoomed view keeps the user's axes (uirevision)
    fig = figures.map_scatter(view.points, color=color, three_d=method == "umap3d",
                              cluster_centres=view.cluster_centres if color == "cluster" else None,
                              uirevision=f"{emb}/{method}", colours=fixed_category_colours(),
                              extent=None if view.bounds else figures.map_extent(view.points))
    shown = len(view.points)
    count = f"{view.total:,} entries" if not view.thinned else f"{view.total:,} entries ({shown:,} drawn)"
    if view.thinned:
        note = ("Zoomed view: every point inside it that fits is drawn." if view.bounds else
                "Thinned to a stable sample for speed; zoom in to see every point in the view.")
    else:
        note = f"{METHODS.get(method, method)} of the {emb} embedding · click a point to open it"
    return fig, count, note


def _render_density(view: DensityView, emb: str, method: str, color: str, *, svg: bool = False):
    """A large map's view: the raster of every point in it under a sample of real points."""
    fig = figures.map_scatter(view.points, color=color, uirevision=f"{emb}/{method}", density=view.raster,
                              extent=view.extent, svg=svg, colours=fixed_category_colours())
    shown = len(view.points)
    if view.raster is None:
        return fig, f"{view.total:,} entries in view", "Every point of this view is drawn · click a point to open it"
    return (fig, f"{view.total:,} entries in view ({shown:,} drawn over their density)",
            "Density of every point in the view, with a stable sample on top for hover and click; zoom in to "
            "see more points. Lasso or box selections count every point on the server.")


def prefill(*, every_view: bool = True) -> None:
    """Build the front page's view now (server warm-up), and with ``every_view`` its other colourings and
    each embedding's map too (≈ 0.2 s each on the archive), so first visitors' maps come from the cache."""
    years = all_years()
    first_view("text", "umap", "category", [], years)
    if atlas().is_large_map(embedding="text", method="umap"):
        map_outputs("text", "umap", "category", [], years)  # the WebGL figure that replaces the first one
    if every_view:
        for color in COLOURS:
            first_view("text", "umap", color, [], years)
        for emb in EMBEDDING_KINDS:
            first_view(emb, "umap", "category", [], years)


@by_lake_version()
def first_view(emb: str, method: str, color: str, cats: list[str], years: list[int] | None) -> tuple:
    """(:func:`map_outputs`, the map's preview picture or None): what the page layout draws. The picture
    (≈ 25 ms to draw for the archive) is cached with the view."""
    outputs = map_outputs(emb, method, color, cats, years, True)
    return outputs, figures.map_preview(outputs[0])


@callback(
    Output(Map.GRAPH, "figure"),
    Output(Map.COUNT, "children"),
    Output(Map.NOTE, "children"),
    Output(Map.CATEGORY_COUNTS, "children"),
    Output(Map.THINNED, "data"),
    Output(Map.FIT, "data"),
    Input(Map.EMB, "value"),
    Input(Map.METHOD, "value"),
    Input(Map.COLOR, "value"),
    Input(Map.CATS, "value"),
    Input(Map.YEARS, "value"),
    prevent_initial_call=True,  # the layout draws the first view
)
def update_map(emb, method, color, cats, years):
    # one request reads one lake version (services): the fit is the drawn map's
    return *map_outputs(emb, method, color, cats, years), atlas().map_fit()


def map_outputs(emb: str, method: str, color: str, cats: list[str] | None, years: list[int] | None,
                first: bool = False) -> tuple:
    """Figure, count, note, category chips and thinned flag of one map view: what the page layout draws
    first and what the callback redraws (``cats`` and ``years`` as the page's controls hold them).

    ``first``: the page's first figure. For a large map it draws a smaller sample in SVG, so the page is
    interactive without waiting for Plotly's WebGL set-up (≈ 0.5 s in a software-rendered browser). Once
    it is drawn and the reader's input has rested, :func:`upgrade_map` replaces it with the full sample in WebGL,
    whose redraws on every zoom are faster than SVG's (BENCHMARKS.md, *Maps of 1M and 10M points*).
    A point map's first figure is its only one, so the method and ``first`` are settled here, before the
    cache key: one view is built and held once, whichever way it is asked for."""
    a = atlas()
    method = settled_method(emb, method, a.available_maps())
    large = a.is_large_map(embedding=emb, method=method)
    return _view_outputs(emb, method, color, list(cats or ()), list(years) if years else None, large,
                         first and large)


@by_lake_version()
def _view_outputs(emb: str, method: str, color: str, cats: list[str], years: list[int] | None,
                  large: bool, svg: bool) -> tuple:
    """:func:`map_outputs` of a settled view (cached per lake version: a figure of the archive takes
    ≈ 0.2 s to query and build, and people come back to the same few views)."""
    a = atlas()
    filters = filters_from(cats, years)
    counts = (a.map_category_counts(embedding=emb, method=method, filters=filters) if large
              else a.counts_by_category(filters, embedding=emb, method=method))
    # each chip edged in its category's map colour, a legend for any colouring
    edge = figures.colours_of(counts.category, fixed_category_colours())
    chips = [dbc.Badge(f"{r.category}: {r.n:,}", color="light", text_color="dark", className="me-1 mb-1 border",
                       style={"boxShadow": f"inset 0.35rem 0 0 {edge[r.category]}", "paddingLeft": "0.75rem"})
             for r in counts.itertuples()]
    if large:  # always refined on zoom, so the stored flag is True
        sample = density.FIRST_VIEW_POINTS if svg else density.OVERLAY_POINTS
        view = a.density_map(embedding=emb, method=method, filters=filters, color=color, sample=sample)
        return (*_render_density(view, emb, method, color, svg=svg), chips, True)
    view = a.map_view(embedding=emb, method=method, filters=filters)
    return (*_render(view, emb, method, color), chips, view.thinned)


#: The map view's settings, as State of the callbacks that redraw it (upgrade, zoom).
VIEW_STATE = (State(Map.EMB, "value"), State(Map.METHOD, "value"), State(Map.COLOR, "value"),
              State(Map.CATS, "value"), State(Map.YEARS, "value"))

clientside_callback(
    ClientsideFunction(namespace="atlas", function_name="mapUpgrade"),  # assets/atlas_clientside.js
    Output(Map.UPGRADE, "data"),
    Input(Map.GRAPH, "figure"),
    State(Map.GRAPH, "id"),
)


@callback(
    Output(Map.GRAPH, "figure", allow_duplicate=True),
    Output(Map.COUNT, "children", allow_duplicate=True),
    Output(Map.FIT, "data", allow_duplicate=True),
    Input(Map.UPGRADE, "data"),
    State(Map.GRAPH, "relayoutData"),
    *VIEW_STATE,
    prevent_initial_call=True,
)
def upgrade_map(_drawn, relayout, emb, method, color, cats, years):
    """A large map's first figure (the SVG sample) drawn and the reader's input at rest (the browser says
    so: assets/atlas_clientside.js mapUpgrade): the same view in WebGL with the full sample (cached with
    the view). Not once the reader has zoomed: the zoom brings its own."""
    if _bounds(relayout):
        raise PreventUpdate
    figure, count, *_ = map_outputs(emb, method, color, cats, years)
    return figure, count, atlas().map_fit()


@callback(
    Output(Map.GRAPH, "figure", allow_duplicate=True),
    Output(Map.COUNT, "children", allow_duplicate=True),
    Output(Map.NOTE, "children", allow_duplicate=True),
    Output(Map.FIT, "data", allow_duplicate=True),
    Input(Map.GRAPH, "relayoutData"),
    State(Map.THINNED, "data"),
    *VIEW_STATE,
    prevent_initial_call=True,
)
def refine_on_zoom(relayout, thinned, emb, method, color, cats, years):
    """Only thinned maps need the server on zoom: fetch every point of the new view (or the overview)."""
    zoom = _bounds(relayout)
    reset = bool(relayout) and relayout.get("xaxis.autorange") is True
    if not thinned or not (zoom or reset):
        raise PreventUpdate
    a, filters = atlas(), filters_from(cats, years)
    if a.is_large_map(embedding=emb, method=method):
        view = a.density_map(embedding=emb, method=method, filters=filters, color=color, bounds=zoom)
        return *_render_density(view, emb, method, color), a.map_fit()
    return *_render(a.map_view(embedding=emb, method=method, filters=filters, bounds=zoom), emb, method, color), a.map_fit()


@callback(
    Output(Map.TOOLTIP, "show"),
    Output(Map.TOOLTIP, "bbox"),
    Output(Map.TOOLTIP, "children"),
    Input(Map.GRAPH, "hoverData"),
)
def hover_card(hover):
    if not hover or not hover.get("points"):
        return False, no_update, no_update
    pt = hover["points"][0]
    if pt.get("customdata") is None:
        return False, no_update, no_update
    card = atlas().hover_card(figures.date_of(pt["customdata"]))
    if card is None:
        return False, no_update, no_update
    children = [html.Div(card["title"], className="fw-semibold", style={"maxWidth": "220px"}),
                html.Div(f"{card['date']} · {card['category'] or '?'}", className="small text-muted")]
    picture = card["picture"]
    if picture and picture["src"]:
        children.insert(0, picture_element(picture, alt="", class_name="atlas-hover-img"))
    return True, pt.get("bbox", {"x0": 0, "x1": 0, "y0": 0, "y1": 0}), children


@callback(Output(Map.CLUSTER_PICK, "options"), Output(Map.CLUSTER_PICK, "value"), Input(Map.EMB, "value"))
def cluster_options(emb):
    """The current embedding's clusters (label and size) for the cluster download."""
    try:
        clusters = atlas().clusters(emb or "text")
    except LakeMissingError:
        return [], None
    return [{"label": f"{r.cluster}: {r.label} ({r.size:,})", "value": int(r.cluster)}
            for r in clusters.itertuples()], None


@callback(Output(Map.CLUSTER_LINKS, "children"), Input(Map.CLUSTER_PICK, "value"), State(Map.EMB, "value"))
def cluster_links(cluster, emb):
    if cluster is None:
        return ""
    base = f"/api/clusters/{emb or 'text'}/{int(cluster)}"
    return [html.A("CSV", href=f"{base}?format=csv", className="btn btn-sm btn-outline-secondary me-2"),
            html.A("Parquet", href=f"{base}?format=parquet", className="btn btn-sm btn-outline-secondary")]


@callback(Output(Map.GO, "pathname"), Input(Map.GRAPH, "clickData"), prevent_initial_call=True)
def open_entry(click):
    return entry_path(click)


@callback(
    Output(Map.PAGE_SELECTION, "data"),
    Input(Map.GRAPH, "selectedData"),
    Input(Map.CLEAR, "n_clicks"),
    State(Map.EMB, "value"),
    State(Map.METHOD, "value"),
    State(Map.FIT, "data"),
    prevent_initial_call=True,
)
def select_points(selected, _clear, emb, method, fit):
    """The selected dates; on a thinned or large map the lasso/box shape instead, whose points the server
    counts (the browser holds only a sample of them), with the fit of the map it was drawn on."""
    if ctx.triggered_id == Map.CLEAR or not selected:
        return []
    shape = selection_shape(selected)
    if shape is not None and atlas().selects_on_server(embedding=emb, method=method):  # in this map's coordinates
        return {"polygon": shape, "embedding": emb, "method": method, "fit": fit}
    return sorted({figures.date_of(p["customdata"]) for p in selected.get("points", [])
                   if p.get("customdata") is not None})


def selection_shape(selected: dict) -> list[list[float]] | None:
    """The lasso's vertices or the box's corners of a Plotly selection event (None for a click selection)."""
    if not (selected.get("range") or selected.get("lassoPoints")):
        return None
    if "lassoPoints" in selected:
        return [[float(x), float(y)] for x, y in zip(selected["lassoPoints"]["x"], selected["lassoPoints"]["y"])]
    (x0, x1), (y0, y1) = selected["range"]["x"], selected["range"]["y"]
    return [[float(x0), float(y0)], [float(x1), float(y1)]]


#: Why an outline drawn on another fit of the maps selects nothing (shown in the selection's title).
REFITTED = ("this outline was drawn on maps of another build than this server's (the maps were fitted anew "
            "since, or the server is not on that build yet): reload the page and draw it again")


def _selected_rows(selection, emb, method, cats, years, *, limit: int = MAX_SELECTION_ROWS):
    """(rows, how many entries the selection holds, why a shape selects nothing or None): dates from a map
    the browser holds whole, a shape from a thinned or large one (whose rows stop at ``limit``, in date
    order). A shape is in the coordinates of the fit it was drawn on: after a new fit (a rebuild while
    the page was open, a shape the tab kept from before) it would select whatever moved under it."""
    a, filters = atlas(), filters_from(cats, years)
    if isinstance(selection, dict) and "polygon" in selection:
        emb, method = selection.get("embedding", emb), selection.get("method", method)
        if not a.selects_on_server(embedding=emb, method=method):
            return a.selection([], filters), 0, None
        if selection.get("fit") != a.map_fit():
            return a.selection([], filters), 0, REFITTED
        try:
            return (*a.polygon_selection(embedding=emb, method=method, polygon=selection["polygon"], filters=filters,
                                         limit=limit), None)
        except PolygonError as exc:
            return a.selection([], filters), 0, str(exc)
    df = a.selection(selection or [], filters)
    return df, len(df), None


def selection_table(rows: list[dict]) -> dag.AgGrid | None:
    """The selection's table, or nothing for an empty selection. Mounted on demand rather than sitting
    empty in the page: an AG Grid costs ≈ 0.3 s of the browser's main thread as the map page first
    renders (bench/dashboard.py), for a table nobody has filled yet."""
    if not rows:
        return None
    return dag.AgGrid(id=Map.TABLE, columnDefs=GRID_COLUMNS, rowData=rows, className="ag-theme-alpine",
                      dashGridOptions={"pagination": True, "paginationPageSize": 20}, style={"height": "420px"})


@callback(
    Output(Map.TABLE_HOLDER, "children"),
    Output(Map.SELECTION_TITLE, "children"),
    Output(App.MAP_SELECTION, "data"),
    Output(Map.DL_CSV, "disabled"),
    Output(Map.DL_PARQUET, "disabled"),
    Input(Map.PAGE_SELECTION, "data"),
    Input(Map.CATS, "value"),
    Input(Map.YEARS, "value"),
    State(Map.EMB, "value"),
    State(Map.METHOD, "value"),
)
def fill_table(selection, cats, years, emb, method):
    """The selection's table and title, and the tab's session record of it: the selection as the page holds
    it (dates, or a shape counted on the server) for the Map to take back, and its first listed dates for
    the Sky page to ring."""
    if selection is None:  # not given by the URL: restoreSelection fills it in a moment
        raise PreventUpdate
    df, total, refused = _selected_rows(selection, emb, method, cats, years, limit=MAX_LISTED_ROWS)
    # the browser gets the grid's columns of the first rows only (a lasso around the whole archive
    # sent 11k explanations, ≈ 12 MB); the downloads read the selection again, whole
    listed = df.head(MAX_LISTED_ROWS)
    rows = listed.assign(date=[f"[{d}](/entry/{d})" for d in listed.date])[[c["field"] for c in GRID_COLUMNS]]
    title = f"Selection: {total:,} entries" + (f" ({refused})" if refused else "")
    if total > len(listed):
        by_shape = isinstance(selection, dict) and "polygon" in selection  # counted on the server
        kept = f"the first {min(total, MAX_SELECTION_ROWS):,}" if by_shape else "all of them"
        title += f" (the first {len(listed):,} by date are listed here; downloads hold {kept})"
    empty = total == 0
    return (selection_table(rows.to_dict("records")), title,
            {"selection": selection, "dates": listed.date.tolist(), "total": total}, empty, empty)


@callback(
    Output(Map.DOWNLOAD, "data"),
    Input(Map.DL_CSV, "n_clicks"),
    Input(Map.DL_PARQUET, "n_clicks"),
    State(Map.PAGE_SELECTION, "data"),
    State(Map.CATS, "value"),
    State(Map.YEARS, "value"),
    State(Map.EMB, "value"),
    State(Map.METHOD, "value"),
    prevent_initial_call=True,
)
def download(_csv, _parquet, selection, cats, years, emb, method):
    if not selection:  # nothing lassoed yet: no file of column names only
        raise PreventUpdate
    df, _total, refused = _selected_rows(selection, emb, method, cats, years)
    if refused:  # an outline that selects nothing: the selection's title says why; no file of column names
        raise PreventUpdate
    fmt = "csv" if ctx.triggered_id == Map.DL_CSV else "parquet"
    body, _ = table_bytes(df, fmt=fmt, licence=LICENCE_NOTE)
    return dcc.send_bytes(body, f"cosmic_atlas_selection.{fmt}")


# A Map page whose URL names no selection (the navbar's link, a long or lassoed selection the URL could not
# hold) takes back the one this tab made last, from the session's store: leaving the Map for the Sky page
# and coming back keeps it. In the browser: no round trip.
clientside_callback(
    ClientsideFunction(namespace="atlas", function_name="restoreSelection"),  # assets/atlas_clientside.js
    Output(Map.PAGE_SELECTION, "data", allow_duplicate=True),
    Input(Map.PAGE_SELECTION, "data"),
    State(App.MAP_SELECTION, "data"),
    prevent_initial_call="initial_duplicate",
)


# Keep the page state in the URL (bookmarkable) without re-rendering the page: replaceState does not
# notify Dash's router. A selection goes into the URL only up to MAX_URL_SELECTION (200) dates.
clientside_callback(
    ClientsideFunction(namespace="atlas", function_name="mapUrl"),  # assets/atlas_clientside.js
    Output(Map.GO, "hash"),
    Input(Map.EMB, "value"),
    Input(Map.METHOD, "value"),
    Input(Map.COLOR, "value"),
    Input(Map.CATS, "value"),
    Input(Map.YEARS, "value"),
    Input(Map.PAGE_SELECTION, "data"),
)
