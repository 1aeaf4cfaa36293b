"""Find object names in APOD titles and explanations.

Catalogue designations (Messier, NGC/IC with ranges like "NGC 2237-9", Caldwell, Melotte, UGC, and,
recorded but not resolvable offline, Sharpless, Barnard, Abell, Arp), the common names OpenNGC knows
("Orion Nebula", "the Pleiades", possessives included), and solar-system bodies, which are recorded as
non-sidereal (no fixed RA/Dec). Text is matched as written; spans index into the given string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from pipeline.sky.gazetteer import Gazetteer, key


@dataclass(frozen=True)
class Mention:
    name: str  # as written
    key: str | None  # catalogue lookup key (M31, NGC224…) or None for common names / bodies
    kind: str  # catalogue | common | solar_system
    start: int
    end: int


_NOT_AFTER_M = r"(?!\s*(?:Abrams|A\d|tank|rifle|dwarf|class|type|-class))"
_CATALOGUES = [
    ("M", re.compile(r"\b(?:M|Messier)\s?(\d{1,3})\b" + _NOT_AFTER_M)),
    ("NGC", re.compile(r"\bNGC\s?(\d{1,4})(?:\s?[-–]\s?(\d{1,4}))?\b")),
    ("IC", re.compile(r"\bIC\s?(\d{1,4})(?:\s?[-–]\s?(\d{1,4}))?\b")),
    ("C", re.compile(r"\bCaldwell\s?(\d{1,3})\b")),
    ("MEL", re.compile(r"\b(?:Melotte|Mel)\s?(\d{1,3})\b")),
    ("UGC", re.compile(r"\bUGC\s?(\d{1,5})\b")),
    ("SH2", re.compile(r"\b(?:Sh\s?2|SH2|Sharpless)\s?[-–]?\s?(\d{1,3})\b")),
    ("B", re.compile(r"\bBarnard\s?(\d{1,3})\b")),
    ("ABELL", re.compile(r"\bAbell\s?(\d{1,4})\b")),
    ("ARP", re.compile(r"\bArp\s?(\d{1,3})\b")),
]
SOLAR_SYSTEM = ["Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto",
                "Ceres", "Io", "Europa", "Ganymede", "Callisto", "Titan", "Enceladus", "Phobos", "Deimos", "Charon"]
_SOLAR = re.compile(r"\b(" + "|".join(SOLAR_SYSTEM) + r")(?:'s)?\b|\bComet\s+(?:[A-Z0-9][\w/.-]*)(?:\s+[A-Z][\w-]*)?")


def _range(first: str, last: str | None) -> list[int]:
    """'2237', '9' → 2237..2239 (APOD writes ranges with the changing digits only)."""
    a = int(first)
    if not last:
        return [a]
    b = int(first[: len(first) - len(last)] + last) if len(last) < len(first) else int(last)
    return list(range(a, b + 1)) if a < b <= a + 10 else [a]


@lru_cache(maxsize=4)
def _common_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    alts = sorted(names, key=len, reverse=True)
    body = "|".join(r"\s+".join(map(re.escape, n.split())) for n in alts)
    return re.compile(r"\b(?:the\s+)?(" + body + r")(?:'s)?\b", re.IGNORECASE)


def extract(text: str, gazetteer: Gazetteer) -> list[Mention]:
    found: list[Mention] = []
    taken: list[tuple[int, int]] = []

    def free(s: int, e: int) -> bool:
        return all(e <= a or s >= b for a, b in taken)

    for cat, pattern in _CATALOGUES:
        for m in pattern.finditer(text):
            numbers = _range(m.group(1), m.group(2) if m.lastindex and m.lastindex >= 2 else None)
            if cat == "M" and not 1 <= numbers[0] <= 110:
                continue
            if not free(m.start(), m.end()):
                continue
            taken.append((m.start(), m.end()))
            for n in numbers:
                found.append(Mention(m.group(0), key(cat, n), "catalogue", m.start(), m.end()))
    names = tuple(n for n in gazetteer.common if len(n) > 3)
    for m in _common_pattern(names).finditer(text):
        if free(m.start(1), m.end(1)):
            taken.append((m.start(1), m.end(1)))
            found.append(Mention(m.group(1), None, "common", m.start(1), m.end(1)))
    for m in _SOLAR.finditer(text):
        if free(m.start(), m.end()):
            taken.append((m.start(), m.end()))
            name = m.group(1) or m.group(0)
            found.append(Mention(name, None, "solar_system", m.start(), m.start() + len(name)))
    return sorted(found, key=lambda x: (x.start, x.key or ""))
