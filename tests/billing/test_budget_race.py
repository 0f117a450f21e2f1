"""Hundreds of threads, each with its own database connection, admitted against one hard budget.

These tests commit for real (transaction=True). The ledger refuses DELETE, and the teardown
flush deletes, so they write holds and counters only, never a ledger entry.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import Budget, BudgetPeriod, Hold, LedgerEntry
from billing.services import (
    BudgetExceeded,
    budget_create,
    budget_reserve,
    budget_update,
    hold_release,
)
from routing.models import Team

pytestmark = pytest.mark.django_db(transaction=True)

THREADS = 200
K = 37
# A cent, which binary floats cannot hold: K of them exactly fill the limit only with exact money.
AMOUNT = Decimal("0.01")


@pytest.fixture
def budget(team: Team) -> Budget:
    budget = budget_create(team=team, period=Budget.Period.MONTH, limit_usd=K * AMOUNT)
    # Open the period's counter row, so the watcher has a row to read from the first instant.
    hold_release(hold=budget_reserve(key="warm-up", team=team, amount=AMOUNT).hold)
    return budget


def race(n: int, call: Callable[[int], object], *, watch: Callable[[], None]) -> list[object]:
    """Run call(0..n-1) on n threads released at once. One more thread runs `watch` as the race
    starts and again each time a call returns, while the others are still racing (waiting on a
    semaphore, not spinning, so it does not starve them). Returns each call's result or error."""
    results: list[object] = [None] * n
    start = threading.Barrier(n + 1)
    returned = threading.Semaphore(0)

    def worker(i: int) -> None:
        try:
            start.wait()
            results[i] = call(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()
            returned.release()

    def watcher() -> None:
        try:
            start.wait()
            watch()
            for _ in range(n):
                returned.acquire()
                watch()
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    threads.append(threading.Thread(target=watcher))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def period_sampler(budget: Budget) -> tuple[Callable[[], None], list[tuple[Decimal, ...]]]:
    samples: list[tuple[Decimal, ...]] = []

    def sample() -> None:
        samples.append(
            BudgetPeriod.objects.filter(budget=budget)
            .values_list("spent_usd", "reserved_usd", "limit_usd")
            .get()
        )

    return sample, samples


def test_exactly_the_reservations_that_fit_win_a_race_for_one_hard_budget(team, budget):
    sample, samples = period_sampler(budget)

    results = race(
        THREADS,
        lambda i: budget_reserve(key=f"req-{i}", team=team, amount=AMOUNT),
        watch=sample,
    )

    admitted = [r for r in results if not isinstance(r, Exception)]
    refused = [r for r in results if isinstance(r, BudgetExceeded)]
    assert (len(admitted), len(refused)) == (K, THREADS - K)
    assert all(admission.created for admission in admitted)
    period = BudgetPeriod.objects.get(budget=budget)
    assert (period.spent_usd, period.reserved_usd) == (0, K * AMOUNT)
    assert period.reserved_usd <= period.limit_usd
    assert Hold.objects.filter(status=Hold.Status.HELD).count() == K
    assert len(samples) == THREADS + 1
    assert samples[-1][1] == K * AMOUNT
    assert all(spent + reserved <= limit for spent, reserved, limit in samples)
    assert not LedgerEntry.objects.exists()


@pytest.mark.parametrize("room_for", [THREADS, 1], ids=["ample-budget", "room-for-one"])
def test_a_race_of_retries_with_one_key_holds_the_amount_once(team, budget, room_for):
    """Every caller of a repeated key gets the one hold, even when the budget has no room for
    a second reservation (a retry is the same request, not a new one to refuse)."""
    budget_update(budget=budget, limit_usd=room_for * AMOUNT)
    sample, samples = period_sampler(budget)

    results = race(
        THREADS,
        lambda i: budget_reserve(key="req-1", team=team, amount=AMOUNT),
        watch=sample,
    )

    errors = [r for r in results if isinstance(r, Exception)]
    assert not errors, f"{len(errors)} of {THREADS} callers failed, e.g. {errors[0]!r}"
    assert sum(admission.created for admission in results) == 1
    hold = Hold.objects.get(key="req-1")
    assert {admission.hold.pk for admission in results} == {hold.pk}
    assert BudgetPeriod.objects.get(budget=budget).reserved_usd == AMOUNT
    assert all(reserved <= AMOUNT for _, reserved, _ in samples)
