"""Resolve extracted mentions to positions offline: OpenNGC for catalogue and popular names, PyEphem's
catalogue for named bright stars; solar-system bodies stay non-sidereal. What stays unplaced keeps, as
its canonical id, the designation the online resolver is to be asked. One primary target per entry: the
first placed object of the title, else of the text."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from atlas.sky.extract import Mention, extract
from atlas.sky.gazetteer import Gazetteer, default, designation_key


@dataclass(frozen=True)
class SkyObject:
    name: str
    canonical_id: str | None
    ra_deg: float | None
    dec_deg: float | None
    object_type: str | None
    resolver: str | None  # openngc | bright-stars | solar-system | simbad | sesame | None (unresolved)
    field: str  # title | explanation
    span_start: int
    span_end: int
    is_primary: bool = False
    size_deg: float | None = None  # catalogued major axis (OpenNGC), for the Aladin field of view


def resolve(mention: Mention, field: str, gazetteer: Gazetteer) -> SkyObject:
    if mention.kind == "solar_system":
        return SkyObject(mention.name, mention.name, None, None, "solar-system body", "solar-system", field,
                         mention.start, mention.end)
    if mention.kind == "star":
        pos, resolver = gazetteer.resolve_star(mention.name), "bright-stars"
    elif mention.key:
        pos, resolver = gazetteer.resolve_key(mention.key), "openngc"
    elif mention.kind in ("common", "designation"):  # OpenNGC knows "Omega Centauri", "47 Tucanae"
        pos, resolver = gazetteer.resolve_common(" ".join(mention.name.split())), "openngc"
    else:
        pos, resolver = None, None
    if pos is None:
        return SkyObject(mention.name, mention.query, None, None, None, None, field, mention.start, mention.end)
    return SkyObject(mention.name, pos.canonical_id, pos.ra_deg, pos.dec_deg, pos.object_type, resolver, field,
                     mention.start, mention.end, size_deg=pos.size_deg)


def objects_for(title: str, explanation: str, gazetteer: Gazetteer) -> list[SkyObject]:
    out: list[SkyObject] = []
    seen: set[tuple[str, str | None]] = set()
    mentions = {"title": extract(title or "", gazetteer), "explanation": extract(explanation or "", gazetteer)}
    # A title is written in title case, so its capitals do not say that a word is a name: a popular name
    # that says no kind of object ("New Eyes for the Hubble") counts in a title only when the
    # explanation names it too
    named = {m.name.lower() for m in mentions["explanation"] if m.kind == "common"}
    mentions["title"] = [m for m in mentions["title"] if m.kind != "common" or m.name.lower() in named
                         or not gazetteer.capitalised_only(m.name)]
    context = f"{title or ''} {explanation or ''}".lower()
    for field, found in mentions.items():
        for m in found:
            obj = resolve(m, field, gazetteer)
            if obj.resolver is None and obj.canonical_id:
                obj = replace(obj, canonical_id=abell_designation(obj.canonical_id, context))
            ident = (field, obj.canonical_id or obj.name)
            if ident in seen:
                continue
            seen.add(ident)
            out.append(obj)
    return with_primary(out)


#: Abell's 1966 catalogue of planetary nebulae runs to 86; his galaxy clusters (ACO) use the same numbers
_ABELL_LOW = re.compile(r"^Abell (\d{1,2})$")
_PLANETARY = re.compile(r"\bplanetary\s+nebula(?:e|s)?\b")  # not "planetary system"
_GALAXY_CLUSTER = re.compile(r"\b(?:galaxy clusters?|clusters? of galaxies)\b")


def abell_designation(designation: str, context: str) -> str:
    """"Abell 39" is a planetary nebula and "Abell 68" a cluster of galaxies, and SIMBAD can take either
    for the other: a number of the planetary nebulae's catalogue is asked as "PN A66 n" when the entry
    speaks of a planetary nebula, as "ACO n" when it speaks of a galaxy cluster, and as written when it
    says both or neither. ``context``: the entry's title and explanation, lower case."""
    m = _ABELL_LOW.match(designation)
    number = int(m.group(1)) if m else 0
    if not 1 <= number <= 86:
        return designation
    planetary, cluster = bool(_PLANETARY.search(context)), bool(_GALAXY_CLUSTER.search(context))
    if planetary == cluster:
        return designation
    return f"PN A66 {number}" if planetary else f"ACO {number}"


def with_primary(objs: list[SkyObject]) -> list[SkyObject]:
    """Mark the entry's primary target: the first placed object of the title; else, when the title names
    a solar-system body, that body (a picture of Mars is not at the star it passes); else the first placed
    object of the text, catalogue and popular names before bright stars, which APOD uses as signposts."""
    placed = [o for o in objs if o.ra_deg is not None]
    title_bodies = [o for o in objs if o.field == "title" and o.resolver == "solar-system"]
    order = ([o for o in placed if o.field == "title"] + title_bodies
             + [o for o in placed if o.resolver != "bright-stars"] + placed)
    primary = order[0] if order else None
    return [replace(o, is_primary=o is primary) for o in objs]


def query_name(name: str, canonical_id: str | None) -> str:
    """What an object the offline gazetteer could not place is asked online by: the designation the
    extractor recorded, else its name as written (one space between words)."""
    return canonical_id or " ".join(name.split())


def place_online(per_entry: dict[Any, list[SkyObject]], resolver) -> dict[Any, list[SkyObject]]:
    """Place what OpenNGC could not (Abell, Sharpless, HD, "Eta Carinae", …) through ``resolver`` (an
    ``online.OnlineResolver``), asking by the designation the extractor recorded, then choose each
    entry's primary target again."""
    def query(o: SkyObject) -> str:
        return query_name(o.name, o.canonical_id)

    found = resolver.resolve([query(o) for objs in per_entry.values() for o in objs if o.resolver is None])
    out = {}
    for entry, objs in per_entry.items():
        placed = []
        for o in objs:
            p = found.get(query(o)) if o.resolver is None else None
            placed.append(replace(o, ra_deg=p.ra_deg, dec_deg=p.dec_deg, resolver=p.resolver,
                                  canonical_id=p.canonical_id or o.canonical_id,
                                  object_type=p.object_type or o.object_type) if p else o)
        out[entry] = with_primary(placed)
    return out


def fingerprint() -> str:
    """Changes whenever what the offline resolver would answer can change (rebuilds the sky stage)."""
    from importlib.metadata import PackageNotFoundError, version

    from atlas.sky import extract as extract_module
    from atlas.sky import gazetteer, names

    h = hashlib.sha1()
    h.update(gazetteer.database_path().read_bytes())  # its contents: an update may keep the size
    for package in ("pyongc", "ephem"):  # the catalogue's reader and the bright stars' positions
        try:
            h.update(f"{package} {version(package)}".encode())
        except PackageNotFoundError:
            pass
    for path in (names.ALIASES_CSV, names.__file__, extract_module.__file__, gazetteer.__file__, __file__):
        h.update(Path(path).read_bytes())
    return h.hexdigest()


def position_of(name: str) -> tuple[float, float] | None:
    """RA/Dec (degrees) of a typed name ("Orion Nebula", "M 31", "NGC 2237"), offline; None if unknown.

    A person types names as they come: "m42", "NGC  2237", "orion nebula", "vega". The catalogue forms
    are looked up in any case and spacing first; the text scanner (which wants them as an archive text
    writes them, so that "m 42" in prose is not Messier 42) reads the rest."""
    written = " ".join(name.split())
    g = default()
    k = designation_key(written)
    found = (g.resolve_key(k) if k else None) or g.resolve_common(written) or g.resolve_star(written) \
        or g.resolve_star(written.title())
    if found is not None:
        return found.ra_deg, found.dec_deg
    placed = [o for o in objects_for(written, "", g) if o.ra_deg is not None]
    return (placed[0].ra_deg, placed[0].dec_deg) if placed else None
