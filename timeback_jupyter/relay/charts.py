"""Server-rendered SVG charts: no script, readable by a screen reader (role="img", a title and
a description listing the values), each bar with its own tooltip."""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 220, 48, 40, 12


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def _opening(chart_id: str, title: str, desc: str, top_label: str) -> list[str]:
    """The chart's element, its accessible name and description, the base line and the scale's
    two ticks (its top, labelled, and 0)."""
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'class="chart">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + inner_h}" x2="{WIDTH - 8}" '
        f'y2="{PAD_TOP + inner_h}" class="axis"/>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" text-anchor="end" class="tick">'
        f"{escape(top_label)}</text>",
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + inner_h}" text-anchor="end" class="tick">0</text>',
    ]


def bar_chart(points: list[tuple[str, float]], title: str, chart_id: str = "chart") -> str:
    """Bars of seconds per label (labels are dates YYYY-MM-DD; the axis shows MM-DD)."""
    top = max((v for _, v in points), default=0.0)
    scale_max = max(top, 60.0)
    inner_w = WIDTH - PAD_LEFT - 8
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    step = inner_w / max(len(points), 1)
    desc = "; ".join(f"{label}: {_minutes(v)}" for label, v in points)
    out = _opening(chart_id, title, desc, _minutes(scale_max))
    for i, (label, value) in enumerate(points):
        h = inner_h * value / scale_max
        x = PAD_LEFT + i * step + step * 0.15
        y = PAD_TOP + inner_h - h
        out.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{step * 0.7:.1f}" height="{h:.1f}" '
            f'class="bar"><title>{escape(label)}: {escape(_minutes(value))}</title></rect>'
        )
        out.append(
            f'<text x="{x + step * 0.35:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" '
            f'text-anchor="middle" class="tick">{escape(label[5:])}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def histogram(
    bins: list[tuple[float, float, int]],
    marks: list[tuple[float, str]],
    title: str,
    chart_id: str = "histogram",
) -> str:
    """Bars of counts per bin of minutes, ``(low, high, count)`` each, with vertical ``marks``
    ``(minutes, label)`` (the expected minutes, the wasteful limit) where they fall inside.
    The description says every bin and mark in words."""
    top = max((c for _, _, c in bins), default=0)
    scale_max = max(top, 1)
    inner_w = WIDTH - PAD_LEFT - 8
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    span = bins[-1][1] if bins else 1.0
    step = inner_w / max(len(bins), 1)

    def x_of(value: float) -> float:
        return PAD_LEFT + inner_w * value / span

    shown = [(m, label) for m, label in marks if 0 <= m <= span]
    desc = "; ".join(
        f"{low:g} to {high:g} min: {count} completion{'' if count == 1 else 's'}"
        for low, high, count in bins
    )
    if shown:
        desc += ". " + "; ".join(f"{label} at {m:g} min" for m, label in shown)
    out = _opening(chart_id, title, desc, str(scale_max))
    for i, (low, high, count) in enumerate(bins):
        h = inner_h * count / scale_max
        x = PAD_LEFT + i * step
        out.append(
            f'<rect x="{x + 1:.1f}" y="{PAD_TOP + inner_h - h:.1f}" width="{step - 2:.1f}" '
            f'height="{h:.1f}" class="bar"><title>{low:g} to {high:g} min: {count}'
            f"</title></rect>"
        )
        out.append(
            f'<text x="{x:.1f}" y="{HEIGHT - PAD_BOTTOM + 16}" text-anchor="middle" '
            f'class="tick">{low:g}</text>'
        )
    out.append(
        f'<text x="{WIDTH - 8}" y="{HEIGHT - PAD_BOTTOM + 32}" text-anchor="end" '
        f'class="tick">active minutes to completion</text>'
    )
    for i, (m, label) in enumerate(shown):
        x = x_of(m)
        out.append(
            f'<line x1="{x:.1f}" y1="{PAD_TOP}" x2="{x:.1f}" y2="{PAD_TOP + inner_h}" '
            f'class="mark" stroke="#c5221f" stroke-width="2" stroke-dasharray="5 3"/>'
        )
        out.append(
            f'<text x="{x + 4:.1f}" y="{PAD_TOP + 12 + 14 * i}" class="tick">{escape(label)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)
