"""Component checks behind GET /healthz: database, worker cluster, channel layer, providers,
and each provider's circuit breaker state."""

from __future__ import annotations

import asyncio
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from routing import circuit
from routing.models import Provider
from routing.providers import ProviderError, probe

CHECK_TIMEOUT_S = 3.0


@dataclass
class Check:
    ok: bool
    detail: str = ""
    ms: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(data.pop("extra"))
        return data


async def _timed(name: str, coro) -> Check:
    started = time.perf_counter()
    try:
        check = await asyncio.wait_for(coro, CHECK_TIMEOUT_S)
    except TimeoutError:
        check = Check(ok=False, detail=f"{name} did not answer within {CHECK_TIMEOUT_S:.0f} s")
    except Exception as exc:  # a health check reports every failure instead of raising
        check = Check(ok=False, detail=f"{type(exc).__name__}: {exc}")
    check.ms = round((time.perf_counter() - started) * 1000, 1)
    return check


@sync_to_async
def _database() -> Check:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return Check(ok=True, detail=connection.vendor)


@sync_to_async
def _workers() -> Check:
    from django_q.conf import Conf
    from django_q.status import Stat

    max_age = settings.LLMOPS_WORKER_HEARTBEAT_MAX_AGE
    now = timezone.now()
    alive = [
        stat
        for stat in Stat.get_all()
        if stat.status in (Conf.IDLE, Conf.WORKING)
        and (now - stat.timestamp).total_seconds() <= max_age
    ]
    if not alive:
        return Check(ok=False, detail=f"no worker cluster heartbeat in the last {max_age} s")
    workers = sum(len(stat.workers) for stat in alive)
    return Check(
        ok=True,
        detail=f"{len(alive)} cluster(s)",
        extra={"clusters": len(alive), "workers": workers},
    )


async def _channel_layer() -> Check:
    layer = get_channel_layer()
    if layer is None:
        return Check(ok=False, detail="no channel layer configured")
    channel = await layer.new_channel("healthz.")
    await layer.send(channel, {"type": "healthz.ping"})
    message = await layer.receive(channel)
    return Check(ok=message.get("type") == "healthz.ping", detail=type(layer).__name__)


async def _provider(provider: Provider) -> Check:
    # Cached per provider version so /healthz polled every second by a load
    # balancer does not become a stream of calls to a paid API.
    key = f"healthz:provider:{provider.pk}:{provider.updated_at.timestamp()}"
    if (cached := await cache.aget(key)) is not None:
        return Check(**cached)
    try:
        await probe(await sync_to_async(provider.endpoint)(), timeout=CHECK_TIMEOUT_S - 0.5)
        check = Check(ok=True, detail=provider.kind)
    except ProviderError as exc:
        check = Check(ok=False, detail=str(exc))
    await cache.aset(
        key, {"ok": check.ok, "detail": check.detail}, settings.LLMOPS_PROVIDER_PROBE_TTL
    )
    return check


@sync_to_async
def _enabled_providers() -> list[Provider]:
    return list(Provider.objects.filter(enabled=True).order_by("slug"))


async def run_checks() -> tuple[bool, dict[str, Any]]:
    """Every check, concurrently. Returns (all ok, report)."""
    try:
        providers = await _enabled_providers()
    except Exception:  # the database check below reports why
        providers = []
    results = await asyncio.gather(
        _timed("database", _database()),
        _timed("workers", _workers()),
        _timed("channel layer", _channel_layer()),
        *(_timed(f"provider {p.slug}", _provider(p)) for p in providers),
    )
    database, workers, channel_layer, *provider_checks = results
    report = {
        "database": database.as_dict(),
        "workers": workers.as_dict(),
        "channel_layer": channel_layer.as_dict(),
        "providers": {
            p.slug: check.as_dict() for p, check in zip(providers, provider_checks, strict=True)
        },
    }
    # A circuit that is not closed is information, not ill health: fallbacks keep requests
    # served, so it is listed under "degraded" and leaves the status code alone.
    try:
        states = await sync_to_async(circuit.circuits)([p.slug for p in providers])
    except Exception as exc:  # an unreachable cache must not turn /healthz into a 500
        states, report["circuits_error"] = [], f"{type(exc).__name__}: {exc}"
    report["circuits"] = [_circuit_json(state) for state in states]
    report["degraded"] = [s.provider for s in states if s.state != circuit.State.CLOSED]
    return all(check.ok for check in results), report


def _circuit_json(state: circuit.Circuit) -> dict[str, Any]:
    # No last_error: /healthz is unauthenticated and upstream error text stays in the admin.
    return {
        "provider": state.provider,
        "state": state.state.value,
        "consecutive_failures": state.consecutive_failures,
        "retry_at": state.retry_at.isoformat() if state.retry_at else None,
    }
