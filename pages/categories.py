"""Categories: how the archive splits into the zero-shot categories, over time and by confidence,
and a paged thumbnail grid per category."""

from __future__ import annotations

import math

import dash
import dash_bootstrap_components as dbc
from dash import Input, Output, callback, dcc, html

from lake.manifest import LakeMissingError
from pages import figures
from pages._common import (all_years, atlas, by_lake_version, category_options, filters_from, fixed_category_colours,
                           missing_lake_notice, page_heading, thumb_card, url_parameters, vocabulary, years_row)
from pages.ids import Categories

dash.register_page(__name__, path="/categories", name="Categories", title="Cosmic Atlas · Categories")

PER_PAGE = 24


@url_parameters
def layout(cat: str = "", years: str = "", **_ignored) -> html.Div:
    try:
        _, names, lo, hi = vocabulary()
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    options = category_options(names)
    return dbc.Container([
        page_heading("Categories of the archive"),
        years_row(Categories.YEARS, lo.year, hi.year, years),
        dbc.Row([
            dbc.Col(dcc.Graph(id=Categories.COUNTS, config={"displaylogo": False}), md=5),
            dbc.Col(dcc.Graph(id=Categories.YEARS_CHART, config={"displaylogo": False}), md=7),
        ]),
        dbc.Row([
            dbc.Col(dcc.Graph(id=Categories.CONFIDENCE, config={"displaylogo": False}), md=7),
            dbc.Col(html.Div(id=Categories.AGREEMENT), md=5),
        ]),
        html.Hr(),
        dbc.Row([
            dbc.Col(html.H4("Browse a category"), width="auto"),
            dbc.Col(dcc.Dropdown(id=Categories.PICK, options=options, clearable=False,
                                 value=cat if cat in names else next((o["value"] for o in options if not o["disabled"]),
                                                                     names[0])), md=3),
            dbc.Col(html.Div(id=Categories.GRID_COUNT, className="text-muted pt-2"), width="auto"),
        ], className="align-items-center mb-2"),
        html.Div(id=Categories.GRID),
        dbc.Pagination(id=Categories.PAGE, max_value=1, active_page=1, fully_expanded=False, className="mt-2"),
    ], fluid=True)


@callback(
    Output(Categories.COUNTS, "figure"),
    Output(Categories.YEARS_CHART, "figure"),
    Output(Categories.CONFIDENCE, "figure"),
    Output(Categories.AGREEMENT, "children"),
    Input(Categories.YEARS, "value"),
)
def charts(years):
    return chart_view(years or [])


def prefill() -> None:
    """Build the default charts now (server warm-up)."""
    chart_view(all_years())


@by_lake_version()
def chart_view(years):
    """The page's four charts for a year range (cached per lake version: plotly express figures of the
    whole archive take ≈ 0.3 s to build)."""
    a = atlas()
    f = filters_from(None, list(years) or None)
    counts = a.counts_by_category(f)
    colours = fixed_category_colours()
    bar = figures.category_counts_bar(counts, colours=colours)
    stacked = figures.category_years_bar(a.counts_by_year(f), order=counts.category.tolist(), colours=colours)
    box = figures.confidence_box(a.confidences(f))
    agree = a.text_image_agreement(f)
    if not agree.empty:
        note = dcc.Graph(figure=figures.agreement_bar(agree), config={"displaylogo": False})
    elif pictured := a.picture_categories():
        note = dbc.Alert(f"No entry in these years has a picture category ({pictured:,} in the whole lake: "
                         "only entries with a picture get one). Widen the years.",
                         color="light", className="mt-5")
    else:
        note = dbc.Alert("No picture categories in this lake (it has too few pictures to learn a text–picture "
                         "space from, or was built before alignment existed: rebuild it).", color="light",
                         className="mt-5")
    return bar, stacked, box, note


@callback(
    Output(Categories.GRID, "children"),
    Output(Categories.GRID_COUNT, "children"),
    Output(Categories.PAGE, "max_value"),
    Input(Categories.PICK, "value"),
    Input(Categories.PAGE, "active_page"),
    Input(Categories.YEARS, "value"),
)
def grid(category, page, years):
    df, total = atlas().category_page(category, filters_from(None, years), page=(page or 1) - 1,
                                        per_page=PER_PAGE)
    cards = [dbc.Col(thumb_card(r.date, r.title, picture=r.picture, footer=f"{r.confidence:.0%}"), xs=6, md=3, lg=2,
                     className="mb-3") for r in df.itertuples()]
    return dbc.Row(cards), f"{total:,} entries, most confident first", max(1, math.ceil(total / PER_PAGE))


@callback(Output(Categories.PAGE, "active_page"), Input(Categories.PICK, "value"), Input(Categories.YEARS, "value"),
          prevent_initial_call=True)
def back_to_first_page(_cat, _years):
    return 1
