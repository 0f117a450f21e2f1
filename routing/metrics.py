"""Prometheus metrics of the request path.

Each daphne process keeps its own counters (the Prometheus convention: scrape every
instance); circuit states are read from the shared cache at scrape time, so any process
reports every provider's breaker.
"""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Q
from django.utils import timezone
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily

REGISTRY = CollectorRegistry(auto_describe=True)

# Seconds: a cache hit is ~ms, a streamed answer up to minutes.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300)

REQUESTS = Counter(
    "llmops_requests",
    "Requests by workload, mode and final status.",
    ["workload", "mode", "status"],
    registry=REGISTRY,
)
TTFT = Histogram(
    "llmops_time_to_first_token_seconds",
    "From receiving a request to its first token (cache hits included).",
    ["workload", "mode"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
LATENCY = Histogram(
    "llmops_request_duration_seconds",
    "From receiving a request to its completion.",
    ["workload", "mode"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
# Admission refusals (budget_exceeded, soft_budget_exceeded, unpriced_model). A refusal
# without an Idempotency-Key writes no row (a refused flood must cost no writes), so this
# counter is where they are seen; team and workload by slug, as the teams' own pages name them.
REFUSED = Counter(
    "llmops_requests_refused",
    "Requests refused at admission, by team, workload and reason.",
    ["team", "workload", "reason"],
    registry=REGISTRY,
)
CACHE_LOOKUPS = Counter(
    "llmops_cache_lookups",
    "Response-cache lookups by workload and result (hit or miss).",
    ["workload", "result"],
    registry=REGISTRY,
)
CACHE_ERRORS = Counter(
    "llmops_cache_errors",
    "Response-cache lookups (served as misses) and stores (answers not kept) that failed.",
    ["operation"],
    registry=REGISTRY,
)
ATTEMPTS = Counter(
    "llmops_provider_attempts",
    "Provider calls by provider, model and outcome.",
    ["provider", "model", "outcome"],
    registry=REGISTRY,
)


class CircuitCollector:
    """llmops_circuit_state{provider, state} = 1 for each provider's current state."""

    def describe(self):
        # Without this the registry would call collect() (a database query) at import time.
        return [self._family()]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "llmops_circuit_state",
            "Circuit breaker state per provider (1 for the current state).",
            labels=["provider", "state"],
        )

    def collect(self):
        from routing import circuit
        from routing.models import Provider

        family = self._family()
        slugs = list(Provider.objects.filter(enabled=True).values_list("slug", flat=True))
        for state in circuit.circuits(slugs):
            for name in circuit.State:
                family.add_metric([state.provider, name.value], 1 if state.state == name else 0)
        yield family


REGISTRY.register(CircuitCollector())

# The hit rate's window: long enough to mean something for a workload of a few requests an
# hour, short enough to show a key fixed today.
HIT_RATE_WINDOW_HOURS = 24


class CacheHitRateCollector:
    """llmops_cache_hit_ratio{workload}: response-cache hits over eligible lookups (requests
    whose policy consulted the cache) in the last 24 hours, from the database, so every
    process reports the whole deployment's rate (the lookup counters are per process)."""

    def describe(self):
        return [self._family()]

    @staticmethod
    def _family() -> GaugeMetricFamily:
        return GaugeMetricFamily(
            "llmops_cache_hit_ratio",
            f"Response-cache hits over eligible lookups per workload, last "
            f"{HIT_RATE_WINDOW_HOURS} h.",
            labels=["workload"],
        )

    def collect(self):
        from routing.models import Mode, Request

        family = self._family()
        since = timezone.now() - timedelta(hours=HIT_RATE_WINDOW_HOURS)
        rows = (
            Request.objects.filter(cache_lookup=True, created_at__gte=since)
            .values("workload__slug")
            .annotate(lookups=Count("id"), hits=Count("id", filter=Q(mode=Mode.CACHE)))
            .order_by("workload__slug")
        )
        for row in rows:
            family.add_metric([row["workload__slug"]], row["hits"] / row["lookups"])
        yield family


REGISTRY.register(CacheHitRateCollector())


def observe_request(request) -> None:
    """Count a request that reached its final status (called once per request)."""
    workload = request.workload.slug
    mode = request.mode or "none"
    REQUESTS.labels(workload, mode, request.status).inc()
    if request.first_token_at and request.created_at:
        TTFT.labels(workload, mode).observe(
            (request.first_token_at - request.created_at).total_seconds()
        )
    if request.completed_at and request.created_at:
        LATENCY.labels(workload, mode).observe(
            (request.completed_at - request.created_at).total_seconds()
        )
