"""Summary statistics the apps share."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import TypeVar

T = TypeVar("T")


def nearest_rank(values: Iterable[T], share: float) -> T | None:
    """The nearest-rank percentile: the smallest observed value with at least `share` (0 to 1)
    of the values at or below it, e.g. the 9th smallest of 10 for p90. An observed value,
    never an interpolation nobody saw; None for no values."""
    ordered = sorted(values)
    if not ordered:
        return None
    rank = math.ceil(round(share * len(ordered), 9))  # 0.9 * 10 is 9.000000000000002
    return ordered[min(len(ordered), max(1, rank)) - 1]
