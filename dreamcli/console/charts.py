"""Charts drawn on the server as SVG: no script, no external request, readable without colour (each bar carries
its value in a <title>, the page a table of the same figures)."""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT, PAD_LEFT, PAD_BOTTOM, PAD_TOP = 640, 200, 56, 28, 12


def _nice_max(value: float) -> float:
    """The axis top: 1, 2 or 5 times a power of ten, at least `value`."""
    if value <= 0:
        return 1.0
    step = 1.0
    while step * 10 <= value:
        step *= 10
    for factor in (1, 2, 5, 10):
        if step * factor >= value:
            return step * factor
    return step * 10


def bars(points: Sequence[tuple[str, float]], *, label: str, unit: str = "") -> str:
    """A bar chart of (label, value) pairs as an SVG element (safe to embed: every text is escaped)."""
    top = _nice_max(max((value for _, value in points), default=0))
    inner_w, inner_h = WIDTH - PAD_LEFT - 8, HEIGHT - PAD_BOTTOM - PAD_TOP
    slot = inner_w / max(1, len(points))
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(label)}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>'
    ]
    for fraction in (0, 0.5, 1):
        y = PAD_TOP + inner_h * (1 - fraction)
        parts.append(f'<line class="grid" x1="{PAD_LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{PAD_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{_short(top * fraction)}</text>'
        )
    every = max(1, len(points) // 8)  # at most about eight labels under the bars
    for i, (name, value) in enumerate(points):
        height = inner_h * (value / top) if top else 0
        x = PAD_LEFT + i * slot + slot * 0.15
        y = PAD_TOP + inner_h - height
        parts.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{height:.1f}">'
            f"<title>{escape(name)}: {escape(_short(value))}{escape(unit)}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text class="axis" x="{x + slot * 0.35:.1f}" y="{HEIGHT - 8}" text-anchor="middle">'
                f"{escape(name[-5:])}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _short(value: float) -> str:
    for size, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:.3g}{suffix}"
    return f"{value:.3g}" if value != int(value) else str(int(value))
