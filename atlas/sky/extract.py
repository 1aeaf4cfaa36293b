"""Find object names in APOD titles and explanations.

Catalogue designations: Messier, NGC/IC with ranges like "NGC 2237-9", Caldwell, Melotte, UGC, PGC and
LBN, which OpenNGC can place; Sharpless, Barnard, Abell, Arp, HH, WR, HD, HR, HIP, Gliese, SN, 3C, ESO,
LDN, vdB, Collinder, Trumpler, Kepler hosts, cometary globules and Minkowski's nebulae ("M2-9"), which
go to the online resolver. Star designations ("Eta Carinae", "61 Cygni", "V838 Mon", "HL Tauri"); popular
names (OpenNGC's and ``data/aliases.csv``, possessives and line breaks included); named bright stars;
solar-system bodies, recorded as non-sidereal (no fixed RA/Dec). Text is matched as written; spans index
into the given string.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from atlas.sky.gazetteer import Gazetteer, designation_key, key
from atlas.sky.names import GENITIVES, GREEK, constellation_abbreviations


@dataclass(frozen=True)
class Mention:
    name: str  # as written
    key: str | None  # OpenNGC lookup key (M31, NGC224…) when OpenNGC may know the object
    kind: str  # catalogue | designation | common | star | solar_system
    start: int
    end: int
    query: str | None = None  # what the online resolver is asked when OpenNGC cannot place it


# not "M1 Abrams", "M2 rifle", nor Minkowski's planetary nebulae "M1-67", "M2-9"
_NOT_AFTER_M = r"(?!\s*(?:Abrams|A\d|tank|rifle|dwarf|class|type|-class)|-\d)"
# (OpenNGC key prefix or None, designation prefix for the online query, pattern whose group 1 is the number)
_CATALOGUES: list[tuple[str | None, str, re.Pattern[str]]] = [
    ("M", "M ", re.compile(r"\b(?:M|Messier)\s?(\d{1,3})\b" + _NOT_AFTER_M)),
    ("NGC", "NGC ", re.compile(r"\bNGC\s?(\d{1,4})(?:\s?[-–]\s?(\d{1,4}))?\b")),
    ("IC", "IC ", re.compile(r"\bIC\s?(\d{1,4})(?:\s?[-–]\s?(\d{1,4}))?\b")),
    ("C", "Caldwell ", re.compile(r"\bCaldwell\s?(\d{1,3})\b")),
    ("MEL", "Melotte ", re.compile(r"\b(?:Melotte|Mel)\s?(\d{1,3})\b")),
    ("UGC", "UGC ", re.compile(r"\bUGC\s?(\d{1,5})\b")),
    ("PGC", "PGC ", re.compile(r"\bPGC\s?(\d{1,7})\b")),
    ("LBN", "LBN ", re.compile(r"\bLBN\s?(\d{1,4})\b")),
    ("SH2", "Sh2-", re.compile(r"\b(?:Sh\s?2|SH\s?2|Sharpless)\s?[-–]?\s?(\d{1,3})\b")),
    ("B", "Barnard ", re.compile(r"\bBarnard\s?(\d{1,3})\b")),
    ("ABELL", "Abell ", re.compile(r"\b(?:Abell|ACO)\s?(S?\d{1,4})\b")),
    ("ARP", "Arp ", re.compile(r"\bArp\s?(\d{1,3})\b")),
    (None, "HH ", re.compile(r"\bHH\s?(\d{1,4})\b")),
    (None, "WR ", re.compile(r"\bWR\s?(\d{1,3}[a-d]?)\b")),
    (None, "HD ", re.compile(r"\bHDE?\s?(\d{3,6})\b")),
    (None, "HR ", re.compile(r"\bHR\s?(\d{1,4})\b")),
    (None, "HIP ", re.compile(r"\bHIP\s?(\d{1,6})\b")),
    (None, "GJ ", re.compile(r"\b(?:Gliese|GJ)\s?(\d{1,4}(?:\.\d)?)\b")),
    (None, "SN ", re.compile(r"\bSN\s?((?:1[0-9]|20)\d{2}[A-Za-z]{0,2})\b")),
    (None, "3C ", re.compile(r"\b3C\s?(\d{1,3}(?:\.\d)?)\b")),
    (None, "ESO ", re.compile(r"\bESO\s?(\d{1,3}-\d{1,3})\b")),
    (None, "LDN ", re.compile(r"\b(?:LDN|Lynds)\s?(\d{1,4})\b")),
    (None, "vdB ", re.compile(r"\bvdB\s?(\d{1,3})\b")),
    (None, "Collinder ", re.compile(r"\bCollinder\s?(\d{1,3})\b")),
    (None, "Trumpler ", re.compile(r"\bTrumpler\s?(\d{1,2})\b")),
    (None, "Kepler-", re.compile(r"\bKepler-(\d{1,4})(?:\s?[b-h])?\b")),
    (None, "CG ", re.compile(r"\bCG\s?(\d{1,2})\b")),
    (None, "M ", re.compile(r"\bM\s?(\d-\d{1,3})\b")),  # Minkowski's planetary nebulae: M1-67, M2-9
]
SOLAR_SYSTEM = ["Sun", "Moon", "Mercury", "Venus", "Mars", "Jupiter", "Saturn", "Uranus", "Neptune", "Pluto",
                "Ceres", "Io", "Europa", "Ganymede", "Callisto", "Titan", "Enceladus", "Phobos", "Deimos", "Charon"]
_SOLAR = re.compile(r"\b(" + "|".join(SOLAR_SYSTEM) + r")(?:'s)?\b|\bComet\s+(?:[A-Z0-9][\w/.-]*)(?:\s+[A-Z][\w-]*)?")


def _alternation(names) -> str:
    """Longest first, any whitespace (line breaks included) between words."""
    return "|".join(r"\s+".join(map(re.escape, n.split())) for n in sorted(names, key=len, reverse=True))


@lru_cache(maxsize=1)
def _designation_pattern() -> re.Pattern[str]:
    """Bayer ("Eta Carinae"), Flamsteed ("61 Cygni") and variable-star ("V838 Mon", "RS Puppis") names."""
    gen = _alternation(GENITIVES)
    abbr = "|".join(constellation_abbreviations())
    greek = "|".join(GREEK)
    return re.compile(rf"\b(?:(?:{greek})\s+(?:{gen})|\d{{1,3}}\s+(?:{gen})|V\d{{1,4}}\s+(?:{gen}|{abbr})"
                      rf"|(?:[R-Z]|[A-IK-Z][A-IK-Z])\s+(?:{gen}))\b(?![\s-]+(?:stars?|type|class)\b)")


@lru_cache(maxsize=4)
def _common_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    """Popular names in any letter case, matched against the *lower-cased* text: Python's ``re`` tries a
    case-insensitive alternation of ~230 names about 4× slower than the same alternation in lower case
    (1.4 s against 0.35 s over 2,000 archive texts; the same matches)."""
    return re.compile(r"\b(?:the\s+)?(" + _alternation([n.lower() for n in names]) + r")(?:'s)?\b")


def _common_matches(text: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Spans of popular names in ``text``; lower-casing keeps positions for all but a few non-ASCII
    letters (e.g. "İ"), and such a text takes the case-insensitive pattern instead."""
    lowered = text.lower()
    if len(lowered) == len(text):
        return [m.span(1) for m in _common_pattern(names).finditer(lowered)]
    slow = re.compile(_common_pattern(names).pattern, re.IGNORECASE)
    return [m.span(1) for m in slow.finditer(text)]


@lru_cache(maxsize=4)
def _star_pattern(names: tuple[str, ...]) -> re.Pattern[str]:
    return re.compile(r"\b(" + _alternation(names) + r")(?:'s)?\b")  # case-sensitive: "Vega", not "vega"


def _range(first: str, last: str | None) -> list[int]:
    """'2237', '9' → 2237..2239 (APOD writes ranges with the changing digits only)."""
    a = int(first)
    if not last:
        return [a]
    b = int(first[: len(first) - len(last)] + last) if len(last) < len(first) else int(last)
    return list(range(a, b + 1)) if a < b <= a + 10 else [a]


def _one_line(s: str) -> str:
    return " ".join(s.split())


def extract(text: str, gazetteer: Gazetteer) -> list[Mention]:
    found: list[Mention] = []
    taken: list[tuple[int, int]] = []

    def claim(s: int, e: int) -> bool:
        """Earlier kinds win overlapping text: "NGC 2024" is not also read as part of a popular name."""
        if any(s < b and e > a for a, b in taken):
            return False
        taken.append((s, e))
        return True

    for prefix, label, pattern in _CATALOGUES:
        for m in pattern.finditer(text):
            last = m.group(2) if pattern.groups >= 2 else None
            numbers = _range(m.group(1), last) if m.group(1).isdigit() else [m.group(1)]
            if prefix == "M" and not 1 <= int(numbers[0]) <= 110:
                continue
            if not claim(m.start(), m.end()):
                continue
            for n in numbers:
                lookup = key(prefix, n) if prefix and str(n).isdigit() else None
                found.append(Mention(m.group(0), lookup, "catalogue", m.start(), m.end(), f"{label}{n}"))
    for m in _designation_pattern().finditer(text):
        if claim(m.start(), m.end()):
            found.append(Mention(m.group(0), None, "designation", m.start(), m.end(), _one_line(m.group(0))))
    for start, end in _common_matches(text, gazetteer.popular_names()):
        if gazetteer.name_as_written(text[start:end]) and claim(start, end):
            name = text[start:end]
            designation = gazetteer.alias_of(_one_line(name))
            found.append(Mention(name, designation_key(designation) if designation else None, "common",
                                 start, end, designation or _one_line(name)))
    for m in _star_pattern(tuple(gazetteer.stars)).finditer(text):
        if claim(m.start(1), m.end(1)):
            found.append(Mention(m.group(1), None, "star", m.start(1), m.end(1), m.group(1)))
    for m in _SOLAR.finditer(text):
        name = m.group(1) or m.group(0)
        if claim(m.start(), m.start() + len(name)):
            found.append(Mention(name, None, "solar_system", m.start(), m.start() + len(name)))
    return sorted(found, key=lambda x: (x.start, x.key or ""))
