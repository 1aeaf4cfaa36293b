"""Entry page ``/entry/<date>``: the picture, its text and credits, categories, and nearest neighbours
in each embedding."""

from __future__ import annotations

import datetime as dt

import dash
import dash_bootstrap_components as dbc
from dash import dcc, html

from atlas.sky.types import object_type_name
from lake.filters import DateError, iso_day
from lake.manifest import LakeMissingError
from lake.pictures import full_size_url
from lake.queries import aladin_fov, aladin_url
from lake.records import json_value
from lake.search import SearchError
from lake.schema import EMBEDDING_KINDS
from pages._common import atlas, engine, missing_lake_notice, percent, picture_element, thumb_card, url_parameters
from pages.ids import Entry

# The path variable is not called ``date``: Dash passes the layout the path's variables and the query's
# parameters in one set of arguments, the query's winning, so /entry/2014-01-07?date=2020-01-01 (a link
# another site built by appending) showed another entry than the one its path names.
dash.register_page(__name__, path_template="/entry/<entry_day>", name="Entry", title="Cosmic Atlas · Entry")

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
            kind = object_type_name(o.object_type)
            label = (f"{o.name} ({o.canonical_id}{', ' + kind if kind else ''}) "
                     f"RA {o.ra_deg:.3f}° Dec {o.dec_deg:+.3f}°")
            fov = aladin_fov(getattr(o, "size_deg", None), o.object_type)  # older lakes have no sizes
            items.append(html.Li([label, " ", html.A("Aladin ↗", href=aladin_url(o.ra_deg, o.dec_deg, fov),
                                                     target="_blank", rel="noopener")]))
        elif o.resolver == "solar-system":
            items.append(html.Li(f"{o.name} (solar-system body: no fixed position on the sky)", className="text-muted"))
        else:
            items.append(html.Li(f"{o.name} ({o.canonical_id}: not placed; OpenNGC does not know it and the online "
                                 "resolver was not asked or did not find it)", className="text-muted"))
    return html.Div([html.H6("On the sky", className="mt-3"), html.Ul(items, className="small", id=Entry.OBJECTS)])


def _similar(date: str) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """The entry's 8 nearest entries by each kind of vector, and for each kind without any, why: the lake
    has no such vectors, this entry has none (a picture's vectors need a picture), or no other entry has."""
    out, why = {}, {}
    for kind in EMBEDDING_KINDS:
        try:
            out[kind] = engine().similar(dt.date.fromisoformat(date), kind=kind, k=8)
            if not out[kind]:
                why[kind] = "No other entry has a vector of this kind to compare with."
        except SearchError:
            out[kind], why[kind] = [], f"This lake has no {kind} vectors."
        except LookupError:
            out[kind], why[kind] = [], ("This entry has no picture, so it has no picture vector." if kind == "image"
                                        else "This entry has no vector of this kind.")
    return out, why


def _neighbours(similar: dict[str, list[dict]], why: dict[str, str]) -> dbc.Tabs:
    tabs = []
    for kind, hits in similar.items():
        if not hits:
            body = html.Div(why.get(kind, "No neighbours."), className="text-muted p-2")
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


def _original_link(entry: dict) -> html.A | None:
    """The entry's own file: the full-size picture, or the video's player; none for other media, whose
    only page is NASA's (linked beside it already)."""
    label = {"image": "Full-size image ↗", "video": "Open the video ↗"}.get(entry.get("media_type") or "")
    if label is None:
        return None
    return html.A(label, href=full_size_url(hdurl=entry.get("hdurl"), url=entry.get("url"), page=entry["nasa_page"]),
                  target="_blank", rel="noopener", className="btn btn-outline-secondary btn-sm")


def page_exists(entry_day: str) -> bool:
    """Whether /entry/<entry_day> names an entry of the lake (app.py answers 404 where not). A lake that
    is missing or has no APOD collection counts as one: the page says what is wrong with the lake."""
    try:
        day = iso_day(entry_day)
    except DateError:
        return False
    try:
        a = atlas()
        return a.has_entry(day) if a.has_entries else True
    except LakeMissingError:
        return True


def credit_lines(entry: dict) -> tuple[list[tuple[str, str]], str]:
    """(the credits listed beside the text, the rights line under the picture): the owner is named once,
    in the rights line when there is a copyright notice (the page named it three times: after the
    picture's origin, in the © line and in the list), and a credit that only repeats it is not listed."""
    owner, credit, note = entry.get("copyright"), entry.get("credit"), entry.get("rights_note")
    listed = [(k, v) for k, v in (("Credit", credit), ("Rights", note)) if v and v != owner]
    if owner:
        return listed, f"© {owner} — reuse needs the owner's permission"
    return listed, "no copyright notice in the archive (NASA or public domain); credit the authors when reusing"


@url_parameters
def layout(entry_day: str = "", **_ignored) -> html.Div:
    date = entry_day
    try:  # the API's format, strictly: 20140107 or 2014-W02-2 are not this page's addresses
        day: dt.date | None = iso_day(date)
    except DateError:
        day = None
    try:
        a = atlas()
        entry = a.entry(day.isoformat()) if day else None
    except LakeMissingError as exc:  # no lake, or one with the Galaxy Zoo collection only
        return missing_lake_notice(exc)
    if entry is None:
        return dbc.Container(dbc.Alert([html.H1("No such entry", className="h4"),
                                        html.P(f"There is no APOD entry for {date[:40]!r} in this lake."),
                                        dcc.Link("Back to the map", href="/")], color="secondary"), className="mt-4")
    d = entry["date"]
    pic = entry["picture"]
    similar, why_none = _similar(d)
    credits, rights = credit_lines(entry)
    picture = html.Div([
        picture_element(pic, alt=entry["title"], class_name="img-fluid rounded atlas-entry-img", link_out=True)
        if pic["src"] else dbc.Alert([f"No picture to show here ({pic['origin']}). ",
                                      html.A("See it on the NASA page ↗", href=entry["nasa_page"], target="_blank",
                                             rel="noopener")], color="light"),
        html.Div([html.Span("Picture: ", className="fw-semibold"), pic["origin"], html.Br(), rights],
                 className="small text-muted mt-1", id=Entry.PICTURE_SOURCE),
    ])
    return dbc.Container([
        dbc.Row([
            dbc.Col(picture, md=5),
            dbc.Col([
                html.Div(d, className="text-muted"),
                html.H1(entry["title"], id=Entry.TITLE, className="h2"),
                _categories(d),
                html.P(entry.get("explanation") or "(no explanation in the archive)", className="atlas-explanation"),
                html.Dl([x for k, v in credits for x in (html.Dt(k), html.Dd(v))], className="small"),
                _sky_objects(d),
                html.Div([
                    html.A("Open on apod.nasa.gov ↗", href=entry["nasa_page"], target="_blank", rel="noopener",
                           className="btn btn-outline-primary btn-sm me-2"),
                    _original_link(entry),
                ]),
            ], md=7),
        ], className="my-3"),
        _text_vs_picture(similar),
        html.H4("Similar entries"),
        _neighbours(similar, why_none),
    ], fluid=True)
