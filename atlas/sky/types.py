"""Readable names for the object-type codes the lake stores (``objects.object_type``).

The lake keeps each resolver's own code (stable, and what the API answers): OpenNGC's ``type`` column and,
for names resolved online, SIMBAD's ``otype``. People read "emission nebula and star cluster", not
``Cl+N``; this table is what the pages show. Codes not listed are shown as they are.
"""

from __future__ import annotations

OPENNGC_TYPES: dict[str, str] = {  # OpenNGC's README, "Object types"
    "*": "star", "**": "double star", "*Ass": "association of stars", "OCl": "open cluster",
    "GCl": "globular cluster", "Cl+N": "star cluster and nebula", "G": "galaxy", "GPair": "galaxy pair",
    "GTrpl": "galaxy triplet", "GGroup": "group of galaxies", "PN": "planetary nebula", "HII": "H II region",
    "DrkN": "dark nebula", "EmN": "emission nebula", "Neb": "nebula", "RfN": "reflection nebula",
    "SNR": "supernova remnant", "Nova": "nova star", "NonEx": "nonexistent object", "Other": "other object",
}

SIMBAD_TYPES: dict[str, str] = {  # the commonest of SIMBAD's short ``otype`` codes
    "OpC": "open cluster", "OpCl": "open cluster", "GlC": "globular cluster", "GlCl": "globular cluster",
    "Cl*": "star cluster", "As*": "association of stars", "MoC": "molecular cloud", "DNe": "dark nebula",
    "RNe": "reflection nebula", "EmO": "emission object", "ISM": "interstellar matter", "Cld": "cloud",
    "GiG": "galaxy in a group", "GrG": "group of galaxies", "ClG": "cluster of galaxies", "PaG": "pair of galaxies",
    "IG": "interacting galaxies", "SBG": "starburst galaxy", "LSB": "low surface brightness galaxy",
    "AGN": "active galactic nucleus", "QSO": "quasar", "Sy1": "Seyfert 1 galaxy", "Sy2": "Seyfert 2 galaxy",
    "SyG": "Seyfert galaxy", "BLL": "BL Lac object", "Bla": "blazar", "rG": "radio galaxy", "EmG": "emission-line galaxy",
    "GiC": "galaxy in a cluster", "BiC": "brightest galaxy in a cluster", "V*": "variable star",
    "EB*": "eclipsing binary", "SB*": "spectroscopic binary", "WR*": "Wolf-Rayet star", "C*": "carbon star",
    "RG*": "red giant", "s*r": "red supergiant", "s*b": "blue supergiant", "Be*": "Be star", "Psr": "pulsar",
    "WD*": "white dwarf", "N*": "neutron star", "BH": "black hole", "X": "X-ray source", "XB*": "X-ray binary",
    "SN*": "supernova", "No*": "nova", "Y*O": "young stellar object", "TT*": "T Tauri star", "HH": "Herbig-Haro object",
    "bub": "bubble", "SFR": "star-forming region", "Pl": "planet", "PoC": "part of a cloud", "Rad": "radio source",
}


def object_type_name(code: str | None) -> str | None:
    """The readable name of a stored type code; the code itself when unknown; None for no code."""
    if not code:
        return None
    return OPENNGC_TYPES.get(code) or SIMBAD_TYPES.get(code) or code
