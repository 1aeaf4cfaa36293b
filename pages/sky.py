"""Sky: every entry with a resolved primary target, on an all-sky map and in Aladin Lite; click to open.

The all-sky map (Mollweide, RA increasing to the left as on the sky) works offline. The Aladin Lite
view (vendored in assets/vendor, LGPL) draws the same markers over survey images that stream from CDS
servers, so its background needs the internet; the markers and clicks work without it.
"""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
import numpy as np
import plotly.graph_objects as go
from dash import Input, Output, State, callback, clientside_callback, dcc, html, no_update

from lake.manifest import LakeMissingError
from pages._common import (PALETTE, atlas, filters_from, locate, missing_lake_notice, parse_list, vocabulary,
                           years_row)

dash.register_page(__name__, path="/sky", name="Sky", title="Cosmic Atlas · Sky")

ALADIN_JS = "/assets/vendor/aladin-lite-3.8.2/aladin.js"


def layout(cats: str = "", years: str = "", **_ignored) -> html.Div:
    try:
        a, names, lo, hi = vocabulary()
        has_sky = a.has_sky()
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    if not has_sky:
        return dbc.Container(dbc.Alert("This lake has no sky positions yet: rebuild it with "
                                       "`python -m pipeline build` to add the objects table.", color="warning"))
    return dbc.Container([
        dbc.Row([
            dbc.Col(dcc.Dropdown(id="sky-cats", options=names, value=[c for c in parse_list(cats) if c in names],
                                 multi=True, placeholder="All categories"), md=6),
            dbc.Col(html.Div(id="sky-count", className="pt-2 fw-semibold"), md=6),
        ], className="mt-2"),
        years_row("sky-years", lo.year, hi.year, years),
        dcc.Graph(id="sky-graph", config={"displaylogo": False}, style={"height": "60vh"}),
        html.H5("Cone search", className="mt-3"),
        dbc.Row([
            dbc.Col(dbc.Input(id="cone-name", placeholder="object name, e.g. Orion Nebula or M 31", type="text"), md=4),
            dbc.Col(dbc.Input(id="cone-ra", placeholder="RA (deg)", type="number", min=0, max=360), md=2),
            dbc.Col(dbc.Input(id="cone-dec", placeholder="Dec (deg)", type="number", min=-90, max=90), md=2),
            dbc.Col(dbc.Input(id="cone-r", value=1.0, type="number", min=0.01, max=180, step=0.1), md=2),
            dbc.Col(dbc.Button("Find entries", id="cone-go", color="primary"), md=2),
        ], className="g-2"),
        html.Div(id="cone-results", className="my-2"),
        html.H5("Aladin Lite", className="mt-3"),
        html.Div("Survey images come from CDS servers and need the internet; the markers (one per entry, its "
                 "primary target) work without it. Click a marker to open its entry.", className="small text-muted mb-2"),
        html.Div(id="sky-aladin", style={"height": "520px", "width": "100%"}),
        html.Div(id="sky-aladin-status", className="small text-muted mt-1"),
        dcc.Store(id="sky-sources"),
        dcc.Location(id="sky-go", refresh="callback-nav"),
    ], fluid=True)


def mollweide(ra_deg, dec_deg) -> tuple[np.ndarray, np.ndarray]:
    """Equal-area all-sky projection, RA 0 in the middle and increasing to the left (as seen on the sky).

    Drawn with plain WebGL scatter traces so the page needs no map data from a CDN.
    """
    lon = np.radians(((-np.asarray(ra_deg, float) + 180.0) % 360.0) - 180.0)
    lat = np.radians(np.asarray(dec_deg, float))
    theta = lat.copy()
    for _ in range(30):  # Newton's method on 2θ + sin 2θ = π sin φ
        denom = 2 + 2 * np.cos(2 * theta)
        step = np.where(denom > 1e-9, (2 * theta + np.sin(2 * theta) - np.pi * np.sin(lat)) / np.maximum(denom, 1e-9), 0)
        theta -= step
    return 2 * np.sqrt(2) / np.pi * lon * np.cos(theta), np.sqrt(2) * np.sin(theta)


def _grid(fig: go.Figure) -> None:
    style = {"mode": "lines", "line": {"color": "#3a4466", "width": 1}, "hoverinfo": "skip", "showlegend": False}
    dec = np.linspace(-90, 90, 91)
    for ra in (0.001, 30, 60, 90, 120, 150, 179.999, 180.001, 210, 240, 270, 300, 330):
        x, y = mollweide(np.full_like(dec, ra), dec)
        fig.add_trace(go.Scattergl(x=x, y=y, **style))
    ra = np.linspace(180.001, 540 - 0.001, 181) % 360
    for d in (-60, -30, 0, 30, 60):
        x, y = mollweide(ra, np.full_like(ra, d))
        fig.add_trace(go.Scattergl(x=x, y=y, **style))
    for h in (0, 6, 12, 18):
        x, y = mollweide([h * 15 + 0.001], [0])
        fig.add_annotation(x=x[0], y=y[0], text=f"{h}h", showarrow=False, font={"color": "#8893b8", "size": 10})


@callback(
    Output("sky-graph", "figure"),
    Output("sky-count", "children"),
    Output("sky-sources", "data"),
    Input("sky-cats", "value"),
    Input("sky-years", "value"),
    Input("map-selection", "data"),
)
def update_sky(cats, years, selection):
    df = atlas().sky_points(filters_from(cats, years))
    fig = go.Figure()
    _grid(fig)
    order = df.category.value_counts().index.tolist()
    for i, cat in enumerate(order):
        part = df[df.category == cat]
        x, y = mollweide(part.ra_deg, part.dec_deg)
        fig.add_trace(go.Scattergl(
            x=x, y=y, mode="markers", name=f"{cat} ({len(part):,})",
            marker={"size": 5, "color": PALETTE[i % len(PALETTE)]},
            customdata=part[["date", "title", "name"]].to_numpy(),
            hovertemplate="%{customdata[1]}<br>%{customdata[0]} · %{customdata[2]}<extra></extra>"))
    chosen = df[df.date.isin(selection or [])]
    if not chosen.empty:
        x, y = mollweide(chosen.ra_deg, chosen.dec_deg)
        fig.add_trace(go.Scattergl(
            x=x, y=y, mode="markers", name=f"Map selection ({len(chosen):,})",
            marker={"size": 11, "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#ffb000"}},
            customdata=chosen[["date", "title", "name"]].to_numpy(),
            hovertemplate="%{customdata[1]}<br>%{customdata[0]} · %{customdata[2]}<extra>selected</extra>"))
    hidden = {"visible": False, "range": [-2.9, 2.9]}
    fig.update_layout(margin={"l": 0, "r": 0, "t": 0, "b": 0}, legend={"font": {"size": 11}}, template="plotly_dark",
                      paper_bgcolor="#0b1020", plot_bgcolor="#0b1020", xaxis=hidden,
                      yaxis={"visible": False, "range": [-1.45, 1.45], "scaleanchor": "x"}, hovermode="closest")
    sources = df[["date", "title", "name", "ra_deg", "dec_deg"]].to_dict("records")
    note = f"{len(df):,} entries with a position" + (f" · {len(chosen):,} from the Map selection" if len(chosen) else "")
    return fig, note, sources


@callback(
    Output("cone-results", "children"),
    Input("cone-go", "n_clicks"),
    State("cone-name", "value"),
    State("cone-ra", "value"),
    State("cone-dec", "value"),
    State("cone-r", "value"),
    State("sky-cats", "value"),
    State("sky-years", "value"),
    prevent_initial_call=True,
)
def cone_search(_n, name, ra, dec, radius, cats, years):
    radius = float(radius or 1.0)
    if not 0 < radius <= 180:
        return dbc.Alert("The radius must be between 0 and 180 degrees.", color="warning")
    if name and name.strip():
        pos = locate(name.strip())
        if pos is None:
            return dbc.Alert(f"“{name.strip()[:80]}” is neither in the offline catalogues nor placed in this lake; "
                             "give RA and Dec instead.", color="warning")
        ra, dec = pos
    if ra is None or dec is None or not (0 <= float(ra) <= 360 and -90 <= float(dec) <= 90):
        return dbc.Alert("Give an object name, or RA (0–360°) and Dec (−90–90°).", color="warning")
    df = atlas().cone(float(ra), float(dec), radius, filters_from(cats, years), limit=200)
    head = html.Div(f"{len(df):,} entries within {radius:g}° of RA {float(ra):.3f}°, Dec {float(dec):+.3f}° "
                    "(nearest first)", className="small text-muted mb-1")
    rows = [html.Li([html.A(r.title, href=f"/entry/{r.date}"), f" — {r.date} · {r.name} · {r.separation_deg:.3f}°"])
            for r in df.itertuples()]
    return html.Div([head, html.Ol(rows, className="small", id="cone-list")])


@callback(Output("sky-go", "pathname"), Input("sky-graph", "clickData"), prevent_initial_call=True)
def open_entry(click):
    if not click or not click.get("points"):
        return no_update
    return f"/entry/{click['points'][0]['customdata'][0]}"


clientside_callback(
    """
    function(cats, years) {
        const p = new URLSearchParams();
        if (cats && cats.length) p.set('cats', cats.join(','));
        if (years && years.length === 2) p.set('years', years.join(','));
        const qs = p.toString();
        window.history.replaceState(null, '', window.location.pathname + (qs ? '?' + qs : ''));
        return window.dash_clientside.no_update;
    }
    """,
    Output("sky-go", "hash"),
    Input("sky-cats", "value"),
    Input("sky-years", "value"),
)


# Aladin Lite is an ES module: import it on this page only, create the view once, replace the markers
# whenever the filtered sources change. A marker click opens the entry.
clientside_callback(
    """
    async function(sources) {
        if (!sources) { return window.dash_clientside.no_update; }
        try {
            if (!window.atlasAladin) {
                const A = (await import('%s')).default;
                await A.init;
                window.atlasAladinLib = A;
                window.atlasAladin = A.aladin('#sky-aladin', {survey: 'P/DSS2/color', fov: 180, projection: 'AIT',
                                                              showReticle: false, cooFrame: 'ICRS'});
                window.atlasAladin.on('objectClicked', function(obj) {
                    if (obj && obj.data && obj.data.date) { window.location.assign('/entry/' + obj.data.date); }
                });
            }
            const A = window.atlasAladinLib;
            if (window.atlasCatalog) { window.atlasCatalog.removeAll(); }
            else {
                window.atlasCatalog = A.catalog({name: 'APOD entries', sourceSize: 10, color: '#ffb000',
                                                 onClick: 'showPopup'});
                window.atlasAladin.addCatalog(window.atlasCatalog);
            }
            window.atlasCatalog.addSources(sources.map(s => A.source(s.ra_deg, s.dec_deg,
                {date: s.date, title: s.title, name: s.name})));
            window.atlasSkyMarkers = sources.length;
            let survey = '';
            try {  // can the survey images load? (they stream from CDS)
                const ctl = new AbortController(); setTimeout(() => ctl.abort(), 4000);
                await fetch('https://alasky.cds.unistra.fr/DSS/DSSColor/properties', {mode: 'no-cors', signal: ctl.signal});
            } catch (e) {
                survey = ' · survey images cannot be loaded from CDS (no internet connection?): markers are shown on a blank sky';
            }
            return sources.length.toLocaleString() + ' markers in Aladin Lite' + survey;
        } catch (err) {
            return 'Aladin Lite could not start here (' + err + '); the all-sky map above has the same entries.';
        }
    }
    """ % ALADIN_JS,
    Output("sky-aladin-status", "children"),
    Input("sky-sources", "data"),
)
