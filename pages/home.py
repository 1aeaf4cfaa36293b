"""Map (home): every entry on a 2-D/3-D map of one embedding, filtered, coloured, selectable."""

from __future__ import annotations

import io

import dash
import dash_ag_grid as dag
import dash_bootstrap_components as dbc
import pandas as pd
import plotly.graph_objects as go
import pyarrow as pa
import pyarrow.parquet as pq
from dash import Input, Output, State, callback, clientside_callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from lake.manifest import LakeMissingError
from lake.queries import LICENCE_NOTE, MapView
from lake.schema import EMBEDDING_KINDS
from pages._common import (
    PALETTE, atlas, filters_from, missing_lake_notice, parse_list, thumb_url, vocabulary, years_row,
)

dash.register_page(__name__, path="/", name="Map", title="Cosmic Atlas · Map")

METHODS = {"umap": "UMAP", "tsne": "t-SNE", "umap3d": "3-D UMAP"}
COLOURS = {"category": "Category", "cluster": "Cluster", "year": "Year", "confidence": "Confidence"}
MAX_URL_SELECTION = 200
GRID_COLUMNS = [
    {"field": "date", "cellRenderer": "markdown", "linkTarget": "_self", "width": 120},
    {"field": "title", "flex": 2},
    {"field": "category", "width": 150},
    {"field": "confidence", "width": 110},
    {"field": "credit", "flex": 1},
    {"field": "copyright", "flex": 1},
]


def _choice(value, allowed, default):
    return value if value in allowed else default


def layout(emb: str = "text", method: str = "umap", color: str = "category", cats: str = "",
           years: str = "", sel: str = "", **_ignored) -> html.Div:
    try:
        _, names, lo, hi = vocabulary()
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    selected = [d for d in parse_list(sel) if len(d) == 10]
    controls = dbc.Row([
        dbc.Col([dbc.Label("Embedding", html_for="map-emb"),
                 dcc.Dropdown(id="map-emb", options=[{"label": k.title(), "value": k} for k in EMBEDDING_KINDS],
                              value=_choice(emb, EMBEDDING_KINDS, "text"), clearable=False)], md=2),
        dbc.Col([dbc.Label("Method"),
                 dbc.RadioItems(id="map-method", options=[{"label": v, "value": k} for k, v in METHODS.items()],
                                value=_choice(method, METHODS, "umap"), inline=True)], md=3),
        dbc.Col([dbc.Label("Colour by"),
                 dbc.RadioItems(id="map-color", options=[{"label": v, "value": k} for k, v in COLOURS.items()],
                                value=_choice(color, COLOURS, "category"), inline=True)], md=3),
        dbc.Col([dbc.Label("Categories", html_for="map-cats"),
                 dcc.Dropdown(id="map-cats", options=names, value=[c for c in parse_list(cats) if c in names],
                              multi=True, placeholder="All categories")], md=4),
    ], className="g-2 mb-2")
    return dbc.Container([
        controls,
        years_row("map-years", lo.year, hi.year, years),
        dbc.Row([
            dbc.Col(html.Div(id="map-count", className="fw-semibold"), width="auto"),
            dbc.Col(html.Div(id="map-note", className="text-muted small"), className="pt-1"),
        ], className="mb-1"),
        dcc.Loading(dcc.Graph(id="map-graph", config={"displaylogo": False, "scrollZoom": True},
                              style={"height": "68vh"}, clear_on_unhover=True), delay_show=400),
        dcc.Store(id="map-thinned", data=False),
        dcc.Tooltip(id="map-tooltip", direction="right"),
        html.Div(id="map-category-counts", className="small my-2"),
        dcc.Store(id="map-page-selection", data=selected),
        dcc.Location(id="map-go", refresh="callback-nav"),
        html.Hr(),
        dbc.Row([
            dbc.Col(html.H5(id="map-selection-title", children="Selection"), width="auto"),
            dbc.Col([
                dbc.Button("Download CSV", id="map-dl-csv", size="sm", color="secondary", className="me-2"),
                dbc.Button("Download Parquet", id="map-dl-parquet", size="sm", color="secondary", className="me-2"),
                dbc.Button("Clear", id="map-clear", size="sm", color="link"),
            ]),
        ], className="align-items-center"),
        html.Div("Use the lasso or box tool on the map to select entries.", className="text-muted small mb-2"),
        dag.AgGrid(id="map-table", columnDefs=GRID_COLUMNS, rowData=[], className="ag-theme-alpine",
                   dashGridOptions={"pagination": True, "paginationPageSize": 20}, style={"height": "420px"}),
        dcc.Download(id="map-download"),
        html.Div(LICENCE_NOTE, className="text-muted small my-3"),
    ], fluid=True)


def _figure(view: MapView, color: str, method: str, uirev: str) -> go.Figure:
    df = view.points
    three_d = method == "umap3d"
    fig = go.Figure()

    def trace(part: pd.DataFrame, name: str | None, marker: dict) -> go.BaseTraceType:
        custom = part[["date", "title", "category", "has_image"]].to_numpy()
        common = dict(mode="markers", name=name, customdata=custom, hoverinfo="none", marker=marker,
                      showlegend=name is not None)
        if three_d:
            return go.Scatter3d(x=part.x, y=part.y, z=part.z, **common)
        return go.Scattergl(x=part.x, y=part.y, **common)

    size = 3 if three_d else (4 if len(df) > 20000 else 6)
    if color == "category":
        order = df.category.value_counts().index.tolist()
        for i, cat in enumerate(order):
            part = df[df.category == cat]
            fig.add_trace(trace(part, f"{cat} ({len(part):,})", {"size": size, "color": PALETTE[i % len(PALETTE)]}))
    elif color == "cluster":
        ids = df.cluster.fillna(-1).astype(int)
        colours = [PALETTE[c % len(PALETTE)] if c >= 0 else "#cccccc" for c in ids]
        fig.add_trace(trace(df, None, {"size": size, "color": colours}))
    else:
        values = df.year if color == "year" else df.confidence
        fig.add_trace(trace(df, None, {"size": size, "color": values, "colorscale": "Viridis", "showscale": True,
                                       "colorbar": {"title": COLOURS[color], "thickness": 12}}))
    if not three_d and not view.cluster_centres.empty:
        top = view.cluster_centres.sort_values("n", ascending=False).head(30)
        for row in top.itertuples():
            fig.add_annotation(x=row.x, y=row.y, text=str(row.cluster_label)[:40], showarrow=False,
                               font={"size": 10, "color": "#111"}, bgcolor="rgba(255,255,255,0.7)")
    axis = {"showgrid": False, "zeroline": False, "showticklabels": False, "title": ""}
    fig.update_layout(
        template="plotly_white", margin={"l": 0, "r": 0, "t": 0, "b": 0}, uirevision=uirev,
        dragmode="lasso" if not three_d else "orbit", legend={"itemsizing": "constant", "font": {"size": 11}, "y": 0.94, "yanchor": "top"},
        xaxis=axis, yaxis=axis, hovermode="closest",
    )
    if three_d:
        fig.update_layout(scene={"xaxis": axis, "yaxis": axis, "zaxis": axis})
    return fig


def _bounds(relayout: dict | None) -> tuple[float, float, float, float] | None:
    keys = ("xaxis.range[0]", "xaxis.range[1]", "yaxis.range[0]", "yaxis.range[1]")
    if relayout and all(k in relayout for k in keys):
        return tuple(float(relayout[k]) for k in keys)  # type: ignore[return-value]
    return None


def _render(view: MapView, emb: str, method: str, color: str):
    fig = _figure(view, color, method, uirev=f"{emb}/{method}")
    shown = len(view.points)
    count = f"{view.total:,} entries" if not view.thinned else f"{view.total:,} entries ({shown:,} drawn)"
    if view.thinned:
        note = ("Zoomed view: every point inside it that fits is drawn." if view.bounds else
                "Thinned to a stable sample for speed; zoom in to see every point in the view.")
    else:
        note = f"{METHODS.get(method, method)} of the {emb} embedding · click a point to open it"
    return fig, count, note


@callback(
    Output("map-graph", "figure"),
    Output("map-count", "children"),
    Output("map-note", "children"),
    Output("map-category-counts", "children"),
    Output("map-thinned", "data"),
    Input("map-emb", "value"),
    Input("map-method", "value"),
    Input("map-color", "value"),
    Input("map-cats", "value"),
    Input("map-years", "value"),
)
def update_map(emb, method, color, cats, years):
    a = atlas()
    filters = filters_from(cats, years)
    if (emb, method) not in a.available_maps():
        method = "umap" if (emb, "umap") in a.available_maps() else method
    view = a.map_view(emb, method, filters)
    counts = a.counts_by_category(filters)
    chips = [dbc.Badge(f"{r.category}: {r.n:,}", color="light", text_color="dark", className="me-1 mb-1 border")
             for r in counts.itertuples()]
    return (*_render(view, emb, method, color), chips, view.thinned)


@callback(
    Output("map-graph", "figure", allow_duplicate=True),
    Output("map-count", "children", allow_duplicate=True),
    Output("map-note", "children", allow_duplicate=True),
    Input("map-graph", "relayoutData"),
    State("map-thinned", "data"),
    State("map-emb", "value"),
    State("map-method", "value"),
    State("map-color", "value"),
    State("map-cats", "value"),
    State("map-years", "value"),
    prevent_initial_call=True,
)
def refine_on_zoom(relayout, thinned, emb, method, color, cats, years):
    """Only thinned maps need the server on zoom: fetch every point of the new view (or the overview)."""
    zoom = _bounds(relayout)
    reset = bool(relayout) and relayout.get("xaxis.autorange") is True
    if not thinned or not (zoom or reset):
        raise PreventUpdate
    view = atlas().map_view(emb, method, filters_from(cats, years), bounds=zoom)
    return _render(view, emb, method, color)


@callback(
    Output("map-tooltip", "show"),
    Output("map-tooltip", "bbox"),
    Output("map-tooltip", "children"),
    Input("map-graph", "hoverData"),
)
def hover_card(hover):
    if not hover or not hover.get("points"):
        return False, no_update, no_update
    pt = hover["points"][0]
    date, title, category, has_image = pt["customdata"]
    children = [html.Div(title, className="fw-semibold", style={"maxWidth": "220px"}),
                html.Div(f"{date} · {category}", className="small text-muted")]
    if has_image:
        children.insert(0, html.Img(src=thumb_url(date), style={"width": "200px", "display": "block"}))
    return True, pt.get("bbox", {"x0": 0, "x1": 0, "y0": 0, "y1": 0}), children


@callback(Output("map-go", "pathname"), Input("map-graph", "clickData"), prevent_initial_call=True)
def open_entry(click):
    if not click or not click.get("points"):
        return no_update
    return f"/entry/{click['points'][0]['customdata'][0]}"


@callback(
    Output("map-page-selection", "data"),
    Input("map-graph", "selectedData"),
    Input("map-clear", "n_clicks"),
    prevent_initial_call=True,
)
def select_points(selected, _clear):
    if ctx.triggered_id == "map-clear" or not selected:
        return []
    return sorted({p["customdata"][0] for p in selected.get("points", []) if p.get("customdata")})


@callback(
    Output("map-table", "rowData"),
    Output("map-selection-title", "children"),
    Output("map-selection", "data"),
    Input("map-page-selection", "data"),
    Input("map-cats", "value"),
    Input("map-years", "value"),
)
def fill_table(dates, cats, years):
    df = atlas().selection(dates or [], filters_from(cats, years))
    rows = df.assign(date=[f"[{d}](/entry/{d})" for d in df.date]).to_dict("records")
    return rows, f"Selection: {len(df):,} entries", df.date.tolist()


@callback(
    Output("map-download", "data"),
    Input("map-dl-csv", "n_clicks"),
    Input("map-dl-parquet", "n_clicks"),
    State("map-page-selection", "data"),
    State("map-cats", "value"),
    State("map-years", "value"),
    prevent_initial_call=True,
)
def download(_csv, _parquet, dates, cats, years):
    df = atlas().selection(dates or [], filters_from(cats, years))
    df["licence_note"] = LICENCE_NOTE
    if ctx.triggered_id == "map-dl-csv":
        return dcc.send_data_frame(df.to_csv, "cosmic_atlas_selection.csv", index=False)
    table = pa.Table.from_pandas(df, preserve_index=False)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), b"licence": LICENCE_NOTE.encode()})
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return dcc.send_bytes(buf.getvalue(), "cosmic_atlas_selection.parquet")


# Keep the page state in the URL (bookmarkable) without re-rendering the page: replaceState does not
# notify Dash's router.
clientside_callback(
    """
    function(emb, method, color, cats, years, sel) {
        const p = new URLSearchParams();
        p.set('emb', emb); p.set('method', method); p.set('color', color);
        if (cats && cats.length) p.set('cats', cats.join(','));
        if (years && years.length === 2) p.set('years', years.join(','));
        if (sel && sel.length && sel.length <= %d) p.set('sel', sel.join(','));
        window.history.replaceState(null, '', window.location.pathname + '?' + p.toString());
        return window.dash_clientside.no_update;
    }
    """ % MAX_URL_SELECTION,
    Output("map-go", "hash"),
    Input("map-emb", "value"),
    Input("map-method", "value"),
    Input("map-color", "value"),
    Input("map-cats", "value"),
    Input("map-years", "value"),
    Input("map-page-selection", "data"),
)
