"""What every page of the relay says the same way: a run's state, a duration, the catalog's
activities as columns, which runs are live (no tornado here).

Shared by the class overview (``overview.py``) and the student page (``views.py``), so that a
state or a duration reads the same on both. Days are UTC days.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .catalog import Catalog
from .rules import MAX_SPAN_MS
from .schema import active_spans, received

# A run whose last forwarded active second is this recent is "working now": a server drains
# its outbox within seconds, and a heartbeat window is at most 16 s. Servers paced by the relay
# (c.Relay.send_every) send that much later: see live_window.
LIVE_SECONDS = 90.0
NOT_STARTED, WORKING, PAUSED, COMPLETED = "not started", "working now", "paused", "completed"
# Under a day or week filter, a cell with nothing in that period: "not started" would be
# false for an activity started before it.
NOTHING = "nothing in period"
STATE_RANK = {NOTHING: 0, NOT_STARTED: 0, PAUSED: 1, COMPLETED: 2, WORKING: 3}
DAY_MS = 86_400_000


@dataclass(frozen=True)
class ActivityColumn:
    course: str  # the course's name as runs.course holds it
    slug: str
    name: str

    @property
    def key(self) -> str:
        """How a URL names it (``activity=``): the slug is URL-safe, so the last ``/`` splits."""
        return f"{self.course}/{self.slug}"


def catalog_columns(catalog: Catalog) -> list[ActivityColumn]:
    return [
        ActivityColumn(course.name, a.id, a.name)
        for course in catalog.app.courses
        for a in course.activities
    ]


def duration(seconds: float) -> str:
    s = round(seconds)
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60:02d}s"
    return f"{s // 3600}h {s % 3600 // 60:02d}m"


def accuracy(outcome: dict[str, Any]) -> float | None:
    total, correct = outcome.get("total_questions"), outcome.get("correct_questions")
    if not total or correct is None:
        return None
    return correct / total


def live_window(send_every: float) -> float:
    """Seconds a run stays "working now" after its newest forwarded second, when servers are
    told to send every ``send_every`` s: a paced server's newest windows reach the relay up to
    that much later, so a student working on must not read "paused" between two sends."""
    return LIVE_SECONDS + max(0.0, float(send_every))


def live_select(
    students: Iterable[str], now: float, window: float = LIVE_SECONDS
) -> sa.Select[Any]:
    """(user, run) whose forwarded active time reaches into the last ``window`` seconds
    (:func:`live_window`), as a query (the overview asks it inside its own, one round trip
    less)."""
    since = int((now - window) * 1000)
    return (
        sa.select(received.c.user_name, received.c.run_id)
        # From the spans, by their (user_name, start_ms) index: joined from received instead,
        # SQLite scanned every span for each of a student's events (42 s for one student's
        # page with 37,000 events in the store; benchmarks/dashboard.py).
        .select_from(active_spans)
        .join(received, received.c.key == active_spans.c.event_key)
        .where(
            active_spans.c.user_name.in_(list(students)),
            # no span is longer than MAX_SPAN_MS: a range of the (user, start) index
            active_spans.c.start_ms >= since - MAX_SPAN_MS,
            active_spans.c.end_ms >= since,
        )
        .distinct()
    )


def live_runs(
    conn: sa.Connection, students: Iterable[str], now: float, window: float = LIVE_SECONDS
) -> set[tuple[str, str]]:
    """(user, run) whose forwarded active time reaches into the last ``window`` seconds."""
    rows = conn.execute(live_select(students, now, window)).all()
    return {(r.user_name, r.run_id) for r in rows}


def day(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).date().isoformat()


def moment(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
