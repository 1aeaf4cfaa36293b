"""Metrics: how the lake was built — stage timings, throughput, CPU/GPU samples, encoder, provenance."""

from __future__ import annotations

import dash
import dash_bootstrap_components as dbc
import pandas as pd
from dash import Input, Output, callback, dcc, html

from lake.manifest import LakeMissingError
from pages import figures
from pages._common import atlas, by_lake_version, missing_lake_notice, page_heading
from pages.ids import Metrics

dash.register_page(__name__, path="/metrics", name="Metrics", title="Cosmic Atlas · Metrics")

#: The page's main heading (its fallback views have it too).
HEADING = "Build metrics"


def _settings(d: dict) -> str:
    """A manifest section as "key value · key value" (nested sections in brackets), not raw JSON."""
    def value(key: str, v) -> str:
        if isinstance(v, dict):
            return f"({_settings(v)})"
        if isinstance(v, (list, tuple)):
            return ", ".join(value(key, x) for x in v) or "—"
        if v is None:
            return "—"
        counts = isinstance(v, int) and not isinstance(v, bool) and key not in ("seed", "run_id")
        return f"{v:,}" if counts else str(v)

    return " · ".join(f"{k.replace('_', ' ')} {value(k, v)}" for k, v in d.items()) or "—"


#: Column headings of the stage table.
STAGE_COLUMNS = {"stage": "Stage", "duration_seconds": "Wall (s)", "cpu_seconds": "CPU (s)", "items": "Items",
                 "items_per_second": "Items/s", "peak_rss_mb": "Peak RSS (MB)", "ran_in": "Ran in"}


def _facts(m: dict) -> html.Dl:
    enc = m.get("encoder", {})
    rows = [
        ("Built", m.get("built_at")),
        ("Entries", f"{m.get('counts', {}).get('entries', 0):,} ({m.get('counts', {}).get('with_image', 0):,} with images)"),
        ("Encoder", f"{enc.get('name')} · text {enc.get('text_model')} · image {enc.get('image_model')}"),
        ("Dimensions", f"text {enc.get('text_dim')} · image {enc.get('image_dim')} · quantisation {enc.get('quantize')}"),
        ("Sources", ", ".join(m.get("sources", []))),
        ("Taxonomy", m.get("taxonomy", {}).get("source")),
        ("Projection", _settings(m.get("projection") or {})),
        ("Clustering", m.get("clustering", {}).get("algorithm")),
        ("Skipped rows", ", ".join(f"{n} × {r}" for r, n in m.get("invalid_rows", {}).get("by_reason", {}).items()) or "none"),
    ]
    return html.Dl([x for k, v in rows for x in (html.Dt(k, className="col-sm-2"), html.Dd(str(v), className="col-sm-10"))],
                   className="row small")


def layout(**_ignored) -> html.Div:
    try:
        a = atlas()
        runs = a.runs()
    except LakeMissingError as exc:
        return missing_lake_notice(exc)
    options = [{"label": f"{r.run_id} (≈ {r.seconds:.0f} s)" if r.seconds == r.seconds else r.run_id, "value": r.run_id}
               for r in runs.itertuples()]
    if not options:  # a lake without metrics (copied without its table, or made by other tools)
        return dbc.Container([page_heading(HEADING), html.H4("Lake", className="mt-2"), _facts(a.manifest),
                              dbc.Alert("This lake has no build metrics recorded.", color="light")], fluid=True)
    return dbc.Container([
        page_heading(HEADING),
        html.H4("Lake", className="mt-2"),
        _facts(a.manifest),
        dbc.Row([dbc.Col(html.H4("Pipeline run"), width="auto"),
                 dbc.Col(dcc.Dropdown(id=Metrics.RUN, options=options, value=options[0]["value"] if options else None,
                                      clearable=False), md=4)], className="align-items-center"),
        dbc.Row([dbc.Col(dcc.Graph(id=Metrics.STAGES), md=6), dbc.Col(html.Div(id=Metrics.TABLE), md=6)]),
        dcc.Graph(id=Metrics.SAMPLES),
    ], fluid=True)


@callback(
    Output(Metrics.STAGES, "figure"),
    Output(Metrics.TABLE, "children"),
    Output(Metrics.SAMPLES, "figure"),
    Input(Metrics.RUN, "value"),
)
def show_run(run_id):
    return run_view(run_id)


def prefill() -> None:
    """Build the latest run's view now (server warm-up)."""
    runs = atlas().runs()
    if len(runs):
        run_view(runs.run_id.iloc[0])


@by_lake_version()
def run_view(run_id):
    """Stage bars, stage table and resource samples of one run (cached per lake version)."""
    a = atlas()
    stages = a.stage_metrics(run_id)
    fig = figures.stage_durations_bar(stages)
    table = stages.assign(peak_rss_mb=(stages.peak_rss_bytes / 2**20).round(0),
                          duration_seconds=stages.duration_seconds.round(2),
                          items_per_second=stages.items_per_second.round(1))
    for column in ("items", "peak_rss_mb"):
        table[column] = ["" if pd.isna(n) else f"{int(n):,}" for n in table[column]]
    table["cpu_seconds"] = ["" if pd.isna(n) else f"{n:,.1f}" for n in table.cpu_seconds]
    table["ran_in"] = [where.replace(" process", "") for where in table.ran_in]
    table = table[list(STAGE_COLUMNS)].rename(columns=STAGE_COLUMNS)
    line = figures.resource_samples_lines(a.samples(run_id))
    return fig, dbc.Table.from_dataframe(table, striped=True, size="sm", responsive=True, className="mt-5"), line
