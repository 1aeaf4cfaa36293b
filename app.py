"""Cosmic Atlas dashboard: a multipage Dash app over a built lake.

``create_app(lake=…)`` makes the app; nothing is built at import. Run ``python app.py --lake DIR``
(development server) or ``gunicorn app:server -c gunicorn.conf.py`` (see Procfile), where ``server``
is made on first access from ``$COSMIC_ATLAS_LAKE`` (else ``lake/data``) and each worker loads the
query encoder before it takes requests. Build a lake with ``python -m pipeline build``.
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import dash
import dash_bootstrap_components as dbc
from dash import ClientsideFunction, Dash, Input, Output, State, dcc, html
from dash.fingerprint import check_fingerprint
from flask import Flask, Request, Response, abort, request, send_file
from flask_compress import Compress

import api
from atlas import environment
from lake.galaxies import CUTOUT_ROUTE
from lake.galaxy_schema import is_objid
from lake.layout import LakeLayout
from lake.search import MAX_QUERY_CHARS
from pages import ids
from services import EXTENSION, LakeService, prepare_worker

log = logging.getLogger(__name__)

NAV_ORDER = ["Map", "Categories", "Oddities", "Sky", "Galaxies", "Metrics"]


def navbar() -> dbc.Navbar:
    pages = sorted((p for p in dash.page_registry.values() if p["name"] in NAV_ORDER),
                   key=lambda p: NAV_ORDER.index(p["name"]))
    links = [dbc.NavItem(dbc.NavLink(p["name"], href=p["relative_path"], active="exact")) for p in pages]
    search = html.Form([
        dbc.Label("Search the archive", html_for=ids.App.NAV_SEARCH, className="visually-hidden"),
        dbc.InputGroup([
            dbc.Input(name="q", id=ids.App.NAV_SEARCH, type="search", placeholder="Search the archive…", size="sm",
                      maxLength=MAX_QUERY_CHARS),
            dbc.Button("Search", type="submit", size="sm", color="secondary"),
        ], size="sm"),
    ], action="/search", method="get", className="atlas-nav-search", role="search")
    # on a narrow screen the links and the search fold behind a toggler (assets/atlas_clientside.js navToggle)
    return dbc.Navbar(
        dbc.Container([
            dbc.NavbarBrand("✦ Cosmic Atlas", href="/", className="fw-bold"),
            dbc.NavbarToggler(id=ids.App.NAV_TOGGLE, n_clicks=0),
            dbc.Collapse([dbc.Nav(links, navbar=True, className="me-auto"), search],
                         id=ids.App.NAV_COLLAPSE, is_open=False, navbar=True),
        ], fluid=True),
        color="dark", dark=True, expand="lg", className="mb-2",
    )


#: The page Dash serves, as its default one but with the language of every page's text declared
#: (screen readers pronounce by it).
INDEX = """<!DOCTYPE html>
<html lang="en">
    <head>
        {%metas%}
        <title>{%title%}</title>
        {%favicon%}
        {%css%}
    </head>
    <body>
        {%app_entry%}
        <footer>
            {%config%}
            {%scripts%}
            {%renderer%}
        </footer>
    </body>
</html>
"""


def _register_thumbnails(server: Flask, service: LakeService) -> None:
    @server.route("/thumbs/<stem>.jpg")
    def thumbnail(stem: str):
        path = service.layout.thumb_file(stem)
        if path is None or not path.is_file():
            abort(404)
        # a name that carries its content's hash never changes content: browsers may keep it for good
        named_by_content = stem != stem[:10]
        return send_file(path, mimetype="image/jpeg", max_age=31536000 if named_by_content else 86400)

    @server.route(f"{CUTOUT_ROUTE}/<objid>.jpg")
    def galaxy_cutout(objid: str):
        if not is_objid(objid):
            abort(404)
        path = service.layout.cutout(objid)
        if not path.is_file():
            abort(404)
        return send_file(path, mimetype="image/jpeg", max_age=86400)


def page_exists(path: str) -> bool:
    """Whether ``path`` names a page of the app: a registered page's path, or a path template's whose page
    module says its variables name something (``page_exists`` in pages/entry.py: an entry the lake has)."""
    path = "/" + path.strip("/")
    for page in dash.page_registry.values():
        template = page.get("path_template")
        if template is None:
            if path == "/" + page["relative_path"].strip("/"):
                return True
            continue
        pattern = re.sub(r"<(\w+)>", r"(?P<\1>[^/]+)", re.escape("/" + template.strip("/")))
        found = re.fullmatch(pattern, path)
        if found:
            exists = getattr(sys.modules[page["module"]], "page_exists", None)
            return exists is None or exists(**found.groupdict())
    return False


def _register_not_found(server: Flask, dash_app: Dash) -> None:
    """A page path that names nothing (a typo, /entry/1990-01-01) answers 404: Dash's catch-all served
    every path as a page with 200, so links checkers, crawlers and scripts saw a page there. The body is
    still the app, which shows its "not found" view."""
    catchall = dash_app.config.routes_pathname_prefix + "<path:path>"

    @server.after_request
    def not_found(response):
        if request.endpoint != catchall or response.status_code != 200:
            return response
        try:
            if not page_exists(request.path):
                response.status_code = 404
        except Exception:  # the lake unreadable for a moment: the page still renders and says what it can
            log.exception("could not tell whether %s names a page; answered 200", request.path[:200])
        return response


#: What is compressed besides flask-compress's own list (HTML, CSS, JavaScript, JSON, SVG…): the API's CSV.
EXTRA_COMPRESSED_TYPES = ("text/csv",)

#: Memory a worker may hold in compressed component bundles (all of them, in two encodings, take ≈ 6 MB).
BUNDLE_CACHE_BYTES = 64 * 2**20


class BundleCache:
    """flask-compress's store of compressed responses, keeping Dash's component bundles only.

    Why: a first visit fetches ≈ 7 MB of JavaScript (Plotly's 4.8 MB of it), which compression cuts to
    about a third (BENCHMARKS.md *Dashboard*, first visit); but that costs 15-70 ms of a core for Plotly
    alone (zstd to Brotli), and every new browser would pay it again. A bundle's bytes come from an
    installed package and cannot change while the server runs, so each is compressed once per encoding
    and kept (least recently used first out past ``max_bytes``). Anything else (callbacks, the API) has
    the empty key (:meth:`key`) and is compressed afresh, never stored.
    """

    def __init__(self, *, prefix: str, max_bytes: int = BUNDLE_CACHE_BYTES) -> None:
        self.prefix, self.max_bytes = prefix, max_bytes
        self._items: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def key(self, req: Request) -> str:
        """The request's cache key: a bundle's file in its package, else "" (not stored). Dash serves a
        bundle's file whatever fingerprint or query its URL carries: keyed by those, made-up URLs would
        each cost a compression and push the real bundles out."""
        if req.method not in ("GET", "HEAD") or not req.path.startswith(self.prefix):
            return ""
        package, _, fingerprinted = req.path[len(self.prefix):].partition("/")
        return f"{package}/{check_fingerprint(fingerprinted)[0]}"

    def __len__(self) -> int:
        return len(self._items)

    @staticmethod
    def _kept(key: str) -> bool:
        return bool(key.partition(";")[2])  # flask-compress asks for "<encoding>;<key>"

    def get(self, key: str) -> bytes | None:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
            return self._items.get(key)

    def set(self, key: str, value: bytes) -> None:
        if not self._kept(key) or len(value) > self.max_bytes:
            return
        with self._lock:
            self._size += len(value) - len(self._items.pop(key, b""))
            self._items[key] = value
            while self._size > self.max_bytes:
                self._size -= len(self._items.popitem(last=False)[1])


class _Compress(Compress):
    """flask-compress, leaving byte ranges alone: a 206 answer's ``Content-Range`` counts the file's own
    bytes, so it cannot be compressed; and a compressed answer offers no ranges (its length is unknown
    while it streams)."""

    def after_request(self, response: Response) -> Response:
        if response.status_code == 206:
            return response
        response = super().after_request(response)
        if "Content-Encoding" in response.headers:
            response.headers.pop("Accept-Ranges", None)
        return response


def _enable_compression(server: Flask, dash_app: Dash) -> None:
    """Compressed responses for browsers that accept them, in flask-compress's order of preference (zstd,
    Brotli, gzip; Chromium offers the first two to HTTPS sites and localhost, gzip and deflate to other
    plain-HTTP ones). Not Dash's ``compress=True``, which allows gzip only and compresses every bundle anew
    for each browser."""
    cache = BundleCache(prefix=dash_app.config.routes_pathname_prefix + "_dash-component-suites/")
    # the assets (Bootstrap's CSS on every page, Aladin Lite's 2.4 MB on the Sky's) are sent as streams,
    # compressed by what a stream takes (deflate where a browser offers gzip and deflate only): their
    # revalidation by ETag still answers 304 (flask-compress evaluates it for the endpoints named here)
    assets = [rule.endpoint for rule in server.url_map.iter_rules() if rule.endpoint.endswith("dash_assets.static")]
    server.config.update(
        COMPRESS_CACHE_BACKEND=lambda: cache, COMPRESS_CACHE_KEY=cache.key,
        COMPRESS_STREAMING_ENDPOINT_CONDITIONAL=["static", *assets],
        # gzip (what browsers take over plain HTTP) at level 1: the map's callbacks are mostly base64 (binary
        # arrays, its picture), where level 6 saved 2.5 % of 263 kB for 7.8 ms against 3.9 ms
        COMPRESS_LEVEL=1,
    )
    compress = _Compress(server)
    compress.compress_mimetypes_set.update(EXTRA_COMPRESSED_TYPES)


#: Lakes up to this many entries get every page's default views built at worker start.
PREFILL_MAX_ENTRIES = 100_000


def _page_warmer(server: Flask):
    """Build the pages' default views into their caches (called by the worker warm-up, which logs and
    skips a step that fails)."""
    def warm() -> None:
        from pages import categories, galaxies, home, metrics, oddities, sky
        from services import atlas

        with server.app_context():
            # a big lake only gets its front page: building every view of 10^6 entries would hold the
            # worker back for minutes
            small = atlas().reader.count("entries") <= PREFILL_MAX_ENTRIES
            steps = [lambda: home.prefill(every_view=small)]
            if small:
                steps += [sky.prefill, categories.prefill, metrics.prefill, galaxies.prefill, oddities.prefill]
            for step in steps:
                step()

    return warm


def create_app(*, lake: str | Path | LakeLayout | None = None) -> Dash:
    """The dashboard over ``lake`` (a directory; default ``$COSMIC_ATLAS_LAKE``, else ``lake/data``).

    Nothing is loaded yet: a serving process then calls ``services.prepare_worker`` on the app's service
    (gunicorn.conf.py, :func:`main`), so the first search is as fast as the rest.
    """
    layout = lake if isinstance(lake, LakeLayout) else LakeLayout.at(lake or environment.lake_dir())
    server = Flask(__name__)
    service = LakeService(layout)
    server.extensions[EXTENSION] = service
    app = Dash(
        __name__,
        server=server,
        use_pages=True,
        title="Cosmic Atlas",
        suppress_callback_exceptions=True,
        serve_locally=True,  # no CDN: everything the page needs comes from this server
        assets_path_ignore=[r"^aladin-lite"],  # an ES module, imported by the Sky page only
        add_log_handler=False,  # Dash's own handler printed each of its messages twice beside logging's
    )
    app.index_string = INDEX
    app.layout = html.Div([navbar(), dash.page_container,
                           dcc.Store(id=ids.App.MAP_SELECTION, storage_type="session")])
    app.clientside_callback(
        ClientsideFunction(namespace="atlas", function_name="navToggle"),  # assets/atlas_clientside.js
        Output(ids.App.NAV_COLLAPSE, "is_open"),
        Input(ids.App.NAV_TOGGLE, "n_clicks"),
        Input(ids.App.PAGES_LOCATION, "pathname"),  # a page picked: fold the links again
        State(ids.App.NAV_COLLAPSE, "is_open"),
        prevent_initial_call=True,
    )
    _register_thumbnails(server, service)
    _register_not_found(server, app)
    _enable_compression(server, app)
    service.add_warmer(_page_warmer(server))
    api.register(server)
    return app


def __getattr__(name: str) -> Any:
    """``app.server`` / ``app.app`` for gunicorn (``app:server``): made on first access, not at import."""
    if name in ("app", "server"):
        made = globals().get("_default") or create_app()
        globals()["_default"] = made
        return made if name == "app" else made.server
    raise AttributeError(name)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="Cosmic Atlas dashboard (development server).")
    ap.add_argument("--lake", help=f"lake directory or s3://bucket/prefix (default ${environment.LAKE_ENV} or lake/data)")
    ap.add_argument("--host", default="127.0.0.1", help="interface to listen on")
    ap.add_argument("--port", type=int, default=8050, help="port to listen on")
    ap.add_argument("--debug", action="store_true", help="Dash debug mode (reloader, error pages)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(lake=args.lake)
    prepare_worker(app.server.extensions[EXTENSION])  # as each gunicorn worker does (gunicorn.conf.py)
    log.info("Cosmic Atlas on http://%s:%d (lake %s)", args.host, args.port,
             app.server.extensions[EXTENSION].layout.root)
    app.run(host=args.host, port=args.port, debug=args.debug)


if __name__ == "__main__":
    main()
