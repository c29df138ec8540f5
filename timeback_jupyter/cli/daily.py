"""Runs, windows and completions as rows of one run on one local day.

Days are calendar days in the report's time zone. A window that spans midnight is split in
proportion to the wall-clock time on each side, so no day gets time it did not see.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime, timedelta, tzinfo

from ..model import Run, Window
from .records import CompletionInfo, Records


@dataclass(frozen=True)
class DayRow:
    """One run on one day. ``completion`` is set on the day the run was completed."""

    run: Run
    day: date
    active: float
    inactive: float
    completion: CompletionInfo | None = None

    @property
    def activity_id(self) -> str:
        return self.run.activity.id


def local_day(t: float, tz: tzinfo) -> date:
    return datetime.fromtimestamp(t, tz).date()


def split_by_day(window: Window, tz: tzinfo) -> list[tuple[date, float, float]]:
    """``(day, active, inactive)`` for each local day the window touches."""
    start = datetime.fromtimestamp(window.start, tz)
    end = datetime.fromtimestamp(window.end, tz)
    length = window.end - window.start
    if start.date() == end.date() or length <= 0:
        return [(start.date(), window.active, window.inactive)]
    parts = []
    cursor = window.start
    day = start.date()
    while cursor < window.end:
        next_midnight = datetime.combine(day + timedelta(days=1), datetime.min.time(), tz)
        stop = min(window.end, next_midnight.timestamp())
        share = (stop - cursor) / length
        if share > 0:
            parts.append((day, window.active * share, window.inactive * share))
        cursor = stop
        day += timedelta(days=1)
    return parts


def daily_rows(records: Records, tz: tzinfo, activity: str | None = None) -> list[DayRow]:
    """Rows ordered by activity, then run start, then day. A run with no time yet still gets
    a row (its start day), so every run recorded shows up."""
    rows: list[DayRow] = []
    runs = [r for r in records.runs if activity is None or r.activity.id == activity]
    for run in sorted(runs, key=lambda r: (r.activity.id, r.started_at, r.attempt)):
        per_day: dict[date, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for window in records.windows.get(run.id, []):
            for day, active, inactive in split_by_day(window, tz):
                per_day[day][0] += active
                per_day[day][1] += inactive
        completion = records.completions.get(run.id)
        completed_on = local_day(completion.at, tz) if completion else None
        if completed_on is not None:
            per_day.setdefault(completed_on, [0.0, 0.0])
        if not per_day:
            per_day[local_day(run.started_at, tz)] = [0.0, 0.0]
        for day in sorted(per_day):
            active, inactive = per_day[day]
            rows.append(
                DayRow(run, day, active, inactive, completion if day == completed_on else None)
            )
    return rows


def duration(seconds: float) -> str:
    """``H:MM:SS``, rounded to the second."""
    total = round(max(0.0, seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}"
