"""Entry page ``/entry/<date>``: the picture, its text and credits, categories, and nearest neighbours
in each embedding."""

from __future__ import annotations

import datetime as dt

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from lake.manifest import LakeMissingError
from lake.pictures import full_size_url
from lake.queries import aladin_fov, aladin_url
from lake.records import json_value
from lake.search import SearchError
from lake.schema import EMBEDDING_KINDS
from pages._common import atlas, engine, missing_lake_notice, parse_date, percent, picture_element, thumb_card, url_parameters
from pages.ids import Entry

dash.register_page(__name__, path_template="/entry/<date>", name="Entry", title="Cosmic Atlas · Entry")

KIND_HELP = {
    "text": "title + explanation",
    "title": "title only",
    "image": "pixels only",
    "multimodal": "text and image together",
}


def _categories(date: str) -> html.Div:
    cats = atlas().entry_categories(date)
    if cats.empty:
        return html.Div()
    blocks = []
    for row in cats.itertuples():
        items = [dbc.Badge(f"{c} {percent(s)}", color="primary" if i == 0 else "secondary", className="me-1")
                 for i, (c, s) in enumerate(zip(row.top3_categories, row.top3_scores))]
        blocks.append(html.Div([html.Span(f"From {row.source}: ", className="small text-muted"), *items],
                               className="mb-1"))
    return html.Div(blocks, className="mb-3")


def _sky_objects(date: str) -> html.Div:
    objs = atlas().entry_objects(date)
    if objs.empty:
        return html.Div()
    items = []
    for o in objs.drop_duplicates("canonical_id").itertuples():
        if json_value(o.ra_deg) is not None:  # NULL comes back as NaN: only placed (sidereal) objects pass
            label = f"{o.name} ({o.canonical_id}, {o.object_type}) RA {o.ra_deg:.3f}° Dec {o.dec_deg:+.3f}°"
            fov = aladin_fov(getattr(o, "size_deg", None), o.object_type)  # older lakes have no sizes
            items.append(html.Li([label, " ", html.A("Aladin ↗", href=aladin_url(o.ra_deg, o.dec_deg, fov),
                                                     target="_blank", rel="noopener")]))
        elif o.resolver == "solar-system":
            items.append(html.Li(f"{o.name} (solar-system body: no fixed position on the sky)", className="text-muted"))
        else:
            items.append(html.Li(f"{o.name} ({o.canonical_id}: not placed; OpenNGC does not know it and the online "
                                 "resolver was not asked or did not find it)", className="text-muted"))
    return html.Div([html.H6("On the sky", className="mt-3"), html.Ul(items, className="small", id=Entry.OBJECTS)])


def _similar(date: str) -> dict[str, list[dict]]:
    """The entry's 8 nearest entries by each kind of vector (empty where it has no such vector)."""
    out = {}
    for kind in EMBEDDING_KINDS:
        try:
            out[kind] = engine().similar(dt.date.fromisoformat(date), kind=kind, k=8)
        except (LookupError, SearchError):
            out[kind] = []
    return out


def _neighbours(similar: dict[str, list[dict]]) -> dbc.Tabs:
    tabs = []
    for kind, hits in similar.items():
        if not hits:
            body = html.Div("This entry has no vector of this kind (no image).", className="text-muted p-2")
        else:
            body = dbc.Row([dbc.Col(thumb_card(h["date"], h["title"], picture=h.get("picture"), footer=f"{h['score']:.2f}"),
                                    xs=6, md=3, lg=3, className="mb-3") for h in hits],
                           className="pt-3 atlas-neighbours")
        tabs.append(dbc.Tab(body, label=f"{kind.title()} ({KIND_HELP[kind]})", tab_id=f"nb-{kind}"))
    return dbc.Tabs(tabs, active_tab="nb-text", id=Entry.TABS)


def _text_vs_picture(similar: dict[str, list[dict]]) -> html.Div | None:
    """The entry's text neighbours next to its picture neighbours: where they disagree, one of the two
    sides is unusual (the Oddities page ranks entries by that disagreement)."""
    by_text, by_picture = similar["text"][:6], similar["image"][:6]
    if not by_text or not by_picture:
        return None

    def column(title: str, hits: list[dict]) -> dbc.Col:
        cards = [dbc.Col(thumb_card(h["date"], h["title"], picture=h.get("picture"), footer=f"{h['score']:.2f}"),
                         xs=6, md=4, className="mb-2") for h in hits]
        return dbc.Col([html.H6(title), dbc.Row(cards)], md=6)

    return html.Div([html.H4("Text neighbours vs picture neighbours"),
                     dbc.Row([column("Nearest by text", by_text), column("Nearest by picture", by_picture)])],
                    id=Entry.COMPARE, className="mb-3")


@url_parameters
def layout(date: str = "", **_ignored) -> html.Div:
    try:
        a = atlas()
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    day = parse_date(date)
    entry = a.entry(day.isoformat()) if day else None
    if entry is None:
        return dbc.Container(dbc.Alert([html.H4("No such entry"),
                                        html.P(f"There is no APOD entry for {date!r} in this lake."),
                                        dcc.Link("Back to the map", href="/")], color="secondary"), className="mt-4")
    d = entry["date"]
    credits = [x for x in (
        ("Credit", entry.get("credit")), ("Copyright", entry.get("copyright")), ("Rights", entry.get("rights_note"))
    ) if x[1]]
    pic = entry["picture"]
    similar = _similar(d)
    owner = entry.get("copyright") or entry.get("credit")
    rights = (f"© {entry['copyright']} — reuse needs the owner's permission" if entry.get("copyright")
              else "no copyright notice in the archive (NASA or public domain); credit the authors when reusing")
    picture = html.Div([
        picture_element(pic, alt=entry["title"], class_name="img-fluid rounded atlas-entry-img", link_out=True)
        if pic["src"] else dbc.Alert([f"No picture to show here ({pic['origin']}). ",
                                      html.A("See it on the NASA page ↗", href=entry["nasa_page"], target="_blank",
                                             rel="noopener")], color="light"),
        html.Div([html.Span("Picture: ", className="fw-semibold"), pic["origin"],
                  *([" · ", html.Span(owner)] if owner else []), html.Br(), rights],
                 className="small text-muted mt-1", id=Entry.PICTURE_SOURCE),
    ])
    return dbc.Container([
        dbc.Row([
            dbc.Col(picture, md=5),
            dbc.Col([
                html.Div(d, className="text-muted"),
                html.H2(entry["title"], id=Entry.TITLE),
                _categories(d),
                html.P(entry.get("explanation") or "(no explanation in the archive)", className="atlas-explanation"),
                html.Dl([x for k, v in credits for x in (html.Dt(k), html.Dd(v))], className="small"),
                _sky_objects(d),
                html.Div([
                    html.A("Open on apod.nasa.gov ↗", href=entry["nasa_page"], target="_blank", rel="noopener",
                           className="btn btn-outline-primary btn-sm me-2"),
                    html.A("Full-size image ↗", href=full_size_url(hdurl=entry.get("hdurl"), url=entry.get("url"), page=entry["nasa_page"]),
                           target="_blank", rel="noopener", className="btn btn-outline-secondary btn-sm"),
                ]),
            ], md=7),
        ], className="my-3"),
        _text_vs_picture(similar),
        html.H4("Similar entries"),
        _neighbours(similar),
    ], fluid=True)
