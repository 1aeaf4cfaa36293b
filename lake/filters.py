"""What a user narrowed a view or a search to, and the one place where that becomes a query.

The map, the category pages, the sky page, the JSON API, the CLI and search all filter by the same
rules (categories, a date range, with or without a picture, a cone on the sky). :class:`Filters` holds
them once, validated when it is made, and :meth:`Filters.conditions` lists them once. Each backend
only *renders* that list:

* :meth:`Filters.sql`: a DuckDB ``WHERE`` fragment plus parameters; user values are always parameters,
  never formatted into the SQL text;
* :meth:`Filters.lance_where`: a LanceDB filter string (LanceDB takes no parameters), built only from
  values that cannot carry SQL: ``datetime.date`` objects, names checked against the lake's taxonomy,
  booleans;
* :meth:`Filters.mask`: a boolean numpy mask over columns held in memory (small lakes' exact search).

A sky cone needs the lake's ``objects`` table, so only DuckDB evaluates it; search first turns it into
the set of entry dates inside it (:meth:`Filters.with_dates`) and the other two backends filter on those.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal, NamedTuple

import numpy as np


#: Why a sky cone cannot be answered on a lake without the sky stage's ``objects`` table.
NO_SKY = "This lake has no sky positions (the objects table its sky stage writes)."


class FilterError(ValueError):
    """Filters that cannot be applied as given; the message says what to change (shown to users)."""


class Cone(NamedTuple):
    """A circle on the sky, in degrees (ICRS)."""

    ra: float
    dec: float
    radius: float


#: Fields a condition can test, with their DuckDB type (the parameter is cast to it).
FIELD_TYPES: Mapping[str, str] = {"category": "VARCHAR", "date": "DATE", "has_image": "BOOLEAN"}

#: Where those fields live in the lake's DuckDB queries: ``e`` = entries, ``c`` = text categories.
ENTRY_COLUMNS: Mapping[str, str] = {"date": "e.date", "category": "c.category", "has_image": "e.has_image"}

Op = Literal["in", ">=", "<=", "=", "cone"]


@dataclass(frozen=True)
class Condition:
    """One rule: ``field op value``. ``name`` keys the DuckDB parameter(s)."""

    name: str
    field: str
    op: Op
    value: Any


def separation_sql(alias: str, ra: str, dec: str) -> str:
    """Great-circle separation (degrees) of object row ``alias`` from the point (``ra``, ``dec``), two SQL
    expressions (usually parameters); exact at RA 0/360 and at the poles, clamped against rounding."""
    return (
        f"degrees(acos(least(1.0, greatest(-1.0, sin(radians({alias}.dec_deg)) * sin(radians({dec})) + "
        f"cos(radians({alias}.dec_deg)) * cos(radians({dec})) * cos(radians({alias}.ra_deg - {ra}))))))"
    )


#: A date as a client writes one: ``YYYY-MM-DD`` only (``date.fromisoformat`` also reads ``20140107`` and
#: ``2014-W02-2``, which would come back in another form than sent).
DATE_FORMAT = re.compile(r"\d{4}-\d{2}-\d{2}")


class DateError(ValueError):
    """A value that is not a date written ``YYYY-MM-DD`` (:func:`iso_day`)."""


def iso_day(value: object) -> dt.date:
    """``value`` as a date, if it is a string written ``YYYY-MM-DD`` that names a real day; else DateError."""
    if isinstance(value, str) and DATE_FORMAT.fullmatch(value):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:  # a day that is none (2014-02-30)
            pass
    raise DateError(f"{str(value)[:40]!r} is not a date like 2014-01-31")


def _date(value: Any, name: str) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            pass
    raise FilterError(f"{name} must be a date like 2014-01-31, not {str(value)[:40]!r}")


def _number(value: Any, name: str, lo: float, hi: float, *, open_low: bool = False) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise FilterError(f"cone {name} must be a number of degrees, not {str(value)[:40]!r}") from None
    if not math.isfinite(x) or x > hi or x < lo or (open_low and x == lo):
        low = f"{lo:g} <" if open_low else f"{lo:g} ≤"
        raise FilterError(f"cone {name} must be {low} {name} ≤ {hi:g} degrees, not {x:g}")
    return x


@dataclass(frozen=True, kw_only=True)
class Filters:
    """What the user narrowed the view to. Every field left at its default means "no restriction".

    * ``categories``: text categories (names of the lake's taxonomy); empty = all;
    * ``start``/``end``: first and last date, inclusive (``datetime.date`` or ISO text);
    * ``has_image``: only entries with (True) or without (False) a stored picture;
    * ``cone``: (ra, dec, radius) in degrees: entries with a placed object inside it;
    * ``dates``: only these entry dates (search fills it from a cone; empty = none match).

    Values are checked here, on construction, so a bad filter fails where it was made, with a message.
    """

    categories: tuple[str, ...] = ()
    start: dt.date | None = None
    end: dt.date | None = None
    has_image: bool | None = None
    cone: Cone | None = None
    dates: tuple[dt.date, ...] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__  # frozen: normalise once, here
        if isinstance(self.categories, str):
            raise FilterError("categories must be a list of category names, not one string")
        cats = tuple(self.categories or ())
        bad = [c for c in cats if not isinstance(c, str) or not c]
        if bad:
            raise FilterError(f"a category must be a non-empty name, not {bad[0]!r}")
        set_(self, "categories", cats)
        for name in ("start", "end"):
            value = getattr(self, name)
            set_(self, name, None if value is None or value == "" else _date(value, name))
        if self.start and self.end and self.start > self.end:
            raise FilterError(f"the start date {self.start.isoformat()} is after the end date {self.end.isoformat()}")
        if self.has_image is not None and not isinstance(self.has_image, (bool, np.bool_)):
            raise FilterError(f"has_image must be true, false or unset, not {self.has_image!r}")
        if self.has_image is not None:
            set_(self, "has_image", bool(self.has_image))
        if self.cone is not None:
            try:
                ra, dec, radius = self.cone
            except (TypeError, ValueError):
                raise FilterError("a cone is (ra, dec, radius) in degrees") from None
            set_(self, "cone", Cone(_number(ra, "ra", 0, 360), _number(dec, "dec", -90, 90),
                                    _number(radius, "radius", 0, 180, open_low=True)))
        if self.dates is not None:
            if isinstance(self.dates, str):
                raise FilterError("dates must be a list of dates, not one string")
            set_(self, "dates", tuple(sorted({_date(d, "a date") for d in self.dates})))

    # -- the rules, written once ----------------------------------------------------------------
    def conditions(self) -> tuple[Condition, ...]:
        """The filters as a list of rules; every backend renders exactly this list (an AND of them)."""
        rules: list[Condition] = []
        if self.categories:
            rules.append(Condition("categories", "category", "in", self.categories))
        if self.start is not None:
            rules.append(Condition("start", "date", ">=", self.start))
        if self.end is not None:
            rules.append(Condition("end", "date", "<=", self.end))
        if self.has_image is not None:
            rules.append(Condition("has_image", "has_image", "=", self.has_image))
        if self.dates is not None:
            rules.append(Condition("dates", "date", "in", self.dates))
        if self.cone is not None:
            rules.append(Condition("cone", "date", "cone", self.cone))
        return tuple(rules)

    def with_dates(self, dates: Iterable[dt.date | str]) -> Filters:
        """These filters with the cone replaced by the entry dates inside it (found by the caller with
        :meth:`sql`), so that backends without the ``objects`` table can apply it."""
        return replace(self, cone=None, dates=tuple(dates))

    def unknown_categories(self, known: Sequence[str]) -> list[str]:
        names = set(known)
        return [c for c in self.categories if c not in names]

    def check_categories(self, known: Sequence[str]) -> None:
        """Refuse categories that are not in the taxonomy ``known`` (a typo would otherwise match nothing)."""
        unknown = self.unknown_categories(known)
        if unknown:
            raise FilterError(f"unknown category {unknown[0]!r}; known: {', '.join(known)}")

    # -- DuckDB ---------------------------------------------------------------------------------
    def sql(self, *, columns: Mapping[str, str] = ENTRY_COLUMNS, objects: str = "objects",
            prefix: str = "f_") -> tuple[str, dict[str, Any]]:
        """A DuckDB boolean expression and its parameters (``$<prefix><name>``), ``TRUE`` when unfiltered.

        ``columns`` maps each field to its SQL expression in the caller's query (table aliases differ);
        a cone becomes an ``EXISTS`` over the ``objects`` table keyed by the date column.
        """
        parts: list[str] = []
        params: dict[str, Any] = {}
        for rule in self.conditions():
            column, p = columns[rule.field], f"{prefix}{rule.name}"
            kind = FIELD_TYPES[rule.field]
            if rule.op == "in":
                parts.append(f"list_contains(${p}::{kind}[], {column})")
                params[p] = list(rule.value)
            elif rule.op == "cone":
                sep = separation_sql("o_cone", f"${p}_ra", f"${p}_dec")
                parts.append(f"EXISTS (SELECT 1 FROM {objects} o_cone WHERE o_cone.date = {column} "
                             f"AND o_cone.ra_deg IS NOT NULL AND {sep} <= ${p}_r)")
                params |= {f"{p}_ra": rule.value.ra, f"{p}_dec": rule.value.dec, f"{p}_r": rule.value.radius}
            else:
                parts.append(f"{column} {rule.op} ${p}::{kind}")
                params[p] = rule.value
        return (" AND ".join(f"({x})" for x in parts) or "TRUE"), params

    # -- LanceDB --------------------------------------------------------------------------------
    def lance_where(self, *, known_categories: Sequence[str]) -> str | None:
        """A LanceDB filter (``date`` ISO text, ``year``, ``category``, ``has_image``), None when unfiltered.

        LanceDB filters are text, so every value written into it is one that cannot carry SQL: dates are
        ``datetime.date`` objects, categories must be in ``known_categories``, booleans are literals.

        A date range is written on the ``year`` column (which vector tables hold as the date's year) for
        the whole years in it, and on ``date`` only for the days of a partly covered first or last year
        (:func:`_lance_date_range`): LanceDB answers a range of years from a few bitmaps of the year's
        index, where the date's B-tree collects the row ids of every date in the range. The dashboard's
        year slider gives whole years only. (10M rows, a third of them passing, 40 probes: p50 93 ms from
        1 January, 100 ms from 15 March; 142 ms from 15 March on ``date`` alone, in a run before the split;
        bench/ann_filters.py, BENCHMARKS.md.)
        """
        self.check_categories(known_categories)
        parts: list[str] = []
        for rule in self._in_memory_rules():
            if rule.op == "in":
                values = ", ".join(_lance_literal(rule.field, v) for v in rule.value)
                parts.append(f"{rule.field} IN ({values})" if values else "false")
            elif rule.field != "date":
                parts.append(f"{rule.field} {rule.op} {_lance_literal(rule.field, rule.value)}")
        if self.start is not None or self.end is not None:
            parts.append(_lance_date_range(self.start, self.end))
        return " AND ".join(parts) or None

    # -- numpy ----------------------------------------------------------------------------------
    def mask(self, *, columns: Mapping[str, np.ndarray]) -> np.ndarray:
        """Which rows of in-memory ``columns`` (``date`` as ISO text, ``category``, ``has_image``) pass."""
        n = len(next(iter(columns.values())))
        keep = np.ones(n, dtype=bool)
        for rule in self._in_memory_rules():
            column = columns[rule.field]
            if rule.op == "in":
                keep &= np.isin(column, [_plain(v) for v in rule.value])
            elif rule.op == ">=":
                keep &= column >= _plain(rule.value)
            elif rule.op == "<=":
                keep &= column <= _plain(rule.value)
            else:
                keep &= column == _plain(rule.value)
        return keep

    def _in_memory_rules(self) -> tuple[Condition, ...]:
        rules = self.conditions()
        if any(r.op == "cone" for r in rules):
            raise FilterError("a sky cone is applied through the lake's objects table: resolve it with "
                              "Filters.with_dates first")
        return rules


def _lance_date_range(start: dt.date | None, end: dt.date | None) -> str:
    """The LanceDB filter of the dates from ``start`` to ``end`` (either may be open): the whole years
    between them on ``year``, the days of a partly covered first and last year on ``date``, OR-ed."""
    first = None if start is None else start.year + ((start.month, start.day) != (1, 1))
    last = None if end is None else end.year - ((end.month, end.day) != (12, 31))
    if start is not None and end is not None and start.year == end.year and first > last:
        return f"date >= {_lance_literal('date', start)} AND date <= {_lance_literal('date', end)}"
    pieces = []
    if start is not None and first != start.year:  # the days of the first year
        pieces.append(f"date >= {_lance_literal('date', start)} AND date <= '{start.year}-12-31'")
    years = [f"year >= {first}"] * (first is not None) + [f"year <= {last}"] * (last is not None)
    if first is None or last is None or first <= last:
        pieces.append(f"year = {first}" if first is not None and first == last else " AND ".join(years))
    if end is not None and last != end.year:  # the days of the last year
        pieces.append(f"date >= '{end.year}-01-01' AND date <= {_lance_literal('date', end)}")
    return pieces[0] if len(pieces) == 1 else "(" + " OR ".join(f"({p})" for p in pieces) + ")"


def _plain(value: Any) -> Any:
    """A rule value as the in-memory and LanceDB columns hold it (dates as ISO text)."""
    return value.isoformat() if isinstance(value, dt.date) else value


def _lance_literal(field_name: str, value: Any) -> str:
    if field_name == "date":
        if not isinstance(value, dt.date):  # guaranteed by Filters; re-checked because this text is SQL
            raise FilterError(f"not a date: {value!r}")
        return f"'{value.isoformat()}'"
    if field_name == "has_image":
        return "true" if value else "false"
    return "'" + str(value).replace("'", "''") + "'"  # a taxonomy name (checked by the caller)
