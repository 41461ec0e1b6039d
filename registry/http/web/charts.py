"""Line charts as SVG geometry, drawn on the server (no script needed, nothing to vendor).

The template turns a :class:`Chart` into ``<svg>`` elements; every number here is computed,
every label escaped by Jinja. Colours come from the stylesheet (``.series-N``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

WIDTH, HEIGHT = 640, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 16, 12, 36
MAX_POINTS = 600  # more than the plot's width in pixels gains nothing


@dataclass(frozen=True)
class Series:
    """One named line."""

    label: str
    points: list[tuple[float, float]]


@dataclass
class Chart:
    """Everything the template draws."""

    title: str
    width: int = WIDTH
    height: int = HEIGHT
    lines: list[tuple[str, str, int]] = field(default_factory=list)  # label, points, colour
    markers: list[tuple[float, float, int]] = field(default_factory=list)  # lone points
    x_ticks: list[tuple[float, str]] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)
    x_label: str = "step"
    empty: bool = True

    @property
    def plot(self) -> tuple[int, int, int, int]:
        """The plot area: left, top, right, bottom."""
        return LEFT, TOP, self.width - RIGHT, self.height - BOTTOM


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks, value = [], first
    while value <= high + step * 1e-9:
        ticks.append(round(value, 12))
        value += step
    return ticks


def _label(value: float) -> str:
    return f"{value:.4g}"


def _thin(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    if len(points) <= MAX_POINTS:
        return points
    stride = len(points) / MAX_POINTS
    kept = [points[int(i * stride)] for i in range(MAX_POINTS)]
    return [*kept, points[-1]]


def line_chart(title: str, series: list[Series], x_label: str = "step") -> Chart:
    """A chart of ``series`` on shared axes; ``empty`` when there is nothing to draw."""
    chart = Chart(title, x_label=x_label)
    finite = [[(x, y) for x, y in s.points if math.isfinite(y)] for s in series]
    everything = [p for pts in finite for p in pts]
    if not everything:
        return chart
    chart.empty = False
    xs, ys = [p[0] for p in everything], [p[1] for p in everything]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    pad = (y_hi - y_lo) * 0.05 or abs(y_hi) * 0.05 or 1.0
    y_lo, y_hi = y_lo - pad, y_hi + pad
    if x_hi == x_lo:
        x_hi = x_lo + 1
    left, top, right, bottom = chart.plot

    def sx(x: float) -> float:
        return round(left + (x - x_lo) / (x_hi - x_lo) * (right - left), 1)

    def sy(y: float) -> float:
        return round(bottom - (y - y_lo) / (y_hi - y_lo) * (bottom - top), 1)

    for index, (s, pts) in enumerate(zip(series, finite, strict=True)):
        colour = index % 8
        if len(pts) == 1:
            chart.markers.append((sx(pts[0][0]), sy(pts[0][1]), colour))
        if pts:
            text = " ".join(f"{sx(x)},{sy(y)}" for x, y in _thin(pts))
            chart.lines.append((s.label, text, colour))
    chart.x_ticks = [(sx(t), _label(t)) for t in _nice_ticks(x_lo, x_hi) if x_lo <= t <= x_hi]
    chart.y_ticks = [(sy(t), _label(t)) for t in _nice_ticks(y_lo, y_hi) if y_lo <= t <= y_hi]
    return chart
