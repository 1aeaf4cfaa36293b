"""Text cleaning for APOD records: strip page boilerplate and script junk, keep credits and rights.

The 1995–96 pages were scraped with their navigation text ("Today's Picture:", "We keep an archive…")
and a few 2008–09 pages carry ``digg_url = …`` JavaScript. Credits and copyright notices found in that
text are returned separately instead of being thrown away. NASA's API also clips the first letters of
some explanations, and replaces some characters outside ASCII by U+FFFD; :func:`restore_clipped_starts`
and :func:`restore_replaced_characters` put them back from the archive's own words.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

_DIGG = re.compile(r"digg_(?:url|skin|title|bodytext|topic)\s*=\s*'[^']*';?", re.IGNORECASE)
_EXPLANATION_LABEL = re.compile(r"\bExplanation\s*:", re.IGNORECASE)
_CREDIT = re.compile(r"\b(?:Picture|Image|Photo)?\s*Credits?\s*(?:&\s*Copyright)?\s*:\s*(.+)", re.I)
_TAIL_MARKERS = (
    "We keep an archive",
    "We keep an  archive",
    "Astronomy Picture of the Day is brought to you by",
    "Astronomy Picture of the Day (TM) is created",
    "Original material on this page is copyrighted",
    "The sky is filled with breathtaking pictures",
    "Information: The Scale of the Universe Debate",
    "Tomorrow's picture:",
    "< Archive | Index",
)
_TITLE_CREDIT = re.compile(r"\s*(?:Image\s+|Picture\s+|Photo\s+)?Credits?(?:\s*(?:and|&)\s*Copyright)?\s*:?\s*$", re.I)
_RIGHTS = re.compile(
    r"((?:Original material on this page is copyrighted to|Astronomy Picture of the Day \(TM\) is "
    r"created and copyrighted in \d{4} by)\s.*?(?:Bonnell|$)\.?)",
    re.IGNORECASE | re.DOTALL,
)
#: The head before "Explanation:" is page furniture only when it is short.
_MAX_HEAD = 600
#: NASA's APOD API strips the label "Explanation: " from a page's text as a *set of characters*, so an
#: explanation whose first word begins with letters of that set loses them: "Earth's" arrives as
#: "rth's", "Every" as "very", "Elliptical" as "cal" (nasa/apod-api issues 87 and 119; ≈ 150 texts of
#: the archive). Only "E" of that set is upper case, so every clipped word began with "E".
_LABEL_CHARS = frozenset("Explanation: ")
_CLIPPED = re.compile(r"([a-z][a-z'\-]*)\W*([A-Za-z0-9']*)")
#: A clipped word is restored to the most frequent fitting word only when it is this many times as
#: frequent as the next one (and the words that follow them in the archive do not decide).
_CLEAR_LEAD = 3


@dataclass(frozen=True)
class CleanText:
    explanation: str
    credit: str | None
    rights_note: str | None


def squash(text: str | None) -> str:
    """Collapse runs of white space (the archive has hard line breaks from HTML). ``str.split`` splits
    on exactly the characters ``\\s`` matches, about 4× faster than the regular expression."""
    return " ".join((text or "").split())


def clean_explanation(raw: str | None) -> CleanText:
    # every build cleans the whole archive: the patterns run only where their fixed words occur in the
    # lower-cased text (ASCII case-insensitive; the patterns also fold a few non-ASCII letters such as
    # the dotless ı, which no archive text uses), which halves the time of ingesting 11k entries
    text = raw or ""
    lowered = text.lower()
    if "digg_" in lowered:
        text = _DIGG.sub(" ", text)
        lowered = text.lower()
    credit = None
    label = _EXPLANATION_LABEL.search(text) if "explanation" in lowered else None
    if label and label.start() <= _MAX_HEAD:
        head, text = text[: label.start()], text[label.end() :]
        found = _CREDIT.search(head)
        if found:
            credit = squash(found.group(1)) or None
    rights = _RIGHTS.search(text) if "copyrighted" in lowered else None
    rights_note = squash(rights.group(1)) if rights else None
    cut = min((i for i in (text.find(m) for m in _TAIL_MARKERS) if i >= 0), default=-1)
    if cut >= 0:
        text = text[:cut]
    return CleanText(explanation=squash(text), credit=credit, rights_note=rights_note)


def clean_title(raw: str | None) -> str:
    """Titles scraped from 1996–2000 pages end with the next line's "Credit:" label."""
    return _TITLE_CREDIT.sub("", squash(raw))


def clean_copyright(raw: str | None) -> str | None:
    """The API sometimes put page text into ``copyright``; keep only the credit before 'Explanation:'."""
    if raw is None:
        return None
    label = _EXPLANATION_LABEL.search(raw)
    if label:
        raw = raw[: label.start()]
    return squash(raw) or None


def _clipped_start(text: str) -> tuple[str, str] | None:
    """The clipped first word of ``text`` and the word after it, or None when it does not look clipped
    (it starts with a capital, a digit, or a letter the API would have stripped too)."""
    found = _CLIPPED.match(text)
    if found is None or found.group(1)[0] in _LABEL_CHARS:
        return None
    return found.group(1), found.group(2).lower()


def restore_clipped_starts(explanations: Sequence[str], *, corpus: Sequence[str] = ()) -> dict[int, str]:
    """Explanations whose first letters NASA's API clipped, restored: index → repaired text. The words
    of ``explanations`` and of ``corpus`` (more texts of the archive, not repaired here) decide.

    The missing letters are "E" and then only letters of the label (:data:`_LABEL_CHARS`), so the
    archive's own words say what they were: among the words made of such a prefix and the clipped
    fragment, the one most often followed by the text's next word ("East of Antares", not "Exist of"),
    else the only one, or one clearly the most frequent ("Elliptical", 393 times, over "Eliptical",
    once). Texts with no fitting word in the archive, or no clear one, are left as they are (a wrong
    word is worse than a clipped one)."""
    clipped = {i: hit for i, text in enumerate(explanations) if text and (hit := _clipped_start(text))}
    if not clipped:
        return {}
    fragments = "|".join(sorted({re.escape(f.lower()) for f, _ in clipped.values()}, key=len, reverse=True))
    letters = "".join(sorted(_LABEL_CHARS - {"E", ":", " "}))
    text = "\n".join([*explanations, *corpus])
    words: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    # each word that could be a restored one, and the word after it, in one pass per initial: a pattern
    # that starts with a literal letter is searched for that letter first (≈ 4× faster over the archive
    # than one that starts with a word boundary)
    for initial in "eE":
        fitting = re.compile(rf"{initial}(?<!\w{initial})([{letters}]*(?:{fragments}))\b\W*([A-Za-z0-9']*)")
        for rest, following in fitting.findall(text):
            word = "e" + rest
            words[word] += 1
            pairs[word, following.lower()] += 1
    restored: dict[int, str] = {}
    for i, (fragment, following) in clipped.items():
        tail = fragment.lower()
        candidates = [w for w in words if w.endswith(tail) and len(w) > len(tail)
                      and all(c in _LABEL_CHARS for c in w[1:len(w) - len(tail)])]
        by_pair = sorted(((pairs[w, following], w) for w in candidates), reverse=True)
        by_count = sorted(((words[w], w) for w in candidates), reverse=True)
        if by_pair and by_pair[0][0] > 0 and (len(by_pair) == 1 or by_pair[0][0] > by_pair[1][0]):
            word = by_pair[0][1]
        elif len(by_count) == 1 or (by_count and by_count[0][0] >= _CLEAR_LEAD * by_count[1][0]):
            word = by_count[0][1]
        else:
            continue
        restored[i] = "E" + word[1:len(word) - len(tail)] + explanations[i]
    return restored


#: What NASA's API puts where a page's character did not survive its decoding (U+FFFD): ≈ 170 entries
#: of the archive read "Eyjafjallaj�kull", "Troms�", "Sigur�ur" (in credits too), "20 �C", "it�s".
REPLACED = "\ufffd"
#: A word as the repair reads it: letters of any script, and replaced characters.
_DAMAGED_WORD = re.compile(rf"(?:[^\W\d_]|{REPLACED})*{REPLACED}(?:[^\W\d_]|{REPLACED})*")
_LETTER_WORD = re.compile(r"[^\W\d_]+")
#: A run of letters glued to the next capitalised word ("L�pezEl", "Druckm�llerBrno": a credit joined
#: to the text after it) is looked up word by word.
_GLUED = re.compile(rf"(?<=[a-z{REPLACED}])(?=[A-Z])")
#: Letters a damaged word must keep for a fit to be trusted ("�s" could be many words; "�le" is "île").
_MIN_KNOWN_LETTERS = 2
#: A whole word, then an ending after an apostrophe ("it�s", "Don�t", "CSIRO�s").
_CLITIC = re.compile(rf"(?<![^\W\d_])([A-Za-z]+){REPLACED}(s|t|re|ll|ve|d|m)\b")
#: A degree sign before a temperature scale ("20 �C", "-40�F"; not K: kelvins take none, and "30 �K"
#: is more likely µK).
_DEGREE = re.compile(rf"(?<=\d)(\s?){REPLACED}(?=[CF]\b)")
#: A dash between two whole names ("Churyumov�Gerasimenko").
_NAME_DASH = re.compile(rf"(?<![^\W\d_])([A-Z][a-z]+){REPLACED}(?=([A-Z][a-z]+)(?![a-z]))")


def restore_replaced_characters(texts: Sequence[str | None], *, corpus: Sequence[str] = ()) -> dict[int, str]:
    """Texts in which NASA's API replaced characters by U+FFFD (:data:`REPLACED`), repaired where the
    archive's own words say what they were: index → repaired text. The words of ``texts`` and of
    ``corpus`` (more texts of the archive, not repaired here) decide.

    Each replaced character stood for one character outside ASCII, so a damaged word (with at least
    :data:`_MIN_KNOWN_LETTERS` letters left, not glued to a number) is compared with the archive's
    words that have such characters: "Eyjafjallaj�kull" fits only "Eyjafjallajökull", and "St�phane"
    is "Stéphane" (25 times) rather than any other. A word is repaired when one such word fits, or one
    clearly the most frequent (:data:`_CLEAR_LEAD` times the next). Then, where the archive writes the
    same whole words with an apostrophe or a hyphen, an apostrophe ("it’s") or a dash
    ("Churyumov–Gerasimenko"); a degree sign before C or F after a number. What nothing decides is left
    as it is (a wrong letter in a name is worse than a visibly missing one)."""
    damaged = {i: t for i, t in enumerate(texts) if t and REPLACED in t}
    if not damaged:
        return {}
    sound = [t for t in (*texts, *corpus) if t and REPLACED not in t]
    # only texts with a character outside ASCII can hold a fitting word (a third of the time)
    words: Counter[str] = Counter(w for t in sound if not t.isascii() for w in _LETTER_WORD.findall(t)
                                  if not w.isascii())
    fitting: dict[str, str | None] = {}
    joined: list[str] = []  # the archive's texts joined in lower case, made when first asked

    def archive_writes(left: str, joints: str, right: str) -> bool:
        """Whether the archive writes the whole words ``left`` and ``right`` (any case) joined by one of
        ``joints`` (an apostrophe, a hyphen or dash) somewhere."""
        if not joined:
            joined.append("\n".join(sound).lower())
        text = joined[0]
        for joint in joints:
            form = f"{left}{joint}{right}".lower()
            at = text.find(form)
            while at >= 0:
                end = at + len(form)
                if not (at and text[at - 1].isalpha()) and not (end < len(text) and text[end].isalpha()):
                    return True
                at = text.find(form, at + 1)
        return False

    def fit(word: str) -> str | None:
        """The archive's word that ``word`` (one with replaced characters) stands for, if one is clear."""
        if word not in fitting:
            shape = re.compile("".join("[^\\x00-\\x7f]" if c == REPLACED else re.escape(c) for c in word))
            found = sorted(((n, w) for w, n in words.items() if len(w) == len(word) and shape.fullmatch(w)),
                           reverse=True)
            clear = found and (len(found) == 1 or found[0][0] >= _CLEAR_LEAD * found[1][0])
            fitting[word] = found[0][1] if clear else None
        return fitting[word]

    def repair_word(match: re.Match) -> str:
        if match.start() and match.string[match.start() - 1].isdigit():  # "1990�s": a number's ending
            return match.group()
        return "".join(fit(part) or part if REPLACED in part and len(part) - part.count(REPLACED) >= _MIN_KNOWN_LETTERS
                       else part for part in _GLUED.split(match.group()))

    def clitic(match: re.Match) -> str:
        stem, ending = match.group(1), match.group(2)
        return f"{stem}\u2019{ending}" if archive_writes(stem, "'\u2019", ending) else match.group()

    def name_dash(match: re.Match) -> str:
        left, right = match.group(1), match.group(2)
        return f"{left}\u2013" if archive_writes(left, "-\u2013", right) else match.group()

    repaired = {}
    for i, text in damaged.items():
        fixed = _DAMAGED_WORD.sub(repair_word, text)
        fixed = _DEGREE.sub(lambda m: f"{m.group(1)}\u00b0", fixed)
        fixed = _CLITIC.sub(clitic, fixed)
        fixed = _NAME_DASH.sub(name_dash, fixed)
        if fixed != text:
            repaired[i] = fixed
    return repaired
