"""A class overview read from the relay's store (no tornado, tested directly).

Students x the catalog's activities (or those the filter keeps); each cell sums the student's
runs of that activity: its state, active time forwarded, XP awarded and the accuracy of the
latest completion. The table is built once as text rows, so the HTML page and the CSV export
are the same rows by construction.

Under a period filter (a UTC day or an ISO week, :mod:`filters`) a cell counts only what
happened in the period: the forwarded active time that falls inside it (spans cut at its
bounds), the completions the relay recorded in it (their XP; the accuracy of the latest), and a
state from those: "working now" if a run is live and the period includes now, else "completed"
if a run was completed in it, else "paused" if the student worked on it or a run of it was first
seen in it, else "nothing in period". The total columns sum the cells shown. A completion and a
run's start are dated by the relay's clock when it received them (``completions.at``,
``runs.first_seen``); active time by the window the student's server reported, as placed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .catalog import Catalog
from .cells import (
    COMPLETED,
    LIVE_SECONDS,
    NOT_STARTED,
    NOTHING,
    PAUSED,
    STATE_RANK,
    WORKING,
    ActivityColumn,
    catalog_columns,
    duration,
    live_select,
)
from .database import RelayDatabase
from .filters import Filters, Period, sort_keys
from .rules import MAX_SPAN_MS
from .schema import active_spans, completions, received, runs


@dataclass(slots=True)
class Cell:
    state: str = NOT_STARTED
    active_seconds: float = 0.0
    xp: float = 0.0
    accuracy: float | None = None  # of the latest completion with questions
    runs: int = 0
    completions: int = 0

    def text(self) -> str:
        if self.state in (NOT_STARTED, NOTHING):
            return self.state
        parts = [self.state, duration(self.active_seconds)]
        if self.completions:  # 0 XP awarded is shown too: the student page says why
            parts.append(f"{self.xp:g} XP")
        if self.accuracy is not None:
            parts.append(f"{round(self.accuracy * 100)}%")
        return " · ".join(parts)


@dataclass
class Overview:
    group: str
    columns: list[ActivityColumn]  # the columns shown
    students: list[str]
    cells: dict[tuple[str, int], Cell]  # (student, position in columns)
    working: list[tuple[str, str]] = field(default_factory=list)  # (student, activity name)
    filters: Filters = field(default_factory=Filters)
    catalog_index: list[int] = field(default_factory=list)  # of each column shown
    live_shown: bool = True  # False: the period excludes now, so nobody is "working now"
    live_seconds: float = LIVE_SECONDS  # "working now": forwarded time this recent (live_window)

    HEAD_STUDENT, HEAD_TIME, HEAD_XP = "Student", "Active time", "XP"

    def header(self) -> list[str]:
        return [
            self.HEAD_STUDENT,
            *(f"{c.name} ({c.course})" for c in self.columns),
            self.HEAD_TIME,
            self.HEAD_XP,
        ]

    def sort_keys(self) -> list[str]:
        """The ``sort`` value of each header column, in order (``a<n>``: the catalog's nth
        activity, stable whatever the activity filter keeps)."""
        return sort_keys(self.catalog_index)

    def _totals(self) -> dict[str, tuple[float, float]]:
        """Each student's (active seconds, XP) over the columns shown."""
        out = {}
        n = len(self.columns)
        for student in self.students:
            cells = [self.cells[(student, i)] for i in range(n)]
            out[student] = (sum(c.active_seconds for c in cells), sum(c.xp for c in cells))
        return out

    def rows(self, sort: str | None = None, descending: bool | None = None) -> list[list[str]]:
        """The table's body as shown, sorted by ``sort`` (one of ``sort_keys``; by default the
        filters' sort); an unknown key is a ValueError naming the known ones."""
        sort = self.filters.sort if sort is None else sort
        descending = self.filters.descending if descending is None else descending
        keys = self.sort_keys()
        if sort not in keys:
            raise ValueError(f"cannot sort by {sort!r}: use one of {', '.join(keys)}")

        totals = self._totals()

        def key(student: str) -> Any:
            if sort == "student":
                return student
            if sort == "time":
                return totals[student][0]
            if sort == "xp":
                return totals[student][1]
            cell = self.cells[(student, keys.index(sort) - 1)]
            return (STATE_RANK[cell.state], cell.active_seconds, cell.xp)

        ordered = sorted(sorted(self.students), key=key, reverse=descending)
        out = []
        for student in ordered:
            time, xp = totals[student]
            cells = [self.cells[(student, i)].text() for i in range(len(self.columns))]
            out.append([student, *cells, duration(time), f"{xp:g}"])
        return out

    def state(self, student: str, column: int) -> str:
        return self.cells[(student, column)].state


def _period_ms(names: list[str], period: Period) -> sa.Subquery:
    """(user, run) -> forwarded active ms inside the period, each span cut at its bounds."""
    lo, hi = period.start_ms, period.end_ms
    start, end = active_spans.c.start_ms, active_spans.c.end_ms
    inside = sa.case((end > hi, hi), else_=end) - sa.case((start < lo, lo), else_=start)
    return (
        sa.select(received.c.user_name, received.c.run_id, sa.func.sum(inside).label("ms"))
        .join(received, received.c.key == active_spans.c.event_key)
        .where(
            active_spans.c.user_name.in_(names),
            # no span is longer than MAX_SPAN_MS: a range of the (user, start) index
            start > lo - MAX_SPAN_MS,
            start < hi,
            end > lo,
        )
        .group_by(received.c.user_name, received.c.run_id)
        .subquery("in_period")
    )


def _flag(condition: sa.ColumnElement[bool]) -> sa.ColumnElement[int]:
    return sa.case((condition, 1), else_=0)


def _done_in(period: Period | None) -> sa.ColumnElement[bool]:
    """The completions counted: all, or those the relay recorded in the period."""
    if period is None:
        return sa.true()
    return sa.and_(
        completions.c.at >= period.start_ms / 1000, completions.c.at < period.end_ms / 1000
    )


def _cells_query(
    names: list[str], period: Period | None, now: float, live_shown: bool, window: float
) -> sa.Select[Any]:
    """One row per (student, course, activity) the students have a run of, summed by the
    database: Python receives at most students x activities rows, not every run and
    completion (benchmarks/dashboard.py). Per run its active ms (in a period: cut at its
    bounds), its completion (in a period: recorded in it), whether it is live and whether
    anything of it happened in the period; per cell the sums of those."""
    r, c = runs, completions
    source = r.outerjoin(
        c, sa.and_(c.c.user_name == r.c.user_name, c.c.run_id == r.c.run_id, _done_in(period))
    )
    is_live = (
        sa.tuple_(r.c.user_name, r.c.run_id).in_(live_select(names, now, window))
        if live_shown
        else sa.false()
    )
    if period is None:
        ms: sa.ColumnElement[Any] = r.c.active_ms
        happened: sa.ColumnElement[Any] = sa.literal(1)
    else:
        spans = _period_ms(names, period)
        source = source.outerjoin(
            spans, sa.and_(spans.c.user_name == r.c.user_name, spans.c.run_id == r.c.run_id)
        )
        ms = sa.func.coalesce(spans.c.ms, 0)
        started = sa.and_(
            r.c.first_seen * 1000 >= period.start_ms, r.c.first_seen * 1000 < period.end_ms
        )
        happened = _flag(sa.or_(started, ms > 0, c.c.run_id.is_not(None), is_live))
    return (
        sa.select(
            r.c.user_name,
            r.c.course,
            r.c.activity,
            sa.func.sum(happened).label("runs"),
            sa.func.sum(ms).label("ms"),
            sa.func.max(_flag(is_live)).label("live"),
            sa.func.count(c.c.run_id).label("completions"),
            sa.func.coalesce(sa.func.sum(c.c.xp), 0).label("xp"),
        )
        .select_from(source)
        .where(r.c.user_name.in_(names))
        .group_by(r.c.user_name, r.c.course, r.c.activity)
    )


def _latest_accuracy(
    conn: sa.Connection, names: list[str], period: Period | None
) -> dict[tuple[str, str, str], float]:
    """(student, course, activity) -> the accuracy of the latest completion that has one, in
    the order the relay recorded them (``at``, then run id). Only the questions are read out
    of each outcome's JSON, by the database; the latest is picked here, which costs less
    than the database's sort for a window function (measured on SQLite)."""
    r, c = runs, completions
    total = c.c.outcome["total_questions"].as_integer()
    correct = c.c.outcome["correct_questions"].as_integer()
    rows = conn.execute(
        sa.select(r.c.user_name, r.c.course, r.c.activity, c.c.at, c.c.run_id, total, correct)
        .join(r, sa.and_(r.c.user_name == c.c.user_name, r.c.run_id == c.c.run_id))
        .where(c.c.user_name.in_(names), _done_in(period))
    ).all()
    latest: dict[tuple[str, str, str], tuple[float, str, float]] = {}
    for user, course, activity, at, run_id, questions, right in rows:
        if not questions or right is None:  # as cells.accuracy reads an outcome
            continue
        key = (user, course, activity)
        best = latest.get(key)
        if best is None or (at, run_id) > best[:2]:
            latest[key] = (at, run_id, right / questions)
    return {key: best[2] for key, best in latest.items()}


def overview(
    db: RelayDatabase,
    catalog: Catalog,
    group: str,
    students: Iterable[str],
    now: float,
    filters: Filters | None = None,
    live_seconds: float = LIVE_SECONDS,
) -> Overview:
    filters = filters or Filters()
    period = filters.period
    names = sorted(set(students))
    every = catalog_columns(catalog)
    shown = filters.shown(every)
    columns = [every[i] for i in shown]
    index = {(c.course, c.slug): i for i, c in enumerate(columns)}
    empty = NOT_STARTED if period is None else NOTHING
    live_shown = period is None or period.contains(now)
    with db.read() as conn:
        sums = conn.execute(_cells_query(names, period, now, live_shown, live_seconds)).all()
        shares = _latest_accuracy(conn, names, period)
    cells = {(s, i): Cell(state=empty) for s in names for i in range(len(columns))}
    working: list[tuple[str, str]] = []
    # Rows unpacked, not read by attribute: a Row's attribute costs a microsecond, and this
    # loop reads 800 rows.
    for user, course, activity, run_count, ms, live_flag, done, xp in sums:
        i = index.get((course, activity))
        if i is None:  # filtered out, or no longer in the catalog (the student's page has it)
            continue
        cell = cells[(user, i)]
        cell.runs, cell.completions = int(run_count), int(done)
        cell.active_seconds = int(ms) / 1000
        cell.xp = float(xp)
        cell.accuracy = shares.get((user, course, activity))
        if live_flag:
            cell.state = WORKING
            working.append((user, columns[i].name))
        elif cell.completions:
            cell.state = COMPLETED
        elif cell.runs:
            cell.state = PAUSED
    return Overview(
        group, columns, names, cells, sorted(set(working)), filters, shown, live_shown, live_seconds
    )
