"""Server-rendered SVG charts: no script, readable by a screen reader (role="img", a title and
a description listing the values), each bar with its own tooltip."""

from __future__ import annotations

from html import escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 220, 48, 40, 12


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f} min"


def bar_chart(points: list[tuple[str, float]], title: str, chart_id: str = "chart") -> str:
    """Bars of seconds per label (labels are dates YYYY-MM-DD; the axis shows MM-DD)."""
    top = max((v for _, v in points), default=0.0)
    scale_max = max(top, 60.0)
    inner_w = WIDTH - PAD_LEFT - 8
    inner_h = HEIGHT - PAD_TOP - PAD_BOTTOM
    step = inner_w / max(len(points), 1)
    desc = "; ".join(f"{label}: {_minutes(v)}" for label, v in points)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" role="img" aria-labelledby="{chart_id}-title {chart_id}-desc" '
        f'class="chart">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
        f'<desc id="{chart_id}-desc">{escape(desc)}</desc>',
        f'<line x1="{PAD_LEFT}" y1="{PAD_TOP + inner_h}" x2="{WIDTH - 8}" '
        f'y2="{PAD_TOP + inner_h}" class="axis"/>',
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + 4}" text-anchor="end" class="tick">'
        f"{escape(_minutes(scale_max))}</text>",
        f'<text x="{PAD_LEFT - 6}" y="{PAD_TOP + inner_h}" text-anchor="end" class="tick">0</text>',
    ]
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
