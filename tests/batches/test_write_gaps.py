"""The gap a long batch write keeps between its transactions (WriteGaps): what it does between
two of them counts towards LLMOPS_BATCH_WRITE_PAUSE_MS, and only the rest is slept. Time is
the one thing mocked: a clock that moves only when told to."""

from __future__ import annotations

import pytest

from batches.services import common
from batches.services.common import WriteGaps


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(round(seconds, 6))
        self.now += seconds


@pytest.fixture
def clock(monkeypatch, settings):
    settings.LLMOPS_BATCH_WRITE_PAUSE_MS = 110
    fake = Clock()
    monkeypatch.setattr(common.time, "monotonic", fake.monotonic)
    monkeypatch.setattr(common.time, "sleep", fake.sleep)
    return fake


def test_the_first_transaction_does_not_wait(clock):
    gaps = WriteGaps()
    with gaps.kept():
        clock.now += 0.5  # the transaction
    assert clock.sleeps == []
    assert (gaps.count, gaps.slept) == (0, 0.0)


def test_only_what_the_work_between_left_of_the_gap_is_slept(clock):
    gaps = WriteGaps()
    with gaps.kept():
        clock.now += 0.3
    clock.now += 0.04  # reading and pricing the next chunk: the lock is free meanwhile
    with gaps.kept():
        clock.now += 0.3
    assert clock.sleeps == [0.07]
    clock.now += 0.5  # longer than the gap: nothing left to sleep
    with gaps.kept():
        pass
    with gaps.kept():  # straight after: the whole gap
        pass
    assert clock.sleeps == [0.07, 0.11]
    assert gaps.count == 2
    assert gaps.slept == pytest.approx(0.18)


def test_the_gap_is_counted_from_a_transaction_that_failed(clock):
    gaps = WriteGaps()
    with pytest.raises(RuntimeError), gaps.kept():
        clock.now += 0.2
        raise RuntimeError("rolled back")
    with gaps.kept():
        pass
    assert clock.sleeps == [0.11]


def test_no_pause_configured_never_sleeps(clock, settings):
    settings.LLMOPS_BATCH_WRITE_PAUSE_MS = 0  # PostgreSQL's default: row locks, no pause
    gaps = WriteGaps()
    for _ in range(3):
        with gaps.kept():
            pass
    assert clock.sleeps == []
