"""The class overview's filters and sort, read from a URL's query (no tornado here).

A filtered view is a plain URL, so it can be bookmarked and its CSV export carries the same
query: ``activity`` (repeatable, ``<course>/<slug>``; none = every activity), ``day``
(``YYYY-MM-DD``, a UTC day) or ``week`` (``YYYY-Www``, an ISO week, Monday to Sunday in UTC),
``sort`` (``student``, ``a<n>`` for the catalog's nth activity, ``time``, ``xp``) and ``order``
(``asc``/``desc``). An empty ``day`` or ``week`` is no filter (a GET form sends empty fields);
anything else that does not parse is a :class:`FilterError` saying what to send instead.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .cells import DAY_MS, ActivityColumn

NAMES = ("activity", "day", "week", "sort", "order")
_DAY = re.compile(r"(\d{4})-(\d{2})-(\d{2})")
_WEEK = re.compile(r"(\d{4})-W(\d{2})")
SORTS_FIXED = ("student", "time", "xp")


class FilterError(ValueError):
    """A filter or sort the overview cannot apply; the message says why and what to send."""


@dataclass(frozen=True)
class Period:
    """[start_ms, end_ms) in UTC milliseconds."""

    kind: str  # "day" | "week"
    label: str  # as the URL has it: 2026-01-15 | 2026-W03
    start_ms: int
    end_ms: int

    def contains(self, at: float) -> bool:
        return self.start_ms <= at * 1000 < self.end_ms

    def describe(self) -> str:
        if self.kind == "day":
            return f"the UTC day {self.label}"
        first = dt.datetime.fromtimestamp(self.start_ms / 1000, dt.UTC).date()
        last = first + dt.timedelta(days=6)
        return f"ISO week {self.label} ({first.isoformat()} to {last.isoformat()}, UTC days)"


def _epoch_ms(day: dt.date) -> int:
    return (day - dt.date(1970, 1, 1)).days * DAY_MS


def parse_day(text: str) -> Period:
    match = _DAY.fullmatch(text)
    try:
        if match is None:
            raise ValueError
        day = dt.date(*map(int, match.groups()))
    except ValueError:
        raise FilterError(
            f"day {text!r} is not a date: send YYYY-MM-DD (a UTC day), e.g. day=2026-01-15"
        ) from None
    start = _epoch_ms(day)
    return Period("day", text, start, start + DAY_MS)


def parse_week(text: str) -> Period:
    match = _WEEK.fullmatch(text)
    try:
        if match is None:
            raise ValueError
        monday = dt.date.fromisocalendar(int(match[1]), int(match[2]), 1)
    except ValueError:
        raise FilterError(
            f"week {text!r} is not an ISO week: send YYYY-Www (weeks 01 to 52, or 53 in a "
            "year that has one), e.g. week=2026-W03"
        ) from None
    start = _epoch_ms(monday)
    return Period("week", text, start, start + 7 * DAY_MS)


@dataclass(frozen=True)
class Filters:
    activities: tuple[str, ...] = ()  # ActivityColumn.key, catalog order; () = all
    period: Period | None = None
    sort: str = "student"
    descending: bool = False
    note: str = ""  # said above the table: why the view is not quite what was asked

    @property
    def order(self) -> str:
        return "desc" if self.descending else "asc"

    def shown(self, columns: Sequence[ActivityColumn]) -> list[int]:
        """The catalog indexes of the columns shown."""
        chosen = set(self.activities)
        return [i for i, c in enumerate(columns) if not chosen or c.key in chosen]

    def query(self, **change: str) -> list[tuple[str, str]]:
        """The URL query of this view (``change`` replaces sort or order): what a sort link,
        the export link and a bookmark carry."""
        items = [("activity", key) for key in self.activities]
        if self.period is not None:
            items.append((self.period.kind, self.period.label))
        items.append(("sort", change.get("sort", self.sort)))
        items.append(("order", change.get("order", self.order)))
        return items

    def slug(self) -> str:
        """A part for the export's file name."""
        return "" if self.period is None else f"-{self.period.label}"


def _one(args: Mapping[str, Sequence[str]], name: str) -> str:
    values = [v for v in args.get(name, ()) if v != ""]
    if len(values) > 1:
        raise FilterError(f"{name} was given {len(values)} times: send one {name}")
    return values[0] if values else ""


def sort_keys(shown: Sequence[int]) -> list[str]:
    return ["student", *(f"a{i}" for i in shown), "time", "xp"]


def parse(args: Mapping[str, Sequence[str]], columns: Sequence[ActivityColumn]) -> Filters:
    """The filters of a query (``name -> values``) over the catalog's ``columns``."""
    keys = [c.key for c in columns]
    chosen: set[str] = set()
    for value in args.get("activity", ()):
        if value not in keys:
            raise FilterError(
                f"no activity {value!r} in the catalog: send activity=<course>/<activity id>, "
                f"one of {', '.join(map(repr, keys))}"
            )
        chosen.add(value)
    day, week = _one(args, "day"), _one(args, "week")
    if day and week:
        raise FilterError(
            f"both day={day} and week={week} were given: filter by a day or by a week, "
            "leave the other empty"
        )
    period = parse_day(day) if day else parse_week(week) if week else None
    order = _one(args, "order") or "asc"
    if order not in ("asc", "desc"):
        raise FilterError(f"order {order!r} is not asc or desc")
    filters = Filters(tuple(k for k in keys if k in chosen), period, descending=order == "desc")
    sort = _one(args, "sort") or "student"
    allowed = sort_keys(filters.shown(columns))
    note = ""
    if sort not in allowed:
        hidden = re.fullmatch(r"a(\d+)", sort)
        if not (hidden and int(hidden[1]) < len(columns)):
            raise FilterError(f"cannot sort by {sort!r}: use one of {', '.join(allowed)}")
        # The form keeps the sort while a teacher unticks that very activity: show what was
        # asked for otherwise, sorted by student, and say so.
        note = (
            f"Sorted by student: {columns[int(hidden[1])].name}, the column it was sorted by, "
            "is not among the activities shown."
        )
        sort = "student"
    return Filters(filters.activities, period, sort, filters.descending, note)
