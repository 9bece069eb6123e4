"""The console's charts, drawn on the server as inline SVG (no script, no CDN): changes
carried per bucket of minutes (throughput) and their latency (median and 95th percentile),
from the per-minute history `sync.ops.metrics.HISTORY` keeps in memory."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from html import escape

from sync.ops.metrics import Minute

WIDTH, HEIGHT = 720, 180
LEFT, BOTTOM, TOP = 48, 22, 10
#: minutes per bar / point: 6 hours in 72 buckets
BUCKET_MIN = 5


def buckets(
    minutes: Sequence[Minute], size: int = BUCKET_MIN
) -> list[tuple[float, int, list[float]]]:
    """(start, changes, latencies sorted) per `size` minutes, oldest first."""
    out = []
    for first in range(0, len(minutes), size):
        chunk = minutes[first : first + size]
        latencies = sorted(x for m in chunk for x in m.latencies)
        out.append((chunk[0].start, sum(m.count for m in chunk), latencies))
    return out


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    if not sorted_values:
        return None
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def throughput_chart(minutes: Sequence[Minute]) -> str:
    rows = buckets(minutes)
    peak = max((count for _, count, _ in rows), default=0)
    top = _nice(peak)
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    step = plot_w / max(1, len(rows))
    bars = []
    for i, (start, count, _) in enumerate(rows):
        if not count:
            continue
        h = plot_h * count / top
        x, y = LEFT + i * step, TOP + plot_h - h
        bars.append(
            f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{max(1.0, step - 1):.1f}" '
            f'height="{h:.1f}"><title>{_clock(start)}: {count} changes</title></rect>'
        )
    total = sum(count for _, count, _ in rows)
    label = f"Changes carried per {BUCKET_MIN} minutes: {total} in all"
    return _frame("throughput", label, rows, top, "".join(bars), legend="")


def latency_chart(minutes: Sequence[Minute]) -> str:
    rows = buckets(minutes)
    p50 = [quantile(lat, 0.5) for _, _, lat in rows]
    p95 = [quantile(lat, 0.95) for _, _, lat in rows]
    top = _nice(max((v for v in p95 if v is not None), default=0.0))
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    step = plot_w / max(1, len(rows))
    marks = []
    for name, values in (("p95", p95), ("p50", p50)):
        points = [
            (LEFT + (i + 0.5) * step, TOP + plot_h - plot_h * v / top)
            for i, v in enumerate(values)
            if v is not None
        ]
        if len(points) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
            marks.append(f'<polyline class="line {name}" fill="none" points="{path}"/>')
        for (x, y), value in zip(points, [v for v in values if v is not None], strict=True):
            marks.append(
                f'<circle class="dot {name}" cx="{x:.1f}" cy="{y:.1f}" r="2.5">'
                f"<title>{name} {value:.2f} s</title></circle>"
            )
    legend = (
        f'<text class="legend p50" x="{WIDTH - 150}" y="{TOP + 10}">— median</text>'
        f'<text class="legend p95" x="{WIDTH - 80}" y="{TOP + 10}">— p95</text>'
    )
    label = "Latency from a change to its write on the other side (seconds)"
    return _frame("latency", label, rows, top, "".join(marks), legend=legend)


def _frame(
    name: str,
    label: str,
    rows: Sequence[tuple[float, int, list[float]]],
    top: float,
    marks: str,
    *,
    legend: str,
) -> str:
    plot_w, plot_h = WIDTH - LEFT - 4, HEIGHT - BOTTOM - TOP
    step = plot_w / max(1, len(rows))
    grid = []
    for fraction in (0.0, 0.5, 1.0):
        y = TOP + plot_h - plot_h * fraction
        value = top * fraction
        text = f"{value:g}" if value >= 1 or value == 0 else f"{value:.2f}"
        grid.append(
            f'<line class="grid" x1="{LEFT}" x2="{WIDTH - 4}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{text}</text>"
        )
    for i, (start, _, _) in enumerate(rows):
        if i % 12 == 0:  # an hour's mark
            x = LEFT + i * step
            grid.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}">{_clock(start)}</text>')
    return (
        f'<svg class="chart" id="chart-{name}" role="img" aria-label="{escape(label)}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" width="{WIDTH}" height="{HEIGHT}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(label)}</title>'
        f"{''.join(grid)}{marks}{legend}</svg>"
    )


def _nice(value: float) -> float:
    """A round top for the axis, at least `value`."""
    if value <= 0:
        return 1.0
    for top in (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000):
        if value <= top:
            return float(top)
    return float(value)


def _clock(start: float) -> str:
    return dt.datetime.fromtimestamp(start).strftime("%H:%M")
