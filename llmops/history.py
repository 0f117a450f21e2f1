"""Demo history: weeks of past traffic, replayed through the real request path.

`make run` replays it once, so the billing pages show figures on first open. A deterministic,
scaled-down sample of a trace (llmops/data/ecommerce-day.jsonl.gz) is sent day by day through
the services the APIs and the batch worker call — request_admit and request_run, the buffer's
flush, job_advance, request_serve_escalated, request_mark_read — on a clock moved back with
time-machine. Nothing is written straight into a table: every timestamp comes from
timezone.now(), and the ledger is append-only (a trigger refuses UPDATE), so the past has to
be lived through in order.

The sample: each day a few short excerpts of the trace (its own timing, a few seconds apart)
per workload, so a day's deferred requests make a handful of provider batches, not one each.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from contextlib import aclosing, closing
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from datetime import time as clock_time
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import time_machine
from asgiref.sync import async_to_sync, sync_to_async
from django.db.models import Count, Sum
from django.utils import timezone

from batches.models import BatchJob
from batches.services import batches_flush, job_advance
from billing.models import LedgerEntry
from billing.services import prices_sync
from llmops.simulator.testing import SimulatorHandle
from routing import providers
from routing.asks import RequestRejected, native_ask, openai_ask
from routing.models import ApiKey, LatencyClass, LlmModel, Provider, Request, Team, Workload
from routing.services import (
    Admitted,
    RequestFailed,
    request_admit,
    request_mark_read,
    request_run,
    request_serve_escalated,
)
from routing.trace import TraceRow, trace_read

log = logging.getLogger(__name__)

# The default size: four weeks, a few tens of seconds on a small machine (measured: 28 days x
# 40 requests ~ 40 s on 2 cores, most of it in the services every request goes through).
DEFAULT_DAYS = 28
DEFAULT_PER_DAY = 40

TRACE = Path(__file__).resolve().parent / "data" / "ecommerce-day.jsonl.gz"
MARK = {"demo": "history"}  # in every replayed request's metadata: how a rerun knows

# Each demo team's share of the day's requests (globex is the smaller customer).
TEAM_SHARES = {"acme": 0.75, "globex": 0.25}
# Of a team's requests, the realtime workloads get this share (the trace's one sixth would
# leave too few streams and cache hits to see); deferrable ones split the rest by trace volume.
REALTIME_SHARE = 0.4
REALTIME_EXCERPT = 3  # requests per realtime excerpt (a shopper's burst of searches)
# The trace has one workload per latency class, a team may have several (acme: moderation due
# in an hour, batched; support triage due in ten minutes, served at flex; translations on
# Azure's Global Batch beside descriptions on Claude's): the trace rows of each class are
# dealt in turn to each of the team's workloads of the class.
SHARED_CLASSES = (LatencyClass.REALTIME, LatencyClass.NEAR_REALTIME, LatencyClass.SCHEDULED)
EXCERPTS_PER_DAY = {LatencyClass.NEAR_REALTIME: 1, LatencyClass.SCHEDULED: 1}
WEEKEND_FACTOR = 0.7
# Of realtime requests: streamed; of streams, cut by the client; repeats of an excerpt's
# first question (response cache hits). Of deferrable requests: sent through the
# OpenAI-compatible endpoint, which must answer now (missed savings).
STREAM_SHARE = 0.4
CUT_SHARE = 0.12
REPEAT_SHARE = 0.3
OPENAI_SHARE = 0.15
CUT_AFTER_CHUNKS = 3
OPENAI_CLIENT_MODEL = "auto"  # the policy alias: the workload's chain, with its fallbacks
# Of the results a client was not handed at once (a batch's), the share nobody ever reads.
NEVER_READ = {
    LatencyClass.REALTIME: 0.03,
    LatencyClass.NEAR_REALTIME: 0.1,
    LatencyClass.SCHEDULED: 0.2,
}
# A scheduled result is read the next working morning, between these hours (UTC); a
# near-realtime one within the hour.
MORNING_HOURS = (7, 10)
# Provider batch turnaround as the history lives it (on our clock).
TURNAROUND_MINUTES = (3, 12)
POLL_RETRY = timedelta(minutes=2)
MAX_POLLS = 10
# The last arrivals leave time for their batch (max wait 1 h + turnaround) before now.
SETTLE = timedelta(hours=2)
SYSTEM_WORDS = 30

# The simulator during the replay: no pacing. A batch takes one simulated second, which the
# replay advances before each poll, so that submitting does not already find it ended and the
# turnaround recorded is the minutes the history chose (TURNAROUND_MINUTES).
SIM_BATCH_SECONDS = 1.0
SIM_INSTANT = {
    "ttft_ms": 0,
    "tokens_per_s": 0,
    "flex_delay_ms": 0,
    # Every flex call answered: the history is the same on every run (a refusal is drawn).
    "flex_unavailable_rate": 0,
    "batch_validating_s": 0,
    "batch_turnaround_s": SIM_BATCH_SECONDS,
    "batch_finalizing_s": 0,
}

WORDS = """
order delivery parcel size colour price stock return refund shipping warranty cotton leather
kettle lamp sofa jacket boots charger cable battery blender mattress pillow towel mug glass
review rating seller discount voucher basket checkout invoice courier tracking address store
available today tomorrow weekend express standard small medium large black white green blue
does is can will which how when where what the a for with in on to of and or it this my
""".split()  # noqa: SIM905 - a word list reads better as prose


class How(StrEnum):
    CALL = "call"  # native API, answered now (or queued for a batch if deferrable)
    STREAM = "stream"  # websocket stream
    CUT = "cut"  # websocket stream the client leaves after a few chunks
    OPENAI = "openai"  # OpenAI-compatible endpoint: always answered now


@dataclass(frozen=True)
class Arrival:
    """One request of the history: when, whose, which workload, what, and how it is sent."""

    at: datetime
    team: str
    workload: str
    row: TraceRow  # the prompt (for a repeat: the repeated request's)
    how: How = How.CALL
    trace_id: str = ""


@dataclass(frozen=True)
class HistoryReport:
    """What the history holds (replayed now, or found from an earlier run)."""

    replayed: bool  # False: a history was already there and nothing was sent
    days: int
    requests: int
    by_mode: dict[str, int]
    by_status: dict[str, int]
    refused: int  # admissions refused (a budget, a validation): nothing was recorded to serve
    failed: int  # admitted, then failed
    cut_streams: int
    missed_savings: int
    batch_jobs: int
    read: int
    ledger_total_usd: Decimal
    counterfactual_usd: Decimal
    seconds: float = 0.0
    interrupted: bool = False

    @property
    def saved_usd(self) -> Decimal:
        return self.counterfactual_usd - self.ledger_total_usd

    def summary(self) -> str:
        modes = ", ".join(f"{n} {mode}" for mode, n in sorted(self.by_mode.items()) if mode)
        line = (
            f"{self.requests} requests over {self.days} days ({modes}); "
            f"{self.batch_jobs} provider batches, {self.missed_savings} missed savings, "
            f"{self.cut_streams} streams cut by the client; "
            f"ledger ${self.ledger_total_usd:.4f}, saved ${self.saved_usd:.4f}"
        )
        if self.refused or self.failed:
            line += f"; {self.refused} refused, {self.failed} failed"
        return line


def history_exists() -> bool:
    return Request.objects.filter(metadata__demo=MARK["demo"]).exists()


def history_report() -> HistoryReport:
    """What an earlier replay left: its requests, modes and ledger totals."""
    return _report(replayed=False, days=_days_recorded())


def history_replay(
    *,
    simulator_url: str,
    days: int = DEFAULT_DAYS,
    per_day: int = DEFAULT_PER_DAY,
    end: date | None = None,
    trace: Path = TRACE,
    seed: int = 0,
    stop: Callable[[], bool] | None = None,
) -> HistoryReport:
    """Replay `days` days of demo traffic ending the day before `end` (default: today, UTC),
    about `per_day` requests a day, through the real request path against the simulator at
    `simulator_url` (which the demo providers must point at). Does nothing if a history is
    already there (requests whose metadata says {"demo": "history"}): it happens once.

    Hidden costs: every request is a real HTTP call to the simulator, and every provider batch
    a handful (about 0.2 s each); the default size takes a few tens of seconds. The simulator
    runs instantly meanwhile (its previous settings are restored after), and its clock ends up
    one second ahead per batch polled. Prices in force from the history's first day are added
    where the price list starts later (a new demo database prices from today). `stop` is
    asked between events: True ends the replay early (what was replayed stays)."""
    started = time.monotonic()
    if history_exists():
        return history_report()
    if days <= 0 or per_day <= 0:
        return _report(replayed=True, days=0)
    simulator = SimulatorHandle(simulator_url.rstrip("/"))
    previous = simulator.config()  # OSError when nothing answers there
    _check_simulator(simulator)
    end = end or timezone.now().astimezone(UTC).date()
    dates = [end - timedelta(days=n) for n in range(days, 0, -1)]
    teams = _demo_teams()
    plan = history_plan(
        rows=trace_rows(trace),
        dates=dates,
        per_day=per_day,
        teams={
            slug: {w.slug: w.latency_class for w in team_workloads}
            for slug, (_, _, team_workloads) in teams.items()
        },
        seed=seed,
    )
    until = timezone.now()
    plan = [a for a in plan if a.at <= until - SETTLE]
    if not plan:
        return _report(replayed=True, days=0)
    # A price of every model in force from the first replayed moment: the ledger prices a
    # usage at the price in force when it occurred (add-only: nothing is edited).
    prices_sync(at=plan[0].at, missing_only=True, note="demo")
    replay = _HistoryRun(teams=teams, simulator=simulator, until=until, seed=seed, stop=stop)
    simulator.config(**SIM_INSTANT)
    try:
        async_to_sync(replay.run)(plan)
    finally:
        simulator.config(**{key: previous[key] for key in SIM_INSTANT})
    return _report(
        replayed=True,
        days=_days_recorded(),
        refused=replay.refused,
        seconds=time.monotonic() - started,
        interrupted=replay.interrupted,
    )


# --- the sample (pure) ------------------------------------------------------------------


def trace_rows(path: Path) -> list[TraceRow]:
    """A trace file's rows, in arrival order (gzip or plain JSON lines, checked)."""
    return list(trace_read(path))


def history_plan(
    *,
    rows: list[TraceRow],
    dates: list[date],
    per_day: int,
    teams: dict[str, dict[str, str]],
    seed: int = 0,
) -> list[Arrival]:
    """The requests of the history, in time order: for each date and team (`teams`: team slug
    → {workload slug: latency class}), excerpts of the trace mapped onto the team's workloads.
    Deterministic for the same arguments; each day draws its own excerpts and volume."""
    plan = []
    carry: dict[tuple[str, str], float] = {}  # spreads each share's remainder over the days
    for team_slug, workloads in teams.items():
        sources = _sources(rows, workloads)
        if not sources:
            continue
        for ago, day in zip(range(len(dates), 0, -1), dates, strict=True):
            # Seeded by days ago, not by date: the sample does not depend on when it runs.
            rng = _rng(f"{seed}:{team_slug}:{ago}")
            volume = per_day * TEAM_SHARES.get(team_slug, 0.25) * rng.uniform(0.85, 1.15)
            if day.weekday() >= 5:
                volume *= WEEKEND_FACTOR
            midnight = datetime.combine(day, clock_time(0), tzinfo=UTC)
            plan += _day(
                rng=rng,
                team=team_slug,
                midnight=midnight,
                quotas=_quotas(sources, workloads, round(volume)),
                sources=sources,
                workloads=workloads,
                carry=carry,
            )
    return sorted(plan, key=lambda a: (a.at, a.team, a.trace_id))


def _sources(rows: list[TraceRow], workloads: dict[str, str]) -> dict[str, list[TraceRow]]:
    """Trace rows per team workload: of a shared class (SHARED_CLASSES), each of the team's
    workloads of that class in turn (equal shares); else the workload of the same slug, else
    one of the same latency class, else (deferrable traffic) the most patient deferrable one."""
    by_class: dict[str, list[str]] = {}
    for slug, latency in sorted(workloads.items()):
        by_class.setdefault(latency, []).append(slug)
    deferrable = by_class.get(LatencyClass.SCHEDULED, []) + by_class.get(
        LatencyClass.NEAR_REALTIME, []
    )
    targets: dict[str, str | None] = {}
    sources: dict[str, list[TraceRow]] = {}
    dealt: Counter[str] = Counter()  # rows of each trace workload dealt so far
    for row in rows:
        if row.latency_class in SHARED_CLASSES and (shared := by_class.get(row.latency_class)):
            sources.setdefault(shared[dealt[row.workload] % len(shared)], []).append(row)
            dealt[row.workload] += 1
            continue
        if row.workload not in targets:
            same = by_class.get(row.latency_class, [])
            if row.workload in workloads:
                targets[row.workload] = row.workload
            elif same:
                targets[row.workload] = same[0]
            elif row.latency_class != LatencyClass.REALTIME and deferrable:
                targets[row.workload] = deferrable[0]
            else:
                targets[row.workload] = None
        if (target := targets[row.workload]) is not None:
            sources.setdefault(target, []).append(row)
    return sources


def _quotas(
    sources: dict[str, list[TraceRow]], workloads: dict[str, str], volume: int
) -> dict[str, int]:
    realtime = {s: len(r) for s, r in sources.items() if workloads[s] == LatencyClass.REALTIME}
    deferrable = {s: len(r) for s, r in sources.items() if s not in realtime}
    share = REALTIME_SHARE if realtime and deferrable else 1.0
    quotas = {}
    for group, group_share in ((realtime, share), (deferrable, 1.0 - share)):
        total = sum(group.values())
        for slug, count in group.items():
            quotas[slug] = round(volume * group_share * count / total)
    return quotas


def _excerpt(rng: random.Random, rows: list[TraceRow], size: int) -> list[TraceRow]:
    start = rng.randrange(max(1, len(rows) - size + 1))
    return rows[start : start + size]


def _split(total: int, parts: int) -> list[int]:
    parts = max(1, min(parts, total))
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def _take(carry: dict, key: tuple[str, str], share: float, n: int) -> int:
    """How many of `n` candidates get a `share`. The fraction left over carries to the next
    day, and the first day with a candidate takes one: a history of a few days still shows
    every behaviour, a long one has the share."""
    if n == 0:
        return 0
    due = carry.get(key, 1.0) + share * n
    whole = min(int(due), n)
    carry[key] = due - whole
    return whole


def _day(
    *,
    rng: random.Random,
    team: str,
    midnight: datetime,
    quotas: dict[str, int],
    sources: dict[str, list[TraceRow]],
    workloads: dict[str, str],
    carry: dict,
) -> list[Arrival]:
    realtime: list[list[Arrival]] = []  # excerpts
    deferrable: list[Arrival] = []
    for slug, quota in sorted(quotas.items()):
        if quota <= 0:
            continue
        latency = workloads[slug]
        excerpts = (
            -(-quota // REALTIME_EXCERPT)
            if latency == LatencyClass.REALTIME
            else EXCERPTS_PER_DAY.get(latency, 1)
        )
        for size in _split(quota, excerpts):
            arrivals = [
                Arrival(
                    at=midnight + timedelta(seconds=row.t),
                    team=team,
                    workload=slug,
                    row=row,
                    trace_id=row.id,
                )
                for row in _excerpt(rng, sources[slug], size)
            ]
            if latency == LatencyClass.REALTIME:
                realtime.append(arrivals)
            else:
                deferrable += arrivals

    # Repeats: a later question of an excerpt asks the first one's again (a cache hit).
    later = [(i, j) for i, excerpt in enumerate(realtime) for j in range(1, len(excerpt))]
    repeats = rng.sample(later, _take(carry, (team, "repeat"), REPEAT_SHARE, len(later)))
    for i, j in repeats:
        realtime[i][j] = replace(realtime[i][j], row=realtime[i][0].row)
    repeated = {realtime[i][0].row.prompt_id for i, _ in repeats}
    flat = [a for excerpt in realtime for a in excerpt]
    streams = rng.sample(range(len(flat)), _take(carry, (team, "stream"), STREAM_SHARE, len(flat)))
    # A cut stream never reaches the cache, and a repeat is answered from it: neither is cut.
    cuttable = [i for i in streams if flat[i].row.prompt_id not in repeated]
    cut = set(rng.sample(cuttable, _take(carry, (team, "cut"), CUT_SHARE, len(cuttable))))
    for i in streams:
        flat[i] = replace(flat[i], how=How.CUT if i in cut else How.STREAM)
    sent_sync = _take(carry, (team, "openai"), OPENAI_SHARE, len(deferrable))
    for i in rng.sample(range(len(deferrable)), sent_sync):
        deferrable[i] = replace(deferrable[i], how=How.OPENAI)
    return flat + deferrable


def _rng(key: str) -> random.Random:
    # Deterministic demo data, not secrets; a str seed is hashed with SHA-512, so the same key
    # gives the same sequence on every run and machine (PYTHONHASHSEED plays no part).
    return random.Random(key)  # noqa: S311


def _text(key: str, words: int) -> str:
    rng = _rng(key)
    return " ".join(rng.choice(WORDS) for _ in range(words))


def messages_for(row: TraceRow) -> list[dict]:
    """A prompt of roughly the row's input tokens, the same text for the same ids."""
    system = f"You answer for {row.workload}. {_text(row.system_prompt_id, SYSTEM_WORDS)}."
    user = _text(row.prompt_id, max(4, row.input_tokens - SYSTEM_WORDS - 8))
    return [{"role": "system", "content": system}, {"role": "user", "content": f"{user}?"}]


# --- the replay -------------------------------------------------------------------------


class _HistoryRun:
    """The event loop of the history: arrivals, the buffer's ticks, batch polls and reads,
    handled in time order, each at its moment on the moved clock."""

    def __init__(
        self,
        *,
        teams: dict[str, tuple[Team, ApiKey | None, list[Workload]]],
        simulator: SimulatorHandle,
        until: datetime,
        seed: int,
        stop: Callable[[], bool] | None,
    ) -> None:
        self.teams = teams
        self.simulator = simulator
        self.until = until
        self.rng = _rng(f"{seed}:replay")
        self.stop = stop or (lambda: False)
        self.queue: list[tuple[datetime, int, str, Any]] = []
        self.order = itertools.count()
        self.polls: Counter[int] = Counter()
        self.ticks: set[datetime] = set()
        self.refused = 0
        self.interrupted = False

    def schedule(self, at: datetime, kind: str, payload: Any) -> None:
        heapq.heappush(self.queue, (at, next(self.order), kind, payload))

    async def run(self, plan: list[Arrival]) -> None:
        for arrival in plan:
            self.schedule(arrival.at, "arrive", arrival)
        traveller = time_machine.travel(plan[0].at, tick=True)
        clock = traveller.start()
        try:
            while self.queue:
                if self.stop():
                    self.interrupted = True
                    return
                at, _, kind, payload = heapq.heappop(self.queue)
                if kind == "read" and at > self.until:
                    continue  # not read yet
                # Never backwards (a handler takes real time) and never past the real now.
                clock.move_to(max(min(at, self.until), timezone.now()), tick=True)
                if kind == "arrive":
                    await self.arrive(payload)
                elif kind == "tick":
                    await sync_to_async(self.tick)(payload)
                elif kind == "poll":
                    await sync_to_async(self.poll)(payload)
                else:
                    await sync_to_async(self.read)(payload)
        finally:
            traveller.stop()

    async def arrive(self, arrival: Arrival) -> None:
        admitted = await sync_to_async(self.admit)(arrival)
        if admitted is None:
            return
        request = admitted.request
        if request.status == Request.Status.QUEUED:
            self.schedule_tick(request.created_at + request.workload.policy.max_batch_wait)
        elif request.status == Request.Status.COMPLETED:  # a cache hit
            self.schedule_read(request)
        else:
            await self.serve(admitted, arrival)

    def admit(self, arrival: Arrival) -> Admitted | None:
        team, key, workloads = self.teams[arrival.team]
        messages = messages_for(arrival.row)
        metadata = {**MARK, "trace": arrival.trace_id}
        try:
            if arrival.how == How.OPENAI:
                workload = next(w for w in workloads if w.slug == arrival.workload)
                ask = openai_ask(
                    workload,
                    {
                        "model": OPENAI_CLIENT_MODEL,
                        "messages": messages,
                        "max_tokens": arrival.row.max_tokens,
                    },
                    source=Request.Source.OPENAI,
                    metadata=metadata,
                )
                return request_admit(team=team, api_key=key, ask=ask, sync_only=True)
            streamed = arrival.how in (How.STREAM, How.CUT)
            ask = native_ask(
                workloads=Workload.objects.filter(team=team),
                data={
                    "workload": arrival.workload,
                    "messages": messages,
                    "max_tokens": arrival.row.max_tokens,
                    "stream": streamed,
                    "metadata": metadata,
                },
                source=Request.Source.WEBSOCKET if streamed else Request.Source.NATIVE,
            )
            return request_admit(team=team, api_key=key, ask=ask, sync_only=False)
        except RequestRejected:
            # A refused budget records the request as failed (counted from the database);
            # a validation refusal records nothing.
            self.refused += 1
            return None

    async def serve(self, admitted: Admitted, arrival: Arrival) -> None:
        request = None
        chunks = 0
        try:
            # aclosing, as the websocket consumer: leaving early closes the upstream call, and
            # request_run bills what was produced as an estimate and cancels the request.
            async with aclosing(
                request_run(admitted, stream=arrival.how in (How.STREAM, How.CUT))
            ) as events:
                async for event in events:
                    if isinstance(event, providers.Delta):
                        chunks += bool(event.text)  # text deltas, as a client counts them
                        if arrival.how == How.CUT and chunks >= CUT_AFTER_CHUNKS:
                            break
                    else:
                        request = event
        except RequestFailed:
            return
        if request is not None:
            self.schedule_read(request)

    def schedule_tick(self, due: datetime) -> None:
        """The worker ticks every minute: the first tick at or after `due` flushes the group."""
        at = due.replace(second=0, microsecond=0)
        at += timedelta(minutes=1) if at < due else timedelta(0)
        if at not in self.ticks:
            self.ticks.add(at)
            self.schedule(at, "tick", at)

    def tick(self, at: datetime) -> None:
        """What the worker's tick does at this moment: flush due buffers, submit the jobs."""
        self.ticks.discard(at)
        report = batches_flush(now=timezone.now())
        self.serve_escalated(report.escalated)
        for job in report.jobs:
            self.advance(job.pk)

    def poll(self, job_id: int) -> None:
        self.simulator.advance(SIM_BATCH_SECONDS)
        self.advance(job_id)

    def advance(self, job_id: int) -> None:
        result = job_advance(job_id=job_id)
        self.serve_escalated(result.escalated)
        job = BatchJob.objects.get(pk=job_id)
        if job.is_terminal:
            for request in Request.objects.filter(
                batch_items__job=job, status=Request.Status.COMPLETED
            ).select_related("workload"):
                self.schedule_read(request)
            return
        self.polls[job_id] += 1
        if self.polls[job_id] > MAX_POLLS:
            return  # left to the worker (the report shows it as running)
        wait = (
            timedelta(minutes=self.rng.uniform(*TURNAROUND_MINUTES))
            if self.polls[job_id] == 1
            else POLL_RETRY
        )
        self.schedule(timezone.now() + wait, "poll", job_id)

    def serve_escalated(self, request_ids: Iterable[str]) -> None:
        for request_id in request_ids:
            request = request_serve_escalated(request_id=request_id)
            if request is not None and request.status == Request.Status.COMPLETED:
                self.schedule_read(request)

    def schedule_read(self, request: Request) -> None:
        """When the client first reads a result it was not handed at once (a batch's)."""
        if request.first_read_at is not None:
            return  # answered to a waiting client: read on delivery
        latency = request.workload.latency_class
        if self.rng.random() < NEVER_READ.get(latency, 0.1):
            return
        done = request.completed_at or timezone.now()
        if latency == LatencyClass.REALTIME:
            at = done + timedelta(seconds=self.rng.uniform(0.2, 3))
        elif latency == LatencyClass.NEAR_REALTIME:
            at = done + timedelta(minutes=self.rng.uniform(2, 60))
        else:
            spread = MORNING_HOURS[1] - MORNING_HOURS[0]
            at = _next_morning(done) + timedelta(hours=self.rng.uniform(0, spread))
        self.schedule(at, "read", request)

    def read(self, request: Request) -> None:
        request_mark_read(request=request)


def _next_morning(moment: datetime) -> datetime:
    """The first working morning (MORNING_HOURS[0] UTC) at least three hours away."""
    day = (moment + timedelta(hours=3)).date()
    morning = datetime.combine(day, clock_time(MORNING_HOURS[0]), tzinfo=UTC)
    if morning < moment + timedelta(hours=3):
        morning += timedelta(days=1)
    while morning.weekday() >= 5:
        morning += timedelta(days=1)
    return morning


# --- the database around it -------------------------------------------------------------


def _demo_teams() -> dict[str, tuple[Team, ApiKey | None, list[Workload]]]:
    """The demo teams with the key their requests come in with (the `demo` key, if any)."""
    found = {}
    for team in Team.objects.filter(slug__in=TEAM_SHARES):
        key = ApiKey.objects.filter(team=team, name="demo", revoked_at__isnull=True).first()
        workloads = list(
            Workload.objects.filter(team=team, enabled=True)
            # The trace is chat traffic: embedding workloads have none of it.
            .exclude(policy__links__model__kind=LlmModel.Kind.EMBEDDING)
            .select_related("policy", "team")
            .distinct()
        )
        found[team.slug] = (team, key, workloads)
    if not found:
        raise ValueError("no demo teams: run `python manage.py seed_demo` first")
    return found


def _check_simulator(simulator: SimulatorHandle) -> None:
    """Refuse to replay against anything but a fresh simulator. A real provider would bill the
    history's requests. A simulator that already holds batches (it served another database, or
    traffic) would have them adopted: a job adopts a batch it finds recent with its id in the
    metadata (OpenAI) or its size (Anthropic), and the simulator's clock is weeks ahead of the
    replay's."""
    enabled = list(Provider.objects.filter(enabled=True))
    elsewhere = [p.slug for p in enabled if not p.base_url.startswith(simulator.base_url + "/")]
    if elsewhere:
        raise ValueError(
            f"providers {', '.join(elsewhere)} do not point at the simulator "
            f"{simulator.base_url}; the demo history only runs against it"
        )
    for provider in enabled:
        if not provider.supports_batch:
            continue
        endpoint = provider.endpoint()
        api = providers.batch_api(provider.kind)
        with closing(api.batch_list(endpoint, created_after=0)) as batches:
            used = next(batches, None) is not None
        if provider.kind != Provider.Kind.ANTHROPIC and not used:
            # An input file is adopted by its name (llmops-job-<id>.jsonl) too.
            with closing(api.batch_files(endpoint)) as files:
                used = next(files, None) is not None
        if used:
            raise ValueError(
                f"the simulator at {simulator.base_url} already holds {provider.kind} batches "
                "or batch files; "
                "the demo history needs a fresh one (restart it, or POST /_sim/reset)"
            )


def _days_recorded() -> int:
    return Request.objects.filter(metadata__demo=MARK["demo"]).dates("created_at", "day").count()


def _report(
    *,
    replayed: bool,
    days: int,
    refused: int = 0,
    seconds: float = 0.0,
    interrupted: bool = False,
) -> HistoryReport:
    requests = Request.objects.filter(metadata__demo=MARK["demo"])
    by_mode = dict(requests.values_list("mode").annotate(n=Count("id")).order_by())
    by_status = dict(requests.values_list("status").annotate(n=Count("id")).order_by())
    totals = LedgerEntry.objects.filter(request__metadata__demo=MARK["demo"]).aggregate(
        cost=Sum("cost_usd"), counterfactual=Sum("counterfactual_cost_usd")
    )
    return HistoryReport(
        replayed=replayed,
        days=days,
        requests=sum(by_status.values()),
        by_mode=by_mode,
        by_status=by_status,
        refused=refused,
        failed=by_status.get(Request.Status.FAILED, 0),
        cut_streams=requests.filter(
            status=Request.Status.CANCELLED, ledger_entries__kind=LedgerEntry.Kind.ESTIMATE
        ).count(),
        missed_savings=requests.filter(missed_saving=True).count(),
        batch_jobs=BatchJob.objects.filter(items__request__metadata__demo=MARK["demo"])
        .distinct()
        .count(),
        read=requests.filter(first_read_at__isnull=False).count(),
        ledger_total_usd=totals["cost"] or Decimal(0),
        counterfactual_usd=totals["counterfactual"] or Decimal(0),
        seconds=seconds,
        interrupted=interrupted,
    )
