"""The savings replay (M8): a trace of labelled requests through the real router and pricing on
a simulated clock, with no provider call and nothing written (`manage.py replay_trace`).

What runs is what the live system runs: `routing.router.route` decides every request; the
buffer's flush rule, the poll backoff and the deadline checks of running batches are the pure
functions of `batches.services`; every cost is `billing.pricing.price_usage` on price versions
read once. What is simulated: the clock (requests arrive at their trace time; the worker's tick
runs every whole minute, flushing the buffer and stepping due jobs), the response cache (the
policy's TTL and key: the same system prompt, prompt and max_tokens), the providers (a batch
ends `actual` after it was submitted and is seen at the next poll; a cancel ends it at once; a
realtime answer takes no time), and the observed turnaround (after five completed batches of a
model, the router and buffer plan with their p90, as `batches.selectors.expected_turnaround`
does). Not simulated: budgets (no soft-budget breach), circuit breakers and provider failures,
streams (the trace has no stream flag), the batch byte limit.

`routing.trace.trace_read` reads and checks a trace, `world_load` reads everything the replay
needs from the database once, and `replay` is pure.
"""

from __future__ import annotations

import bisect
import heapq
import itertools
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.utils import timezone

from batches.selectors import MIN_OBSERVATIONS, WINDOW, expected_turnaround
from batches.services import (
    Waiting,
    batch_can_make,
    batch_late,
    flush_plan,
    poll_backoff,
)
from billing.models import Processing
from billing.pricing import (
    PriceVersion,
    Usage,
    plain,
    price_usage,
)
from billing.selectors import flex_terms, price_or_none
from llmops.stats import nearest_rank
from routing.models import LatencyClass, LlmModel, RoutingPolicy, Workload
from routing.router import (
    TIERS,
    ModelOption,
    PolicySpec,
    RouteInput,
    RoutingError,
    human,
    route,
)
from routing.trace import TraceRow

MODES = ("realtime", "stream", "flex", "batch", "cache")
ORACLE_MODES = ("realtime", "flex", "batch", "cache")
# The oracle serves a request at flex when its deadline is at least this (llmops/data/README.md
# as issue 23 extends it): flex answers synchronously, in about a minute at worst.
ORACLE_FLEX_DEADLINE = timedelta(minutes=2)
# batches.tasks.tick's schedule (batches migration 0002): the buffer is flushed and due jobs
# are stepped once a minute.
TICK = timedelta(minutes=1)
# Any midnight: only differences of times matter, and ticks fall on its whole minutes.
DAY_ZERO = datetime(2000, 1, 1, tzinfo=UTC)
# A trace workload with no workload of its slug in the database takes the demo's policy for
# its latency class (the first team's of that name), or RoutingPolicy's field defaults.
DEFAULT_POLICIES = {
    LatencyClass.REALTIME: "interactive",
    LatencyClass.NEAR_REALTIME: "deferrable-economy",
    LatencyClass.SCHEDULED: "overnight-batch",
}
RATIO_PLACES = Decimal("0.000001")


# --- the world: what the replay reads from the database, once -----------------------------


class ReplayError(ValueError):
    """The database cannot serve the replay (no model of a tier, no price, no such policy)."""


@dataclass(frozen=True)
class WhatIf:
    """Changes to the world for one run; the defaults change nothing."""

    # Every provider promises this turnaround and its batches take it (default: each model's
    # expected turnaround in the database: the observed p90, else the provider's setting).
    batch_turnaround: timedelta | None = None
    # Batches really take this, whatever was promised (deadline risk comes from here).
    batch_actual: timedelta | None = None
    max_wait: timedelta | None = None  # every policy's max batch wait
    no_cache: bool = False  # every policy's response cache off
    cache_ttl: timedelta | None = None  # every policy's response cache on, with this TTL
    no_batch: bool = False  # no policy allows batch
    no_flex: bool = False  # no policy allows flex
    workload_policies: tuple[tuple[str, str], ...] = ()  # (trace workload, policy name)

    def as_dict(self) -> dict[str, Any]:
        return {
            "batch_turnaround_s": _seconds(self.batch_turnaround),
            "batch_actual_s": _seconds(self.batch_actual),
            "policy_max_wait_s": _seconds(self.max_wait),
            "no_cache": self.no_cache,
            "cache_ttl_s": _seconds(self.cache_ttl),
            "no_batch": self.no_batch,
            "no_flex": self.no_flex,
            "workload_policies": dict(self.workload_policies),
        }


@dataclass(frozen=True)
class SimModel:
    name: str  # provider/model_id, as ModelOption.name
    provider: str
    model_id: str
    tier: str
    supports_batch: bool
    max_lines: int  # the provider's batch limit
    promised: timedelta  # the turnaround planned with until batches are observed
    actual: timedelta  # how long its batches take in the replay
    standard: PriceVersion | None
    batch: PriceVersion | None
    flex: PriceVersion | None  # None: no flex price, or its provider has no flex tier
    flex_latency: timedelta  # what the router plans a flex call with (its provider's)
    flex_no_dearer: bool  # its flex price is at most its batch price


@dataclass(frozen=True)
class SimPolicy:
    pk: int | None  # None: the built-in default
    label: str  # team/name, for the report
    team: str
    spec: PolicySpec
    cache_ttl: timedelta | None  # None: no response cache
    rebatch: bool  # on deadline risk: resubmit the unfinished items, else serve them now
    chain: tuple[str, ...]  # SimModel names, chain order


@dataclass(frozen=True)
class World:
    models: dict[str, SimModel]
    tier_models: dict[str, tuple[str, ...]]  # each tier's models, in the order they were added
    workload_policies: dict[str, SimPolicy]  # by trace workload slug
    class_policies: dict[str, SimPolicy]  # by latency class, for every other workload
    prices_at: datetime
    turnaround_source: str


def world_load(what_if: WhatIf | None = None, *, at: datetime | None = None) -> World:
    """Everything a replay reads, in a few queries: models with their providers, prices in
    force at `at` (default now), expected turnarounds, workloads and policies."""
    what_if = what_if or WhatIf()
    at = at or timezone.now()
    models = {}
    # In the order they were added (seed_demo adds its models in its own list's order):
    # a trace workload without a chain of a tier takes that tier's first model.
    for model in (
        LlmModel.objects.select_related("provider")
        .filter(enabled=True, provider__enabled=True)
        .order_by("pk")
    ):
        flex_capable = model.provider.serves_flex
        promised = (
            what_if.batch_turnaround
            if what_if.batch_turnaround is not None
            else expected_turnaround(model=model)
        )
        sim = SimModel(
            name=f"{model.provider.slug}/{model.model_id}",
            provider=model.provider.slug,
            model_id=model.model_id,
            tier=model.tier,
            supports_batch=model.batchable,
            max_lines=model.provider.batch_limits[0],
            promised=promised,
            actual=promised if what_if.batch_actual is None else what_if.batch_actual,
            # None: an error if the replay needs it (a model without batch may never).
            standard=price_or_none(model, Processing.STANDARD, at),
            batch=price_or_none(model, Processing.BATCH, at),
            flex=price_or_none(model, Processing.FLEX, at) if flex_capable else None,
            flex_latency=model.provider.expected_flex_latency,
            flex_no_dearer=flex_capable and flex_terms(model, at)[1],
        )
        models[sim.name] = sim
    tier_models = {tier: tuple(n for n in models if models[n].tier == tier) for tier in TIERS}

    policies = list(
        RoutingPolicy.objects.select_related("team")
        .prefetch_related("links__model__provider")
        .order_by("team__slug", "name")
    )

    def sim_policy(policy: RoutingPolicy, label: str) -> SimPolicy:
        links = sorted(policy.links.all(), key=lambda link: link.position) if policy.pk else []
        chain = tuple(f"{link.model.provider.slug}/{link.model.model_id}" for link in links)
        return SimPolicy(
            pk=policy.pk,
            label=label,
            team=policy.team.slug if policy.team_id else "",
            spec=replace(
                PolicySpec.of(policy),
                allow_batch=policy.allow_batch and not what_if.no_batch,
                allow_flex=policy.allow_flex and not what_if.no_flex,
                max_batch_wait=policy.max_batch_wait
                if what_if.max_wait is None
                else what_if.max_wait,
            ),
            cache_ttl=_cache_ttl(policy, what_if),
            rebatch=policy.on_deadline_risk == RoutingPolicy.Escalation.REBATCH,
            chain=tuple(name for name in chain if name in models),
        )

    def named(name: str, team: str | None = None) -> RoutingPolicy | None:
        candidates = [p for p in policies if p.name == name]
        return next((p for p in candidates if p.team.slug == team), None) or next(
            iter(candidates), None
        )

    # A slug two teams use: the first team's workload (by team slug) stands for both.
    by_pk = {p.pk: p for p in policies}
    workload_policies, teams_of = {}, {}
    for workload in Workload.objects.select_related("team").order_by("slug", "team__slug"):
        if workload.slug not in workload_policies:
            policy = by_pk[workload.policy_id]
            teams_of[workload.slug] = workload.team.slug
            workload_policies[workload.slug] = sim_policy(
                policy, f"{policy.team.slug}/{policy.name}"
            )
    for slug, name in what_if.workload_policies:
        policy = named(name, teams_of.get(slug))
        if policy is None:
            known = ", ".join(sorted({p.name for p in policies})) or "none"
            raise ReplayError(f"no routing policy called {name!r} (there are: {known})")
        workload_policies[slug] = sim_policy(policy, f"{policy.team.slug}/{policy.name}")

    class_policies = {}
    for latency_class, name in DEFAULT_POLICIES.items():
        policy = named(name)
        if policy is not None:
            label = f"default for {latency_class}: {policy.team.slug}/{policy.name}"
        else:
            # Unsaved: the model's field defaults, batch allowed where the class may wait.
            policy = RoutingPolicy(name="built-in", allow_batch=latency_class != "realtime")
            label = f"default for {latency_class}: built-in"
        class_policies[latency_class] = sim_policy(policy, label)

    if what_if.batch_turnaround is not None:
        source = f"--batch-turnaround {human(what_if.batch_turnaround)}"
    else:
        source = "each model's expected turnaround in the database"
    if what_if.batch_actual is not None:
        source += f"; batches take {human(what_if.batch_actual)} (--batch-actual)"
    return World(
        models=models,
        tier_models=tier_models,
        workload_policies=workload_policies,
        class_policies=class_policies,
        prices_at=at,
        turnaround_source=source,
    )


def _cache_ttl(policy: RoutingPolicy, what_if: WhatIf) -> timedelta | None:
    if what_if.no_cache:
        return None
    if what_if.cache_ttl is not None:
        return what_if.cache_ttl
    return policy.cache_ttl if policy.cache_enabled else None


# --- the report --------------------------------------------------------------------------


@dataclass
class Tally:
    requests: int = 0
    modes: Counter = field(default_factory=Counter)
    escalated: int = 0  # deferred, then served now (no batch could make the deadline)
    missed_savings: int = 0  # deferrable, but the router served it now at full price
    deadline_misses: int = 0
    cost: Decimal = Decimal(0)
    counterfactual: Decimal = Decimal(0)
    oracle: Decimal = Decimal(0)
    oracle_modes: Counter = field(default_factory=Counter)  # how the oracle serves them
    policies: set[str] = field(default_factory=set)
    models: set[str] = field(default_factory=set)

    @property
    def savings(self) -> Decimal:
        return self.counterfactual - self.cost

    @property
    def oracle_savings(self) -> Decimal:
        return self.counterfactual - self.oracle

    @property
    def ratio(self) -> Decimal | None:
        if self.oracle_savings <= 0:
            return None
        return (self.savings / self.oracle_savings).quantize(RATIO_PLACES)

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "modes": {mode: self.modes[mode] for mode in MODES},
            "escalated": self.escalated,
            "missed_savings": self.missed_savings,
            "deadline_misses": self.deadline_misses,
            "cost_usd": plain(self.cost),
            "counterfactual_usd": plain(self.counterfactual),
            "oracle_usd": plain(self.oracle),
            "oracle_modes": {mode: self.oracle_modes[mode] for mode in ORACLE_MODES},
            "savings_usd": plain(self.savings),
            "oracle_savings_usd": plain(self.oracle_savings),
            "savings_ratio": None if self.ratio is None else str(self.ratio),
        }


@dataclass
class Report:
    total: Tally
    workloads: dict[str, Tally]
    models: dict[str, dict[str, Any]]  # batch turnaround per model that ran batches
    batch_jobs: int
    cancelled_jobs: int
    simulated_s: float  # first arrival to last answer
    prices_at: datetime
    turnaround_source: str

    def as_dict(self) -> dict[str, Any]:
        return {
            **self.total.as_dict(),
            "batch_jobs": self.batch_jobs,
            "cancelled_jobs": self.cancelled_jobs,
            "simulated_s": round(self.simulated_s, 3),
            "prices_at": self.prices_at.isoformat(),
            "batch_turnaround": {"source": self.turnaround_source, "models": self.models},
            "workloads": {
                slug: {
                    "policy": ", ".join(sorted(tally.policies)),
                    "models": sorted(tally.models),
                    **tally.as_dict(),
                }
                for slug, tally in self.workloads.items()
            },
        }


# --- the replay (pure) -------------------------------------------------------------------


def replay(rows: Iterable[TraceRow], world: World) -> Report:
    """Serve every row as llmops would, on a simulated clock; see the module's docstring."""
    return _TraceReplay(world).run(rows)


@dataclass(eq=False)
class _Deferred:
    """A request routed to a batch: in the buffer, then in a job."""

    row: TraceRow
    policy: SimPolicy
    model: SimModel
    waiting: Waiting
    standard: Decimal  # its cost if served now
    batch: Decimal
    cache_key: tuple | None


@dataclass(eq=False)
class _Job:
    model: SimModel
    items: list[_Deferred]
    earliest_deadline_at: datetime
    margin: timedelta  # the tightest policy's, as batches.services.lifecycle reads it
    submitted_at: datetime | None = None
    ends_at: datetime | None = None  # on the provider's side
    polls: int = 0
    cancel_requested: bool = False
    cancel_sent: bool = False


class _TraceReplay:
    def __init__(self, world: World) -> None:
        self.world = world
        self.total = Tally()
        self.workloads: dict[str, Tally] = {}
        self.buffers: dict[tuple[str, str, str], list[_Deferred]] = {}
        self.jobs: list[tuple[datetime, int, _Job]] = []  # a heap by next check
        self.sequence = itertools.count()
        # (policy, system prompt, prompt) → (expiry, output tokens) of an answer that ended by
        # itself; + max_tokens → expiry of one its cap cut (routing.response_cache's two keys).
        self.cache: dict[tuple, tuple[datetime, int]] = {}
        self.cut_cache: dict[tuple, datetime] = {}
        self.prompts_seen: set[tuple[str, str]] = set()
        self.observed: dict[str, deque[timedelta]] = {}
        self.expected: dict[str, timedelta] = {n: m.promised for n, m in world.models.items()}
        self.batch_jobs = self.cancelled_jobs = 0
        self.jobs_by_model: Counter[str] = Counter()
        self.completed_by_model: Counter[str] = Counter()
        self.last_tick: datetime | None = None
        self.first_at: datetime | None = None
        self.last_answer_at: datetime | None = None
        self._chains: dict[tuple[str, str], tuple[SimModel, ...]] = {}
        self._specs: dict[tuple[str, str], PolicySpec] = {}
        self._costs: dict[tuple, Decimal] = {}

    def run(self, rows: Iterable[TraceRow]) -> Report:
        for row in rows:
            now = DAY_ZERO + timedelta(seconds=row.t)
            self._advance(until=now)
            self._arrive(row, now)
        self._advance(until=None)
        return Report(
            total=self.total,
            workloads=self.workloads,
            models={
                name: {
                    "promised_s": _seconds(self.world.models[name].promised),
                    "actual_s": _seconds(self.world.models[name].actual),
                    "batch_jobs": jobs,
                    "completed_batches": self.completed_by_model[name],
                    "observed_p90_s": _seconds(self.expected[name])
                    if self.completed_by_model[name] >= MIN_OBSERVATIONS
                    else None,
                }
                for name, jobs in sorted(self.jobs_by_model.items())
            },
            batch_jobs=self.batch_jobs,
            cancelled_jobs=self.cancelled_jobs,
            simulated_s=(self.last_answer_at - self.first_at).total_seconds()
            if self.first_at and self.last_answer_at
            else 0.0,
            prices_at=self.world.prices_at,
            turnaround_source=self.world.turnaround_source,
        )

    # -- arrivals: the front door (routing.services.request_admit) --

    def _arrive(self, row: TraceRow, now: datetime) -> None:
        if self.first_at is None:
            self.first_at = now
        if self.last_tick is None or self.last_tick < _tick_floor(now):
            # Every tick up to now that had work has run: the idle ones can be skipped.
            self.last_tick = _tick_floor(now)
        policy = self._policy(row)
        chain = self._chain(policy, row.tier)
        primary = chain[0]
        usage = Usage(input_tokens=row.input_tokens, output_tokens=row.output_tokens)
        standard = self._cost(primary, Processing.STANDARD, usage)
        oracle_mode, oracle = self._oracle(row, primary, usage, standard)
        tallies = self._tallies(row)
        for tally in tallies:
            tally.requests += 1
            tally.counterfactual += standard
            tally.oracle += oracle
            tally.oracle_modes[oracle_mode] += 1
            tally.policies.add(policy.label)

        cache_key = None
        hit = False
        if policy.cache_ttl is not None:
            # routing.response_cache: the policy, the messages, the model asked for (none in a
            # trace) and temperature (none either); the cap only for an answer it cut.
            cache_key = (policy.pk, row.system_prompt_id, row.prompt_id)
            hit = self._cached(cache_key, row.max_tokens, now)
        waits = row.latency_class != LatencyClass.REALTIME
        deferrable = waits and (
            policy.spec.allow_batch
            or policy.spec.soft_breach_action == RoutingPolicy.BreachAction.DEFER
        )
        flex = waits and policy.spec.allow_flex
        try:
            decision = route(
                RouteInput(
                    latency_class=row.latency_class,
                    deadline=timedelta(seconds=row.deadline_s),
                    policy=self._spec(policy, row.tier),
                    chain=tuple(self._option(m, deferrable=deferrable, flex=flex) for m in chain),
                    cache_hit=hit,
                )
            )
        except RoutingError as exc:
            raise ReplayError(f"request {row.id}: {exc}") from exc
        model = self.world.models[decision.chain[0].name]
        for tally in tallies:
            tally.models.add(model.name)
            tally.missed_savings += decision.missed_saving
        if decision.mode == "cache":
            self._answered(tallies, "cache", Decimal(0), now)
            return
        if decision.mode == "flex":
            # Answered now (a flex call takes no simulated time, as a realtime one), at its price.
            cost = self._cost(model, Processing.FLEX, usage)
            self._serve_now(tallies, row, policy, cost, now, cache_key, mode="flex")
            return
        if decision.mode != "batch":
            cost = self._cost(model, Processing.STANDARD, usage)
            self._serve_now(tallies, row, policy, cost, now, cache_key)
            return
        waiting = Waiting(
            created_at=now,
            deadline_at=now + timedelta(seconds=row.deadline_s),
            max_wait=policy.spec.max_batch_wait,
            margin=policy.spec.deadline_margin,
        )
        deferred = _Deferred(
            row=row,
            policy=policy,
            model=model,
            waiting=waiting,
            standard=self._cost(model, Processing.STANDARD, usage),
            batch=self._cost(model, Processing.BATCH, usage),
            cache_key=cache_key,
        )
        self.buffers.setdefault((policy.team, model.name, row.latency_class), []).append(deferred)

    def _oracle(
        self, row: TraceRow, model: SimModel, usage: Usage, standard: Decimal
    ) -> tuple[str, Decimal]:
        """The cheapest way that meets the deadline (llmops/data/README.md): a repeated prompt
        from the cache; a deadline at least the batch turnaround at the batch price; else, on
        a model with a flex price and a deadline of at least two minutes, the flex price; else
        realtime at the standard price. A prompt is its system prompt and user prompt; the
        oracle's cache keeps everything forever."""
        prompt = (row.system_prompt_id, row.prompt_id)
        if prompt in self.prompts_seen:
            return "cache", Decimal(0)
        self.prompts_seen.add(prompt)
        if (
            model.supports_batch
            and model.batch is not None
            and row.deadline_s >= model.actual.total_seconds()
        ):
            return "batch", self._cost(model, Processing.BATCH, usage)
        if model.flex is not None and row.deadline_s >= ORACLE_FLEX_DEADLINE.total_seconds():
            return "flex", self._cost(model, Processing.FLEX, usage)
        return "realtime", standard

    def _cached(self, key: tuple, max_tokens: int, now: datetime) -> bool:
        """routing.response_cache_get: an answer that ended by itself within this cap, or one
        cut by this very cap, not expired."""
        whole = self.cache.get(key)
        if whole is not None and now < whole[0] and whole[1] <= max_tokens:
            return True
        cut = self.cut_cache.get((*key, max_tokens))
        return cut is not None and now < cut

    def _remember(self, row: TraceRow, policy: SimPolicy, key: tuple, now: datetime) -> None:
        """routing.response_cache_put: a trace's answer ended by itself when it is shorter
        than its cap, else the cap cut it."""
        expires = now + policy.cache_ttl
        if row.output_tokens < row.max_tokens:
            self.cache[key] = (expires, row.output_tokens)
        else:
            self.cut_cache[(*key, row.max_tokens)] = expires

    def _serve_now(
        self,
        tallies: list[Tally],
        row: TraceRow,
        policy: SimPolicy,
        cost: Decimal,
        now: datetime,
        cache_key: tuple | None,
        *,
        escalated: bool = False,
        mode: str = "realtime",
    ) -> None:
        """Served now at `cost`: realtime at the standard price (at once, or escalated from the
        buffer or a cancelled batch), or at flex."""
        self._answered(tallies, mode, cost, now)
        if escalated:
            deadline = DAY_ZERO + timedelta(seconds=row.t + row.deadline_s)
            for tally in tallies:
                tally.escalated += 1
                tally.deadline_misses += now > deadline
        if cache_key is not None:
            # A completed answer goes into the cache (routing.services, once the request completes).
            self._remember(row, policy, cache_key, now)

    def _answered(self, tallies: list[Tally], mode: str, cost: Decimal, now: datetime) -> None:
        for tally in tallies:
            tally.modes[mode] += 1
            tally.cost += cost
        if self.last_answer_at is None or now > self.last_answer_at:
            self.last_answer_at = now

    # -- the worker's tick (batches.tasks.tick) --

    def _advance(self, *, until: datetime | None) -> None:
        """Run every tick up to `until` (None: until nothing is left) that has work."""
        while True:
            if self.buffers:
                due = self.last_tick + TICK
            elif self.jobs:
                due = max(self.last_tick + TICK, _tick_ceil(self.jobs[0][0]))
            else:
                return
            if until is not None and due > until:
                return
            self._tick(due)
            self.last_tick = due

    def _tick(self, now: datetime) -> None:
        for key in list(self.buffers):
            group = self.buffers[key]
            model = self.world.models[key[1]]
            plan = flush_plan(
                [d.waiting for d in group],
                now=now,
                turnaround=self.expected[model.name],
                max_lines=model.max_lines,
            )
            if not plan.send and not plan.escalate:
                continue
            taken = set(plan.send) | set(plan.escalate)
            rest = [d for i, d in enumerate(group) if i not in taken]
            if rest:
                self.buffers[key] = rest
            else:
                del self.buffers[key]
            send = [group[i] for i in plan.send]
            for start in range(0, len(send), model.max_lines):
                self._job_create(model, send[start : start + model.max_lines], now)
            for i in plan.escalate:
                self._escalate(group[i], now)
        due = []
        while self.jobs and self.jobs[0][0] <= now:
            due.append(heapq.heappop(self.jobs)[2])
        for job in due:
            self._step(job, now)

    def _job_create(self, model: SimModel, items: list[_Deferred], now: datetime) -> None:
        by_deadline = sorted(items, key=lambda d: d.waiting.deadline_at)
        job = _Job(
            model=model,
            items=items,
            earliest_deadline_at=by_deadline[0].waiting.deadline_at,
            margin=max(d.waiting.margin for d in by_deadline[:50]),
        )
        self.batch_jobs += 1
        self.jobs_by_model[model.name] += 1
        self._schedule(job, now)

    def _schedule(self, job: _Job, at: datetime) -> None:
        heapq.heappush(self.jobs, (at, next(self.sequence), job))

    def _step(self, job: _Job, now: datetime) -> None:
        """batches.services.job_advance: submit, then poll; ingest once the batch ended."""
        if job.submitted_at is None:
            job.submitted_at = now
            job.ends_at = now + job.model.actual
        polls = job.polls
        job.polls += 1
        if job.cancel_requested and not job.cancel_sent:
            job.cancel_sent = True
        if now >= job.ends_at:
            self._observe(job.model, now - job.submitted_at)
            for item in job.items:
                self._batch_answered(item, now)
            return
        if job.cancel_sent:
            self._cancelled(job, now)
            return
        next_check = now + poll_backoff(polls)
        if batch_late(
            now=now,
            submitted_at=job.submitted_at,
            turnaround=self.expected[job.model.name],
            earliest_deadline_at=job.earliest_deadline_at,
            margin=job.margin,
        ):
            job.cancel_requested = True
            next_check = now
        self._schedule(job, next_check)

    def _batch_answered(self, item: _Deferred, now: datetime) -> None:
        tallies = self._tallies(item.row)
        self._answered(tallies, "batch", item.batch, now)
        for tally in tallies:
            tally.deadline_misses += now > item.waiting.deadline_at
        if item.cache_key is not None:
            # A batch answer goes into the cache too (batches.services.ingest).
            self._remember(item.row, item.policy, item.cache_key, now)

    def _cancelled(self, job: _Job, now: datetime) -> None:
        """The batch was cancelled before it ended (it would miss a deadline): per the policy,
        its items go back to the buffer if a batch can still make it, else are served now."""
        self.cancelled_jobs += 1
        for item in job.items:
            if item.policy.rebatch and batch_can_make(
                now=now,
                deadline_at=item.waiting.deadline_at,
                turnaround=self.expected[job.model.name],
                margin=item.waiting.margin,
            ):
                key = (item.policy.team, item.model.name, item.row.latency_class)
                group = self.buffers.setdefault(key, [])
                bisect.insort(group, item, key=lambda d: d.waiting.created_at)
            else:
                self._escalate(item, now)

    def _escalate(self, item: _Deferred, now: datetime) -> None:
        self._serve_now(
            self._tallies(item.row),
            item.row,
            item.policy,
            item.standard,
            now,
            item.cache_key,
            escalated=True,
        )

    def _observe(self, model: SimModel, took: timedelta) -> None:
        self.completed_by_model[model.name] += 1
        observed = self.observed.setdefault(model.name, deque(maxlen=WINDOW))
        observed.append(took)
        if len(observed) >= MIN_OBSERVATIONS:
            self.expected[model.name] = nearest_rank(observed, 0.9)

    # -- lookups, memoised --

    def _tallies(self, row: TraceRow) -> list[Tally]:
        tally = self.workloads.get(row.workload)
        if tally is None:
            tally = self.workloads[row.workload] = Tally()
        return [self.total, tally]

    def _policy(self, row: TraceRow) -> SimPolicy:
        return (
            self.world.workload_policies.get(row.workload)
            or self.world.class_policies[row.latency_class]
        )

    def _chain(self, policy: SimPolicy, tier: str) -> tuple[SimModel, ...]:
        """The policy's models of the tier, in chain order, else every model of the tier."""
        key = (policy.label, tier)
        chain = self._chains.get(key)
        if chain is None:
            models = self.world.models
            names = [n for n in policy.chain if models[n].tier == tier]
            names = names or list(self.world.tier_models[tier])
            if not names:
                raise ReplayError(
                    f"no enabled {tier} model (run `python manage.py seed_demo`, or add one)"
                )
            chain = self._chains[key] = tuple(models[n] for n in names)
        return chain

    def _spec(self, policy: SimPolicy, tier: str) -> PolicySpec:
        key = (policy.label, tier)
        spec = self._specs.get(key)
        if spec is None:
            spec = self._specs[key] = replace(policy.spec, tier=tier)
        return spec

    def _option(self, model: SimModel, *, deferrable: bool, flex: bool) -> ModelOption:
        flex = flex and model.flex is not None
        return ModelOption(
            provider=model.provider,
            model_id=model.model_id,
            tier=model.tier,
            supports_batch=model.supports_batch,
            batch_turnaround=self.expected[model.name]
            if deferrable and model.supports_batch
            else None,
            flex_latency=model.flex_latency if flex else None,
            flex_no_dearer=flex and model.flex_no_dearer,
        )

    def _cost(self, model: SimModel, processing: str, usage: Usage) -> Decimal:
        key = (model.name, processing, usage.input_tokens, usage.output_tokens)
        cost = self._costs.get(key)
        if cost is None:
            version = {
                Processing.STANDARD: model.standard,
                Processing.BATCH: model.batch,
                Processing.FLEX: model.flex,
            }[processing]
            if version is None:
                raise ReplayError(
                    f"no {processing} price for {model.name} is in force "
                    "(run `python manage.py sync_prices`, or add a price in the admin)"
                )
            cost = self._costs[key] = price_usage(usage, version).total
        return cost


def _tick_floor(moment: datetime) -> datetime:
    minutes = (moment - DAY_ZERO) // TICK
    return DAY_ZERO + minutes * TICK


def _tick_ceil(moment: datetime) -> datetime:
    floor = _tick_floor(moment)
    return floor if floor == moment else floor + TICK


# replay_trace prints its totals with this name.
usd = plain


def _seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds()
