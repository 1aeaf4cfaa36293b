"""Offline name → position resolver over OpenNGC (the SQLite database shipped by the PyPI package
``pyongc``, CC-BY-SA-4.0): NGC, IC and addendum objects with their Messier numbers, other catalogue
identifiers (Caldwell, Melotte, UGC, …) and common names ("Orion Nebula", "Horsehead Nebula"); plus the
popular-name aliases of ``data/aliases.csv`` (which win over OpenNGC's common names) and PyEphem's named
bright stars."""

from __future__ import annotations

import math
import re
import sqlite3
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from atlas.sky import names


@dataclass(frozen=True)
class Position:
    canonical_id: str  # OpenNGC name, e.g. NGC1976
    ra_deg: float
    dec_deg: float
    object_type: str
    size_deg: float | None = None  # catalogued major axis



def database_path() -> Path:
    import pyongc

    return Path(pyongc.__file__).resolve().parent / "ongc.db"


def key(catalogue: str, number: int | str) -> str:
    """Normalised lookup key: ``("NGC", 224)`` → ``NGC224``; ``("M", "031")`` → ``M31``."""
    return f"{catalogue.upper()}{int(number)}"


_ID = re.compile(r"^([A-Za-z]+)\s*0*(\d+)$")
_GALAXY_TYPES = ("G", "GPair", "GTrpl", "GGroup")


def designation_key(designation: str) -> str | None:
    """"NGC 2024" → ``NGC2024``, "M 64" → ``M64``; None for designations OpenNGC cannot hold ("Sh2-101")."""
    m = _ID.match(designation.replace(" ", ""))
    return key(m.group(1), m.group(2)) if m else None


class Gazetteer:
    def __init__(self, path: Path | None = None) -> None:
        con = sqlite3.connect(f"file:{path or database_path()}?mode=ro", uri=True)
        rows = con.execute("SELECT name, type, ra, dec, messier, identifiers, commonnames, ngc, ic, majax "
                           "FROM objects").fetchall()
        ids = con.execute("SELECT name, identifier FROM objIdentifiers").fetchall()
        con.close()
        self.positions: dict[str, Position] = {}
        self.by_key: dict[str, str] = {}
        self.common: dict[str, str] = {}
        duplicates: dict[str, str] = {}
        for name, typ, ra, dec, messier, identifiers, common, ngc, ic, majax in rows:
            if typ == "Dup":  # a duplicate record points at the real object
                target = f"NGC{ngc}" if ngc else (f"IC{ic}" if ic else None)
                if target:
                    duplicates[name] = target
                continue
            if ra is None or dec is None or typ == "NonEx":
                continue
            self.positions[name] = Position(name, math.degrees(ra), math.degrees(dec), typ,
                                            majax / 60.0 if majax else None)
            self._add_key(name, name)
            if messier:
                self.by_key[key("M", messier)] = name
            for ident in (identifiers or "").split(","):
                self._add_key(ident.strip(), name)
            for cname in (common or "").split(","):
                # OpenNGC files "Bear Claw Nebula" under a galaxy; a name that says nebula is not one
                if cname.strip() and not ("nebula" in cname.lower() and typ in _GALAXY_TYPES):
                    self.common[cname.strip().lower()] = name
        for ident, name in ids:
            if name in self.positions:
                self._add_key(ident, name)
        for dup, target in duplicates.items():
            target = self._canonical_name(target)
            if target in self.positions:
                self._add_key(dup, target)
        self.aliases = names.aliases()
        self.stars = names.bright_stars()
        stars = {s.lower() for s in self.stars}  # "Alnilam" is the star, not OpenNGC's nebula around it
        self._popular = tuple(dict.fromkeys(
            [n for n in self.common if n not in self.aliases and n not in stars and len(n) > 3] + names.alias_names()))
        # OpenNGC names that say no kind of object ("Eyes", "Silver Coin", "Browning", "Pleiades") read as
        # names only where written as one, with a capital: "naked eyes" made NGC 4438 the main object
        # of 78 entries, and "a Roman silver coin" NGC 253
        self._capitalised_only = frozenset(n for n in self._popular if n in self.common and n not in self.aliases
                                           and not _KIND_WORD.search(n))

    def _canonical_name(self, name: str) -> str:
        m = _ID.match(name)
        return f"{m.group(1).upper()}{int(m.group(2)):04d}" if m else name

    def _add_key(self, ident: str, name: str) -> None:
        m = _ID.match(ident.replace(" ", "")) or _ID.match(ident)
        if m:
            self.by_key.setdefault(key(m.group(1), m.group(2)), name)

    def resolve_key(self, k: str) -> Position | None:
        name = self.by_key.get(k)
        return self.positions.get(name) if name else None

    def capitalised_only(self, name: str) -> bool:
        """Whether a popular name says no kind of object (an OpenNGC name without "Nebula", "Galaxy", …),
        so that it may be an ordinary word ("Eyes", "Silver Coin")."""
        return " ".join(name.lower().split()) in self._capitalised_only

    def name_as_written(self, written: str) -> bool:
        """Whether ``written`` (a popular name as the text has it) may name the object: a name that says
        no kind of object must hold a capital letter, as a proper noun does."""
        return not self.capitalised_only(written) or any(c.isupper() for c in written)

    def popular_names(self) -> tuple[str, ...]:
        """Every popular name the extractor looks for (OpenNGC common names and aliases)."""
        return self._popular

    def alias_of(self, name: str) -> str | None:
        return self.aliases.get(name.lower())

    def resolve_common(self, name: str) -> Position | None:
        designation = self.alias_of(name)
        if designation is not None:
            k = designation_key(designation)
            return self.resolve_key(k) if k else None
        canonical = self.common.get(name.lower())
        return self.positions.get(canonical) if canonical else None

    def resolve_star(self, name: str) -> Position | None:
        radec = self.stars.get(name)
        return Position(name, radec[0], radec[1], "*") if radec else None


#: Words that say what kind of object a name is ("… Nebula", "… Cluster"): a name without one may be an
#: ordinary word, so it must be written as a proper noun (:meth:`Gazetteer.name_as_written`).
_KIND_WORD = re.compile(r"\b(?:nebula|nebulae|galaxy|galaxies|cluster|clusters|group|cloud|clouds|remnant|"
                        r"association|complex|quintet|quartet|trio|triplet|pair|chain|sextet|loop|asterism)\b")


@lru_cache(maxsize=1)
def default() -> Gazetteer:
    return Gazetteer()
