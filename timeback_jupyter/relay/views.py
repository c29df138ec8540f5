"""What the relay's pages show, read from its store (no tornado, tested directly).

The class overview is built in :mod:`overview` (its filters in :mod:`filters`) and the words
both pages share in :mod:`cells`; their names are here too, so a page imports one module. This
module is a student's own record. Days are UTC days.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from .catalog import Catalog
from .cells import (
    COMPLETED,
    DAY_MS,
    LIVE_SECONDS,
    NOT_STARTED,
    NOTHING,
    PAUSED,
    STATE_RANK,
    WORKING,
    ActivityColumn,
    catalog_columns,
    duration,
    live_runs,
    live_window,
)
from .cells import accuracy as _accuracy
from .cells import day as _day
from .cells import moment as _time
from .database import RelayDatabase
from .overview import Cell, Overview, overview
from .schema import active_spans, completions, received, runs

__all__ = [
    "COMPLETED", "DAY_MS", "LIVE_SECONDS", "NOTHING", "NOT_STARTED", "PAUSED", "STATE_RANK",
    "WORKING", "ActivityColumn", "Cell", "Overview", "StudentView", "catalog_columns",
    "duration", "live_window", "overview", "student",
]  # fmt: skip


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


def student(
    db: RelayDatabase,
    catalog: Catalog,
    name: str,
    now: float,
    days: int = 14,
    live_seconds: float = LIVE_SECONDS,
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
        live = live_runs(conn, [name], now, live_seconds)
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
