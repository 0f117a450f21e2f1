"""The one percentile helper: nearest rank, an observed value."""

from __future__ import annotations

from datetime import timedelta

import pytest

from llmops.stats import nearest_rank


@pytest.mark.parametrize(
    ("values", "share", "expected"),
    [
        (list(range(1, 11)), 0.9, 9),  # p90 of 10: the 9th, not the largest
        (list(range(1, 11)), 0.5, 5),
        (list(range(1, 11)), 1.0, 10),
        (list(range(1, 11)), 0.0, 1),
        (list(range(1, 101)), 0.99, 99),
        ([7], 0.9, 7),
        ([3, 1, 2], 0.5, 2),  # sorts its input
        (list(range(1, 21)), 0.95, 19),
    ],
)
def test_nearest_rank_is_the_smallest_value_covering_the_share(values, share, expected):
    assert nearest_rank(values, share) == expected


def test_nearest_rank_of_durations_and_of_nothing():
    waits = [timedelta(minutes=m) for m in (30, 10, 20)]
    assert nearest_rank(waits, 0.9) == timedelta(minutes=30)
    assert nearest_rank(iter(waits), 0.34) == timedelta(minutes=20)
    assert nearest_rank([], 0.5) is None
