"""Name lists the extractor needs beyond OpenNGC: popular aliases (``data/aliases.csv``), the Latin
genitives used in star designations ("Eta Carinae", "61 Cygni", "V838 Monocerotis"), the IAU
constellation abbreviations ("V838 Mon"), and named bright stars with positions from PyEphem's catalogue."""

from __future__ import annotations

import csv
from functools import lru_cache
from pathlib import Path

ALIASES_CSV = Path(__file__).resolve().parent / "data" / "aliases.csv"

GREEK = ("Alpha", "Beta", "Gamma", "Delta", "Epsilon", "Zeta", "Eta", "Theta", "Iota", "Kappa", "Lambda", "Mu",
         "Nu", "Xi", "Omicron", "Pi", "Rho", "Sigma", "Tau", "Upsilon", "Phi", "Chi", "Psi", "Omega")

GENITIVES = (
    "Andromedae", "Antliae", "Apodis", "Aquarii", "Aquilae", "Arae", "Arietis", "Aurigae", "Bootis", "Caeli",
    "Camelopardalis", "Cancri", "Canum Venaticorum", "Canis Majoris", "Canis Minoris", "Capricorni", "Carinae",
    "Cassiopeiae", "Centauri", "Cephei", "Ceti", "Chamaeleontis", "Circini", "Columbae", "Comae Berenices",
    "Coronae Australis", "Coronae Borealis", "Corvi", "Crateris", "Crucis", "Cygni", "Delphini", "Doradus",
    "Draconis", "Equulei", "Eridani", "Fornacis", "Geminorum", "Gruis", "Herculis", "Horologii", "Hydrae",
    "Hydri", "Indi", "Lacertae", "Leonis", "Leonis Minoris", "Leporis", "Librae", "Lupi", "Lyncis", "Lyrae",
    "Mensae", "Microscopii", "Monocerotis", "Muscae", "Normae", "Octantis", "Ophiuchi", "Orionis", "Pavonis",
    "Pegasi", "Persei", "Phoenicis", "Pictoris", "Piscium", "Piscis Austrini", "Puppis", "Pyxidis", "Reticuli",
    "Sagittae", "Sagittarii", "Scorpii", "Sculptoris", "Scuti", "Serpentis", "Sextantis", "Tauri", "Telescopii",
    "Trianguli", "Trianguli Australis", "Tucanae", "Ursae Majoris", "Ursae Minoris", "Velorum", "Virginis",
    "Volantis", "Vulpeculae")

# PyEphem's catalogue repeats some stars under variant spellings, and "Atlas" (a Pleiad) is far more
# often a rocket in APOD, as "Peacock" is a person.
_SKIPPED_STARS = {"Atlas", "Peacock", "Formalhaut", "Albereo", "Adara", "Minkar"}


@lru_cache(maxsize=1)
def constellations() -> dict[str, str]:
    """The 88 IAU constellations, three-letter abbreviation → name, from the table astropy ships.

    The file is found without importing astropy (≈ 0.2 s, a share of a one-day build)."""
    from importlib.util import find_spec

    spec = find_spec("astropy")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("the sky names need astropy's constellation table: `pip install astropy`")
    path = Path(spec.submodule_search_locations[0]) / "coordinates" / "data" / "constellation_names.dat"
    rows = (line.split(None, 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {abbr: name.strip() for abbr, name in rows}


def constellation_abbreviations() -> tuple[str, ...]:
    return tuple(constellations())


@lru_cache(maxsize=1)
def _alias_rows() -> tuple[tuple[str, str], ...]:
    """(popular name as written, catalogue designation), in file order."""
    with ALIASES_CSV.open(newline="") as f:
        rows = csv.DictReader(line for line in f if not line.startswith("#"))
        return tuple((r["name"].strip(), r["designation"].strip()) for r in rows)


def aliases() -> dict[str, str]:
    """Lower-cased popular name → catalogue designation."""
    return {name.lower(): designation for name, designation in _alias_rows()}


def alias_names() -> list[str]:
    return [name for name, _ in _alias_rows()]


@lru_cache(maxsize=1)
def bright_stars() -> dict[str, tuple[float, float]]:
    """Named bright star → (RA, Dec) in degrees, J2000, from PyEphem's star catalogue."""
    from ephem import stars

    out: dict[str, tuple[float, float]] = {}
    for line in stars.db.splitlines():
        fields = line.split(",")
        if len(fields) < 4 or fields[0] in _SKIPPED_STARS:
            continue
        ra_hours, dec_deg = float(fields[2].split("|")[0]), float(fields[3].split("|")[0])
        out[fields[0]] = (ra_hours * 15.0, dec_deg)
    return out

