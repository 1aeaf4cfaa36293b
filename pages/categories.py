"""Categories: how the archive splits into the zero-shot categories, over time and by confidence,
and a paged thumbnail grid per category."""

from __future__ import annotations

import math

import dash
import dash_bootstrap_components as dbc
import plotly.express as px
from dash import Input, Output, callback, dcc, html

from lake.manifest import LakeMissingError
from pages._common import atlas, filters_from, missing_lake_notice, thumb_card, vocabulary, years_row

dash.register_page(__name__, path="/categories", name="Categories", title="Cosmic Atlas · Categories")

PER_PAGE = 24


def layout(cat: str = "", years: str = "", **_ignored) -> html.Div:
    try:
        _, names, lo, hi = vocabulary()
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    return dbc.Container([
        years_row("cat-years", lo.year, hi.year, years),
        dbc.Row([
            dbc.Col(dcc.Graph(id="cat-counts", config={"displaylogo": False}), md=5),
            dbc.Col(dcc.Graph(id="cat-years-chart", config={"displaylogo": False}), md=7),
        ]),
        dbc.Row([
            dbc.Col(dcc.Graph(id="cat-confidence", config={"displaylogo": False}), md=7),
            dbc.Col(html.Div(id="cat-agreement"), md=5),
        ]),
        html.Hr(),
        dbc.Row([
            dbc.Col(html.H4("Browse a category"), width="auto"),
            dbc.Col(dcc.Dropdown(id="cat-pick", options=names, value=cat if cat in names else names[0],
                                 clearable=False), md=3),
            dbc.Col(html.Div(id="cat-grid-count", className="text-muted pt-2"), width="auto"),
        ], className="align-items-center mb-2"),
        html.Div(id="cat-grid"),
        dbc.Pagination(id="cat-page", max_value=1, active_page=1, fully_expanded=False, className="mt-2"),
    ], fluid=True)


@callback(
    Output("cat-counts", "figure"),
    Output("cat-years-chart", "figure"),
    Output("cat-confidence", "figure"),
    Output("cat-agreement", "children"),
    Input("cat-years", "value"),
)
def charts(years):
    a = atlas()
    f = filters_from(None, years)
    counts = a.counts_by_category(f)
    bar = px.bar(counts.iloc[::-1], x="n", y="category", orientation="h", title="Entries per category",
                 labels={"n": "entries", "category": ""}, template="plotly_white", height=560)
    per_year = a.counts_by_year(f)
    stacked = px.bar(per_year, x="year", y="n", color="category", title="Per year", template="plotly_white",
                     labels={"n": "entries"}, height=560, category_orders={"category": counts.category.tolist()})
    conf = a.confidences(f)
    order = conf.groupby("category").confidence.median().sort_values(ascending=False).index.tolist()
    box = px.box(conf, x="category", y="confidence", title="Confidence of the top category",
                 template="plotly_white", category_orders={"category": order}, height=420, points=False)
    box.update_xaxes(tickangle=45, title="")
    agree = a.text_image_agreement(f)
    if agree.empty:
        note = dbc.Alert("Text-vs-image agreement needs an encoder with a shared text–image space (OpenCLIP). "
                         "This lake was built with the offline encoder, whose image vectors come from pixels "
                         "alone and carry no category names.", color="light", className="mt-5")
    else:
        fig = px.bar(agree, x="agreement", y="category", orientation="h", template="plotly_white", height=420,
                     title="Image category agrees with text category", range_x=[0, 1])
        note = dcc.Graph(figure=fig, config={"displaylogo": False})
    return bar, stacked, box, note


@callback(
    Output("cat-grid", "children"),
    Output("cat-grid-count", "children"),
    Output("cat-page", "max_value"),
    Input("cat-pick", "value"),
    Input("cat-page", "active_page"),
    Input("cat-years", "value"),
)
def grid(category, page, years):
    df, total = atlas().category_page(category, filters_from(None, years), (page or 1) - 1, PER_PAGE)
    cards = [dbc.Col(thumb_card(r.date, r.title, bool(r.has_image), f"{r.confidence:.0%}"), xs=6, md=3, lg=2,
                     className="mb-3") for r in df.itertuples()]
    return dbc.Row(cards), f"{total:,} entries, most confident first", max(1, math.ceil(total / PER_PAGE))


@callback(Output("cat-page", "active_page"), Input("cat-pick", "value"), Input("cat-years", "value"),
          prevent_initial_call=True)
def back_to_first_page(_cat, _years):
    return 1
