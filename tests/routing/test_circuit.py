"""The circuit breaker: state in the shared cache, time injected, one half-open probe."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.db import connection

from routing import circuit
from routing.circuit import PROBE_TTL, State
from routing.models import Provider

pytestmark = pytest.mark.django_db

T0 = datetime(2030, 1, 1, tzinfo=UTC)


@pytest.fixture(autouse=True)
def small_breaker(settings):
    settings.LLMOPS_CIRCUIT_FAILURES = 3
    settings.LLMOPS_CIRCUIT_COOLDOWN = 30


@pytest.fixture(autouse=True)
def providers():
    for slug in ("p", "q"):
        Provider.objects.create(
            slug=slug, name=slug, kind="openai", base_url="http://127.0.0.1:9/v1"
        )


def fail(times: int, at: datetime = T0, provider: str = "p") -> None:
    for _ in range(times):
        circuit.record_failure(provider, "503 from upstream", now=at)


def seconds(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def test_a_circuit_opens_after_the_configured_consecutive_failures():
    fail(2)
    assert circuit.circuit("p", now=T0).state == State.CLOSED
    assert circuit.allow("p", now=T0)

    fail(1)

    state = circuit.circuit("p", now=T0)
    assert state == circuit.Circuit(
        provider="p",
        state=State.OPEN,
        consecutive_failures=3,
        opened_at=T0,
        retry_at=seconds(30),
        last_error="503 from upstream",
    )


def test_a_success_resets_the_count():
    fail(2)
    circuit.record_success("p")
    assert circuit.circuit("p", now=T0).consecutive_failures == 0

    fail(2)

    state = circuit.circuit("p", now=T0)
    assert (state.state, state.consecutive_failures) == (State.CLOSED, 2)


def test_an_open_circuit_refuses_until_the_cooldown_ends():
    fail(3)

    assert not circuit.allow("p", now=seconds(0))
    assert not circuit.allow("p", now=seconds(29.999))
    assert circuit.circuit("p", now=seconds(29.999)).state == State.OPEN
    assert circuit.circuit("p", now=seconds(30)).state == State.HALF_OPEN
    assert circuit.allow("p", now=seconds(30))


def test_late_failures_of_calls_started_before_opening_do_not_push_the_probe_back():
    fail(3)

    fail(2, at=seconds(10))

    state = circuit.circuit("p", now=seconds(10))
    assert (state.consecutive_failures, state.retry_at) == (5, seconds(30))


@pytest.mark.django_db(transaction=True)
def test_after_the_cooldown_exactly_one_probe_goes_through_even_under_a_crowd():
    fail(3)
    callers = 20
    start = threading.Barrier(callers)
    allowed = []

    def caller():
        try:
            start.wait()
            allowed.append(circuit.allow("p", now=seconds(30)))
        finally:
            connection.close()

    threads = [threading.Thread(target=caller) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(allowed) == [False] * (callers - 1) + [True]
    assert circuit.circuit("p", now=seconds(30)).state == State.HALF_OPEN
    assert not circuit.allow("p", now=seconds(31))


def test_a_successful_probe_closes_the_circuit():
    fail(3)
    assert circuit.allow("p", now=seconds(31))

    circuit.record_success("p")

    state = circuit.circuit("p", now=seconds(31))
    assert (state.state, state.consecutive_failures, state.retry_at) == (State.CLOSED, 0, None)
    assert circuit.allow("p", now=seconds(31))
    assert Provider.objects.get(slug="p").circuit_probe_until is None


def test_a_failed_probe_opens_it_for_another_cooldown():
    fail(3)
    assert circuit.allow("p", now=seconds(31))

    circuit.record_failure("p", "still down", now=seconds(31))

    state = circuit.circuit("p", now=seconds(31))
    assert (state.state, state.opened_at, state.retry_at) == (State.OPEN, T0, seconds(61))
    assert state.last_error == "still down"
    assert not circuit.allow("p", now=seconds(60))
    # The next cooldown ends before the failed probe's claim would have expired.
    assert seconds(61) < seconds(31 + PROBE_TTL)
    assert circuit.allow("p", now=seconds(61))


def test_a_probe_that_never_reports_frees_the_slot_after_its_ttl():
    fail(3)
    assert circuit.allow("p", now=seconds(30))

    assert not circuit.allow("p", now=seconds(30 + PROBE_TTL - 1))
    assert circuit.allow("p", now=seconds(30 + PROBE_TTL + 1))


def test_reset_closes_it_by_hand_frees_the_probe_and_leaves_other_providers_alone():
    fail(3)
    assert circuit.allow("p", now=seconds(30))
    fail(1, provider="q")

    circuit.reset("p")

    assert [c.state for c in circuit.circuits(["p", "q"], now=seconds(30))] == [
        State.CLOSED,
        State.CLOSED,
    ]
    assert circuit.circuit("p").consecutive_failures == 0
    assert circuit.circuit("q").consecutive_failures == 1
    # A new outage gets its own probe at once, not after the old claim's TTL.
    fail(3, at=seconds(31))
    assert circuit.allow("p", now=seconds(61))


def test_the_threshold_and_cooldown_come_from_the_settings(settings):
    settings.LLMOPS_CIRCUIT_FAILURES = 1
    settings.LLMOPS_CIRCUIT_COOLDOWN = 5

    fail(1)

    state = circuit.circuit("p", now=T0)
    assert (state.state, state.retry_at) == (State.OPEN, seconds(5))
    assert circuit.allow("p", now=seconds(5))


def test_the_error_is_kept_short():
    circuit.record_failure("p", "x" * 5000, now=T0)

    assert circuit.circuit("p").last_error == "x" * 300


def test_failures_recorded_by_another_process_count_here():
    # The state is in the shared cache, not in this process: a second Python process
    # records two failures (below its default threshold) and the third one here opens it.
    script = (
        "import django; django.setup()\n"
        "from routing import circuit\n"
        "for _ in range(2): circuit.record_failure('p', 'from the other process')\n"
    )
    # A high threshold there: opening would touch that process's (non-test) database.
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "llmops.settings",
        "LLMOPS_CIRCUIT_FAILURES": "1000",
    }
    subprocess.run([sys.executable, "-c", script], check=True, env=env, timeout=60)
    assert circuit.circuit("p").consecutive_failures == 2

    fail(1)

    assert circuit.circuit("p", now=T0).state == State.OPEN
    cache.clear()
    assert circuit.circuit("p", now=T0).state == State.CLOSED
