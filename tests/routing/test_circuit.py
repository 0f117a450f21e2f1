"""The circuit breaker: state in the shared cache, time injected, one half-open probe."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection

from routing import circuit
from routing.circuit import State
from routing.models import Provider

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def small_breaker(settings):
    settings.LLMOPS_CIRCUIT_FAILURES = 3
    settings.LLMOPS_CIRCUIT_COOLDOWN = 30


pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def providers():
    for slug in ("p", "q"):
        Provider.objects.create(
            slug=slug, name=slug, kind="openai", base_url="http://127.0.0.1:9/v1"
        )


def fail(times: int, at: datetime = T0) -> None:
    for _ in range(times):
        circuit.record_failure("p", "503 from upstream", now=at)


def test_a_circuit_opens_after_the_configured_consecutive_failures():
    fail(2)
    assert circuit.circuit("p", now=T0).state == State.CLOSED
    assert circuit.allow("p", now=T0)

    fail(1)

    state = circuit.circuit("p", now=T0)
    assert (state.state, state.consecutive_failures) == (State.OPEN, 3)
    assert state.retry_at == T0 + timedelta(seconds=30)
    assert state.last_error == "503 from upstream"
    assert not circuit.allow("p", now=T0 + timedelta(seconds=29))


def test_a_success_resets_the_count():
    fail(2)
    circuit.record_success("p")
    fail(2)

    assert circuit.circuit("p", now=T0).state == State.CLOSED


@pytest.mark.django_db(transaction=True)
def test_after_the_cooldown_exactly_one_probe_goes_through_even_under_a_crowd():
    fail(3)
    later = T0 + timedelta(seconds=30)
    allowed = []

    def caller():
        try:
            allowed.append(circuit.allow("p", now=later))
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(allowed) == [False] * 19 + [True]
    assert circuit.circuit("p", now=later).state == State.HALF_OPEN


def test_a_successful_probe_closes_the_circuit():
    fail(3)
    later = T0 + timedelta(seconds=31)
    assert circuit.allow("p", now=later)

    circuit.record_success("p")

    assert circuit.circuit("p", now=later).state == State.CLOSED
    assert circuit.allow("p", now=later)


def test_a_failed_probe_opens_it_for_another_cooldown():
    fail(3)
    later = T0 + timedelta(seconds=31)
    assert circuit.allow("p", now=later)

    circuit.record_failure("p", "still down", now=later)

    state = circuit.circuit("p", now=later)
    assert (state.state, state.retry_at) == (State.OPEN, later + timedelta(seconds=30))
    assert not circuit.allow("p", now=later + timedelta(seconds=1))
    assert circuit.allow("p", now=later + timedelta(seconds=30))


def test_reset_closes_it_by_hand_and_other_providers_are_untouched():
    fail(3)
    circuit.record_failure("q", now=T0)

    circuit.reset("p")

    assert [c.state for c in circuit.circuits(["p", "q"])] == [State.CLOSED, State.CLOSED]
    assert circuit.circuit("q").consecutive_failures == 1
