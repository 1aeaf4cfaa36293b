"""Cosmic Atlas dashboard: a multipage Dash app over a built lake.

Run ``python app.py`` (development server) or ``gunicorn app:server`` (see Procfile). The lake is
``$COSMIC_ATLAS_LAKE`` or ``lake/data``; build it with ``python -m pipeline build``.
"""

from __future__ import annotations

import argparse
import logging
import os
import re

import dash
import dash_bootstrap_components as dbc
from dash import Dash, dcc, html
from flask import abort, send_file

import api
from lake.layout import LAKE_ENV, LakeLayout

_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
NAV_ORDER = ["Map", "Categories", "Sky", "Metrics"]


def navbar() -> dbc.Navbar:
    pages = sorted((p for p in dash.page_registry.values() if p["name"] in NAV_ORDER),
                   key=lambda p: NAV_ORDER.index(p["name"]))
    links = [dbc.NavItem(dbc.NavLink(p["name"], href=p["relative_path"], active="exact")) for p in pages]
    return dbc.Navbar(
        dbc.Container([
            dbc.NavbarBrand("✦ Cosmic Atlas", href="/", className="fw-bold"),
            dbc.Nav(links, navbar=True, className="me-auto"),
            html.Form(dbc.InputGroup([
                dbc.Input(name="q", id="nav-search", type="search", placeholder="Search the archive…", size="sm"),
                dbc.Button("Search", type="submit", size="sm", color="secondary"),
            ], size="sm"), action="/search", method="get", className="atlas-nav-search", role="search"),
        ], fluid=True),
        color="dark", dark=True, className="mb-2",
    )


def _register_thumbnails(app: Dash) -> None:
    @app.server.route("/thumbs/<date>.jpg")
    def thumbnail(date: str):
        if not _DATE.match(date):
            abort(404)
        path = LakeLayout.at(os.environ.get(LAKE_ENV)).thumb(date)
        if not path.is_file():
            abort(404)
        return send_file(path, mimetype="image/jpeg", max_age=86400)


def create_app() -> Dash:
    app = Dash(
        __name__,
        use_pages=True,
        title="Cosmic Atlas",
        suppress_callback_exceptions=True,
        serve_locally=True,  # no CDN: everything the page needs comes from this server
        assets_path_ignore=[r"^aladin-lite"],  # an ES module, imported by the Sky page only
    )
    app.layout = html.Div([navbar(), dash.page_container, dcc.Store(id="map-selection", storage_type="session")])
    _register_thumbnails(app)
    api.register(app.server)
    return app


app = create_app()
server = app.server


def main() -> None:
    ap = argparse.ArgumentParser(description="Cosmic Atlas dashboard (development server).")
    ap.add_argument("--lake", help=f"lake directory (default ${LAKE_ENV} or lake/data)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8050)
    ap.add_argument("--debug", action="store_true")
    args = ap.parse_args()
    if args.lake:
        os.environ[LAKE_ENV] = str(LakeLayout.at(args.lake).root)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger(__name__).info("Cosmic Atlas on http://%s:%d (lake %s)", args.host, args.port,
                                     LakeLayout.at(os.environ.get(LAKE_ENV)).root)
    app.run(host=args.host, port=args.port, debug=args.debug)


if __name__ == "__main__":
    main()
