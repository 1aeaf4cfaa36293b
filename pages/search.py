"""Search results: free text (hybrid, dense or keyword), filters and paging in the URL, and search by
uploaded picture."""

from __future__ import annotations

from urllib.parse import urlencode

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, State, callback, dcc, html, no_update

from lake.manifest import LakeMissingError
from lake.filters import Filters
from lake.search import MAX_QUERY_CHARS, MODES, SearchError, spellings_searched
from lake.schema import EMBEDDING_KINDS
from pages._common import (atlas, category_options, decode_upload, engine, missing_lake_notice, page_heading,
                           parse_date, parse_list, percent, picture_element, upload_box, upload_limits_text,
                           url_parameters)
from pages.ids import Search

dash.register_page(__name__, path="/search", name="Search", title="Cosmic Atlas · Search")

PER_PAGE = 10
#: What each kind finds, as the kind menu says it (text queries and uploads alike).
KIND_LABELS = {"text": "in texts", "title": "in titles", "image": "in pictures", "multimodal": "in pictures + texts"}
MAX_PAGES = 20


def _hit(h: dict, kind: str) -> dbc.ListGroupItem:
    img = picture_element(h.get("picture"), alt="", class_name="atlas-result-thumb me-3", link_out=True)
    return dbc.ListGroupItem(html.Div([
        img,
        html.Div([
            html.A(h["title"], href=f"/entry/{h['date']}", className="fw-semibold atlas-hit-title"),
            html.Div(f"{h['date']} · {h.get('category') or '—'} · {_why(h, kind)}", className="small text-muted"),
            html.Div(h.get("snippet", ""), className="small mt-1"),
        ]),
    ], className="d-flex"), className="atlas-hit")


def _why(h: dict, kind: str) -> str:
    """Why a hit is listed: where a hybrid hit stood among the keyword matches and the matches by meaning
    (by picture, for ``kind`` image; its fused score means nothing to a reader), else its score."""
    matched = h.get("matched")
    if not matched:
        return f"score {h['score']}"
    dense = "picture" if kind == "image" else "meaning"
    parts = [f"{name} #{rank}" for name, rank in (("words", matched.get("words")), (dense, matched.get("meaning")))
             if rank]
    return "matches " + " and ".join(parts) if parts else f"score {h['score']}"


HIDDEN = {"display": "none"}


def results_block(hits: list[dict], header: str, *, kind: str = "text") -> html.Div:
    if not hits:
        return dbc.Alert("Nothing found. Try other words, another mode, or fewer filters.", color="light")
    return html.Div([html.Div(header, className="text-muted small mb-2"), dbc.ListGroup([_hit(h, kind) for h in hits])])


@url_parameters
def layout(q: str = "", kind: str = "text", mode: str = "hybrid", cats: str = "", start: str = "", end: str = "",
           image: str = "", page: str = "1", **_ignored) -> html.Div:
    try:
        names = atlas().category_names()
        eng = engine()
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    kind = kind if kind in EMBEDDING_KINDS else "text"
    mode = mode if mode in MODES else "hybrid"
    page_n = min(max(int(page) if page.isdecimal() and len(page) <= 3 else 1, 1), MAX_PAGES)
    chosen = [c for c in parse_list(cats) if c in names]
    filters = _filters(chosen, start, end, image)
    controls = dbc.Row([
        dbc.Col([dbc.Label("Search the archive", html_for=Search.Q, className="visually-hidden"),
                 dbc.InputGroup([dbc.Input(id=Search.Q, value=q, placeholder="e.g. stellar nurseries, red planet rover…",
                                           debounce=True, type="search", maxLength=MAX_QUERY_CHARS),
                                 dbc.Button("Search", id=Search.GO_BTN, color="primary")])], md=6),
        dbc.Col(dbc.RadioItems(id=Search.MODE, value=mode, inline=True,
                               options=[{"label": m.title(), "value": m} for m in MODES]), md=3, className="pt-2"),
        dbc.Col(dcc.Dropdown(id=Search.KIND, value=kind, clearable=False,
                             options=[{"label": KIND_LABELS[k], "value": k} for k in EMBEDDING_KINDS]), md=3),
    ], className="g-2 my-2")
    filter_row = dbc.Row([
        dbc.Col(dcc.Dropdown(id=Search.CATS, options=category_options(names), value=chosen, multi=True, placeholder="All categories"), md=5),
        dbc.Col(dcc.DatePickerRange(id=Search.DATES, start_date=filters.start, end_date=filters.end,
                                    display_format="YYYY-MM-DD", clearable=True,
                                    updatemode="bothdates"), md=4),  # not a search (and a reload) per click
        dbc.Col([dbc.Label("Entries with or without a picture", html_for=Search.IMAGE, className="visually-hidden"),
                 dbc.Select(id=Search.IMAGE, value=image if image in ("yes", "no") else "any",
                            options=[{"label": "with or without picture", "value": "any"},
                                     {"label": "with picture", "value": "yes"},
                                     {"label": "without picture", "value": "no"}])], md=3),
    ], className="g-2 mb-3")
    body: list = []
    last_page = None  # the pager's last page; None: no results to page through
    if q.strip():
        try:
            # one result more than a page shows: whether a next page exists (the pager offers only pages
            # that have results; offering 20 sent people to empty pages of an 18-result query)
            hits = eng.search(q, k=PER_PAGE + (page_n < MAX_PAGES), kind=kind, mode=mode, filters=filters,
                              offset=(page_n - 1) * PER_PAGE)
            more, hits = len(hits) > PER_PAGE, hits[:PER_PAGE]
            added = spellings_searched(q, mode=mode)
            if not hits and page_n > 1:
                body.append(dbc.Alert([f"Page {page_n} is past the last result for “{quoted(q)}”. ",
                                       dcc.Link("Back to the first page", href=_search_href(
                                           {"q": q, "mode": mode, "kind": kind, "cats": cats, "start": start,
                                            "end": end, "image": image}))],
                                      color="light"))
            else:
                body.append(results_block(hits, f"Results {1 + (page_n - 1) * PER_PAGE}–{(page_n - 1) * PER_PAGE + len(hits)} "
                                                f"for “{quoted(q)}” ({mode}, {kind})"
                                                + (f" · also searched as the archive spells it: {', '.join(added)}"
                                                   if added else ""), kind=kind))
            last_page = page_n + 1 if more else (page_n if hits else None)
        except SearchError as exc:
            body.append(dbc.Alert(str(exc), color="warning"))
    # always in the layout (hidden with nothing to page), outside the results an upload replaces: a
    # callback runs only when all its inputs exist, and the pager is one of `go`'s
    pager = dbc.Pagination(id=Search.PAGE, active_page=page_n, max_value=last_page or 1, fully_expanded=False,
                           className="mt-3", style=None if last_page else HIDDEN)
    upload = upload_box(Search.UPLOAD, text=f"Or drop a picture here ({upload_limits_text()}) to find entries like it, by the embedding chosen above")
    return dbc.Container([page_heading("Search the archive"), controls, filter_row, upload, html.Div(body, id=Search.RESULTS), pager,
                          dcc.Location(id=Search.GO, refresh="callback-nav")], fluid=True)


#: How much of a query the page repeats in its headings (a 600-character one made the page 2,500 px wide).
QUOTED_CHARS = 80


def quoted(q: str) -> str:
    """The query as the headings repeat it: trimmed, and cut to :data:`QUOTED_CHARS` with an ellipsis."""
    q = " ".join(q.split())
    return q if len(q) <= QUOTED_CHARS else q[:QUOTED_CHARS - 1].rstrip() + "…"


def _filters(categories: list[str], start: str | None, end: str | None, image: str | None) -> Filters:
    """The filters the page shows (its URL's, or its controls' as they stand), for words and pictures alike."""
    first, last = parse_date(start or ""), parse_date(end or "")
    if first and last and first > last:  # a hand-edited URL: read the range the right way round
        first, last = last, first
    return Filters(categories=tuple(categories), start=first, end=last, has_image={"yes": True, "no": False}.get(image))


def _search_href(params: dict) -> str:
    """The search page's URL for these parameters (empty ones left out)."""
    return "/search?" + urlencode({k: v for k, v in params.items() if v})


@callback(
    Output(Search.GO, "href"),
    Input(Search.GO_BTN, "n_clicks"),
    Input(Search.Q, "value"),
    Input(Search.MODE, "value"),
    Input(Search.KIND, "value"),
    Input(Search.CATS, "value"),
    Input(Search.DATES, "start_date"),
    Input(Search.DATES, "end_date"),
    Input(Search.IMAGE, "value"),
    Input(Search.PAGE, "active_page"),
    prevent_initial_call=True,
)
def go(_n, q, mode, kind, cats, start, end, image, page):
    params = {"q": q or "", "mode": mode, "kind": kind, "cats": ",".join(cats or []), "start": start or "",
              "end": end or "", "image": image if image in ("yes", "no") else ""}
    if dash.ctx.triggered_id == Search.PAGE:
        params["page"] = page
    return _search_href(params)


@callback(
    Output(Search.RESULTS, "children"),
    Output(Search.PAGE, "style"),  # the pager pages the words' results, which the picture's replace
    Input(Search.UPLOAD, "contents"),
    State(Search.UPLOAD, "filename"),
    State(Search.KIND, "value"),
    State(Search.CATS, "value"),
    State(Search.DATES, "start_date"),
    State(Search.DATES, "end_date"),
    State(Search.IMAGE, "value"),
    prevent_initial_call=True,
)
def search_by_picture(contents, filename, kind, cats, start, end, image):
    """Entries like a dropped picture, under the filters the page shows (before, a picture searched the
    whole archive whatever the category, dates and picture filters said)."""
    from atlas.images import ImageRejected

    if not contents:
        return no_update, no_update
    name = filename or "your picture"
    try:
        upload = decode_upload(contents)
        hits, categories = engine().picture_search(upload, k=PER_PAGE, kind=kind or "image",
                                                   filters=_filters(list(cats or []), start, end, image))
    except (ImageRejected, SearchError, ValueError) as exc:
        return dbc.Alert(f"{filename or 'The upload'}: {exc}", color="warning"), HIDDEN
    header = {"image": f"Entries whose pictures look like {name}",
              "multimodal": f"Entries whose picture and text match {name}"}.get(kind, f"Entries whose {kind} matches {name}")
    return html.Div([_picture_categories(categories, name), results_block(hits, header, kind=kind)]), HIDDEN


def _picture_categories(categories: list[dict], name: str) -> html.Div:
    """The upload's zero-shot categories (from the picture alone), as labelled bars."""
    if not categories:
        return html.Div(id=Search.UPLOAD_CATEGORIES)
    rows = [html.Div([html.Span(c["category"], className="atlas-cat-name"),
                      dbc.Progress(value=100 * c["probability"], label=percent(c["probability"]),
                                   className="flex-grow-1 ms-2", style={"height": "1.1rem"})],
                     className="d-flex align-items-center mb-1") for c in categories]
    return html.Div([html.Div(f"What {name} shows, judged from the picture alone", className="text-muted small mb-1"),
                     *rows], id=Search.UPLOAD_CATEGORIES, className="mb-3", style={"maxWidth": "32rem"})
