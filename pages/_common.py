"""Shared pieces of the pages: the lake accessor and small layout helpers (component ids are in
:mod:`pages.ids`, figure builders in :mod:`pages.figures`).

Pages get data only from :func:`atlas` (a :class:`lake.queries.AtlasQueries`); they never open files.
(Dash pages skips modules whose name starts with an underscore, so this is not a page.)
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

import dash_bootstrap_components as dbc
from dash import dcc, html, no_update

from lake.filters import Filters
from services import atlas, engine, galaxies, lake_layout, locate  # noqa: F401  (re-exported for the pages)


def vocabulary() -> tuple[Any, list[str], dt.date, dt.date]:
    """The lake's queries, its category names and its date range (raises LakeMissingError)."""
    a = atlas()
    lo, hi = a.date_range()
    return a, a.category_names(), lo, hi


def page_heading(text: str) -> html.H1:
    """The page's main heading for screen readers and outlines (the controls say the rest to the eye)."""
    return html.H1(text, className="visually-hidden")


def category_options(names: list[str]) -> list[dict[str, Any]]:
    """The category filters' choices: each with its number of entries in the lake, and a category no entry
    has shown but disabled (choosing one drew an empty map with no word of why)."""
    totals = atlas().category_totals()
    return [{"label": f"{name} ({totals.get(name, 0):,})", "value": name, "disabled": not totals.get(name)}
            for name in names]


def missing_lake_notice(exc: Exception) -> dbc.Alert:
    root = getattr(exc, "root", lake_layout().location)
    return dbc.Alert(
        [
            html.H1("No data lake yet", className="alert-heading h4"),
            html.P(str(exc).split(" Build it with")[0] or f"Cosmic Atlas found no built lake at {root}."),
            html.P(["Build the embedded default (about 3–5 minutes on 2 cores, offline) with ",
                    html.Code("make run"), " or ", html.Code(f"python -m pipeline build --lake {root}"),
                    ", then reload this page."]),
        ],
        color="warning",
        className="m-4",
    )


def url_parameters(layout: Callable[..., Any]) -> Callable[..., Any]:
    """A page layout that gets each URL parameter as one string. Dash pages passes a parameter given twice
    (``?method=a&method=b``, a hand-edited or pasted URL) as a list; the layout then reads the first."""
    @functools.wraps(layout)
    def with_single_values(**params: Any) -> Any:
        return layout(**{k: (str(v[0]) if v else "") if isinstance(v, list) else v for k, v in params.items()})

    return with_single_values


def parse_date(value: Any) -> dt.date | None:
    try:
        return dt.date.fromisoformat(str(value)) if value else None
    except ValueError:
        return None


def parse_list(value: Any) -> list[str]:
    if not value:
        return []
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    return [v for v in str(value).split(",") if v]


def filters_from(categories: list[str] | None, years: list[int] | None) -> Filters:
    start = dt.date(int(years[0]), 1, 1) if years else None
    end = dt.date(int(years[1]), 12, 31) if years else None
    return Filters(categories=tuple(categories or ()), start=start, end=end)


def entry_path(click: dict[str, Any] | None) -> Any:
    """The entry page of a clicked point (the Map's ``customdata`` is a day number, the Sky's a list that
    starts with the date), or ``no_update``.

    Shared by the Map and Sky pages; each page still registers its own callback, since a Dash callback is
    bound to one page's components.
    """
    from pages.figures import date_of

    if not click or not click.get("points") or click["points"][0].get("customdata") is None:
        return no_update
    return f"/entry/{date_of(click['points'][0]['customdata'])}"


def fixed_category_colours() -> dict[str, str]:
    """The lake's colour per category (:meth:`lake.queries.AtlasQueries.category_order`): the Map, Sky
    and Categories pages draw a category in one colour, whatever their filters."""
    from pages.figures import category_colours

    return category_colours(atlas().category_order())


def percent(share: float) -> str:
    """A share (0–1) as a whole percentage, for category scores; "<1%" where that would round to a "0%"
    that reads as impossible (the runner-up categories of a confident entry are often that small)."""
    text = f"{share:.0%}"
    return "<1%" if text == "0%" else text


def year_marks(lo: int, hi: int) -> dict[int, str]:
    """About eight slider marks on round years, whatever the span."""
    step = max(1, (hi - lo) // 8)
    step = next((s for s in (1, 2, 5, 10, 25, 50, 100, 250, 500) if s >= step), step)
    first = lo + (-lo) % step
    inner = {y: str(y) for y in range(first, hi, step) if y - lo >= step / 2 and hi - y >= step / 2}
    return {lo: str(lo), **inner, hi: str(hi)}


def year_value(years_param: str, lo: int, hi: int) -> list[int]:
    """The year slider's value for the page's ``years=FROM,TO`` URL parameter: all years without one,
    ``years=2005`` is that year alone, and a hand-edited range is read in order and kept inside the
    lake's years (so a pasted URL never fails a page)."""
    years = [int(y) for y in parse_list(years_param)[:2] if y.isdecimal() and len(y) <= 6]
    if not years:
        return [lo, hi]
    first, last = (min(max(y, lo), hi) for y in (years[0], years[-1]))
    return sorted([first, last])


def all_years() -> list[int]:
    """The year slider's value when the URL names no years: the lake's whole range (what the pages'
    warm-up prefills; a page's layout gets the same from :func:`year_value`)."""
    lo, hi = atlas().date_range()
    return year_value("", lo.year, hi.year)


def years_row(component_id: str, lo: int, hi: int, years_param: str) -> dbc.Row:
    """A labelled year range slider, set from the page's ``years=FROM,TO`` URL parameter."""
    chosen = year_value(years_param, lo, hi)
    # no number boxes beside the slider (Dash's direct input): they had no labels, and a year outside the
    # lake's was taken back without a word; the slider's handles are keyboard-operable and say their years
    return dbc.Row([
        dbc.Col(html.Span("Years", className="form-label"), width="auto"),
        dbc.Col(dcc.RangeSlider(id=component_id, min=lo, max=hi, step=1, value=chosen, marks=year_marks(lo, hi),
                                tooltip={"placement": "bottom"}, allow_direct_input=False), className="pt-1"),
    ], className="my-2 atlas-years")


def picture_element(picture: dict[str, Any] | None, *, alt: str, class_name: str, link_out: bool = False) -> Any:
    """An entry's picture as decided by :func:`lake.pictures.picture_of`: the lake's thumbnail, a
    lazily loaded remote picture (``assets/atlas_pictures.js`` loads it and swaps in an offline
    placeholder when it fails), or a badge ("▶ video", "no picture").

    ``link_out``: a remote picture (or its offline placeholder) and a badge link to the original, the
    video's player or NASA's file, in a new tab. Not where the element already sits in a link (a card
    that opens the entry: links cannot nest)."""
    picture = picture or {"kind": "none", "src": None, "link": None, "origin": "no picture"}
    if picture["kind"] == "lake":
        return html.Img(src=picture["src"], className=class_name, alt=alt)
    if picture["src"]:
        element = html.Img(**{"data-src": picture["src"], "data-kind": picture["kind"]},
                           className=f"{class_name} atlas-remote", alt=alt,
                           title=picture["origin"], referrerPolicy="no-referrer")
    else:
        label = "▶ video" if picture["kind"] == "video" else "no picture"
        element = html.Div(label, className=f"{class_name} atlas-noimg", title=picture["origin"])
    if link_out and picture.get("link"):  # lake.pictures.safe_url made it: http(s) only
        return html.A(element, href=picture["link"], target="_blank", rel="noopener noreferrer",
                      className="atlas-picture-link", title=f"{picture['origin']}: open the original")
    return element


def thumb_card(date: str, title: str, *, picture: dict[str, Any] | None, footer: str = "") -> dbc.Card:
    body = [html.Div(title, className="small fw-semibold text-truncate", title=title),
            html.Div(f"{date}{' · ' + footer if footer else ''}", className="small text-muted")]
    img = picture_element(picture, alt=title, class_name="card-img-top atlas-thumb")
    return dbc.Card(html.A([img, dbc.CardBody(body, className="p-2")], href=f"/entry/{date}",
                           className="text-reset text-decoration-none"), className="h-100 atlas-card")


def upload_limits_text() -> str:
    """The upload limits as the drop zones state them ("JPEG/PNG/GIF/WebP, ≤ 8 MB"): the server's own."""
    from atlas.images import MAX_UPLOAD_BYTES

    return f"JPEG/PNG/GIF/WebP, ≤ {MAX_UPLOAD_BYTES // 2**20} MB"


def upload_box(upload_id: str, *, text: str, disabled: bool = False, class_name: str = "atlas-upload mb-3") -> html.Div:
    """A picture drop zone with the upload limits, and beneath it the line where
    ``assets/atlas_uploads.js`` says why a file was refused.

    ``dcc.Upload`` drops a file over ``max_size`` or of a type ``accept`` does not list in the browser,
    without firing any callback (plotly/dash#2638), so the server's words never reach the person: a
    9 MB photo or a HEIC file simply did nothing. The limits the script checks are the server's own,
    passed in data attributes."""
    from atlas.images import MAX_UPLOAD_BYTES, UPLOAD_TYPES

    types = ",".join(sorted(UPLOAD_TYPES))
    return html.Div([
        dcc.Upload(id=upload_id, accept=types, max_size=MAX_UPLOAD_BYTES, disabled=disabled, className=class_name,
                   children=html.Div(text)),
        html.Div(className="atlas-upload-refused text-danger small mb-2", role="alert",
                 **{"data-max-bytes": str(MAX_UPLOAD_BYTES), "data-types": types}),
    ], className="atlas-upload-box")


def decode_upload(contents: str):
    """The picture of a ``dcc.Upload`` (a base64 data URL), decoded within the upload limits; raises
    :class:`atlas.images.ImageRejected` with a message for the person who sent it."""
    import base64
    import binascii

    from atlas.images import UPLOAD_TYPES, ImageRejected, decode_image, upload_limits

    header, _, data = (contents or "").partition(",")
    if not any(t in header for t in UPLOAD_TYPES):
        raise ImageRejected("send a JPEG, PNG, GIF or WebP picture")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejected("the upload arrived damaged; try again") from None
    return decode_image(raw, upload_limits())


def _sendable_figures(result: Any) -> Any:
    """A view's result with its Plotly figures in the form Dash sends (``figures.sendable``): cached that
    way, a figure is serialised once per lake version instead of on every request."""
    import plotly.graph_objects as go

    from pages.figures import sendable

    if isinstance(result, go.Figure):
        return sendable(result)
    if isinstance(result, tuple):
        return tuple(_sendable_figures(part) for part in result)
    return result


def by_lake_version(maxsize: int = 32):
    """Cache a page function's result per published lake version and arguments (lists count as tuples).

    For views that are pure functions of the lake and the page's inputs (a map, the sky, a run's metrics):
    building their Plotly figures costs 0.1–0.2 s, and people come back to the same few views. A new
    publish changes the version, so nothing stale is ever served; and a request reads one version from
    its first call to its last (``services``), so what is cached under a version was made from it.
    Figures in the result (alone or in a tuple) are kept in the form Dash sends, JSON-ready. The first
    call under a new version drops the views of the versions before: kept until newer views pushed them
    out, a worker held up to ``maxsize`` figures per view that no request would ask for again.
    """
    from functools import lru_cache, wraps

    def freeze(value: Any) -> Any:
        return tuple(freeze(v) for v in value) if isinstance(value, list) else value

    def decorate(fn):
        @lru_cache(maxsize=maxsize)
        def cached(_version: str, *args: Any) -> Any:
            return _sendable_figures(fn(*args))

        seen: list[str | None] = [None]  # the version of the last call

        @wraps(fn)
        def wrapper(*args: Any) -> Any:
            version = atlas().reader.version
            if version != seen[0]:  # (a request still on the version before, in flight across the switch,
                cached.cache_clear()  # clears once more: what it costs is a view made again)
                seen[0] = version
            return cached(version, *(freeze(a) for a in args))

        wrapper.cache_info = cached.cache_info  # type: ignore[attr-defined]
        return wrapper

    return decorate
