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
    NOT_STARTED,
    NOTHING,
    PAUSED,
    STATE_RANK,
    WORKING,
    ActivityColumn,
    accuracy,
    catalog_columns,
    duration,
    live_runs,
)
from .database import RelayDatabase
from .filters import Filters, Period, sort_keys
from .rules import MAX_SPAN_MS
from .schema import active_spans, completions, received, runs


@dataclass
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

    def _total(self, student: str) -> tuple[float, float]:
        cells = [self.cells[(student, i)] for i in range(len(self.columns))]
        return sum(c.active_seconds for c in cells), sum(c.xp for c in cells)

    def rows(self, sort: str | None = None, descending: bool | None = None) -> list[list[str]]:
        """The table's body as shown, sorted by ``sort`` (one of ``sort_keys``; by default the
        filters' sort); an unknown key is a ValueError naming the known ones."""
        sort = self.filters.sort if sort is None else sort
        descending = self.filters.descending if descending is None else descending
        keys = self.sort_keys()
        if sort not in keys:
            raise ValueError(f"cannot sort by {sort!r}: use one of {', '.join(keys)}")

        def key(student: str) -> Any:
            if sort == "student":
                return student
            if sort == "time":
                return self._total(student)[0]
            if sort == "xp":
                return self._total(student)[1]
            cell = self.cells[(student, keys.index(sort) - 1)]
            return (STATE_RANK[cell.state], cell.active_seconds, cell.xp)

        ordered = sorted(sorted(self.students), key=key, reverse=descending)
        out = []
        for student in ordered:
            time, xp = self._total(student)
            cells = [self.cells[(student, i)].text() for i in range(len(self.columns))]
            out.append([student, *cells, duration(time), f"{xp:g}"])
        return out

    def state(self, student: str, column: int) -> str:
        return self.cells[(student, column)].state


def _period_ms(conn: sa.Connection, names: list[str], period: Period) -> dict[tuple[str, str], int]:
    """(user, run) -> forwarded active ms inside the period, each span cut at its bounds."""
    lo, hi = period.start_ms, period.end_ms
    start, end = active_spans.c.start_ms, active_spans.c.end_ms
    inside = sa.case((end > hi, hi), else_=end) - sa.case((start < lo, lo), else_=start)
    rows = conn.execute(
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
    ).all()
    return {(r.user_name, r.run_id): int(r.ms) for r in rows}


def overview(
    db: RelayDatabase,
    catalog: Catalog,
    group: str,
    students: Iterable[str],
    now: float,
    filters: Filters | None = None,
) -> Overview:
    filters = filters or Filters()
    period = filters.period
    names = sorted(set(students))
    every = catalog_columns(catalog)
    shown = filters.shown(every)
    columns = [every[i] for i in shown]
    index = {(c.course, c.slug): i for i, c in enumerate(columns)}
    empty = NOT_STARTED if period is None else NOTHING
    cells = {(s, i): Cell(state=empty) for s in names for i in range(len(columns))}
    live_shown = period is None or period.contains(now)
    with db.read() as conn:
        run_rows = conn.execute(
            sa.select(runs)
            .where(runs.c.user_name.in_(names))
            .order_by(runs.c.first_seen, runs.c.attempt)
        ).all()
        done_query = sa.select(completions).where(completions.c.user_name.in_(names))
        if period is not None:
            done_query = done_query.where(
                completions.c.at >= period.start_ms / 1000, completions.c.at < period.end_ms / 1000
            )
        done = {
            (r.user_name, r.run_id): r
            for r in conn.execute(done_query.order_by(completions.c.at, completions.c.run_id))
        }
        live = live_runs(conn, names, now) if live_shown else set()
        in_period = {} if period is None else _period_ms(conn, names, period)
    working: list[tuple[str, str]] = []
    for run in run_rows:
        i = index.get((run.course, run.activity))
        if i is None:  # filtered out, or no longer in the catalog (the student's page has it)
            continue
        key = (run.user_name, run.run_id)
        completion = done.get(key)
        if period is None:
            active_ms = run.active_ms
        else:
            active_ms = in_period.get(key, 0)
            started = period.contains(run.first_seen)
            if not (started or active_ms or completion or key in live):
                continue  # nothing of this run happened in the period
        cell = cells[(run.user_name, i)]
        cell.runs += 1
        cell.active_seconds += active_ms / 1000
        if key in live:
            cell.state = WORKING
            working.append((run.user_name, columns[i].name))
        elif completion is not None and cell.state != WORKING:
            cell.state = COMPLETED
        elif cell.state in (NOT_STARTED, NOTHING):
            cell.state = PAUSED
    column_of = {(r.user_name, r.run_id): index.get((r.course, r.activity)) for r in run_rows}
    for key, completion in done.items():  # in the order recorded: the latest sets the accuracy
        i = column_of.get(key)
        if i is None:
            continue
        cell = cells[(key[0], i)]
        cell.completions += 1
        cell.xp += completion.xp
        share = accuracy(completion.outcome)
        if share is not None:
            cell.accuracy = share
    return Overview(group, columns, names, cells, sorted(set(working)), filters, shown, live_shown)
