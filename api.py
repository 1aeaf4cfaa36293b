"""JSON API on the dashboard's server: search, similar entries, entries, image upload.

Every bad request gets a 4xx with ``{"error": "..."}`` that says what to change; unknown parameters are
refused rather than ignored, so a typo never silently changes a result.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, request
from werkzeug.exceptions import MethodNotAllowed, NotFound
from werkzeug.routing import Map

from atlas.images import MAX_REQUEST_BYTES, MAX_UPLOAD_BYTES, UPLOAD_TYPES
from atlas.userstate import FeedbackUnavailable
from lake import exports
from lake.filters import DateError, FilterError, Filters, iso_day
from lake.manifest import LakeMissingError
from lake.queries import LICENCE_NOTE, nasa_page_url
from lake.records import records
from lake.search import MAX_K, SearchError, SearchUnavailable, spellings_searched
from lake.galaxies import MAX_K as MAX_GALAXY_K
from lake.galaxies import GalaxiesMissing, GalaxyError
from lake.galaxy_schema import GZ2_LICENCE_NOTE, is_objid
from services import atlas, engine, galaxies, locate

log = logging.getLogger(__name__)


bp = Blueprint("api", __name__, url_prefix="/api")


class BadRequest(ValueError):
    pass


#: Parameters that may be given more than once (each value adds to the list).
REPEATABLE_PARAMS = frozenset({"category", "objid"})


def _params(allowed: set[str], *, json_body: str | None = None) -> dict[str, str]:
    """The request's parameters, checked: an unknown one, or one given twice that takes one value
    (``k=5&k=50`` answered with 5 and said nothing), is a 400 that names it; so is a form field, which
    no endpoint reads (``curl -F k=3`` quietly left k at its default). ``json_body``: what the endpoint
    takes as a JSON body, said to a client whose body came as a form (curl -d without a Content-Type)."""
    if request.form:
        name = sorted(request.form)[0]
        if json_body:
            raise BadRequest(f"{json_body}, with the header Content-Type: application/json")
        if name == "image":
            raise BadRequest("send the picture as a file in multipart form field 'image' (curl -F image=@photo.jpg)")
        raise BadRequest(f"form field {name[:40]!r} is not read: parameters go in the query string "
                         f"(?{name[:40]}=…); the only form field is an upload's picture, 'image'")
    unknown = sorted(set(request.args) - allowed)
    if unknown:
        raise BadRequest(f"unknown parameter {unknown[0]!r}; "
                         + (f"allowed: {', '.join(sorted(allowed))}" if allowed else "this endpoint takes none"))
    twice = sorted(k for k in set(request.args) - REPEATABLE_PARAMS if len(request.args.getlist(k)) > 1)
    if twice:
        raise BadRequest(f"parameter {twice[0]!r} is given more than once; give it once")
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
    """A date parameter (:func:`lake.filters.iso_day`), or None when not given."""
    if not value:
        return None
    try:
        return iso_day(value)
    except DateError:
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
        try:
            pos = locate(p["name"])
        except ValueError as exc:  # too long to resolve
            raise BadRequest(str(exc)) from None
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
            "url": f"/entry/{hit['date']}", "nasa_page": nasa_page_url(hit["date"]),
            **({"matched": hit["matched"]} if "matched" in hit else {})}


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
    mode = p["mode"] or "hybrid"
    return jsonify({"query": p["q"].strip(), "mode": mode, "kind": p["kind"] or "text", "k": k, "page": page,
                    "also_searched": spellings_searched(p["q"], mode=mode),
                    "results": [_result(h) for h in hits]})


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
                    "total": int(df.total.iloc[0]) if len(df) else 0,  # all in the cone; count = those listed (k)
                    "results": [r | {"url": f"/entry/{r['date']}"} for r in records(df.drop(columns="total"))]})


#: Part types that say nothing of the file: an upload labelled so is judged by its bytes alone.
UNLABELLED_TYPES = frozenset({"", "application/octet-stream"})


def _uploaded_image():
    """The picture of a multipart upload (field ``image``), decoded within the upload limits."""
    from atlas.images import ImageRejected, decode_image, upload_limits

    upload = request.files.get("image")
    if upload is None:
        raise BadRequest("send the picture as multipart form field 'image'")
    # the bytes decide (decode_image reads JPEG, PNG, GIF and WebP only); a label refuses only what says it
    # is something else: clients that send none (Python's requests) or a generic one (curl's for .webp) pass
    if upload.mimetype not in UPLOAD_TYPES | UNLABELLED_TYPES:
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
    from lake.schema import EMBEDDING_KINDS

    p = _params(FILTER_PARAMS)
    k = _int(p["k"], "k", 10, 1, MAX_K)
    filters = _filters(p)
    kind = p["kind"] or "image"
    if kind not in EMBEDDING_KINDS:  # before the picture is decoded and encoded (≈ 40 ms)
        raise BadRequest(f"kind must be one of {', '.join(EMBEDDING_KINDS)}")
    image = _uploaded_image()
    hits, categories = engine().picture_search(image, k=k, kind=kind, filters=filters)
    return jsonify({"kind": kind, "k": k, "categories": categories,
                    "results": [_result(h) for h in hits]})


@bp.post("/categories/image")
def categorise_image():
    """Zero-shot categories of an uploaded picture, from the picture alone."""
    p = _params({"top"})
    top = _int(p["top"], "top", 5, 1, 50)
    return jsonify({"categories": engine().categorise_image(_uploaded_image(), top=top)})


# -- cluster lists --------------------------------------------------------------------------------------
@bp.get("/clusters/<embedding>")
def cluster_list(embedding: str):
    """The clusters of one embedding's map: id, label and size."""
    _params(set())
    _embedding(embedding)
    return jsonify({"embedding": embedding, "clusters": records(atlas().clusters(embedding))})


@bp.get("/clusters/<embedding>/<cluster_id>")
def cluster_export(embedding: str, cluster_id: str):
    """One cluster's members (dates, titles, credits, rights, licence note) as CSV, JSON or Parquet: the
    first ``MAX_EXPORT_ROWS`` by date (header ``X-Rows-Omitted`` says how many more the cluster has).
    The cluster is any path segment, checked here: Flask's ``<int:…>`` matched no "-1" or "abc", which
    then got the list of endpoints as if the path did not exist."""
    if not re.fullmatch(r"-?[0-9]{1,9}", cluster_id):  # ASCII digits only ("١" is a \d)
        raise BadRequest(f"cluster must be a whole number, not {cluster_id[:20]!r} "
                         f"(GET /api/clusters/{embedding[:20]} lists them)")
    cluster = int(cluster_id)
    p = _params({"format"})
    fmt = p["format"] or "csv"
    if fmt not in EXPORT_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    _embedding(embedding)
    df = atlas().cluster_members(embedding, cluster, limit=MAX_EXPORT_ROWS + 1)
    if df.empty:
        raise LookupError(f"no cluster {cluster} in the {embedding} map")
    response = _download(df.head(MAX_EXPORT_ROWS), f"cluster-{embedding}-{cluster}", fmt, licence=LICENCE_NOTE)
    if len(df) > MAX_EXPORT_ROWS:
        size = next(c["size"] for c in records(atlas().clusters(embedding)) if int(c["cluster"]) == cluster)
        response.headers["X-Rows-Omitted"] = str(int(size) - MAX_EXPORT_ROWS)
    return response


def _embedding(name: str) -> None:
    from lake.schema import EMBEDDING_KINDS

    if name not in EMBEDDING_KINDS:
        raise BadRequest(f"embedding must be one of {', '.join(EMBEDDING_KINDS)}")


# -- oddities and feedback ---------------------------------------------------------------------------
ODDITY_PARAMS = {"k", "page", "detector", "category", "from", "to", "has_image", "user"}
EXPORT_FORMATS = ("csv", "json", "parquet")
MAX_EXPORT_ROWS = exports.MAX_EXPORT_ROWS


def _oddities_frame(p: dict[str, str]):
    from services import oddities

    filters = _filters(p)
    filters.check_categories(atlas().category_names())
    try:
        return oddities(filters=filters, detector=p["detector"] or "combined", user=p["user"] or None)
    except ValueError as exc:
        raise BadRequest(str(exc)) from None


def _oddity(row: dict[str, Any]) -> dict[str, Any]:
    from lake.oddities import reason
    from lake.pictures import picture_for

    return {"date": row["date"], "title": row["title"], "category": row.get("category"), "rank": row.get("rank"),
            "score": round(float(row["score"]), 4), "flagged_by": row["flagged_by"], "why": reason(row),
            "feedback": row.get("feedback"), "url": f"/entry/{row['date']}", "picture": picture_for(row)}


@bp.get("/oddities")
def oddities_list():
    """Entries ranked by how odd they are (a detector's order, or the combined score re-ranked by the
    person's labels), each with the detector that flags it and why."""
    p = _params(ODDITY_PARAMS)
    k = _int(p["k"], "k", 24, 1, MAX_K)
    page = _int(p["page"], "page", 1, 1, 1000)
    df = _oddities_frame(p)
    rows = records(df.iloc[(page - 1) * k: page * k])
    return jsonify({"detector": p["detector"] or "combined", "k": k, "page": page, "total": len(df),
                    "results": [_oddity(r) for r in rows]})


@bp.get("/oddities/export")
def oddities_export():
    """The ranked list (with every detector's score) as CSV, JSON or Parquet: its first ``MAX_EXPORT_ROWS``
    (header ``X-Rows-Omitted`` says how many more it has; the CLI's ``oddities --export`` writes them all)."""
    from lake.oddities import export_frame

    p = _params(ODDITY_PARAMS - {"k", "page"} | {"format"})
    fmt = p["format"] or "csv"
    if fmt not in EXPORT_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    ranked = _oddities_frame(p)
    df = export_frame(ranked, limit=MAX_EXPORT_ROWS)
    response = _download(df, f"oddities-{p['detector'] or 'combined'}", fmt, licence=LICENCE_NOTE)
    if len(ranked) > MAX_EXPORT_ROWS:
        response.headers["X-Rows-Omitted"] = str(len(ranked) - MAX_EXPORT_ROWS)
    return response


#: The fields of a feedback label (anything else is refused: a misspelt field would be lost silently).
FEEDBACK_KEYS = frozenset({"date", "interesting", "user"})


@bp.post("/feedback")
def feedback_add():
    """Body ``{"date": "2014-01-07", "interesting": true | false | null, "user": "…"}``."""
    from atlas.userstate import FeedbackError
    from services import store_mark

    usage = 'send JSON {"date": "YYYY-MM-DD", "interesting": true|false|null, "user": "name"}'
    _params(set(), json_body=usage)  # everything comes in the JSON body
    body = request.get_json(silent=True)
    if not isinstance(body, dict) or "date" not in body or "interesting" not in body:
        raise BadRequest(usage)
    unknown = sorted(set(body) - FEEDBACK_KEYS)
    if unknown:  # a misspelt "user" would otherwise file the label under "anonymous"
        raise BadRequest(f"unknown field {str(unknown[0])[:40]!r}; {usage}")
    interesting, user = body["interesting"], body.get("user")
    if not (interesting is None or isinstance(interesting, bool)):  # 1 and 1.0 equal True in Python
        raise BadRequest("interesting must be true, false or null")
    if user is not None and not isinstance(user, str):
        raise BadRequest("user must be a string")
    try:  # services.UnknownEntry (no entry that day) is a LookupError: the 404 of the handler below
        day = store_mark(date=body["date"], interesting=interesting, user=user or "")
    except FeedbackError as exc:
        raise BadRequest(str(exc)) from None
    except DateError:
        raise BadRequest("date must be a date like 2014-01-31") from None
    return jsonify({"ok": True, "date": day, "interesting": interesting})


@bp.get("/feedback/export")
def feedback_export():
    """Every label given (date, interesting, user, time) as CSV, JSON or Parquet: the newest
    ``MAX_EXPORT_ROWS``, oldest first (header ``X-Rows-Omitted`` says how many older ones are kept); each person under a pseudonym (:func:`atlas.userstate.pseudonym`),
    never the name or browser id that marks as them."""
    import pandas as pd

    from atlas.userstate import pseudonym
    from services import feedback

    p = _params({"format"})
    fmt = p["format"] or "csv"
    if fmt not in EXPORT_FORMATS:
        raise BadRequest(f"format must be one of {', '.join(EXPORT_FORMATS)}")
    store = feedback()
    df = pd.DataFrame(store.history(limit=MAX_EXPORT_ROWS), columns=["date", "interesting", "user", "at"])
    df["user"] = df["user"].map(pseudonym)
    response = _download(df, "feedback", fmt)
    kept = store.count()
    if kept > len(df):
        response.headers["X-Rows-Omitted"] = str(kept - len(df))
    return response


# -- Galaxy Zoo 2 ------------------------------------------------------------------------------------
@bp.get("/galaxies")
def galaxies_summary():
    """The collection: counts, classes, base rates, and whether picture search is possible."""
    _params(set())
    return jsonify(galaxies().summary())


@bp.get("/galaxies/<objid>")
def galaxy_neighbours(objid: str):
    """A catalogue galaxy and its neighbours (``space``: morphology, or image where it has a picture),
    with the neighbourhood's morphology and sky dispersion beside their random baselines."""
    if objid == "similar":  # the upload's path asked with GET (curl without -F): no objid, a wrong method
        return (jsonify({"error": "GET is not allowed on /api/galaxies/similar; POST the picture as multipart "
                                  "form field 'image'"}), 405, {"Allow": "POST"})
    p = _params({"k", "space"})
    k = _int(p["k"], "k", 10, 1, MAX_GALAXY_K)
    space = p["space"] or "morphology"
    if space not in ("morphology", "image"):
        raise BadRequest("space must be morphology or image")
    g = galaxies()
    objid = objid.strip()
    found = g.morphology_neighbours(objid, k=k) if space == "morphology" else g.similar_to_galaxy_picture(objid, k=k)
    return jsonify({"galaxy": records(g.galaxies([objid]))[0], **found.as_dict()})


@bp.post("/galaxies/similar")
def galaxies_like_upload():
    """The galaxies whose pictures look most like an uploaded one (multipart field ``image``)."""
    p = _params({"k"})
    k = _int(p["k"], "k", 10, 1, MAX_GALAXY_K)
    return jsonify(galaxies().similar_to_picture(_uploaded_image(), k=k).as_dict())


SELECTION_BODY = "POST a JSON list of objids as strings"


@bp.route("/galaxies/selection", methods=["GET", "POST"])
def galaxies_selection():
    """Rows of chosen galaxies (``objid`` repeated or comma-separated, or a JSON list in a POST body)
    as CSV, Parquet or JSON — what the morphology map's lasso downloads."""
    p = _params({"objid", "format"}, json_body=SELECTION_BODY)
    fmt = p["format"] or "csv"
    if fmt not in ("csv", "parquet", "json"):
        raise BadRequest("format must be csv, parquet or json")
    ids = [o for v in request.args.getlist("objid") for o in v.split(",") if o]
    if request.method == "POST":
        body = request.get_json(silent=True)
        # strings, or integers a JSON number holds exactly: a 19-digit objid written as a number by a
        # JavaScript client arrives rounded to another galaxy's id, or to none
        if not isinstance(body, list) or not all(
                isinstance(o, str) or (type(o) is int and 0 <= o <= 2**53) for o in body):
            raise BadRequest(f"{SELECTION_BODY} (19-digit ids do not survive as JSON numbers)")
        ids += [str(o) for o in body]
    if not ids:
        raise BadRequest("name at least one objid")
    bad = next((o for o in ids if not is_objid(o)), None)
    if bad is not None:
        raise BadRequest(f"{bad[:40]!r} is not a Galaxy Zoo objid")
    rows = galaxies().selection(ids)
    missing = len(set(ids)) - len(rows)
    if not len(rows):
        raise LookupError(f"none of the {len(set(ids)):,} objids is a galaxy of this collection")
    response = _download(rows, "gz2_selection", fmt, licence=GZ2_LICENCE_NOTE)
    if missing:  # left out of the rows: say so, as the other exports say what they omit
        response.headers["X-Objids-Not-Found"] = str(missing)
    return response


def _download(df, stem: str, fmt: str, *, licence: str | None = None):
    """``df`` as a JSON list or a CSV/Parquet attachment (:func:`lake.exports.table_bytes`)."""
    from flask import Response

    from lake.exports import table_bytes, with_licence

    if fmt == "json":
        return jsonify(records(with_licence(df, licence)))
    body, mime = table_bytes(df, fmt=fmt, licence=licence)
    return Response(body, content_type=mime, headers={"Content-Disposition": f'attachment; filename="{stem}.{fmt}"'})


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
@bp.errorhandler(GalaxyError)
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
@bp.errorhandler(FeedbackUnavailable)
@bp.errorhandler(SearchUnavailable)
@bp.errorhandler(GalaxiesMissing)
def unavailable(exc):
    """503 with the reason and the fix, but no server paths or OS errors (those go to the log): the
    lake's folder is named by the setting that chooses it."""
    from atlas.environment import LAKE_ENV

    log.warning("%s: %s", request.path, exc)
    if isinstance(exc, (SearchUnavailable, GalaxiesMissing)):
        message = str(exc)
    elif isinstance(exc, FeedbackUnavailable):
        message = exc.public_message
    else:
        message = str(exc).replace(str(exc.root), f"${LAKE_ENV}")
    return jsonify({"error": message}), 503


@bp.errorhandler(413)
@bp.errorhandler(UploadTooLarge)
def too_large(_exc):
    return jsonify({"error": f"too large: pictures up to {MAX_UPLOAD_BYTES // 2**20} MB, requests up to "
                             f"{MAX_REQUEST_BYTES / 2**20:.1f} MB"}), 413


def register(server: Flask) -> None:
    # the pages' uploads reach Dash's callbacks as base64 inside JSON (4/3 of the picture's bytes): the
    # request bound lets those through; the picture's own bound is checked where it is read
    # (Flask's default config holds the key with None, "no bound": setdefault would keep that)
    if server.config.get("MAX_CONTENT_LENGTH") is None:
        server.config["MAX_CONTENT_LENGTH"] = MAX_REQUEST_BYTES
    server.register_blueprint(bp)
