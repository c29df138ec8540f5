"""The report as one self-contained HTML page: per activity, an inline SVG of active and
inactive minutes per day (stacked bars), then the table. No script, no external resource."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime
from html import escape

from .daily import DayRow, duration

ACTIVE_COLOR = "#2e7d32"
INACTIVE_COLOR = "#b0bec5"
_BAR, _GAP, _PLOT_H, _LEFT, _TOP, _BOTTOM = 36, 14, 180, 48, 24, 56

_STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #212121; }
h1 { font-size: 20px; } h2 { font-size: 16px; margin-top: 32px; }
table { border-collapse: collapse; margin-top: 8px; }
th, td { padding: 3px 10px; border-bottom: 1px solid #e0e0e0; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.legend span { display: inline-block; width: 12px; height: 12px; margin: 0 4px 0 12px;
  vertical-align: middle; }
.muted { color: #757575; }
"""


def _svg(per_day: dict[date, tuple[float, float]], completed: set[date]) -> str:
    days = sorted(per_day)
    top_minutes = max((a + i) / 60 for a, i in per_day.values()) if days else 0.0
    scale_max = max(1.0, _nice(top_minutes))
    width = _LEFT + len(days) * (_BAR + _GAP) + _GAP
    height = _TOP + _PLOT_H + _BOTTOM
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="minutes per day">',
    ]
    for k in range(5):
        value = scale_max * k / 4
        y = _TOP + _PLOT_H - _PLOT_H * k / 4
        parts.append(
            f'<line x1="{_LEFT}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eeeeee"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" '
            f'fill="#757575">{value:g}</text>'
        )
    parts.append(
        f'<text x="12" y="{_TOP + _PLOT_H / 2:.0f}" font-size="11" fill="#757575" '
        f'transform="rotate(-90 12 {_TOP + _PLOT_H / 2:.0f})" text-anchor="middle">'
        "minutes</text>"
    )
    for n, day in enumerate(days):
        active, inactive = per_day[day]
        x = _LEFT + _GAP + n * (_BAR + _GAP)
        base = _TOP + _PLOT_H
        h_active = _PLOT_H * (active / 60) / scale_max
        h_inactive = _PLOT_H * (inactive / 60) / scale_max
        title = f"{day.isoformat()}: active {duration(active)}, inactive {duration(inactive)}"
        parts.append(f"<g><title>{escape(title)}</title>")
        parts.append(
            f'<rect x="{x}" y="{base - h_active:.1f}" width="{_BAR}" height="{h_active:.1f}" '
            f'fill="{ACTIVE_COLOR}"/>'
        )
        parts.append(
            f'<rect x="{x}" y="{base - h_active - h_inactive:.1f}" width="{_BAR}" '
            f'height="{h_inactive:.1f}" fill="{INACTIVE_COLOR}"/>'
        )
        if day in completed:
            parts.append(
                f'<text x="{x + _BAR / 2}" y="{base - h_active - h_inactive - 4:.1f}" '
                f'font-size="13" text-anchor="middle" fill="{ACTIVE_COLOR}">\u2713</text>'
            )
        parts.append(
            f'<text x="{x + _BAR / 2}" y="{base + 16}" font-size="11" text-anchor="middle">'
            f"{day.strftime('%b %d')}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)


def _nice(value: float) -> float:
    """The next 'round' axis maximum at or above ``value`` (1, 2, 5 x 10^n)."""
    if value <= 0:
        return 1.0
    magnitude = 1.0
    while magnitude * 10 <= value:
        magnitude *= 10
    while magnitude > value:
        magnitude /= 10
    for step in (1, 2, 5, 10):
        if step * magnitude >= value:
            return step * magnitude
    return 10 * magnitude


def _table(rows: list[DayRow]) -> str:
    head = (
        "<tr><th>run</th><th>attempt</th><th>status</th><th>day</th>"
        "<th>active</th><th>inactive</th><th>completed</th></tr>"
    )
    body = []
    for row in rows:
        done = f"\u2713 {escape(row.completion.describe())}" if row.completion else ""
        body.append(
            f"<tr><td><code>{escape(row.run.id[:8])}</code></td>"
            f'<td class="num">{row.run.attempt}</td><td>{escape(row.run.status)}</td>'
            f"<td>{row.day.isoformat()}</td>"
            f'<td class="num">{duration(row.active)}</td>'
            f'<td class="num">{duration(row.inactive)}</td><td>{done}</td></tr>'
        )
    return f"<table>{head}{''.join(body)}</table>"


def render_html(rows: list[DayRow], *, zone: str, store_path: str, now: datetime) -> str:
    by_activity: dict[str, list[DayRow]] = defaultdict(list)
    for row in rows:
        by_activity[row.activity_id].append(row)
    sections = []
    for activity_id, activity_rows in by_activity.items():
        activity = activity_rows[0].run.activity
        per_day: dict[date, list[float]] = defaultdict(lambda: [0.0, 0.0])
        for row in activity_rows:
            per_day[row.day][0] += row.active
            per_day[row.day][1] += row.inactive
        completed = {row.day for row in activity_rows if row.completion}
        runs = {row.run.id for row in activity_rows}
        sections.append(
            f"<section><h2>{escape(activity.name)} <span class='muted'>"
            f"({escape(activity_id)}, {escape(activity.course.name)}, {len(runs)} run"
            f"{'s' if len(runs) != 1 else ''})</span></h2>"
            + _svg({d: (a, i) for d, (a, i) in per_day.items()}, completed)
            + _table(activity_rows)
            + "</section>"
        )
    if not sections:
        sections.append("<p>No runs recorded yet.</p>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        "<title>Timeback report</title>"
        f"<style>{_STYLE}</style></head><body>"
        "<h1>Timeback report</h1>"
        f"<p class='muted'>Store {escape(store_path)} &middot; days in {escape(zone)} &middot; "
        f"generated {escape(now.strftime('%Y-%m-%d %H:%M'))}</p>"
        f"<p class='legend'><span style='background:{ACTIVE_COLOR}'></span>active"
        f"<span style='background:{INACTIVE_COLOR}'></span>inactive "
        "&nbsp;\u2713 completed</p>" + "".join(sections) + "</body></html>\n"
    )
