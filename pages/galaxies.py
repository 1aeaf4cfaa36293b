"""Galaxies: Galaxy Zoo 2 (Stripe 82) — upload a galaxy or pick one, get its look-alikes or its morphology
neighbours with what volunteers said about them, next to what chance gives; the neighbours on the sky
in Aladin Lite (SDSS colour); the collection's morphology map with lasso → download."""

from __future__ import annotations

import math

import dash
import pandas as pd
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Input, Output, State, callback, clientside_callback, ctx, dcc, html, no_update
from dash.exceptions import PreventUpdate

from lake.galaxies import GalaxyError, Neighbourhood, downloadable
from lake.exports import table_bytes
from lake.galaxy_schema import GZ2_LICENCE_NOTE
from lake.manifest import LakeMissingError
from lake.search import SearchUnavailable
from pages import figures
from pages._common import (by_lake_version, decode_upload, galaxies, missing_lake_notice, page_heading, upload_box,
                           upload_limits_text, url_parameters)
from pages.ids import Galaxies

dash.register_page(__name__, path="/galaxies", name="Galaxies", title="Cosmic Atlas · Galaxies")

#: The page's main heading (its fallback views have it too).
HEADING = "Galaxies: Galaxy Zoo 2 look-alikes and morphology"

SPACES = {"morphology": "Morphology (volunteer votes)", "image": "Picture (look-alikes)"}


def _summary_line(info: dict) -> html.Div:
    classes = ", ".join(f"{n:,} {c.replace('_', ' ')}" for c, n in info["classes"].items())
    pictures = (f"{info['with_picture']:,} with a picture" if info["with_picture"] else
                "no pictures yet (with internet: python -m pipeline build --collection gz2 --fetch-cutouts)")
    return html.Div([html.Span(f"{info['galaxies']:,} Galaxy Zoo 2 galaxies", className="fw-semibold"),
                     f" from SDSS Stripe 82 · {classes} · {pictures}"], className="mb-2")


#: The catalogue's pictures are all framed alike (0.3″ a pixel, 160 pixels: 48″ across), and an upload
#: is compared with them as a whole picture: one framed the same way compares form with form.
FRAMING_HINT = ("Frame it like the catalogue's cutouts for the closest matches: one galaxy, centred, with some "
                "sky around it (each cutout is 48″ across); crop a wide field to the galaxy first.")


@url_parameters
def layout(objid: str = "", **_ignored) -> html.Div:
    try:
        g = galaxies()
        info = g.summary()
        examples = g.sample(6)
        spaces = g.map_spaces()
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    except GalaxyError as exc:
        return dbc.Container([page_heading(HEADING),
                              dbc.Alert(str(exc), color="info")], fluid=True)
    pick = [dbc.Button(f"{r.objid[-6:]} · {r.gz_class}", id={"type": Galaxies.EXAMPLES, "objid": r.objid},
                       size="sm", color="light", className="me-1 mb-1 border") for r in examples.itertuples()]
    upload = upload_box(
        Galaxies.UPLOAD, disabled=not info["picture_search"], class_name="atlas-upload mb-2",
        text=(f"Drop a galaxy picture here ({upload_limits_text()}), or click to choose one"
              if info["picture_search"] else
              "Picture upload needs galaxy pictures in the lake (see above); pick a galaxy instead"))
    controls = dbc.Row([
        dbc.Col([upload,
                 html.Div(FRAMING_HINT, className="small text-muted mb-2") if info["picture_search"] else None,
                 dbc.Label("Galaxy Zoo objid", html_for=Galaxies.OBJID, className="visually-hidden"),
                 dbc.InputGroup([dbc.InputGroupText("objid"),
                                 dbc.Input(id=Galaxies.OBJID, value=objid if objid.isdigit() else "",
                                           placeholder="a catalogue galaxy, or click one on the map", debounce=True)],
                                size="sm", className="mb-1"),
                 html.Div([html.Span("Examples: ", className="small text-muted me-1"), *pick])], md=7),
        dbc.Col([dbc.Label("Neighbours by", className="small mb-0"),
                 dbc.RadioItems(id=Galaxies.SPACE, value="morphology", inline=True, className="small",
                                options=[{"label": v, "value": k, "disabled": k == "image" and not info["picture_search"]}
                                         for k, v in SPACES.items()]),
                 dbc.Label("How many", html_for=Galaxies.K, className="small mb-0 mt-1"),
                 # no min, max or step: the browser hands a value outside them to Dash as None, so 60
                 # showed 10; the server takes any number and says what it kept (neighbour_count)
                 dbc.Input(id=Galaxies.K, type="number", step="any", value=DEFAULT_NEIGHBOURS, size="sm",
                           style={"maxWidth": "6rem"})], md=5),
    ], className="g-3 mb-2")
    return dbc.Container([
        page_heading(HEADING),
        html.Div(_summary_line(info), id=Galaxies.SUMMARY),
        controls,
        html.Div(id=Galaxies.STATUS, className="mb-2"),
        dbc.Row([
            dbc.Col([html.H6("Morphology of the neighbourhood"), html.Div(id=Galaxies.MORPHOLOGY),
                     html.Div(id=Galaxies.SKY_STATS, className="small mt-2")], lg=6),
            dbc.Col([html.H6("On the sky (Aladin Lite, SDSS colour)"),
                     html.Div(id=Galaxies.ALADIN, style={"height": "340px", "width": "100%"}),
                     html.Div(id=Galaxies.ALADIN_STATUS, className="small text-muted mt-1")], lg=6),
        ], className="mb-3"),
        html.Div(id=Galaxies.RESULTS, className="mb-3"),
        dcc.Store(id=Galaxies.SOURCES),
        dcc.Store(id=Galaxies.ASKED),  # which input the shown neighbours answer: "upload" or "objid"
        html.Hr(),
        dbc.Row([
            dbc.Col(html.H6("The collection's map", className="mb-0"), width="auto"),
            dbc.Col(dbc.RadioItems(id=Galaxies.MAP_SPACE, inline=True, className="small",
                                   value="morphology" if "morphology" in spaces else (spaces[0] if spaces else None),
                                   options=[{"label": SPACES[s].split(" (")[0], "value": s} for s in spaces])),
        ], className="align-items-center"),
        html.Div("Click a galaxy to see its neighbours; lasso or box to select galaxies for download.",
                 className="text-muted small"),
        dcc.Loading(dcc.Graph(id=Galaxies.MAP, config={"displaylogo": False, "scrollZoom": True},
                              style={"height": "60vh"}), delay_show=400),
        dcc.Store(id=Galaxies.MAP_KEY),  # which map the figure shows: what its points' row numbers mean
        dcc.Store(id=Galaxies.SELECTION, data=[]),
        dbc.Row([
            dbc.Col(html.Div(id=Galaxies.SELECTION_COUNT, className="small fw-semibold"), width="auto"),
            dbc.Col([dbc.Button("Download CSV", id=Galaxies.DL_CSV, size="sm", color="secondary", className="me-2"),
                     dbc.Button("Download Parquet", id=Galaxies.DL_PARQUET, size="sm", color="secondary")]),
        ], className="align-items-center my-2"),
        dcc.Download(id=Galaxies.DOWNLOAD),
        html.Div(GZ2_LICENCE_NOTE, className="text-muted small my-3"),
    ], fluid=True)


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.0f}%"


def morphology_table(found: Neighbourhood) -> dbc.Table:
    """Neighbourhood mean [90 % bootstrap interval] beside the collection's rate and the range of means
    of random sets of the same size."""
    n = found.query["found"]
    head = html.Thead(html.Tr([html.Th("Volunteers said"), html.Th(f"these {n} (90% interval)"),
                               html.Th("whole collection"), html.Th(f"random {n} (90% range)")]))
    rows = []
    for m in found.morphology:
        own, rnd = m["neighbours"], m["random"]
        if own["value"] is None:  # a question none of these galaxies was asked (a bar, of smooth ones)
            rows.append(html.Tr([html.Td(m["label"]), html.Td("none of these was asked", className="text-muted"),
                                 html.Td(_pct(m["collection"])), html.Td(f"{_pct(rnd['low'])}–{_pct(rnd['high'])}")]))
            continue
        outside = None not in (rnd["low"], rnd["high"]) and (own["low"] > rnd["high"] or own["high"] < rnd["low"])
        rows.append(html.Tr([html.Td(m["label"]),
                             html.Td([html.Span(_pct(own["value"]), className="fw-semibold" if outside else ""),
                                      f" ({_pct(own['low'])}–{_pct(own['high'])})"]),
                             html.Td(_pct(m["collection"])),
                             html.Td(f"{_pct(rnd['low'])}–{_pct(rnd['high'])}")]))
    return dbc.Table([head, html.Tbody(rows)], size="sm", bordered=False, striped=True, className="small mb-1")


def sky_line(found: Neighbourhood) -> str:
    sky = found.sky
    if not sky:
        return ""
    return (f"Sky dispersion (median separation between these galaxies): {sky['dispersion_deg']:.2f}°; random sets "
            f"of the same size: {sky['random_median_deg']:.2f}° (90% range {sky['random_low_deg']:.2f}–"
            f"{sky['random_high_deg']:.2f}°). {sky['percentile']:.0f}% of random sets are at least as tight.")


def galaxy_card(row: dict) -> dbc.Card:
    # no grey box where a lake has no cutouts: the card is the galaxy's facts only
    picture = (html.Img(src=row["picture"], className="card-img-top atlas-thumb", alt=f"galaxy {row['objid']}")
               if row.get("picture") else None)
    body = [html.Div(row["objid"], className="small fw-semibold text-truncate"),
            html.Div(f"{row['gz_class'].replace('_', ' ')} · smooth {_pct(row['p_smooth'])} · "
                     f"featured {_pct(row['p_features'])}", className="small"),
            html.Div([f"RA {row['ra']:.4f}° Dec {row['dec']:+.4f}° · ",
                      html.A("SDSS ↗", href=row["sdss"], target="_blank", rel="noopener")],
                     className="small text-muted")]
    return dbc.Card([p for p in (picture, dbc.CardBody(body, className="p-2")) if p is not None],
                    className="atlas-card h-100 atlas-galaxy")


def _sources(found: Neighbourhood, centre: dict | None) -> list[dict]:
    rows = [{"objid": r["objid"], "ra": r["ra"], "dec": r["dec"], "gz_class": r["gz_class"], "role": "neighbour"}
            for r in found.galaxies.to_dict("records")]
    if centre:
        rows.insert(0, {"objid": centre["objid"], "ra": centre["ra"], "dec": centre["dec"],
                        "gz_class": centre["gz_class"], "role": "query"})
    return rows


def asked_for(*, trigger: str | None, contents: str | None, objid: str | None, previous: str | None) -> str | None:
    """Which input the neighbours answer: the one the person used last. A change of space or of how many
    asks the same one again (an upload after a typed galaxy used to turn back into that galaxy's
    neighbours when "how many" changed, because both inputs still held a value)."""
    if trigger == Galaxies.UPLOAD and contents:
        return "upload"
    if trigger == Galaxies.OBJID:
        return "objid" if objid else ("upload" if contents else None)
    if (previous == "upload" and contents) or (previous == "objid" and objid):
        return previous
    return "objid" if objid else ("upload" if contents else None)


#: Neighbours listed unless the reader asks otherwise, and the most listed.
DEFAULT_NEIGHBOURS, MAX_NEIGHBOURS = 10, 50


def neighbour_count(asked: object) -> tuple[int, str]:
    """How many neighbours to list for the "How many" box's value, and what to tell the reader when that
    is not what they typed (empty: the default, silently; 100: the most, 50; 2.6: 3; 0: 1)."""
    if not isinstance(asked, (int, float)) or asked != asked:  # empty box (or NaN)
        return DEFAULT_NEIGHBOURS, ""
    k = min(max(round(asked), 1), MAX_NEIGHBOURS) if math.isfinite(asked) else MAX_NEIGHBOURS
    if k == asked:
        return k, ""
    return k, f"{k} shown ({asked:g} asked; between 1 and {MAX_NEIGHBOURS} are listed)"


@callback(
    Output(Galaxies.STATUS, "children"),
    Output(Galaxies.MORPHOLOGY, "children"),
    Output(Galaxies.SKY_STATS, "children"),
    Output(Galaxies.RESULTS, "children"),
    Output(Galaxies.SOURCES, "data"),
    Output(Galaxies.ASKED, "data"),
    Input(Galaxies.UPLOAD, "contents"),
    Input(Galaxies.OBJID, "value"),
    Input(Galaxies.SPACE, "value"),
    Input(Galaxies.K, "value"),
    State(Galaxies.UPLOAD, "filename"),
    State(Galaxies.ASKED, "data"),
)
def find(contents, objid, space, k, filename, previous):
    from atlas.images import ImageRejected

    if ctx.triggered_id == Galaxies.UPLOAD and not contents:  # cleared ahead of a new drop (atlas_uploads.js)
        raise PreventUpdate
    g = galaxies()
    k, kept = neighbour_count(k)
    asked = asked_for(trigger=ctx.triggered_id, contents=contents, objid=objid, previous=previous)
    try:
        if asked == "upload":
            found = g.similar_to_picture(decode_upload(contents), k=k)
            centre, title = None, f"Galaxies whose pictures look like {filename or 'your picture'}"
        elif asked == "objid":
            objid = str(objid).strip()
            centre = g.galaxy(objid)
            found = (g.similar_to_galaxy_picture(objid, k=k) if space == "image"
                     else g.morphology_neighbours(objid, k=k))
            title = (f"Galaxies that look like {objid}" if space == "image"
                     else f"Nearest to {objid} in morphology ({centre['gz_class'].replace('_', ' ')}, "
                          f"smooth {_pct(centre['p_smooth'])}, featured {_pct(centre['p_features'])})")
        else:
            return "", html.Div("Pick or upload a galaxy.", className="text-muted small"), "", "", [], None
    except (GalaxyError, ImageRejected, LookupError, SearchUnavailable) as exc:
        return dbc.Alert(str(exc), color="warning", className="py-2"), "", "", "", [], asked
    cards = dbc.Row([dbc.Col(galaxy_card(r), xs=6, md=3, lg=2, className="mb-2")
                     for r in found.galaxies.to_dict("records")], className="g-2")
    heading = [title, html.Span(f" · {kept}", className="fw-normal text-muted small") if kept else None]
    return (html.Div(heading, className="fw-semibold"), morphology_table(found), sky_line(found), cards,
            _sources(found, centre), asked)


@callback(Output(Galaxies.OBJID, "value"),
          Output(Galaxies.SELECTION_COUNT, "children", allow_duplicate=True),
          Input({"type": Galaxies.EXAMPLES, "objid": dash.ALL}, "n_clicks"),
          Input(Galaxies.MAP, "clickData"),
          State(Galaxies.MAP_SPACE, "value"),
          State(Galaxies.MAP_KEY, "data"),
          prevent_initial_call=True)
def choose(_clicks, click, space, drawn):
    if isinstance(ctx.triggered_id, dict):
        if not any(_clicks or ()):
            raise PreventUpdate
        return ctx.triggered_id["objid"], no_update
    rows = _map_rows((click or {}).get("points", [])[:1])
    if not rows or not space:
        raise PreventUpdate
    try:
        return galaxies().objids_at(space, rows, drawn=drawn)[0], no_update
    except GalaxyError as exc:  # a map drawn from an earlier lake version: its rows are other galaxies now
        return no_update, str(exc)


def _map_rows(points: list[dict]) -> list[int]:
    """Row numbers of :meth:`GalaxyQueries.map_points` that clicked or selected map points carry."""
    return sorted({int(p["customdata"]) for p in points if isinstance(p.get("customdata"), (int, float))})


@callback(Output(Galaxies.MAP, "figure"), Output(Galaxies.MAP_KEY, "data"),
          Input(Galaxies.MAP_SPACE, "value"), Input(Galaxies.SOURCES, "data"))
def draw_map(space, sources):
    if not space:
        return figures.galaxy_map(pd.DataFrame(columns=["objid", "x", "y", "gz_class", "cluster_label"])), None
    # one request reads one lake version (services): the key is the drawn map's
    return map_figure(space, [s["objid"] for s in sources or []]), galaxies().map_key(space)


@by_lake_version()
def map_figure(space: str, highlight: list[str]):
    """The collection's map with ``highlight`` ringed, cached per lake version: the figure of 19,761
    galaxies takes ≈ 0.4 s to query and build, and every visit starts with the same one."""
    return figures.galaxy_map(galaxies().map_points(space), highlight=highlight)


def prefill() -> None:
    """The page's first map (morphology space, nothing highlighted), built at worker warm-up."""
    spaces = galaxies().map_spaces()
    if spaces:
        map_figure("morphology" if "morphology" in spaces else spaces[0], [])


@callback(Output(Galaxies.SELECTION, "data"), Output(Galaxies.SELECTION_COUNT, "children"),
          Input(Galaxies.MAP, "selectedData"), State(Galaxies.MAP_SPACE, "value"), State(Galaxies.MAP_KEY, "data"),
          prevent_initial_call=True)
def select(selected, space, drawn):
    rows = _map_rows((selected or {}).get("points", []))
    try:
        ids = downloadable(sorted(galaxies().objids_at(space, rows, drawn=drawn))) if rows and space else []
    except GalaxyError as exc:
        return [], str(exc)
    return ids, (f"{len(ids):,} galaxies selected" if ids else "")


@callback(Output(Galaxies.DOWNLOAD, "data"),
          Input(Galaxies.DL_CSV, "n_clicks"), Input(Galaxies.DL_PARQUET, "n_clicks"),
          State(Galaxies.SELECTION, "data"), prevent_initial_call=True)
def download(_csv, _parquet, ids):
    if not ids:
        return no_update
    try:
        df = galaxies().selection(ids)
    except GalaxyError:  # only a hand-made store gets here: select() stops at the limit
        return no_update
    fmt = "csv" if ctx.triggered_id == Galaxies.DL_CSV else "parquet"
    body, _ = table_bytes(df, fmt=fmt, licence=GZ2_LICENCE_NOTE)
    return dcc.send_bytes(body, f"gz2_selection.{fmt}")


# The neighbours (and the query galaxy) as markers in Aladin Lite: assets/atlas_sky.js, via
# assets/atlas_clientside.js. The view centres on them; the SDSS colour survey streams from CDS.
clientside_callback(
    ClientsideFunction(namespace="atlas", function_name="galaxyAladin"),
    Output(Galaxies.ALADIN_STATUS, "children"),
    Input(Galaxies.SOURCES, "data"),
    State(Galaxies.ALADIN, "id"),
)
