"""Small line charts drawn on the server as SVG: no chart library, no script, a few hundred bytes per chart.

Points without a number (flag B, a failed poll) break the line instead of being drawn as zero; points whose flag
is not N are marked. Times on the axis are the site's local time.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from html import escape

W, H = 320, 90
LEFT, RIGHT, TOP, BOTTOM = 40, 6, 8, 16


def _num(v: float) -> str:
    return f"{v:.4g}"


def line_chart(points: Sequence[tuple[int, float | None, str]], t0: int, t1: int, unit: str,
               label: Callable[[int], str]) -> str:
    """points: (ts ms, value or None, flag) in time order, within [t0, t1]."""
    vals = [v for _, v, _ in points if v is not None]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {W} {H}" width="{W}" height="{H}" '
           f'font-family="sans-serif" font-size="9">',
           f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" fill="#fafafa" '
           'stroke="#ccc"/>']
    if not vals:
        out.append(f'<text x="{W // 2}" y="{H // 2}" text-anchor="middle" fill="#888">-</text></svg>')
        return "".join(out)
    lo, hi = min(vals), max(vals)
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    span = max(1, t1 - t0)

    def x(ts: int) -> float:
        return LEFT + (ts - t0) / span * (W - LEFT - RIGHT)

    def y(v: float) -> float:
        return TOP + (hi - v) / (hi - lo) * (H - TOP - BOTTOM)

    segments: list[list[str]] = [[]]
    marks: list[str] = []
    for ts, v, flag in points:
        if v is None:
            if segments[-1]:
                segments.append([])
            continue
        segments[-1].append(f"{x(ts):.1f},{y(v):.1f}")
        if flag != "N":
            marks.append(f'<circle cx="{x(ts):.1f}" cy="{y(v):.1f}" r="2" fill="#c60"><title>{escape(flag)}'
                         "</title></circle>")
    for seg in segments:
        if len(seg) == 1:
            cx, cy = seg[0].split(",")
            out.append(f'<circle cx="{cx}" cy="{cy}" r="1.5" fill="#1565c0"/>')
        elif seg:
            out.append(f'<polyline fill="none" stroke="#1565c0" stroke-width="1.2" points="{" ".join(seg)}"/>')
    out.extend(marks)
    out.append(f'<text x="{LEFT - 3}" y="{TOP + 8}" text-anchor="end">{_num(hi)}</text>')
    out.append(f'<text x="{LEFT - 3}" y="{H - BOTTOM}" text-anchor="end">{_num(lo)}</text>')
    out.append(f'<text x="{LEFT - 3}" y="{(H - BOTTOM + TOP) // 2 + 3}" text-anchor="end">{escape(unit)}</text>')
    out.append(f'<text x="{LEFT}" y="{H - 4}">{escape(label(t0))}</text>')
    out.append(f'<text x="{W - RIGHT}" y="{H - 4}" text-anchor="end">{escape(label(t1))}</text>')
    out.append("</svg>")
    return "".join(out)
