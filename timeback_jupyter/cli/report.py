"""``jupyter timeback report``: time per activity, run and day, and completions."""

from __future__ import annotations

import os
from datetime import datetime, tzinfo
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from traitlets import Unicode

from .base import EXIT_USAGE, CLIError, Command, common_aliases
from .chart import render_html
from .daily import DayRow, daily_rows, duration
from .files import write_atomic
from .records import read_records

HEADERS = ("ACTIVITY", "RUN", "ATTEMPT", "STATUS", "DAY", "ACTIVE", "INACTIVE", "COMPLETED")


def resolve_zone(name: str) -> tuple[tzinfo, str]:
    """The report's time zone and its display name: ``name`` (IANA), else the local zone
    (``$TZ`` or the system's)."""
    if name:
        try:
            return ZoneInfo(name), name
        except (ZoneInfoNotFoundError, ValueError):
            raise CLIError(
                f"--timezone: {name!r} is not a known time zone (e.g. Europe/Paris, UTC)",
                EXIT_USAGE,
            ) from None
    local = datetime.now().astimezone().tzinfo
    assert local is not None
    label = os.environ.get("TZ") or datetime.now(local).strftime("%Z") or "local time"
    return local, f"{label} (local)"


def render_table(rows: list[DayRow]) -> str:
    """A plain-text table, one line per run and day, columns aligned."""
    lines: list[tuple[str, ...]] = [HEADERS]
    for row in rows:
        done = f"\u2713 {row.completion.describe()}" if row.completion else ""
        lines.append(
            (
                row.activity_id,
                row.run.id[:8],
                str(row.run.attempt),
                row.run.status,
                row.day.isoformat(),
                duration(row.active),
                duration(row.inactive),
                done,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(HEADERS))]
    right = {2, 5, 6}  # numbers line up on the right
    out = []
    for line in lines:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        out.append("  ".join(cells).rstrip())
    return "\n".join(out)


def summary(rows: list[DayRow], zone: str) -> str:
    runs = {row.run.id: row.run for row in rows}
    completed = sum(1 for run in runs.values() if run.status == "completed")
    activities = {row.activity_id for row in rows}
    active = sum(row.active for row in rows)
    inactive = sum(row.inactive for row in rows)
    return (
        f"{len(activities)} activit{'y' if len(activities) == 1 else 'ies'}, {len(runs)} "
        f"run{'' if len(runs) == 1 else 's'} ({completed} completed); active {duration(active)}, "
        f"inactive {duration(inactive)}; days in {zone}"
    )


class ReportCommand(Command):
    """Time per activity, run and day (active, inactive) and each run's completion."""

    name = "jupyter-timeback-report"
    verb = "report"
    description = (
        "Show the recorded time per activity, run and day (active and inactive) and each "
        "run's completion (xp, questions), from the store the Jupyter server writes."
    )
    examples = """
    jupyter timeback report
    jupyter timeback report --timezone Europe/Paris --html report.html
    jupyter timeback report --activity fractions-quiz
    """
    aliases: ClassVar[dict[str, Any]] = {
        **common_aliases,
        "timezone": "ReportCommand.timezone",
        "html": "ReportCommand.html",
        "activity": "ReportCommand.activity",
    }

    timezone = Unicode(
        "", help="IANA time zone the days are counted in (default: $TZ, else the system's)."
    ).tag(config=True)
    html = Unicode("", help="Also write the report as a self-contained HTML chart here.").tag(
        config=True
    )
    activity = Unicode("", help="Only this activity id.").tag(config=True)

    def run(self) -> int:
        if self.extra_args:
            raise CLIError(f"unexpected argument {self.extra_args[0]!r}", EXIT_USAGE)
        tz, zone = resolve_zone(self.timezone)
        with self.open_store() as store:
            records = read_records(store)
        rows = daily_rows(records, tz, self.activity or None)
        if not rows:
            what = f"for activity {self.activity!r} " if self.activity else ""
            print(f"no runs recorded {what}yet in {store.path}")
        else:
            print(render_table(rows))
            print()
            print(summary(rows, zone))
        if self.html:
            page = render_html(rows, zone=zone, store_path=store.path, now=datetime.now(tz))
            write_atomic(os.path.expanduser(self.html), page)
            print(f"wrote {self.html}")
        return 0
