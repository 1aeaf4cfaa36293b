"""JSON API on the dashboard's server: search, similar entries, entries, image upload.

Every bad request gets a 4xx with ``{"error": "..."}`` that says what to change; unknown parameters are
refused rather than ignored, so a typo never silently changes a result.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map

from atlas.images import MAX_UPLOAD_BYTES, UPLOAD_TYPES
from lake.filters import FilterError, Filters
from lake.manifest import LakeMissingError
from lake.queries import nasa_page_url
from lake.records import records
from lake.search import MAX_K, SearchError
from services import atlas, engine, locate

log = logging.getLogger(__name__)


bp = Blueprint("api", __name__, url_prefix="/api")


class BadRequest(ValueError):
    pass


def _params(allowed: set[str]) -> dict[str, str]:
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}; allowed: {', '.join(sorted(allowed))}")
    return {k: request.args.get(k, "") for k in allowed}


def _int(value: str, name: str, default: int, lo: int, hi: int) -> int:
    if value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        raise BadRequest(f"{name} must be a whole number") from None
    if not lo <= n <= hi:
        raise BadRequest(f"{name} must be between {lo} and {hi}")
    return n


def _date(value: str, name: str) -> dt.date | None:
    if not value:
        return None
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise BadRequest(f"{name} must be a date like 2014-01-31") from None


def _float(value: str, name: str, lo: float, hi: float) -> float:
    try:
        x = float(value)
    except ValueError:
        raise BadRequest(f"{name} must be a number") from None
    if not (lo <= x <= hi) or x != x:
        raise BadRequest(f"{name} must be between {lo:g} and {hi:g}")
    return x


def _cone(p: dict[str, str]) -> tuple[float, float, float] | None:
    """(ra, dec, r) from ra/dec/r or name/r parameters; None when no cone was asked for."""
    if not any(p.get(x) for x in ("ra", "dec", "r", "name")):
        return None
    r = _float(p.get("r") or "1", "r", 1e-6, 180)
    if p.get("name"):
        pos = locate(p["name"])
        if pos is None:
            raise LookupError(f"{p['name'][:80]!r} is neither in the offline catalogues nor placed in this lake; "
                              "give ra and dec in degrees instead")
        return pos[0], pos[1], r
    if not (p.get("ra") and p.get("dec")):
        raise BadRequest("a cone needs ra and dec (degrees), or a name")
    return _float(p["ra"], "ra", 0, 360), _float(p["dec"], "dec", -90, 90), r


def _filters(p: dict[str, str]) -> Filters:
    cats = tuple(c for c in request.args.getlist("category") for c in c.split(",") if c)
    has_image = {"": None, "true": True, "1": True, "false": False, "0": False}.get(p.get("has_image", "").lower())
    if has_image is None and p.get("has_image"):
        raise BadRequest("has_image must be true or false")
    start, end = _date(p.get("from", ""), "from"), _date(p.get("to", ""), "to")
    if start and end and start > end:
        raise BadRequest("from is after to")
    return Filters(categories=cats, start=start, end=end, has_image=has_image, cone=_cone(p))


def _result(hit: dict[str, Any]) -> dict[str, Any]:
    return {"date": hit["date"], "title": hit["title"], "score": hit["score"], "category": hit.get("category"),
            "has_image": bool(hit.get("has_image")), "snippet": hit.get("snippet", ""), "picture": hit.get("picture"),
            "url": f"/entry/{hit['date']}", "nasa_page": nasa_page_url(hit["date"])}


CONE_PARAMS = {"ra", "dec", "r", "name"}
SEARCH_PARAMS = {"q", "k", "kind", "mode", "category", "from", "to", "has_image", "page"} | CONE_PARAMS
FILTER_PARAMS = {"k", "kind", "category", "from", "to", "has_image"} | CONE_PARAMS


@bp.get("/search")
def search():
    p = _params(SEARCH_PARAMS)
    k = _int(p["k"], "k", 10, 1, MAX_K)
    page = _int(p["page"], "page", 1, 1, 100)
    filters = _filters(p)  # every parameter is checked before the lake is opened
    hits = engine().search(p["q"], k=k, kind=p["kind"] or "text", mode=p["mode"] or "hybrid",
                           filters=filters, offset=(page - 1) * k)
    return jsonify({"query": p["q"].strip(), "mode": p["mode"] or "hybrid", "kind": p["kind"] or "text", "k": k,
                    "page": page, "results": [_result(h) for h in hits]})


@bp.get("/similar/<date>")
def similar(date: str):
    p = _params(FILTER_PARAMS)
    day = _date(date, "date")
    k = _int(p["k"], "k", 10, 1, MAX_K)
    filters = _filters(p)
    hits = engine().similar(day, kind=p["kind"] or "text", k=k, filters=filters)
    return jsonify({"date": day.isoformat(), "kind": p["kind"] or "text", "k": k, "results": [_result(h) for h in hits]})


@bp.get("/entry/<date>")
def entry(date: str):
    _params(set())
    day = _date(date, "date")
    row = atlas().entry(day.isoformat())
    if row is None:
        raise LookupError(f"no entry for {day.isoformat()}")
    cats = atlas().entry_categories(day.isoformat())
    row["categories"] = [{"source": r.source, "category": r.category, "confidence": round(float(r.confidence), 4),
                          "top3": [{"category": c, "score": round(float(s), 4)}
                                   for c, s in zip(r.top3_categories, r.top3_scores)]} for r in cats.itertuples()]
    row["objects"] = [_sky_object(o) for o in records(atlas().entry_objects(day.isoformat()))]
    return jsonify(row)


def _sky_object(o: dict[str, Any]) -> dict[str, Any]:
    """One object mention (JSON-safe values from :func:`lake.records.records`), with an Aladin link when placed."""
    from lake.queries import aladin_fov, aladin_url

    if o.get("ra_deg") is not None:
        fov = aladin_fov(o.get("size_deg"), o.get("object_type"))
        o = o | {"aladin": aladin_url(o["ra_deg"], o["dec_deg"], fov)}
    return o


@bp.get("/cone")
def cone():
    """Entries with an object within r degrees of (ra, dec) or of a named object, nearest first."""
    p = _params(CONE_PARAMS | {"k", "category", "from", "to"})
    center = _cone(p)
    if center is None:
        raise BadRequest("give ra, dec and r (degrees), or name and r")
    filters = _filters({k: v for k, v in p.items() if k not in CONE_PARAMS})
    k = _int(p["k"], "k", 100, 1, 1000)
    filters.check_categories(atlas().category_names())  # as /search does: a typo is a 400, not an empty list
    df = atlas().cone(*center, filters=filters, limit=k)
    return jsonify({"ra": center[0], "dec": center[1], "r": center[2], "count": len(df),
                    "results": [r | {"url": f"/entry/{r['date']}"} for r in records(df)]})


def _uploaded_image():
    """The picture of a multipart upload (field ``image``), decoded within the upload limits."""
    from atlas.images import ImageRejected, decode_image, upload_limits

    upload = request.files.get("image")
    if upload is None:
        raise BadRequest("send the picture as multipart form field 'image'")
    if upload.mimetype not in UPLOAD_TYPES:
        raise BadRequest(f"unsupported type {upload.mimetype!r}; send JPEG, PNG, GIF or WebP")
    data = upload.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        raise UploadTooLarge()
    try:
        return decode_image(data, upload_limits())
    except ImageRejected as exc:
        raise BadRequest(str(exc)) from None


class UploadTooLarge(ValueError):
    pass


@bp.post("/search/image")
def search_image():
    """Entries like an uploaded picture (``kind``: image = look-alike pictures, text/title = matching
    texts, multimodal = both), with the picture's zero-shot categories when the lake can give them."""
    p = _params(FILTER_PARAMS)
    k = _int(p["k"], "k", 10, 1, MAX_K)
    filters = _filters(p)
    image = _uploaded_image()
    hits = engine().by_image(image, k=k, kind=p["kind"] or "image", filters=filters)
    try:
        categories = engine().categorise_image(image)
    except SearchError:  # a lake without a text–picture space still answers the search
        categories = []
    return jsonify({"kind": p["kind"] or "image", "k": k, "categories": categories,
                    "results": [_result(h) for h in hits]})


@bp.post("/categories/image")
def categorise_image():
    """Zero-shot categories of an uploaded picture, from the picture alone."""
    p = _params({"top"})
    top = _int(p["top"], "top", 5, 1, 50)
    return jsonify({"categories": engine().categorise_image(_uploaded_image(), top=top)})


ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@bp.route("", defaults={"rest": ""}, methods=ALL_METHODS)
@bp.route("/", defaults={"rest": "/"}, methods=ALL_METHODS)  # other defaults than "": no redirect between them
@bp.route("/<path:rest>", methods=ALL_METHODS)
def unknown_endpoint(rest: str):
    """Any other ``/api`` path: a JSON 404 that lists the endpoints (405 for a known path and a wrong method).

    Without this route the Dash app's catch-all page route would answer with its HTML shell and status 200,
    which a client reads as success. Flask prefers the more specific ``/api/<path>`` to Dash's ``/<path>``.
    """
    rules = [r for r in current_app.url_map.iter_rules()
             if r.endpoint.startswith(f"{bp.name}.") and r.endpoint != f"{bp.name}.unknown_endpoint"]
    known = sorted(f"{m} {r.rule}" for r in rules for m in r.methods or () if m not in ("HEAD", "OPTIONS"))
    try:
        Map([r.empty() for r in rules]).bind("localhost").match(request.path, method=request.method)
    except MethodNotAllowed as exc:
        allowed = sorted(set(exc.valid_methods or ()) - {"HEAD", "OPTIONS"})
        return (jsonify({"error": f"{request.method} is not allowed on {request.path}; use {', '.join(allowed)}",
                         "endpoints": known}), 405, {"Allow": ", ".join(exc.valid_methods or ())})
    except NotFound:
        pass
    return jsonify({"error": f"no API endpoint {request.path}; the endpoints are: {', '.join(known)}",
                    "endpoints": known}), 404


@bp.errorhandler(BadRequest)
@bp.errorhandler(SearchError)
@bp.errorhandler(FilterError)
def bad_request(exc):
    return jsonify({"error": str(exc)}), 400


@bp.errorhandler(LookupError)
def not_found(exc):
    if isinstance(exc, (KeyError, IndexError)):  # a bug, not a missing entry: never answer it as a 404
        log.error("internal error in %s", request.path, exc_info=exc)
        return jsonify({"error": "internal error; the server log has the details"}), 500
    return jsonify({"error": str(exc)}), 404


@bp.errorhandler(LakeMissingError)
def no_lake(exc):
    return jsonify({"error": str(exc)}), 503


@bp.errorhandler(413)
@bp.errorhandler(UploadTooLarge)
def too_large(_exc):
    return jsonify({"error": f"the request is over the {MAX_UPLOAD_BYTES // 2**20} MB limit"}), 413


def register(server: Flask) -> None:
    server.config.setdefault("MAX_CONTENT_LENGTH", MAX_UPLOAD_BYTES + 64 * 1024)
    server.register_blueprint(bp)
