"""Charts as SVG geometry computed on the server: no JavaScript library, nothing from a CDN.
Pure functions: amounts in, rectangles and labels out (templates/billing/*.html draw them)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal

from billing.pricing import plain

MODES = ("realtime", "stream", "flex", "batch", "cache")
# The audit's night (UTC): traffic then rarely has a person waiting.
NIGHT_HOURS = frozenset({22, 23, 0, 1, 2, 3, 4, 5})


@dataclass(frozen=True)
class Rect:
    x: float
    y: float
    width: float
    height: float
    kind: str
    title: str


@dataclass
class Chart:
    width: int
    height: int
    left: int = 0  # where the plot starts: y labels end here
    rects: list[Rect] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    x_labels: list[tuple[float, str]] = field(default_factory=list)  # (x, label)


def nice_ceiling(value: Decimal) -> Decimal:
    """The smallest of 1, 2, 2.5, 5 x 10^k at or above `value` (axis tops that read well)."""
    if value <= 0:
        return Decimal(1)
    exponent = value.adjusted()
    for step in (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10)):
        top = step.scaleb(exponent)
        if top >= value:
            return top
    return Decimal(10).scaleb(exponent)  # unreachable: 10 x 10^k is always above


def stacked_days(
    days: list[tuple[date, dict[str, Decimal]]],
    *,
    width: int = 720,
    height: int = 220,
    left: int = 84,
    bottom: int = 22,
    money_label=lambda d: f"${plain(d)}",
) -> Chart:
    """One bar per day, stacked by mode in MODES order."""
    chart = Chart(width=width, height=height, left=left)
    if not days:
        return chart
    top = nice_ceiling(max(sum(m.values(), Decimal(0)) for _, m in days))
    plot_w, plot_h = width - left - 4, height - bottom - 6
    slot = plot_w / len(days)
    bar_w = max(1.0, slot * 0.8)
    for i, (day, by_mode) in enumerate(days):
        x = left + i * slot + (slot - bar_w) / 2
        base = float(height - bottom)
        for kind in MODES:
            amount = by_mode.get(kind, Decimal(0))
            if amount <= 0:
                continue
            h = float(amount / top) * plot_h
            base -= h
            chart.rects.append(
                Rect(
                    round(x, 2),
                    round(base, 2),
                    round(bar_w, 2),
                    round(h, 2),
                    kind,
                    f"{day} {kind} {money_label(amount)}",
                )
            )
    for k in range(5):
        value = top * k / 4
        chart.y_ticks.append((round(height - bottom - plot_h * k / 4, 2), money_label(value)))
    every = max(1, len(days) // 8)
    for i, (day, _) in enumerate(days):
        if i % every == 0:
            chart.x_labels.append((round(left + i * slot + slot / 2, 2), day.strftime("%b %d")))
    return chart


def hour_bars(counts: list[int], *, width: int = 144, height: int = 28) -> Chart:
    """A 24-bar sparkline of requests per UTC hour."""
    chart = Chart(width=width, height=height)
    peak = max(counts) if counts else 0
    if not peak:
        return chart
    slot = width / len(counts)
    for hour, n in enumerate(counts):
        h = n / peak * (height - 2)
        chart.rects.append(
            Rect(
                round(hour * slot, 2),
                round(height - h, 2),
                round(slot * 0.8, 2),
                round(h, 2),
                "night" if hour in NIGHT_HOURS else "day",
                f"{hour:02d}:00 UTC: {n} requests",
            )
        )
    return chart
