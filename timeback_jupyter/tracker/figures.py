"""The figures a student sees (a run's time, today's time), made one way for every face.

A run's time is the sum of four parts, each window in exactly one of them at any moment:
written to the store; handed out by the clock's tick but not yet written (``queued``: the server
writes them a few at a time, or the store is failing); closed by the clock but not yet handed
out (windows close on exact boundaries whenever the clock is asked, ticks come later); and the
open window so far. Leaving out any part makes a figure dip for a moment each time a window
moves from one part to the next; with all four a figure never goes back while time goes on,
and today's time (the same parts, windows that ended after the day's start) is never below the
time of a run begun that day.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..clock import EngagementClock
from ..model import Run, Window


@dataclass(frozen=True, slots=True)
class RunTime:
    """A run's time at one instant, and what it is doing then."""

    state: str  # active, inactive or paused while live; else the run's status
    active: float
    inactive: float
    pauses_in: float | None  # seconds until the clock pauses it if nothing is said meanwhile


def _sum(windows: Iterable[Window], since: float | None = None) -> tuple[float, float]:
    active = inactive = 0.0
    for w in windows:
        if since is None or w.end > since:
            active += w.active
            inactive += w.inactive
    return active, inactive


def run_time(
    run: Run, clock: EngagementClock, queued: Iterable[Window], live: bool, now: float
) -> RunTime:
    """``run``'s time at ``now``; ``queued`` are windows handed out by tick, not yet stored."""
    active, inactive = run.active_seconds, run.inactive_seconds
    q_active, q_inactive = _sum(w for w in queued if w.run_id == run.id)
    active += q_active
    inactive += q_inactive
    if not live:
        return RunTime(run.status, active, inactive, None)
    reading = clock.reading(run.id, now)
    c_active, c_inactive = _sum(reading.closed)
    snap = reading.snapshot
    pauses_in = None if reading.pauses_at is None else max(0.0, reading.pauses_at - now)
    return RunTime(
        snap.state,
        active + c_active + snap.window_active,
        inactive + c_inactive + snap.window_inactive,
        pauses_in,
    )


def time_since(
    stored: tuple[float, float],
    clock: EngagementClock,
    queued: Iterable[Window],
    live: Iterable[str],
    since: float,
    now: float,
) -> tuple[float, float]:
    """A student's time in windows that ended after ``since``: ``stored`` is the store's part
    (``Store.time_since``), ``live`` the student's live runs. The open windows count whole: they
    end at ``now``."""
    active, inactive = stored
    q_active, q_inactive = _sum(queued, since)
    active += q_active
    inactive += q_inactive
    for run_id in live:
        reading = clock.reading(run_id, now)
        c_active, c_inactive = _sum(reading.closed, since)
        active += c_active + reading.snapshot.window_active
        inactive += c_inactive + reading.snapshot.window_inactive
    return active, inactive
