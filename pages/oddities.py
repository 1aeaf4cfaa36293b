"""Oddities: the entries that do not fit, ranked by the anomaly stage's detectors, with thumbs up /
down that re-rank the list for the person giving them (stored outside the lake, see atlas.userstate)."""

from __future__ import annotations

import logging
import math
import uuid

import dash
import dash_bootstrap_components as dbc
from dash import ALL, Input, Output, State, callback, ctx, dcc, html, no_update

from atlas.userstate import MAX_USER_CHARS, FeedbackError, FeedbackUnavailable
from lake.filters import DateError, FilterError, Filters
from lake.manifest import LakeMissingError
from lake.exports import MAX_EXPORT_ROWS, table_bytes
from lake.oddities import export_frame, reason
from lake.queries import LICENCE_NOTE
from lake.pictures import picture_for
from lake.schema import ANOMALY_DETECTORS
from pages._common import atlas, category_options, missing_lake_notice, page_heading, picture_element, vocabulary
from pages.ids import Entry, Oddities
from services import UnknownEntry, oddities, store_mark

log = logging.getLogger(__name__)

dash.register_page(__name__, path="/oddities", name="Oddities", title="Cosmic Atlas · Oddities")

#: The page's main heading (its fallback views have it too).
HEADING = "Oddities of the archive"

PER_PAGE = 24
DETECTOR_LABELS = {
    "combined": "Combined (re-ranked by your feedback)",
    "picture_vs_text_neighbours": "Picture unlike its text neighbours' pictures",
    "text_vs_picture_neighbours": "Text unlike its picture neighbours' texts",
    "caption_mismatch": "Caption does not match its picture",
    "cross_modal": "Picture and text disagree (mean of the three)",
}


def _detector_label(name: str) -> str:
    if name in DETECTOR_LABELS:
        return DETECTOR_LABELS[name]
    kind, _, method = name.partition("_")
    return f"{kind.title()} vectors · { {'knn': 'k-NN distance', 'lof': 'local outlier factor', 'iforest': 'isolation forest'}[method]}"


def layout(**_ignored) -> html.Div:
    try:
        _, names, lo, hi = vocabulary()
        detectors = [d for d in ANOMALY_DETECTORS if d in atlas().manifest.get("anomaly", {}).get("detectors", [])]
        if not atlas().has_anomalies():
            raise LookupError
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    except LookupError:
        return dbc.Container([page_heading(HEADING),
                              dbc.Alert("This lake has no anomaly scores yet: rebuild it with "
                                        "`python -m pipeline build`.", color="warning")], className="mt-4")
    options = [{"label": _detector_label(d), "value": d} for d in ("combined", *detectors)]
    return dbc.Container([
        page_heading(HEADING),
        dcc.Store(id=Oddities.USER, storage_type="local"),
        dcc.Store(id=Oddities.VERSION, data=0),
        html.H3("Oddities", className="mt-3"),
        html.P("Entries that do not fit: pictures whose captions describe something else, rare subjects, odd "
               "pictures. Mark what you find interesting; the list learns from your marks.", className="text-muted"),
        dbc.Row([
            dbc.Col([dbc.Label("Detector", html_for=Oddities.DETECTOR, className="small mb-0"),
                     dcc.Dropdown(id=Oddities.DETECTOR, options=options, value="combined", clearable=False)], md=4),
            dbc.Col([dbc.Label("Categories", html_for=Oddities.CATS, className="small mb-0"),
                     dcc.Dropdown(id=Oddities.CATS, options=category_options(names), multi=True, placeholder="All categories")], md=4),
            dbc.Col([dbc.Label("Dates", html_for=Oddities.DATES, className="small mb-0 d-block"),
                     dcc.DatePickerRange(id=Oddities.DATES, min_date_allowed=lo, max_date_allowed=hi,
                                         display_format="YYYY-MM-DD", clearable=True,
                                         updatemode="bothdates")], md=4),  # one re-rank per range, not per click
        ], className="g-2 mb-2"),
        dbc.Row([dbc.Col(html.Div(id=Oddities.NOTE, className="small text-muted"), md=8),
                 dbc.Col(html.Div([
                     dbc.Button("Download list (CSV)", id=Oddities.EXPORT_CSV, size="sm", color="primary",
                                outline=True, className="me-2"),
                     dbc.Button("Parquet", id=Oddities.EXPORT_PARQUET, size="sm", color="primary", outline=True,
                                className="me-2"),
                     html.A("Labels (CSV)", href="/api/feedback/export?format=csv",
                            className="btn btn-sm btn-outline-secondary"),
                     dcc.Download(id=Oddities.DOWNLOAD)], id=Oddities.EXPORT, className="text-end"), md=4)],
                className="mb-2"),
        dbc.Row(id=Oddities.GALLERY),
        dbc.Pagination(id=Oddities.PAGE, max_value=1, active_page=1, fully_expanded=False, className="mt-2"),
    ], fluid=True)


def prefill() -> None:
    """The score table and its archive-wide percentiles, read at worker warm-up (≈ 0.1 s on the first
    visit otherwise)."""
    if atlas().has_anomalies():
        atlas().anomaly_percentiles()


def _card(row: dict, user_label: bool | None) -> dbc.Card:
    d = row["date"]
    thumbs = dbc.ButtonGroup([
        dbc.Button("✓ Interesting", id={"type": Oddities.THUMB, "date": d, "label": "up"}, size="sm",
                   title="thumbs up: more like this", color="success", outline=user_label is not True),
        dbc.Button("✕ Not", id={"type": Oddities.THUMB, "date": d, "label": "down"}, size="sm",
                   title="thumbs down: not interesting", color="secondary", outline=user_label is not False),
    ], className="atlas-thumbs")
    body = [html.A(row["title"], href=f"/entry/{d}", className="small fw-semibold d-block text-truncate",
                   title=row["title"]),
            html.Div(f"{d} · {row.get('category') or '—'}", className="small text-muted"),
            html.Div(reason(row), className="small mt-1 atlas-why"),
            # the entry page compares text and picture neighbours only for an entry with a picture
            html.Div([thumbs, *([html.A("neighbours", href=f"/entry/{d}#{Entry.COMPARE}", className="small ms-2",
                                        title="its text neighbours next to its picture neighbours")]
                                if row.get("has_picture") else [])], className="mt-2 d-flex align-items-center")]
    return dbc.Card([html.A(picture_element(picture_for(row), alt=row["title"], class_name="card-img-top atlas-thumb"),
                            href=f"/entry/{d}"),
                     dbc.CardBody(body, className="p-2")], className="h-100 atlas-card atlas-oddity")


@callback(Output(Oddities.USER, "data"), Input(Oddities.USER, "modified_timestamp"), State(Oddities.USER, "data"))
def ensure_user(_ts, user):
    """A random id per browser, so each person's labels re-rank their own list; a new one for a stored
    value that cannot name a person (edited in the browser's storage: not text, or too long)."""
    return no_update if _usable(user) else uuid.uuid4().hex[:16]


def _usable(user: object) -> bool:
    return isinstance(user, str) and 0 < len(user.strip()) <= MAX_USER_CHARS


def _filters(cats: list[str] | None, start: str | None, end: str | None) -> Filters:
    return Filters(categories=tuple(cats or ()), start=(start or None) and start[:10], end=(end or None) and end[:10])


@callback(
    Output(Oddities.GALLERY, "children"),
    Output(Oddities.NOTE, "children"),
    Output(Oddities.PAGE, "max_value"),
    Input(Oddities.DETECTOR, "value"),
    Input(Oddities.CATS, "value"),
    Input(Oddities.DATES, "start_date"),
    Input(Oddities.DATES, "end_date"),
    Input(Oddities.PAGE, "active_page"),
    Input(Oddities.USER, "data"),
    Input(Oddities.VERSION, "data"),
)
def gallery(detector, cats, start, end, page, user, _version):
    if not _usable(user):  # ensure_user gives it an id first
        return no_update, no_update, no_update
    try:
        df = oddities(filters=_filters(cats, start, end), detector=detector or "combined", user=user)
    except (FilterError, ValueError, LookupError) as exc:
        return [], dbc.Alert(str(exc), color="warning"), 1
    page = max(1, int(page or 1))
    rows = df.iloc[(page - 1) * PER_PAGE: page * PER_PAGE].to_dict("records")
    cards = [dbc.Col(_card(r, r.get("feedback")), xs=12, sm=6, md=4, lg=3, className="mb-3") for r in rows]
    labels = int(df["feedback"].notna().sum()) if "feedback" in df else 0
    how = (f"re-ranked with your {labels} mark{'s' if labels != 1 else ''}" if detector == "combined" and labels
           else "ranked by " + _detector_label(detector or "combined").lower())
    note = f"{len(df):,} entries, {how}."
    return cards, note, max(1, math.ceil(len(df) / PER_PAGE))


@callback(
    Output(Oddities.DOWNLOAD, "data"),
    Input(Oddities.EXPORT_CSV, "n_clicks"),
    Input(Oddities.EXPORT_PARQUET, "n_clicks"),
    State(Oddities.DETECTOR, "value"),
    State(Oddities.CATS, "value"),
    State(Oddities.DATES, "start_date"),
    State(Oddities.DATES, "end_date"),
    State(Oddities.USER, "data"),
    prevent_initial_call=True,
)
def download_list(_csv, _parquet, detector, cats, start, end, user):
    """The list as shown (its filters, its detector, this browser's marks), its first
    :data:`lake.exports.MAX_EXPORT_ROWS` rows, sent through the callback: the browser's id, which is
    enough to mark as it, never goes into a URL (the export links carried it, into browser histories
    and proxies' logs)."""
    if not _usable(user):
        return no_update
    detector = detector or "combined"
    try:
        df = oddities(filters=_filters(cats, start, end), detector=detector, user=user)
    except (FilterError, ValueError, LookupError):  # the gallery shows why
        return no_update
    fmt = "csv" if ctx.triggered_id == Oddities.EXPORT_CSV else "parquet"
    body, _ = table_bytes(export_frame(df, limit=MAX_EXPORT_ROWS), fmt=fmt, licence=LICENCE_NOTE)
    return dcc.send_bytes(body, f"oddities-{detector}.{fmt}")


@callback(
    Output(Oddities.VERSION, "data"),
    Output(Oddities.NOTE, "children", allow_duplicate=True),
    Input({"type": Oddities.THUMB, "date": ALL, "label": ALL}, "n_clicks"),
    State(Oddities.USER, "data"),
    State(Oddities.VERSION, "data"),
    prevent_initial_call=True,
)
def mark(clicks, user, version):
    """Store a thumbs up / down (clicking the same one again clears it), then refresh the list; a mark the
    server cannot store says so where the list's note stands (before, the click just did nothing)."""
    trigger = ctx.triggered_id
    if not trigger or not any(clicks) or not _usable(user):
        return no_update, no_update
    if trigger.get("label") not in ("up", "down"):  # a request made by hand
        return no_update, _not_stored("a mark is “up” or “down”")
    try:
        store_mark(date=trigger.get("date"), interesting=trigger.get("label") == "up", user=user, toggle=True)
    except FeedbackUnavailable as exc:  # the server's operator must move the store; the list stays as it was
        log.error("a thumb was not stored: %s", exc)
        return no_update, _not_stored(exc.public_message)
    except FeedbackError as exc:
        return no_update, _not_stored(str(exc))
    except (DateError, UnknownEntry):  # a request made by hand: any date, or none
        return no_update, _not_stored(f"there is no entry for {str(trigger.get('date'))[:20]!r}")
    return (version or 0) + 1, no_update


def _not_stored(why: str) -> dbc.Alert:
    return dbc.Alert(f"Your mark was not stored: {why}.", color="warning", className="mb-0 py-2")


@callback(Output(Oddities.PAGE, "active_page"), Input(Oddities.DETECTOR, "value"), Input(Oddities.CATS, "value"),
          Input(Oddities.DATES, "start_date"), Input(Oddities.DATES, "end_date"), prevent_initial_call=True)
def back_to_first_page(_detector, _cats, _start, _end):
    """Other filters make another list: it starts at its first page (page 10 of 3 would show nothing)."""
    return 1
