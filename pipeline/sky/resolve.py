"""Resolve extracted mentions to positions: offline through OpenNGC; solar-system bodies stay
non-sidereal. One primary target per entry: the first resolved object of the title, else of the text."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.sky.extract import Mention, extract
from pipeline.sky.gazetteer import Gazetteer


@dataclass(frozen=True)
class SkyObject:
    name: str
    canonical_id: str | None
    ra_deg: float | None
    dec_deg: float | None
    object_type: str | None
    resolver: str | None  # openngc | solar-system | None (unresolved)
    field: str  # title | explanation
    span_start: int
    span_end: int
    is_primary: bool = False


def resolve(mention: Mention, field: str, gazetteer: Gazetteer) -> SkyObject:
    if mention.kind == "solar_system":
        return SkyObject(mention.name, mention.name, None, None, "solar-system body", "solar-system", field,
                         mention.start, mention.end)
    pos = gazetteer.resolve_key(mention.key) if mention.key else gazetteer.resolve_common(" ".join(mention.name.split()))
    if pos is None:
        return SkyObject(mention.name, mention.key, None, None, None, None, field, mention.start, mention.end)
    return SkyObject(mention.name, pos.canonical_id, pos.ra_deg, pos.dec_deg, pos.object_type, "openngc", field,
                     mention.start, mention.end)


def objects_for(title: str, explanation: str, gazetteer: Gazetteer) -> list[SkyObject]:
    out: list[SkyObject] = []
    seen: set[tuple[str, str | None]] = set()
    for field, text in (("title", title), ("explanation", explanation)):
        for m in extract(text or "", gazetteer):
            obj = resolve(m, field, gazetteer)
            ident = (field, obj.canonical_id or obj.name)
            if ident in seen:
                continue
            seen.add(ident)
            out.append(obj)
    primary = next((i for i, o in enumerate(out) if o.ra_deg is not None), None)
    if primary is not None:
        o = out[primary]
        out[primary] = SkyObject(**{**o.__dict__, "is_primary": True})
    return out


def position_of(name: str) -> tuple[float, float] | None:
    """RA/Dec (degrees) of a typed name ("Orion Nebula", "M 31", "NGC 2237"), offline; None if unknown."""
    from pipeline.sky.gazetteer import default

    placed = [o for o in objects_for(name, "", default()) if o.ra_deg is not None]
    return (placed[0].ra_deg, placed[0].dec_deg) if placed else None
