"""Server-drawn charts and how money reads on the pages (pure functions, no database)."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest

from billing.charts import hour_bars, nice_ceiling, stacked_days
from billing.templatetags.money import format_usd, format_usd_exact, pct, seconds


@pytest.mark.parametrize(
    ("value", "top"),
    [("0.00073", "0.001"), ("3", "5"), ("2.2", "2.5"), ("10", "10"), ("0", "1"), ("101", "200")],
)
def test_axis_tops_are_round_numbers_at_or_above_the_largest_bar(value, top):
    assert nice_ceiling(Decimal(value)) == Decimal(top)


def test_a_day_s_bar_stacks_its_modes_to_its_total_height():
    chart = stacked_days(
        [
            (date(2026, 11, 1), {"realtime": Decimal("3"), "batch": Decimal("1")}),
            (date(2026, 11, 2), {}),
            (date(2026, 11, 3), {"cache": Decimal("0"), "stream": Decimal("5")}),
        ],
        width=300,
        height=120,
        left=40,
        bottom=20,
    )
    plot_h = 120 - 20 - 6
    first = [r for r in chart.rects if r.title.startswith("2026-11-01")]
    assert [r.kind for r in first] == ["realtime", "batch"]  # stacked in mode order
    assert sum(r.height for r in first) == pytest.approx(plot_h * 4 / 5, abs=0.02)  # top $5
    third = [r for r in chart.rects if r.title.startswith("2026-11-03")]
    assert [r.kind for r in third] == ["stream"]  # a zero segment draws nothing
    assert third[0].y == pytest.approx(120 - 20 - plot_h, abs=0.02)
    assert len(chart.x_labels) == 3
    assert chart.y_ticks[-1][1] == "$5"


def test_hour_bars_mark_the_night_and_scale_to_the_busiest_hour():
    counts = [0] * 24
    counts[3], counts[14] = 5, 10
    chart = hour_bars(counts, height=28)
    by_title = {r.title.split(":")[0]: r for r in chart.rects}
    assert by_title["03"].kind == "night" and by_title["14"].kind == "day"
    assert by_title["14"].height == pytest.approx(26)
    assert by_title["03"].height == pytest.approx(13)
    assert hour_bars([0] * 24).rects == []


@pytest.mark.parametrize(
    ("amount", "shown"),
    [
        ("1234.565", "$1,234.56"),  # half-even at the cent
        ("0.000468123", "$0.0004681"),
        ("0.5", "$0.5000"),
        ("0", "$0.00"),
        ("-0.00001912", "-$0.00001912"),
        ("0.0000006", "$0.0000006000"),  # str() would say 6.000E-7
        ("0.000000000001", "$0.000000000001000"),
        ("0E-12", "$0.00"),
        (None, "—"),
    ],
)
def test_usd_shows_cents_or_four_significant_digits(amount, shown):
    assert format_usd(None if amount is None else Decimal(amount)) == shown


def test_exact_amounts_shares_and_durations():
    assert format_usd_exact(Decimal("0.1")) == "0.100000000000"
    assert pct(Decimal("0.0504")) == "5.0%"
    assert pct(0.5, 0) == "50%"
    assert [seconds(v) for v in (None, 12, 600, 7200, 259200)] == [
        "—",
        "12 s",
        "10 min",
        "2.0 h",
        "3.0 d",
    ]


def test_axis_labels_of_tiny_amounts_are_plain_decimals():
    days = [(date(2026, 11, 1), {"realtime": Decimal("0.0000001")})]
    chart = stacked_days(days)
    assert [label for _, label in chart.y_ticks] == [
        "$0.0000000",
        "$0.000000025",
        "$0.00000005",
        "$0.000000075",
        "$0.0000001",
    ]
    assert chart.rects[0].title == "2026-11-01 realtime $0.0000001"
    assert "E" not in "".join(
        label for _, label in stacked_days(days, money_label=format_usd).y_ticks
    )
