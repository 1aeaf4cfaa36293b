"""Credits whose parts NASA's API glued together, separated again.

The API built ``copyright`` from the credit line's HTML without the separators between its links, so
844 of the archive's notices read "Robert NemiroffGMUNASAGSFC", "Jan SafarBrno Observatory" or
"K. StanekW. ColleyCfA". The entry pages, the downloads and the search snippets showed them so.

Where the parts meet is mostly visible in the letters: a name's lower-case end against the capital of the
next part, an acronym against a capitalised word of four letters or more ("TWANStarry"), an
abbreviation's full stop against the next part ("Obs.JPL"), anything against "www.". Glued acronyms
("NASAESACSASTScI") are split only into acronyms the archive's prose uses on their own. What the letters
cannot tell apart is left whole rather than split wrongly:

* a part's first word (the credit's, or one after "/", ",", ":" or a lower-case word) may be a compound
  name, so no lower→upper cut is made in it ("AstroAlert", "GreekSky", "AlltheSky.com", a credit that is
  only "PatrickTaschler", "via SoundCloud", "/ AstroHoracio"), except before an acronym that follows an
  earlier cut ("NASATerraASTER") or that prose uses (not "MicroFUN");
* a word the archive's titles and explanations write whole stays whole ("NOIRLab", "SpaceX"), and so
  does a compound in it ("SkyCenter" in "SkyCenterUniv.");
* nothing is cut inside a web address ("www.MrEclipse.com", "GreenFlash.Photo");
* short prefixes are not cut (a cut needs three lower-case letters before it: "McDavid", "LeRoy",
  "GaBany"), nor "Fitz", "Van" and the like ("FitzGerald"), nor after a lower-case start ("deGrasseTyson"),
  nor before one last capital ("SpaceX") or a short last syllable ending the credit ("ByoungJun");
* "NOIRLab" and "STSci" are no acronym and word: the word after an acronym needs four letters.

The parts are joined with ", ". 499 of the bundled archive's 2,609 distinct notices change
(tests/test_credits.py holds the cases this was checked on, including the wrong cuts a review found).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence

_LOWER = "a-z\u00df-\u00f6\u00f8-\u00ff"
_UPPER = "A-Z\u00c0-\u00d6\u00d8-\u00de"
#: A lower-case run of three letters against a capital: the end of a name and the next part.
_NAME_END = re.compile(rf"(?<=[{_LOWER}]{{3}})(?=[{_UPPER}])")
#: A lower-case run against an acronym ("TerraASTER", "NemiroffGMU").
_BEFORE_ACRONYM = re.compile(rf"(?<=[{_LOWER}]{{3}})(?=[{_UPPER}]{{2}})")
#: An acronym against a capitalised word of four letters or more ("SDSSGalaxy", "TWANStarry"; not
#: "NOIRLab" or "STSci").
_AFTER_ACRONYM = re.compile(rf"(?<=[{_UPPER}]{{2}})(?=[{_UPPER}][{_LOWER}]{{3}})(?![{_UPPER}]www\.)")
#: An abbreviation's full stop against the next part ("Obs.JPL", "al.Caltech"; not the initials of
#: "M.Pohlen" or "U.Victoria").
_AFTER_STOP = re.compile(rf"(?<=[{_LOWER}]{{2}}\.)(?=[{_UPPER}])")
#: A web address glued to what comes before it ("TWANwww.blue-moon.ca").
_BEFORE_WWW = re.compile(r"(?<=[A-Za-z.])(?=www\.)")
#: A token holding a web address: no cut inside the address ("www.MrEclipse.com", "GreenFlash.Photo").
_WEB = re.compile(r"www\.|\.(?:com|org|net|edu|gov|info|photo|space|tv|io|[a-z]{2})\b", re.IGNORECASE)
#: A run of capitalised pieces or acronyms that prose may write whole ("SkyCenter" in "SkyCenterUniv.").
_COMPOUND = re.compile(rf"[{_UPPER}][{_LOWER}]+(?:[{_UPPER}][{_LOWER}]+|[{_UPPER}]{{2,}})+")
#: The letters and digits around a cut: a word prose may write whole ("SoundCloud", "NOIRLab", "SpaceX").
_RUN = re.compile(rf"[A-Za-z0-9{_LOWER[3:]}{_UPPER[3:]}]+")
#: Name prefixes a cut after would split a surname ("FitzGerald", "VanDerBerg", "deGrasse" is lower case).
_NAME_PREFIXES = frozenset({"Fitz", "Mac", "Van", "Von", "Del", "Della", "Dal", "Des", "Den", "Ter"})
#: A credit's last name, short and capitalised ("Jeong ByoungJun"): a given name's second syllable.
_SHORT_LAST = re.compile(rf"[{_UPPER}][{_LOWER}]{{1,3}}")
#: A word made of glued acronyms: capitals (and STScI's lower case letters), with at least four capitals.
_ACRONYM_RUN = re.compile(r"[A-Z][A-Za-z0-9]{5,}")
_PROSE_WORD = re.compile(r"[A-Za-z][A-Za-z0-9]*")
#: How often prose must use an acronym on its own for it to be one part of a glued run.
_MIN_ACRONYM_USES = 3
#: Words after which a new part starts anyway (its first word is treated as a part's first word).
_PART_ENDS = (",", ";", ":", "(", "&", "/")


def separate_glued_credits(texts: Sequence[str | None], *, prose: Sequence[str]) -> dict[int, str]:
    """Credit texts whose parts were glued together, separated: index → the separated text (texts that
    need nothing are left out). ``prose``: the archive's titles and explanations, whose words say which
    compounds and acronyms are written whole."""
    words = Counter(w for text in prose if text for w in _PROSE_WORD.findall(text))
    separated: dict[int, str] = {}
    for i, text in enumerate(texts):
        if not text:
            continue
        fixed = _separate(text, words)
        if fixed != text:
            separated[i] = fixed
    return separated


def _separate(text: str, words: Counter[str]) -> str:
    tokens = text.split(" ")
    out = []
    for k, token in enumerate(tokens):
        # a token after a lower-case word ("via SoundCloud", "Observatoire d'Orange") begins a name too
        part_start = (k == 0 or tokens[k - 1].endswith(_PART_ENDS) or token.startswith("(")
                      or (tokens[k - 1].isalpha() and tokens[k - 1].islower()))
        segments = token.split("/")  # "Rubin Observatory/NOIRLab/SLAC/AURA": each begins a part
        joined = []
        for j, segment in enumerate(segments):
            last = k == len(tokens) - 1 and j == len(segments) - 1
            pieces = []
            for piece in _cut(segment, words, part_start=part_start or j > 0, last=last):
                pieces.extend(_acronyms(piece, words))
            joined.append(", ".join(pieces))
        out.append("/".join(joined))
    return " ".join(out)


def _cut(token: str, words: Counter[str], *, part_start: bool, last: bool) -> list[str]:
    """``token`` cut where its letters show two parts meet (see the module docstring). ``part_start``:
    the token begins a part (its first word may be a compound name); ``last``: it ends the credit."""
    web = _WEB.search(token)
    address = token.find("www.") if "www." in token else len(token)  # no cut inside a web address
    protected = [(m.start(), m.end()) for m in _COMPOUND.finditer(token) if words[m.group()]]
    protected += [(m.start(), m.end()) for m in _RUN.finditer(token) if words[m.group()]]
    www = {m.start() for m in _BEFORE_WWW.finditer(token)}
    stops = set() if web else {m.start() for m in _AFTER_STOP.finditer(token)}
    after_acronym = {m.start() for m in _AFTER_ACRONYM.finditer(token)}
    before_acronym = {m.start() for m in _BEFORE_ACRONYM.finditer(token)}
    name_ends = {m.start() for m in _NAME_END.finditer(token)} - after_acronym - before_acronym
    cuts = sorted(c for c in www | stops | after_acronym | before_acronym | name_ends if c <= address)
    pieces, start, first = [], 0, part_start
    for n, at in enumerate(cuts):
        if at not in www and any(a < at < b for a, b in protected):
            continue
        right = token[at:cuts[n + 1] if n + 1 < len(cuts) else len(token)]
        if first and at in name_ends | before_acronym:
            # a part's first word may be a compound name: cut only before an acronym that follows an
            # earlier cut ("NASATerraASTER") or that prose uses ("NightUCAR"; not "MicroFUN")
            acronym = re.match(rf"[{_UPPER}]+", right).group()
            if not (at in before_acronym and (start > 0 or words[acronym] >= _MIN_ACRONYM_USES)):
                continue
        if at in name_ends:
            left = token[start:at]
            if (left in _NAME_PREFIXES or left[:1].islower() or len(right) == 1
                    or (last and n + 1 == len(cuts) and _SHORT_LAST.fullmatch(right))):
                continue  # "FitzGerald", "deGrasseTyson", "SpaceX", a credit ending "ByoungJun"
        pieces.append(token[start:at])
        start, first = at, True  # what follows a cut begins a part
    pieces.append(token[start:])
    return pieces


def _acronyms(piece: str, words: Counter[str]) -> list[str]:
    """A glued run of acronyms ("NASAESACSASTScI") as the acronyms prose uses on their own, fewest
    pieces; else the piece as it is."""
    core = piece.rstrip(".,;:)")
    if not _ACRONYM_RUN.fullmatch(core) or sum(c.isupper() for c in core) < 4 or words[core]:
        return [piece]
    best: dict[int, list[str]] = {0: []}
    for end in range(2, len(core) + 1):
        for begin in range(max(0, end - 6), end - 1):
            part = core[begin:end]
            if begin in best and words[part] >= _MIN_ACRONYM_USES and part[0].isupper() and part[-1].isupper() \
                    and (end not in best or len(best[begin]) + 1 < len(best[end])):
                best[end] = [*best[begin], part]
    found = best.get(len(core))
    if not found or len(found) < 2:
        return [piece]
    return [*found[:-1], found[-1] + piece[len(core):]]
