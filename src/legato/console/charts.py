"""Small SVG charts drawn on the server, by hand: a daily line chart and a bar chart with intervals.

Why by hand: the console ships no third-party JavaScript or CSS, and a chart drawn on the
server is legible without script, printable, and its numbers are in the page's text for a
screen reader. Each chart is an ``<svg role="img">`` with a ``<title>`` and a ``<desc>`` (what
it shows in words: the range, the last value, the target), labelled axes (dates along the
bottom, the values' unit on the left), a dashed target line when there is a target, and a
legend. Colours are the page's (``console.css`` classes ``series-0``..``series-3``, ``target``,
``interval``), chosen for 3:1 contrast against the background (WCAG 2.1's non-text contrast),
and series differ by dash as well as colour. Every text is escaped: :func:`line_chart` and
:func:`bar_chart` return safe markup a template may include as it is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 240
LEFT, RIGHT, TOP, BOTTOM = 64, 32, 16, 44  # the plot's margins: room for the value and date labels
DASHES = ("", "6 4", "2 3", "10 3 2 3")


@dataclass(frozen=True)
class Series:
    label: str
    points: Sequence[tuple[date, float | None]]  # None: no value that day (a gap in the line)


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    low: float | None = None  # the interval; None: none to draw (too few customers)
    high: float | None = None
    note: str | None = None  # why there is no value or no interval


def _nice_ticks(low: float, high: float, count: int = 4) -> list[float]:
    """About ``count`` round values covering [low, high]."""
    if high <= low:
        high = low + (abs(low) or 1.0)
    span = high - low
    raw = span / count
    magnitude = 10 ** _floor_log10(raw)
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    start = step * _floor(low / step)
    ticks = []
    value = start
    while value <= high + step * 0.5 and len(ticks) < 12:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _floor(x: float) -> int:
    n = int(x)
    return n - 1 if x < n else n


def _floor_log10(x: float) -> int:
    n = 0
    if x <= 0:
        return 0
    while x >= 10:
        x /= 10
        n += 1
    while x < 1:
        x *= 10
        n -= 1
    return n


def line_chart(
    title: str,
    series: Sequence[Series],
    *,
    fmt: Callable[[float], str],
    target: float | None = None,
    target_label: str = "target",
    y_label: str = "",
    chart_id: str = "chart",
) -> Markup:
    """A line per series over days, the y axis in ``fmt``'s unit, a dashed line at ``target``."""
    values = [v for s in series for _, v in s.points if v is not None] + ([target] if target is not None else [])
    days = sorted({d for s in series for d, _ in s.points})
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    if not values or not days:
        return Markup(
            '<svg class="chart" role="img" viewBox="0 0 {w} 80" aria-labelledby="{t} {d}"><title id="{t}">{title}</title>'
            '<desc id="{d}">No values yet in this period.</desc><text x="{x}" y="44" text-anchor="middle" class="chart-empty">'
            "No values yet in this period</text></svg>"
        ).format(w=WIDTH, t=title_id, d=desc_id, title=title, x=WIDTH // 2)
    low, high = min(0.0, min(values)), max(values)
    ticks = _nice_ticks(low, high * 1.1 if high > 0 else high + 1)
    y_min, y_max = ticks[0], ticks[-1]
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    first, last = days[0], days[-1]
    span = max(1, (last - first).days)

    def x(day: date) -> float:
        return LEFT + plot_w * ((day - first).days / span if len(days) > 1 else 0.5)

    def y(value: float) -> float:
        return TOP + plot_h * (1 - (value - y_min) / ((y_max - y_min) or 1))

    parts: list[str] = []
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>')
        parts.append(f'<text class="tick" x="{LEFT - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{escape(fmt(tick))}</text>')
    for day in _date_ticks(days):
        parts.append(f'<text class="tick" x="{x(day):.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">{day:%b %d}</text>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{TOP + plot_h}" y2="{TOP + plot_h}"/>')
    parts.append(f'<line class="axis" x1="{LEFT}" x2="{LEFT}" y1="{TOP}" y2="{TOP + plot_h}"/>')
    if y_label:
        parts.append(f'<text class="axis-label" x="12" y="{TOP + plot_h / 2:.1f}" transform="rotate(-90 12 {TOP + plot_h / 2:.1f})" '
                     f'text-anchor="middle">{escape(y_label)}</text>')
    parts.append(f'<text class="axis-label" x="{LEFT + plot_w / 2:.1f}" y="{HEIGHT - 6}" text-anchor="middle">day decided (UTC)</text>')
    if target is not None:
        parts.append(f'<line class="target" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y(target):.1f}" y2="{y(target):.1f}"/>')
    for i, s in enumerate(series):
        segments: list[list[str]] = [[]]
        for day, value in sorted(s.points):
            if value is None:
                segments.append([])
                continue
            segments[-1].append(f"{x(day):.1f},{y(value):.1f}")
        dash = f' stroke-dasharray="{DASHES[i % len(DASHES)]}"' if DASHES[i % len(DASHES)] else ""
        for segment in segments:
            if len(segment) > 1:
                parts.append(f'<polyline class="series series-{i % 4}" points="{" ".join(segment)}"{dash}/>')
            elif len(segment) == 1:
                cx, cy = segment[0].split(",")
                parts.append(f'<circle class="dot series-{i % 4}" cx="{cx}" cy="{cy}" r="3"/>')
    legend = [(s.label, f"series series-{i % 4}", DASHES[i % len(DASHES)]) for i, s in enumerate(series)]
    if target is not None:
        legend.append((f"{target_label} {fmt(target)}", "target", ""))
    legend_x = LEFT + 8
    for label, css, dash in legend:
        dash_attr = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(f'<line class="{css}" x1="{legend_x}" x2="{legend_x + 18}" y1="{TOP + 6}" y2="{TOP + 6}"{dash_attr}/>')
        parts.append(f'<text class="legend" x="{legend_x + 22}" y="{TOP + 10}">{escape(label)}</text>')
        legend_x += 30 + 7 * len(label)
    described = _describe(series, fmt, target, target_label, first, last)
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="xMidYMid meet" '
        f'aria-labelledby="{title_id} {desc_id}"><title id="{title_id}">{escape(title)}</title>'
        f'<desc id="{desc_id}">{escape(described)}</desc>{"".join(parts)}</svg>'
    )


def _date_ticks(days: list[date], most: int = 6) -> list[date]:
    if len(days) <= most:
        return days
    step = (len(days) - 1) / (most - 1)
    return [days[round(i * step)] for i in range(most)]


def _describe(series: Sequence[Series], fmt: Callable[[float], str], target: float | None, target_label: str, first: date, last: date) -> str:
    words = [f"From {first:%Y-%m-%d} to {last:%Y-%m-%d}."]
    for s in series:
        known = [(d, v) for d, v in sorted(s.points) if v is not None]
        if known:
            lo, hi = min(v for _, v in known), max(v for _, v in known)
            words.append(f"{s.label}: last {fmt(known[-1][1])} on {known[-1][0]:%Y-%m-%d}, between {fmt(lo)} and {fmt(hi)}.")
        else:
            words.append(f"{s.label}: no values.")
    if target is not None:
        words.append(f"{target_label.capitalize()}: {fmt(target)}.")
    return " ".join(words)


def bar_chart(title: str, bars: Sequence[Bar], *, fmt: Callable[[float], str], zero_label: str = "no difference",
              chart_id: str = "bars") -> Markup:
    """Horizontal bars from zero, each with its interval as a whisker; a bar without a value says why."""
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    row, label_w = 34, 180
    height = TOP + row * max(1, len(bars)) + 36
    known = [v for b in bars for v in (b.value, b.low, b.high) if v is not None]
    low, high = (min(0.0, *known), max(0.0, *known)) if known else (-1.0, 1.0)
    if low == high:
        low, high = low - 1, high + 1
    ticks = _nice_ticks(low, high)
    x_min, x_max = ticks[0], ticks[-1]
    plot_left, plot_w = label_w, WIDTH - label_w - RIGHT - 24

    def x(value: float) -> float:
        return plot_left + plot_w * (value - x_min) / ((x_max - x_min) or 1)

    parts: list[str] = []
    for tick in ticks:
        parts.append(f'<line class="grid" x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{TOP}" y2="{height - 30}"/>')
        parts.append(f'<text class="tick" x="{x(tick):.1f}" y="{height - 16}" text-anchor="middle">{escape(fmt(tick))}</text>')
    parts.append(f'<line class="axis" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="{TOP}" y2="{height - 30}"/>')
    words = []
    for i, b in enumerate(bars):
        top = TOP + i * row
        parts.append(f'<text class="bar-label" x="{label_w - 8}" y="{top + row / 2 + 4:.1f}" text-anchor="end">{escape(b.label)}</text>')
        if b.value is None:
            parts.append(f'<text class="chart-empty" x="{plot_left + 4}" y="{top + row / 2 + 4:.1f}">{escape(b.note or "no value yet")}</text>')
            words.append(f"{b.label}: {b.note or 'no value yet'}.")
            continue
        left, right = sorted((x(0), x(b.value)))
        css = "bar positive" if b.value >= 0 else "bar negative"
        parts.append(f'<rect class="{css}" x="{left:.1f}" y="{top + 8}" width="{max(1.0, right - left):.1f}" height="{row - 16}"/>')
        if b.low is not None and b.high is not None:
            mid = top + row / 2
            parts.append(f'<line class="interval" x1="{x(b.low):.1f}" x2="{x(b.high):.1f}" y1="{mid:.1f}" y2="{mid:.1f}"/>')
            for end in (b.low, b.high):
                parts.append(f'<line class="interval" x1="{x(end):.1f}" x2="{x(end):.1f}" y1="{mid - 6:.1f}" y2="{mid + 6:.1f}"/>')
            words.append(f"{b.label}: {fmt(b.value)}, 95% interval {fmt(b.low)} to {fmt(b.high)}.")
        else:
            words.append(f"{b.label}: {fmt(b.value)} ({b.note or 'no interval: too few customers'}).")
    parts.append(f'<text class="axis-label" x="{x(0):.1f}" y="{height - 2}" text-anchor="middle">0 = {escape(zero_label)}</text>')
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {WIDTH} {height}" preserveAspectRatio="xMidYMid meet" '
        f'aria-labelledby="{title_id} {desc_id}"><title id="{title_id}">{escape(title)}</title>'
        f'<desc id="{desc_id}">{escape(" ".join(words) or "Nothing to show.")}</desc>{"".join(parts)}</svg>'
    )
