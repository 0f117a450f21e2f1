"""A circuit breaker per provider, shared by every process through Django's cache.

Several daphne processes and worker clusters call the same providers, so the state
lives in the cache (a file cache on one machine, Redis when scaled out), not in memory.
After LLMOPS_CIRCUIT_FAILURES consecutive failures the circuit opens: callers skip the
provider (the router puts it last) for LLMOPS_CIRCUIT_COOLDOWN seconds; then exactly one
caller is let through as a probe (claimed with a conditional UPDATE of the provider row,
atomic on SQLite and PostgreSQL, unlike the file cache's add), whose outcome closes the
circuit or opens it for another cooldown.

The failure count is read-modify-write on the file cache (not atomic across processes):
a lost increment only delays opening by one failure, which is harmless; Redis is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum

from django.conf import settings
from django.core.cache import cache
from django.db.models import Q
from django.utils import timezone

# Long enough to outlive any cooldown; a circuit nobody touches for a day starts closed.
STATE_TTL = 24 * 3600
# A probe that never reports (its process died) frees the half-open slot after this.
PROBE_TTL = 60


class State(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Circuit:
    provider: str
    state: State
    consecutive_failures: int
    opened_at: datetime | None
    retry_at: datetime | None  # when an open circuit lets a probe through
    last_error: str

    def as_json(self) -> dict:
        return {
            "provider": self.provider,
            "state": self.state.value,
            "consecutive_failures": self.consecutive_failures,
            "retry_at": self.retry_at.isoformat() if self.retry_at else None,
            "last_error": self.last_error,
        }


def _key(provider: str) -> str:
    return f"llmops:circuit:{provider}"


def _load(provider: str) -> dict:
    return cache.get(_key(provider)) or {}


def _ts(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value, UTC) if value else None


def circuit(provider: str, *, now: datetime | None = None) -> Circuit:
    now = now or timezone.now()
    data = _load(provider)
    retry_at = _ts(data.get("retry_at"))
    if retry_at is None:
        state = State.CLOSED
    elif now < retry_at:
        state = State.OPEN
    else:
        state = State.HALF_OPEN
    return Circuit(
        provider=provider,
        state=state,
        consecutive_failures=data.get("failures", 0),
        opened_at=_ts(data.get("opened_at")),
        retry_at=retry_at,
        last_error=data.get("last_error", ""),
    )


def circuits(providers: Iterable[str]) -> list[Circuit]:
    return [circuit(p) for p in providers]


def allow(provider: str, *, now: datetime | None = None) -> bool:
    """May a call go to this provider now? Half-open lets exactly one probe through."""
    state = circuit(provider, now=now).state
    if state == State.CLOSED:
        return True
    if state == State.OPEN:
        return False
    from routing.models import Provider

    now = now or timezone.now()
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


def record_success(provider: str) -> None:
    if _load(provider):
        cache.delete(_key(provider))
        _release_probe(provider)


def record_failure(provider: str, error: str = "", *, now: datetime | None = None) -> None:
    now = now or timezone.now()
    data = _load(provider)
    failures = data.get("failures", 0) + 1
    data.update(failures=failures, last_error=error[:300])
    half_open = data.get("retry_at") and now.timestamp() >= data["retry_at"]
    if failures >= settings.LLMOPS_CIRCUIT_FAILURES or half_open:
        # Opening (or a failed probe re-opening) starts a new cooldown.
        cooldown = timedelta(seconds=settings.LLMOPS_CIRCUIT_COOLDOWN)
        data.setdefault("opened_at", now.timestamp())
        data["retry_at"] = (now + cooldown).timestamp()
        _release_probe(provider)
    cache.set(_key(provider), data, timeout=STATE_TTL)


def reset(provider: str) -> None:
    """Close the circuit by hand (the admin action)."""
    cache.delete(_key(provider))
    _release_probe(provider)
