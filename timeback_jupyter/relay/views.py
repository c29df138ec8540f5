"""What the relay's pages show, read from its store (no tornado, tested directly).

A class overview is students x the catalog's activities; each cell sums the student's runs of
that activity: its state, active time forwarded, XP awarded and the accuracy of the latest
completion. The table is built once as text rows, so the HTML page and the CSV export are the
same rows by construction. Days are UTC days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .catalog import Catalog
from .database import RelayDatabase
from .rules import MAX_SPAN_MS
from .schema import active_spans, completions, received, runs

# A run whose last forwarded active second is this recent is "working now": a server drains
# its outbox within seconds, and a heartbeat window is at most 16 s.
LIVE_SECONDS = 90.0
NOT_STARTED, WORKING, PAUSED, COMPLETED = "not started", "working now", "paused", "completed"
STATE_RANK = {NOT_STARTED: 0, PAUSED: 1, COMPLETED: 2, WORKING: 3}
DAY_MS = 86_400_000


@dataclass(frozen=True)
class ActivityColumn:
    course: str  # the course's name as runs.course holds it
    slug: str
    name: str


@dataclass
class Cell:
    state: str = NOT_STARTED
    active_seconds: float = 0.0
    xp: float = 0.0
    accuracy: float | None = None  # of the latest completion with questions
    runs: int = 0
    completions: int = 0

    def text(self) -> str:
        if self.state == NOT_STARTED:
            return NOT_STARTED
        parts = [self.state, duration(self.active_seconds)]
        if self.completions:  # 0 XP awarded is shown too: the student page says why
            parts.append(f"{self.xp:g} XP")
        if self.accuracy is not None:
            parts.append(f"{round(self.accuracy * 100)}%")
        return " · ".join(parts)


def duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def catalog_columns(catalog: Catalog) -> list[ActivityColumn]:
    return [
        ActivityColumn(course.name, a.id, a.name)
        for course in catalog.app.courses
        for a in course.activities
    ]


@dataclass
class Overview:
    group: str
    columns: list[ActivityColumn]
    students: list[str]
    cells: dict[tuple[str, int], Cell]
    working: list[tuple[str, str]] = field(default_factory=list)  # (student, activity name)

    HEAD_STUDENT, HEAD_TIME, HEAD_XP = "Student", "Active time", "XP"

    def header(self) -> list[str]:
        return [
            self.HEAD_STUDENT,
            *(f"{c.name} ({c.course})" for c in self.columns),
            self.HEAD_TIME,
            self.HEAD_XP,
        ]

    def sort_keys(self) -> list[str]:
        """The ``sort`` value of each header column, in order."""
        return ["student", *(f"a{i}" for i in range(len(self.columns))), "time", "xp"]

    def _total(self, student: str) -> tuple[float, float]:
        cells = [self.cells[(student, i)] for i in range(len(self.columns))]
        return sum(c.active_seconds for c in cells), sum(c.xp for c in cells)

    def rows(self, sort: str = "student", descending: bool = False) -> list[list[str]]:
        """The table's body as shown, sorted by ``sort`` (one of ``sort_keys``); an unknown
        key is a ValueError naming the known ones."""
        if sort not in self.sort_keys():
            raise ValueError(f"cannot sort by {sort!r}: use one of {', '.join(self.sort_keys())}")

        def key(student: str) -> Any:
            if sort == "student":
                return student
            if sort == "time":
                return self._total(student)[0]
            if sort == "xp":
                return self._total(student)[1]
            cell = self.cells[(student, int(sort[1:]))]
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


def _accuracy(outcome: dict[str, Any]) -> float | None:
    total, correct = outcome.get("total_questions"), outcome.get("correct_questions")
    if not total or correct is None:
        return None
    return correct / total


def _live_runs(conn: sa.Connection, students: list[str], now: float) -> set[tuple[str, str]]:
    """(user, run) whose forwarded active time reaches into the last LIVE_SECONDS."""
    since = int((now - LIVE_SECONDS) * 1000)
    # Spans first, by their (user_name, start_ms) index: no span is longer than MAX_SPAN_MS,
    # so a recent end means a start after since - MAX_SPAN_MS. Joined from received instead,
    # SQLite scanned every span for each of a student's events (42 s for one student's page
    # with 37,000 events in the store; benchmarks/dashboard.py).
    rows = conn.execute(
        sa.select(received.c.user_name, received.c.run_id)
        .select_from(active_spans)
        .join(received, received.c.key == active_spans.c.event_key)
        .where(
            active_spans.c.user_name.in_(students),
            active_spans.c.start_ms >= since - MAX_SPAN_MS,
            active_spans.c.end_ms >= since,
        )
        .distinct()
    ).all()
    return {(r.user_name, r.run_id) for r in rows}


def overview(
    db: RelayDatabase, catalog: Catalog, group: str, students: Iterable[str], now: float
) -> Overview:
    names = sorted(set(students))
    columns = catalog_columns(catalog)
    index = {(c.course, c.slug): i for i, c in enumerate(columns)}
    cells = {(s, i): Cell() for s in names for i in range(len(columns))}
    with db.read() as conn:
        run_rows = conn.execute(
            sa.select(runs)
            .where(runs.c.user_name.in_(names))
            .order_by(runs.c.first_seen, runs.c.attempt)
        ).all()
        done = {
            (r.user_name, r.run_id): r
            for r in conn.execute(
                sa.select(completions)
                .where(completions.c.user_name.in_(names))
                .order_by(completions.c.at)
            )
        }
        live = _live_runs(conn, names, now)
    working: list[tuple[str, str]] = []
    for run in run_rows:
        i = index.get((run.course, run.activity))
        if i is None:  # an activity no longer in the catalog: on the student's page only
            continue
        cell = cells[(run.user_name, i)]
        cell.runs += 1
        cell.active_seconds += run.active_ms / 1000
        completion = done.get((run.user_name, run.run_id))
        if (run.user_name, run.run_id) in live:
            cell.state = WORKING
            working.append((run.user_name, columns[i].name))
        elif completion is not None and cell.state != WORKING:
            cell.state = COMPLETED
        elif cell.state == NOT_STARTED:
            cell.state = PAUSED
        if completion is not None:
            cell.completions += 1
            cell.xp += completion.xp
            accuracy = _accuracy(completion.outcome)
            if accuracy is not None:
                cell.accuracy = accuracy
    return Overview(group, columns, names, cells, sorted(set(working)))


# -- one student -----------------------------------------------------------------------------


@dataclass
class StudentView:
    name: str
    days: list[tuple[str, float]]  # (YYYY-MM-DD, active seconds), oldest first
    runs: list[dict[str, Any]]
    completions: list[dict[str, Any]]
    cuts: list[dict[str, Any]]
    active_seconds: float
    cut_seconds: float


def _day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date().isoformat()


def _per_day(spans: Iterable[tuple[int, int]], first_ms: int) -> dict[str, float]:
    """Active seconds per UTC day, a span across midnight split at it."""
    out: dict[str, float] = {}
    for start, end in spans:
        start = max(start, first_ms)
        while start < end:
            cut = min(end, (start // DAY_MS + 1) * DAY_MS)
            out[_day(start)] = out.get(_day(start), 0.0) + (cut - start) / 1000
            start = cut
    return out


def _time(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def student(
    db: RelayDatabase, catalog: Catalog, name: str, now: float, days: int = 14
) -> StudentView:
    names = {(c.course, c.slug): c.name for c in catalog_columns(catalog)}
    today = int(now * 1000) // DAY_MS * DAY_MS
    first = today - (days - 1) * DAY_MS
    with db.read() as conn:
        spans = conn.execute(
            sa.select(active_spans.c.start_ms, active_spans.c.end_ms).where(
                active_spans.c.user_name == name, active_spans.c.end_ms > first
            )
        ).all()
        run_rows = conn.execute(
            sa.select(runs)
            .where(runs.c.user_name == name)
            .order_by(runs.c.first_seen, runs.c.attempt)
        ).all()
        done = {
            r.run_id: r
            for r in conn.execute(sa.select(completions).where(completions.c.user_name == name))
        }
        live = _live_runs(conn, [name], now)
        cut_rows = conn.execute(
            sa.select(received)
            .where(received.c.user_name == name, received.c.cut_seconds > 0)
            .order_by(received.c.at.desc())
            .limit(100)
        ).all()
    per_day = _per_day(((s.start_ms, s.end_ms) for s in spans), first)
    labels = [_day(first + i * DAY_MS) for i in range(days)]
    activity = {r.run_id: names.get((r.course, r.activity), r.activity) for r in run_rows}
    run_list = []
    for r in run_rows:
        state = WORKING if (name, r.run_id) in live else COMPLETED if r.run_id in done else PAUSED
        run_list.append(
            {
                "activity": activity[r.run_id],
                "slug": r.activity,
                "course": r.course,
                "attempt": r.attempt,
                "started": _time(r.first_seen),
                "state": state,
                "active": duration(r.active_ms / 1000),
                "cut": duration(r.cut_ms / 1000),
            }
        )
    completion_list = [
        {
            "activity": activity.get(c.run_id, "?"),
            "attempt": c.outcome.get("attempt") or _attempt(run_rows, c.run_id),
            "xp": f"{c.xp:g}",
            "reasons": list(c.outcome.get("reasons") or [c.outcome.get("reason", "")]),
            "accuracy": (
                None if _accuracy(c.outcome) is None else f"{round(_accuracy(c.outcome) * 100)}%"  # type: ignore[operator]
            ),
            "at": _time(c.at),
        }
        for c in sorted(done.values(), key=lambda c: c.at)
    ]
    cuts = [
        {
            "at": _time(r.at),
            "activity": activity.get(r.run_id, "?") if r.run_id else "?",
            "forwarded": duration(r.active_seconds or 0.0),
            "cut": duration(r.cut_seconds),
        }
        for r in cut_rows
    ]
    return StudentView(
        name,
        [(d, per_day.get(d, 0.0)) for d in labels],
        run_list,
        completion_list,
        cuts,
        sum(r.active_ms for r in run_rows) / 1000,
        sum(r.cut_ms for r in run_rows) / 1000,
    )


def _attempt(run_rows: list[Any], run_id: str) -> int | None:
    return next((r.attempt for r in run_rows if r.run_id == run_id), None)
