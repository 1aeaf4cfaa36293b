"""Sky: every entry with a resolved primary target, on an all-sky map and in Aladin Lite; click to open.

The all-sky map (Mollweide, RA increasing to the left as on the sky) works offline. The Aladin Lite
view (vendored in assets/vendor, LGPL) draws the same markers over survey images that stream from CDS
servers, so its background needs the internet; the markers and clicks work without it.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, dcc, html

from lake.manifest import LakeMissingError
from pages import figures
from pages._common import (all_years, atlas, by_lake_version, category_options, entry_path, filters_from,
                           fixed_category_colours, locate, missing_lake_notice, page_heading, parse_list,
                           url_parameters, vocabulary, years_row)
from pages.ids import App, Sky

dash.register_page(__name__, path="/sky", name="Sky", title="Cosmic Atlas · Sky")

#: The page's main heading (its fallback views have it too).
HEADING = "The archive on the sky"


#: The cone's number boxes take any number: a value outside a box's min, max or step reaches Dash as None
#: (83.82 against the default step of 1, a radius of 3 against step 0.1 from 0.01), so the search used
#: to fall back to its defaults in silence. cone_search checks the ranges and says what is wrong.
NUMBER = {"type": "number", "step": "any"}
DEFAULT_RADIUS = 1.0


@url_parameters
def layout(cats: str = "", years: str = "", **_ignored) -> html.Div:
    try:
        a, names, lo, hi = vocabulary()
        has_sky = a.has_sky()
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    if not has_sky:
        return dbc.Container([page_heading(HEADING),
                              dbc.Alert("This lake has no sky positions yet: rebuild it with "
                                        "`python -m pipeline build` to add the objects table.", color="warning")])
    return dbc.Container([
        page_heading(HEADING),
        dbc.Row([
            dbc.Col(dcc.Dropdown(id=Sky.CATS, options=category_options(names), value=[c for c in parse_list(cats) if c in names],
                                 multi=True, placeholder="All categories"), md=6),
            dbc.Col(html.Div(id=Sky.COUNT, className="pt-2 fw-semibold"), md=6),
        ], className="mt-2"),
        years_row(Sky.YEARS, lo.year, hi.year, years),
        dcc.Graph(id=Sky.GRAPH, config={"displaylogo": False}, style={"height": "60vh"}),
        html.H5("Cone search", className="mt-3"),
        dbc.Row([
            dbc.Col([dbc.Label("Object name", html_for=Sky.CONE_NAME, className="visually-hidden"),
                     dbc.Input(id=Sky.CONE_NAME, placeholder="object name, e.g. Orion Nebula or M 31", type="text")], md=4),
            dbc.Col([dbc.Label("Right ascension in degrees", html_for=Sky.CONE_RA, className="visually-hidden"),
                     dbc.Input(id=Sky.CONE_RA, placeholder="RA (deg)", **NUMBER)], md=2),
            dbc.Col([dbc.Label("Declination in degrees", html_for=Sky.CONE_DEC, className="visually-hidden"),
                     dbc.Input(id=Sky.CONE_DEC, placeholder="Dec (deg)", **NUMBER)], md=2),
            dbc.Col([dbc.Label("Cone radius in degrees", html_for=Sky.CONE_RADIUS, className="visually-hidden"),
                     dbc.InputGroup([dbc.InputGroupText("radius"),
                                     dbc.Input(id=Sky.CONE_RADIUS, value=DEFAULT_RADIUS, **NUMBER),
                                     dbc.InputGroupText("°")])], md=2),
            dbc.Col(dbc.Button("Find entries", id=Sky.CONE_GO, color="primary"), md=2),
        ], className="g-2"),
        html.Div(id=Sky.CONE_RESULTS, className="my-2"),
        html.H5("Aladin Lite", className="mt-3"),
        html.Div("Survey images come from CDS servers and need the internet; the markers (one per entry, its "
                 "primary target) work without it. Click a marker to open its entry.", className="small text-muted mb-2"),
        html.Div(id=Sky.ALADIN, style={"height": "520px", "width": "100%"}),
        html.Div(id=Sky.ALADIN_STATUS, className="small text-muted mt-1"),
        dcc.Store(id=Sky.SOURCES),
        dcc.Location(id=Sky.GO, refresh="callback-nav"),
    ], fluid=True)


@callback(
    Output(Sky.GRAPH, "figure"),
    Output(Sky.COUNT, "children"),
    Output(Sky.SOURCES, "data"),
    Input(Sky.CATS, "value"),
    Input(Sky.YEARS, "value"),
    Input(App.MAP_SELECTION, "data"),
)
def update_sky(cats, years, stored):
    """``stored``: the Map's selection as its page records it (pages/home.py fill_table): its first listed
    dates and how many it holds."""
    dates, total = ((stored.get("dates") or [], int(stored.get("total") or 0)) if isinstance(stored, dict)
                    else (stored or [], len(stored or [])))  # a tab's record from before the record had fields
    return sky_view(cats or [], years or [], dates, total)


def prefill() -> None:
    """Build the default sky view now (server warm-up)."""
    sky_view([], all_years(), [], 0)


@by_lake_version()
def sky_view(cats, years, selection, total):
    """Figure, count line and Aladin sources of one sky view (cached per lake version). ``selection``: the
    Map selection's dates it rings (its first by date), of ``total``."""
    df = atlas().sky_points(filters_from(list(cats), list(years) or None))
    fig = figures.sky_map(df, selected=list(selection), colours=fixed_category_colours())
    chosen = df[df.date.isin(list(selection))]
    sources = df[["date", "title", "name", "ra_deg", "dec_deg"]].to_dict("records")
    note = f"{len(df):,} entries with a placed primary target"
    if len(chosen):
        note += f" · {len(chosen):,} from the Map selection" + (
            f" (of its first {len(selection):,} entries by date; it holds {total:,})" if total > len(selection) else "")
    return fig, note, sources


#: Entries a cone search lists (the nearest; the heading gives the whole count).
CONE_LISTED = 200


@callback(
    Output(Sky.CONE_RESULTS, "children"),
    Input(Sky.CONE_GO, "n_clicks"),
    State(Sky.CONE_NAME, "value"),
    State(Sky.CONE_RA, "value"),
    State(Sky.CONE_DEC, "value"),
    State(Sky.CONE_RADIUS, "value"),
    State(Sky.CATS, "value"),
    State(Sky.YEARS, "value"),
    prevent_initial_call=True,
)
def cone_search(_n, name, ra, dec, radius, cats, years):
    radius = DEFAULT_RADIUS if radius is None else float(radius)  # empty box; 0 is a radius to refuse
    if not 0 < radius <= 180:
        return dbc.Alert("The radius must be between 0 and 180 degrees.", color="warning")
    if name and name.strip():
        try:
            pos = locate(name.strip())
        except ValueError as exc:  # too long to resolve
            return dbc.Alert(f"{exc}.", color="warning")
        if pos is None:
            return dbc.Alert(f"“{name.strip()[:80]}” is neither in the offline catalogues nor placed in this lake; "
                             "give RA and Dec instead.", color="warning")
        ra, dec = pos
    if ra is None or dec is None or not (0 <= float(ra) <= 360 and -90 <= float(dec) <= 90):
        return dbc.Alert("Give an object name, or RA (0–360°) and Dec (−90–90°).", color="warning")
    df = atlas().cone(float(ra), float(dec), radius, filters=filters_from(cats, years), limit=CONE_LISTED)
    total = int(df.total.iloc[0]) if len(df) else 0
    shown = f"the nearest {len(df):,} of {total:,}" if total > len(df) else f"{total:,}"
    head = html.Div(f"{shown} entries within {radius:g}° of RA {float(ra):.3f}°, Dec {float(dec):+.3f}° "
                    "(nearest first)", className="small text-muted mb-1")
    rows = [html.Li([html.A(r.title, href=f"/entry/{r.date}"), f" — {r.date} · {r.name} · {r.separation_deg:.3f}°"])
            for r in df.itertuples()]
    return html.Div([head, html.Ol(rows, className="small", id=Sky.CONE_LIST)])


@callback(Output(Sky.GO, "pathname"), Input(Sky.GRAPH, "clickData"), prevent_initial_call=True)
def open_entry(click):
    return entry_path(click)


clientside_callback(
    ClientsideFunction(namespace="atlas", function_name="skyUrl"),  # assets/atlas_clientside.js
    Output(Sky.GO, "hash"),
    Input(Sky.CATS, "value"),
    Input(Sky.YEARS, "value"),
)


# Aladin Lite is an ES module, imported on this page only by assets/atlas_sky.js: the view is created
# once in the Sky.ALADIN element (its id is passed in) and its markers replaced whenever the filtered
# sources change. A marker click opens the entry.
clientside_callback(
    ClientsideFunction(namespace="atlas", function_name="skyAladin"),  # assets/atlas_clientside.js
    Output(Sky.ALADIN_STATUS, "children"),
    Input(Sky.SOURCES, "data"),
    State(Sky.ALADIN, "id"),
)
