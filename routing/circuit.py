"""A circuit breaker per provider, shared by every process through Django's cache.

Several daphne processes and worker clusters call the same providers, so the state lives
in the cache (a file cache on one machine, Redis when scaled out), not in memory. After
LLMOPS_CIRCUIT_FAILURES consecutive failures the circuit opens: callers skip the provider
for LLMOPS_CIRCUIT_COOLDOWN seconds; then it is half-open and exactly one caller is let
through as a probe, whose outcome closes the circuit or opens it for another cooldown.

Three cache keys per provider, each written blindly so no writer can clobber another's
field: the failure counter, the last error, and {opened_at, retry_at} while not closed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

# Long enough to outlive any cooldown; a circuit nobody touches for a day starts closed.
STATE_TTL = 24 * 3600
# A probe that never reports (its process died, its client left) frees the half-open slot
# after this. A probe still streaming past it may let a second probe through: harmless.
PROBE_TTL = 60


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Circuit:
    provider: str  # provider slug
    state: State
    consecutive_failures: int
    opened_at: datetime | None
    retry_at: datetime | None  # when an open circuit lets a probe through
    last_error: str


def _keys(provider: str) -> tuple[str, str, str]:
    base = f"llmops:circuit:{provider}"
    return f"{base}:open", f"{base}:failures", f"{base}:error"


def _state(opened: dict | None, now: datetime) -> State:
    if not opened:
        return State.CLOSED
    return State.OPEN if now < opened["retry_at"] else State.HALF_OPEN


def circuits(providers: Iterable[str], *, now: datetime | None = None) -> list[Circuit]:
    """Every provider's circuit in one cache round trip (one MGET on Redis)."""
    providers = list(providers)
    now = now or timezone.now()
    values = cache.get_many([key for p in providers for key in _keys(p)])
    result = []
    for provider in providers:
        open_key, failures_key, error_key = _keys(provider)
        opened = values.get(open_key) or {}
        result.append(
            Circuit(
                provider=provider,
                state=_state(opened, now),
                consecutive_failures=values.get(failures_key, 0),
                opened_at=opened.get("opened_at"),
                retry_at=opened.get("retry_at"),
                last_error=values.get(error_key, ""),
            )
        )
    return result


def circuit(provider: str, *, now: datetime | None = None) -> Circuit:
    return circuits([provider], now=now)[0]


def allow(provider: str, *, now: datetime | None = None) -> bool:
    """May a call go to this provider now? Half-open lets exactly one probe through.

    A closed circuit costs one cache read; a half-open one also a conditional UPDATE."""
    now = now or timezone.now()
    state = _state(cache.get(_keys(provider)[0]), now)
    if state == State.CLOSED:
        return True
    if state == State.OPEN:
        return False
    return _claim_probe(provider, now)


def _claim_probe(provider: str, now: datetime) -> bool:
    # Not cache.add: the file cache's add is has_key() then set(), so two processes can
    # both win it. A conditional UPDATE changes exactly one row on SQLite and PostgreSQL.
    from routing.models import Provider

    claimed = (
        Provider.objects.filter(slug=provider)
        .filter(Q(circuit_probe_until__isnull=True) | Q(circuit_probe_until__lt=now))
        .update(circuit_probe_until=now + timedelta(seconds=PROBE_TTL))
    )
    return claimed == 1


def _release_probe(provider: str) -> None:
    from routing.models import Provider

    Provider.objects.filter(slug=provider, circuit_probe_until__isnull=False).update(
        circuit_probe_until=None
    )


def _count_failure(provider: str) -> int:
    key = _keys(provider)[1]
    # Redis: add is SET NX and incr is INCR, so concurrent failures are counted exactly. The
    # file cache's incr is get() then set(): overlapping failures can both write n+1. Each
    # lost increment only opens the circuit one failure later, and it still opens: every
    # write is a value read since the last reset plus one, so the count keeps rising while
    # failures go on. That is acceptable because the breaker sheds load, it accounts for
    # nothing, and the file cache serves one machine's few processes.
    cache.add(key, 0, STATE_TTL)
    try:
        failures = cache.incr(key)
    except ValueError:  # reset or expired between add and incr
        cache.set(key, 1, STATE_TTL)
        return 1
    # The file cache's incr rewrites the key with the default 300 s timeout; without this,
    # a provider failing every ten minutes would never open there but would on Redis.
    cache.touch(key, STATE_TTL)
    return failures


def record_success(provider: str) -> None:
    """Close the circuit and reset the count. Called after every successful call, so a
    healthy provider costs one read (one MGET on Redis) and no write."""
    keys = _keys(provider)
    present = cache.get_many(keys)
    if present:
        cache.delete_many(keys)
        if keys[0] in present:
            _release_probe(provider)


def record_failure(provider: str, error: str = "", *, now: datetime | None = None) -> None:
    now = now or timezone.now()
    open_key, _, error_key = _keys(provider)
    failures = _count_failure(provider)
    cache.set(error_key, error[:300], STATE_TTL)
    opened = cache.get(open_key)
    state = _state(opened, now)
    # While open, a failure is a call that started before opening: it says nothing new and
    # must not push retry_at back. Half-open, any failure (the probe's) re-opens.
    if state == State.HALF_OPEN or (
        state == State.CLOSED and failures >= settings.LLMOPS_CIRCUIT_FAILURES
    ):
        retry_at = now + timedelta(seconds=settings.LLMOPS_CIRCUIT_COOLDOWN)
        opened_at = opened["opened_at"] if opened else now
        cache.set(open_key, {"opened_at": opened_at, "retry_at": retry_at}, STATE_TTL)
        # The failed probe's claim must not outlive the new cooldown's end.
        _release_probe(provider)


def reset(provider: str) -> None:
    """Close the circuit by hand (the admin action "close circuit")."""
    cache.delete_many(_keys(provider))
    _release_probe(provider)
