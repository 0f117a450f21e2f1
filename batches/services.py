"""Writes for batch jobs: the buffer's flush, each lifecycle step, cancellation and recovery.

Deferred requests wait in the buffer as `queued` requests of mode batch (routing's front door
put them there with a hold at the batch price). `batches_flush` groups them by (team, model,
lane) into jobs; `job_advance` runs one job's next step (submit → poll → ingest), claimed with
a lease; `batches_reconcile` finds what crashed workers left behind. No transaction is open
across a provider call: intent is saved first, the call made, the outcome saved by id.

Request statuses this module moves: queued → running (flushed into a job) → completed, or back
to queued for a new batch (a retry or a resubmission), or queued with mode realtime (escalated:
routing serves it now), or failed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import secrets
import signal
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import IntegrityError, models, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Concat
from django.utils import timezone
from django_q.tasks import async_task

from batches import jsonl
from batches.models import BatchItem, BatchJob, ClientBatch, ClientBatchLine, StoredFile
from batches.selectors import expected_turnaround, item_counts
from billing.models import Hold, Mode
from billing.pricing import PricingError, Usage
from billing.services import (
    BudgetExceeded,
    hold_release,
    hold_settle,
    holds_release,
    ledger_record_usage,
    request_hold,
    reservation_amount,
)
from llmops import outbound
from routing import providers
from routing.events import request_changed, request_touch
from routing.models import LlmModel, Provider, Request, RoutingPolicy
from routing.providers import (
    BatchInfo,
    BatchOutcome,
    ChatRequest,
    Completion,
    ProviderError,
    TokenUsage,
)
from routing.router import prompt_tokens_bound

log = logging.getLogger(__name__)

# Longer than any step runs (the task timeout is 60 s; a step yields INGEST_SLICE_SECONDS
# after it began and goes on in the next).
LEASE = timedelta(minutes=3)
INGEST_SLICE_SECONDS = 40
# Polling backoff: quick at first (small batches end in minutes), then every ten minutes.
POLL_FIRST = timedelta(seconds=10)
POLL_MAX = timedelta(minutes=10)
# The tick runs every minute and django-q2's scheduler may fire 30 s late: a deadline flush
# leaves this much before the last moment a batch could still make the deadline.
FLUSH_SLACK = timedelta(minutes=2)
# Bounded retries: an item that failed this many times fails its request.
MAX_ITEM_ATTEMPTS = 3
# A retried request waits for a flush and a batch again.
RETRY_HOLD_TTL = timedelta(hours=25)
# Failed steps (a provider down) back off to this at most.
RETRY_MAX = timedelta(minutes=15)
# A create we cannot prove did not happen is looked for in batches created this long before it.
CREATE_CLOCK_SLACK = timedelta(minutes=2)


def _crash_point(name: str) -> None:
    """Die here, as a SIGKILLed worker would, when LLMOPS_BATCH_CRASH_AT names this point: the
    crash tests prove every window has a recovery. Does nothing unless set."""
    if name == settings.LLMOPS_BATCH_CRASH_AT:
        log.warning("crash point %s: killing this process", name)
        os.kill(os.getpid(), signal.SIGKILL)


def write_pause() -> None:
    """Between two write transactions of a long batch write: let waiting writers in (see
    LLMOPS_BATCH_WRITE_PAUSE_MS; SQLite has one write lock for everyone)."""
    if settings.LLMOPS_BATCH_WRITE_PAUSE_MS:
        time.sleep(settings.LLMOPS_BATCH_WRITE_PAUSE_MS / 1000)


# --- the buffer ------------------------------------------------------------------------


@dataclass
class FlushReport:
    jobs: list[BatchJob] = field(default_factory=list)
    escalated: list[str] = field(default_factory=list)  # request ids to serve realtime now

    @property
    def requests(self) -> int:
        return sum(job.item_count for job in self.jobs)


# The buffer's rules as pure functions of times, so that the savings replay
# (routing/replay.py) runs the very rules the worker does on its simulated clock.


@dataclass(frozen=True)
class Waiting:
    """What the flush rule reads of one buffered request."""

    created_at: datetime
    deadline_at: datetime | None
    max_wait: timedelta  # its policy's max batch wait
    margin: timedelta  # its policy's deadline margin


@dataclass(frozen=True)
class FlushPlan:
    reason: str | None  # why the group leaves now (BatchJob.Reason); None: it waits
    send: list[int]  # positions in the group to send now, in order
    escalate: list[int]  # positions no batch can serve in time any more


def batch_can_make(
    *, now: datetime, deadline_at: datetime | None, turnaround: timedelta, margin: timedelta
) -> bool:
    """Can a batch submitted now return before the deadline, keeping the margin?"""
    return deadline_at is None or now + turnaround + margin <= deadline_at


def batch_late(
    *,
    now: datetime,
    submitted_at: datetime,
    turnaround: timedelta,
    earliest_deadline_at: datetime,
    margin: timedelta,
) -> bool:
    """Will a running batch (expected to end at submit + turnaround, and not before now) end
    too late for its earliest deadline minus the margin?"""
    return max(submitted_at + turnaround, now) > earliest_deadline_at - margin


def poll_backoff(polls: int) -> timedelta:
    """How long after its `polls`-th poll a running batch is polled again."""
    return min(POLL_FIRST * (1.5 ** min(polls, 20)), POLL_MAX)


def flush_by(waiting: Waiting, turnaround: timedelta) -> datetime:
    """When a queued request must leave the buffer: after the policy's maximum wait, or
    earlier if waiting longer would leave a batch too little time before its deadline."""
    by = waiting.created_at + waiting.max_wait
    if waiting.deadline_at:
        latest = waiting.deadline_at - turnaround - waiting.margin - FLUSH_SLACK
        by = min(by, latest)
    return by


def flush_plan(
    group: list[Waiting],
    *,
    now: datetime,
    turnaround: timedelta,
    max_lines: int,
    force: bool = False,
) -> FlushPlan:
    """One (team, model, lane) group of the buffer, oldest first: the whole group leaves when
    one request is due (its max wait, or its deadline needs it), or full batches only when it
    fills one; a request no batch can serve in time any more is escalated either way."""
    send, escalate, reason = [], [], BatchJob.Reason.MANUAL if force else None
    for position, waiting in enumerate(group):
        if not batch_can_make(
            now=now, deadline_at=waiting.deadline_at, turnaround=turnaround, margin=waiting.margin
        ):
            escalate.append(position)
            continue
        send.append(position)
        if reason is None and flush_by(waiting, turnaround) <= now:
            age_due = waiting.created_at + waiting.max_wait <= now
            reason = BatchJob.Reason.AGE if age_due else BatchJob.Reason.DEADLINE
    if reason is None and len(send) >= max_lines:
        reason = BatchJob.Reason.SIZE
    if reason == BatchJob.Reason.SIZE:
        send = send[: len(send) - len(send) % max_lines]  # full batches only; the rest waits
    return FlushPlan(reason=reason, send=send if reason is not None else [], escalate=escalate)


def _line_bytes(request: Request) -> int:
    # An upper bound of the request's JSONL line without building it (the flush only splits).
    return len(str(request.params).encode()) + 512


def batches_flush(
    *, now: datetime | None = None, workload_ids: Iterable[int] | None = None, force: bool = False
) -> FlushReport:
    """Turn due buffered requests into jobs: one group per (team, model, lane) is flushed when
    it fills a provider batch, when its oldest request waited the policy's maximum, or when
    its earliest deadline needs it to leave now (`force`: every group, e.g. an admin's flush
    now). Requests whose deadline no batch can meet any more are escalated to realtime."""
    now = now or timezone.now()
    report = FlushReport()
    queued = Request.objects.filter(status=Request.Status.QUEUED, mode=Request.Mode.BATCH)
    if workload_ids is not None:
        queued = queued.filter(workload_id__in=list(workload_ids))
    # Listed first: the flush of one group writes while the next are still to come.
    groups = list(
        queued.order_by().values_list("team_id", "model_id", "workload__latency_class").distinct()
    )
    for team_id, model_id, lane in groups:
        with transaction.atomic():
            jobs, escalated = _flush_group(
                team_id=team_id, model_id=model_id, lane=lane, queued=queued, now=now, force=force
            )
        report.jobs.extend(jobs)
        report.escalated.extend(escalated)
    return report


def _flush_group(
    *, team_id: int, model_id: int, lane: str, queued, now: datetime, force: bool
) -> tuple[list[BatchJob], list[str]]:
    model = LlmModel.objects.select_related("provider").get(pk=model_id)
    provider = model.provider
    rows = queued.filter(team_id=team_id, model_id=model_id, workload__latency_class=lane)
    # PostgreSQL: lock the rows so a concurrent flush or cancel cannot take them too (SQLite's
    # IMMEDIATE transactions already serialize writers).
    rows = list(
        rows.select_for_update(skip_locked=True, of=("self",))
        .select_related("workload__policy")
        .order_by("created_at")
    )
    if not rows:
        return [], []
    max_lines, max_bytes = provider.batch_limits
    plan = flush_plan(
        [
            Waiting(
                created_at=r.created_at,
                deadline_at=r.deadline_at,
                max_wait=r.workload.policy.max_batch_wait,
                margin=r.workload.policy.deadline_margin,
            )
            for r in rows
        ],
        now=now,
        turnaround=expected_turnaround(model=model),
        max_lines=max_lines,
        force=force,
    )
    keep = [rows[i] for i in plan.send]
    escalate = [rows[i] for i in plan.escalate]
    jobs = []
    for chunk in _chunks(keep, max_lines=max_lines, max_bytes=max_bytes):
        jobs.append(_job_create(provider, model, lane, chunk, reason=plan.reason, now=now))
    if escalate:
        _requests_escalate(escalate, now=now, why="deadline too close for a batch")
    return jobs, [str(r.pk) for r in escalate]


def _chunks(requests: list[Request], *, max_lines: int, max_bytes: int) -> Iterable[list]:
    chunk, size = [], 0
    for request in requests:
        line = _line_bytes(request)
        if chunk and (len(chunk) >= max_lines or size + line > max_bytes):
            yield chunk
            chunk, size = [], 0
        chunk.append(request)
        size += line
    if chunk:
        yield chunk


def _job_create(
    provider: Provider, model: LlmModel, lane: str, requests: list[Request], *, reason, now
) -> BatchJob:
    deadlines = [r.deadline_at for r in requests if r.deadline_at]
    job = BatchJob.objects.create(
        team_id=requests[0].team_id,
        provider=provider,
        model=model,
        lane=lane,
        reason=reason,
        item_count=len(requests),
        earliest_deadline_at=min(deadlines) if deadlines else None,
        created_at=now,
        next_check_at=now,
    )
    BatchItem.objects.bulk_create(
        [
            BatchItem(job=job, request=r, custom_id=f"{job.custom_id_prefix}{r.pk.hex}")
            for r in requests
        ],
        batch_size=1000,
    )
    # One UPDATE, not a save per request; websocket subscribers catch up by updated_at.
    Request.objects.filter(pk__in=[r.pk for r in requests]).update(
        status=Request.Status.RUNNING, started_at=now, updated_at=now
    )
    return job


def _requests_escalate(requests: list[Request], *, now: datetime, why: str) -> None:
    """Hand requests to routing's realtime path (routing.tasks.serve_escalated runs them): they
    wait as queued requests of mode realtime, which the reconciler re-enqueues if lost."""
    for request in requests:
        request.status = Request.Status.QUEUED
        request.mode = Request.Mode.REALTIME
        request.decision_reason = f"{request.decision_reason} Escalated: {why}."[-2000:]
        request_touch(request)
        request.save(update_fields=["status", "mode", "decision_reason", "updated_at"])
        request_changed(request)


# --- one job, one step at a time -------------------------------------------------------


@dataclass
class StepResult:
    job_id: int
    ran: bool = False  # False: another worker holds the job, or it is finished
    status: str = ""
    escalated: list[str] = field(default_factory=list)


def _claim(job_id: int, now: datetime) -> str | None:
    token = secrets.token_hex(8)
    changed = (
        BatchJob.objects.filter(pk=job_id)
        .exclude(status__in=(*BatchJob.TERMINAL, BatchJob.Status.BUILDING))
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .update(lease_token=token, lease_until=now + LEASE)
    )
    return token if changed == 1 else None


def _release(job: BatchJob, token: str, **fields) -> None:
    BatchJob.objects.filter(pk=job.pk, lease_token=token).update(
        lease_token="", lease_until=None, **fields
    )


def _save(job: BatchJob, **fields) -> None:
    for name, value in fields.items():
        setattr(job, name, value)
    BatchJob.objects.filter(pk=job.pk).update(**fields)


def job_advance(*, job_id: int, now: datetime | None = None) -> StepResult:
    """Run the job's next steps until it must wait (for the provider, or for a later slice of
    a long ingest). Safe to call any time from anywhere: the lease lets one caller in."""
    now = now or timezone.now()
    result = StepResult(job_id=job_id)
    token = _claim(job_id, now)
    if token is None:
        return result
    result.ran = True
    # The step's own clock: waiting for a cancel and ingesting share one task's time.
    deadline = time.monotonic() + INGEST_SLICE_SECONDS
    _crash_point("after_claim")
    job = BatchJob.objects.select_related("provider", "model", "team").get(pk=job_id)
    try:
        if job.status in (BatchJob.Status.PENDING, BatchJob.Status.SUBMITTING):
            _submit(job, now=now)
        if job.status == BatchJob.Status.RUNNING:
            _poll(job, now=now, deadline=deadline)
        if job.status == BatchJob.Status.INGESTING:
            result.escalated = _ingest(job, now=now, deadline=deadline)
    except Exception as exc:
        # The provider is down or refused a control call (or a bug): try again later, backing
        # off, with the reason on the job for the admin. Every step is safe to repeat.
        delay = min(POLL_FIRST * (2 ** min(job.attempts, 10)), RETRY_MAX)
        if isinstance(exc, ProviderError):
            log.warning("batch job %s: %s; retrying in %s", job.pk, exc, delay)
        else:
            log.exception("batch job %s step failed; retrying in %s", job.pk, delay)
        _save(
            job,
            attempts=F("attempts") + 1,
            last_error=f"{type(exc).__name__}: {exc}"[:500],
            next_check_at=timezone.now() + delay,
        )
    finally:
        _release(job, token)
    job.refresh_from_db(fields=["status"])
    result.status = job.status
    return result


def _items(job: BatchJob):
    return BatchItem.objects.filter(job=job).select_related("request").order_by("id")


def _chat(request: Request, model: LlmModel) -> ChatRequest:
    params = request.params
    return ChatRequest(
        model=model.model_id,
        messages=params["messages"],
        max_tokens=params["max_tokens"],
        temperature=params.get("temperature"),
    )


def _submit(job: BatchJob, *, now: datetime) -> None:
    if job.cancel_requested_at and job.status == BatchJob.Status.PENDING:
        # Nothing reached the provider: the job ends here and its items go back.
        _save(job, status=BatchJob.Status.INGESTING, ended_at=now, provider_status="cancelled")
        return
    # Only a submit an earlier step began (and died in) can have left a provider batch behind.
    resumed = job.status == BatchJob.Status.SUBMITTING
    if job.status == BatchJob.Status.PENDING:
        # Intent first: from here on a provider batch may exist, so recovery must look for it.
        _save(job, status=BatchJob.Status.SUBMITTING, submit_started_at=now)
    endpoint = job.provider.endpoint()
    api = providers.batch_api(job.provider.kind)
    info = None
    if job.provider.kind == Provider.Kind.ANTHROPIC:
        # A fresh submit must not look: Anthropic batches carry no job id, so it would adopt
        # the batch of another job of its size whose worker died after creating it, and that
        # job would then create a second batch while this one ingests results that are not
        # its own (T2, tests/faults/test_worker_kills.py, found it).
        info = _find_anthropic_batch(job, api, endpoint) if resumed else None
        if info is _UNDECIDED:
            # Look again once the batch in doubt has ended and its results say whose it is.
            _save(job, next_check_at=now + POLL_FIRST)
            return
        if info is None:
            requests = (
                {
                    "custom_id": item.custom_id,
                    "params": api.batch_params(_chat(item.request, job.model)),
                }
                for item in _items(job)
            )
            info = api.batch_create(endpoint, requests=requests)
            _crash_point("after_create")
    else:
        if not job.input_file_id:
            file_id = api.batch_find_file(endpoint, filename=job.input_filename)
            if file_id is None:
                with _input_file(job, api) as content:
                    file_id = api.batch_upload(
                        endpoint, filename=job.input_filename, content=content
                    )
                _crash_point("after_upload")
            _save(job, input_file_id=file_id)
            _crash_point("after_file_saved")
        info = _find_openai_batch(job, api, endpoint)
        if info is None:
            info = api.batch_create(
                endpoint, input_file_id=job.input_file_id, metadata={"llmops_job": str(job.pk)}
            )
            _crash_point("after_create")
    try:
        _save(
            job,
            provider_batch_id=info.id,
            status=BatchJob.Status.RUNNING,
            # Our clock, not the provider's: turnaround compares it with our ended_at.
            submitted_at=now,
            next_check_at=now + POLL_FIRST,
            provider_status=info.status,
            last_error="",
        )
    except IntegrityError:
        # Another job already owns that batch (only a mistaken adoption gets here): never let
        # two jobs share one. The reconciler cancels batches no job owns.
        raise ProviderError(
            f"provider batch {info.id} already belongs to another job",
            retryable=True,
            maybe_billed=False,
        ) from None
    _crash_point("after_batch_saved")


@contextmanager
def _input_file(job: BatchJob, api) -> Iterator[BinaryIO]:
    """The job's JSONL, written line by line to a spooled temporary file (in memory up to a
    few MB, on disk beyond): never the whole file as one string."""
    with jsonl.spooled() as file:
        for item in _items(job).iterator(chunk_size=2000):
            body = api.batch_body(_chat(item.request, job.model))
            file.write(jsonl.request_line(custom_id=item.custom_id, body=body))
        file.seek(0)
        yield file


def _find_openai_batch(job: BatchJob, api, endpoint) -> BatchInfo | None:
    """A batch an earlier attempt created (its id never saved): found by our metadata."""
    since = (job.submit_started_at or job.created_at) - CREATE_CLOCK_SLACK
    for info in api.batch_list(endpoint, created_after=since.timestamp()):
        if info.metadata.get("llmops_job") == str(job.pk):
            return info
    return None


# _find_anthropic_batch's answer when a batch may be this job's or another's: wait and see.
_UNDECIDED = BatchInfo(id="", status="", created_at=0)


def _find_anthropic_batch(job: BatchJob, api, endpoint) -> BatchInfo | None:
    """A batch an earlier attempt created (its id never saved), or None, or _UNDECIDED.
    Anthropic batches carry no metadata: a candidate is one created after this job's submit
    began, with exactly its number of requests, that no job owns. An ended one shows whose it
    is by its results' custom_ids (they carry the job id). A running one is adopted only when no
    other job with an unsaved submit of the same size could have created it; otherwise the
    answer waits for it to end (taking another job's batch would leave that job to create a
    second one, and this job to ingest results that are not its own)."""
    if job.status != BatchJob.Status.SUBMITTING or job.submit_started_at is None:
        return None
    since = job.submit_started_at - CREATE_CLOCK_SLACK
    candidates = [
        info
        for info in api.batch_list(endpoint, created_after=since.timestamp())
        if info.total == job.item_count
    ]
    # Ownership is checked against every job, not only recent ones: the provider's clock
    # (its created_at) may run ahead of ours, so an old job's batch can look new.
    owned = set(
        BatchJob.objects.filter(
            provider=job.provider, provider_batch_id__in=[info.id for info in candidates]
        ).values_list("provider_batch_id", flat=True)
    )
    rivals = list(
        BatchJob.objects.filter(
            provider=job.provider,
            status=BatchJob.Status.SUBMITTING,
            provider_batch_id=None,
            item_count=job.item_count,
        )
        .exclude(pk=job.pk)
        .values_list("submit_started_at", flat=True)
    )
    undecided = False
    for info in sorted(candidates, key=lambda info: info.created_at):
        if info.id in owned:
            continue
        if info.ended:
            with closing(api.batch_results(endpoint, info=info)) as results:
                first = next(results, None)
            if first is not None and first.custom_id.startswith(job.custom_id_prefix):
                return info
            continue  # another job's
        created = datetime.fromtimestamp(info.created_at, tz=UTC)
        if any(t is not None and t - CREATE_CLOCK_SLACK <= created for t in rivals):
            undecided = True
            continue
        return info
    return _UNDECIDED if undecided else None


def _poll(job: BatchJob, *, now: datetime, deadline: float | None = None) -> None:
    endpoint = job.provider.endpoint()
    api = providers.batch_api(job.provider.kind)
    if job.cancel_requested_at and not job.cancel_sent_at:
        try:
            api.batch_cancel(endpoint, batch_id=job.provider_batch_id)
        except ProviderError as exc:
            if exc.status != 400:  # 400: it ended meanwhile; the retrieve below says how
                raise
        _save(job, cancel_sent_at=now)
    info = api.batch_retrieve(endpoint, batch_id=job.provider_batch_id)
    if job.cancel_requested_at and not info.ended:
        info = _await_cancel(api, endpoint, job, info, deadline=deadline)
    fields = {
        "provider_status": info.status,
        "provider_completed": info.completed,
        "provider_failed": info.failed,
        "polls": F("polls") + 1,
        "last_error": "",
    }
    if info.ended:
        fields.update(
            status=BatchJob.Status.INGESTING,
            ended_at=now,
            output_file_id=info.output_file_id or "",
            error_file_id=info.error_file_id or "",
            next_check_at=now,
        )
        if info.errors:
            fields["last_error"] = "; ".join(info.errors)[:500]
    elif job.cancel_requested_at:
        # A cancel is promised to whoever asked: look again soon, not after the backoff a
        # long-running batch has reached, so the job ends within one poll of the provider's.
        fields["next_check_at"] = now + POLL_FIRST
    else:
        fields["next_check_at"] = now + poll_backoff(job.polls)
        if _misses_deadline(job, now=now):
            # Cancel now: the completed items are kept, the rest served before the deadline.
            fields.update(
                cancel_requested_at=now,
                cancel_reason=BatchJob.CancelReason.DEADLINE,
                next_check_at=now,
            )
    _save(job, **fields)
    job.refresh_from_db(fields=["polls"])
    _crash_point("after_poll")


def _await_cancel(api, endpoint, job: BatchJob, info: BatchInfo, *, deadline) -> BatchInfo:
    """Look again for a little while: a provider often confirms a cancel within seconds, and
    waiting here ends the job now instead of at the next tick of the scheduler (a minute)."""
    wait = settings.LLMOPS_BATCH_CANCEL_WAIT_SECONDS
    until = time.monotonic() + wait
    if deadline is not None:
        until = min(until, deadline - INGEST_SLICE_SECONDS / 2)  # leave the ingest its time
    while not info.ended and time.monotonic() + CANCEL_LOOK_EVERY <= until:
        time.sleep(CANCEL_LOOK_EVERY)
        info = api.batch_retrieve(endpoint, batch_id=job.provider_batch_id)
    return info


# How often a step waiting for a provider's cancel looks again, in seconds.
CANCEL_LOOK_EVERY = 1


def _misses_deadline(job: BatchJob, *, now: datetime) -> bool:
    """Will the batch (expected to end at submit + observed p90) end too late for its earliest
    deadline, minus the margin of the tightest policy among its items?"""
    if not job.earliest_deadline_at or not job.submitted_at:
        return False
    margin = max(
        (
            r.workload.policy.deadline_margin
            for r in Request.objects.filter(batch_items__job=job)
            .select_related("workload__policy")
            .order_by("deadline_at")[:50]
        ),
        default=timedelta(0),
    )
    return batch_late(
        now=now,
        submitted_at=job.submitted_at,
        turnaround=expected_turnaround(model=job.model),
        earliest_deadline_at=job.earliest_deadline_at,
        margin=margin,
    )


# --- ingest ----------------------------------------------------------------------------


def _ingest(job: BatchJob, *, now: datetime, deadline: float | None = None) -> list[str]:
    """Record every result the provider has for the job, then decide for each item that did
    not succeed. Idempotent: an item already recorded is skipped, and the ledger's key is the
    item's custom_id. Long ingests yield after a slice of time and continue next step."""
    if job.ingest_started_at is None:
        _save(job, ingest_started_at=now)
    pending = dict(
        BatchItem.objects.filter(job=job, status=BatchItem.Status.PENDING).values_list(
            "custom_id", "pk"
        )
    )
    if job.provider_batch_id and pending:
        endpoint = job.provider.endpoint()
        api = providers.batch_api(job.provider.kind)
        info = BatchInfo(
            id=job.provider_batch_id,
            status=job.provider_status,
            created_at=0,
            output_file_id=job.output_file_id or None,
            error_file_id=job.error_file_id or None,
        )
        deadline = deadline or time.monotonic() + INGEST_SLICE_SECONDS
        chunk: list[BatchOutcome] = []
        unknown = 0
        for outcome in api.batch_results(endpoint, info=info):
            if outcome.custom_id not in pending:
                if not outcome.custom_id.startswith(job.custom_id_prefix):
                    unknown += 1  # not ours, or malformed: quarantined by not being recorded
                continue
            chunk.append(outcome)
            # Items per transaction: one commit per item would make 50,000 results 50,000 fsyncs.
            if len(chunk) >= settings.LLMOPS_BATCH_INGEST_CHUNK:
                _record_outcomes(job, chunk, pending, now=now)
                chunk = []
                _crash_point("mid_ingest")
                write_pause()
                if time.monotonic() > deadline:
                    _save(job, next_check_at=timezone.now())
                    return []  # the next step goes on where this one stopped
        if chunk:
            _record_outcomes(job, chunk, pending, now=now)
        if unknown:
            log.error("batch job %s: %d result lines with unknown custom_ids", job.pk, unknown)
            _save(job, last_error=f"{unknown} result lines with unknown custom_ids ignored")
    _crash_point("after_ingest")
    return _finish(job, now=now)


def _record_outcomes(
    job: BatchJob, outcomes: list[BatchOutcome], pending: dict[str, int], *, now: datetime
) -> None:
    item_ids = [pending[o.custom_id] for o in outcomes]
    items = {
        item.custom_id: item
        for item in BatchItem.objects.filter(pk__in=item_ids).select_related(
            "request__team", "request__workload"
        )
    }
    holds = {
        hold.request_id: hold
        for hold in Hold.objects.filter(
            request_id__in=[i.request_id for i in items.values()], status=Hold.Status.HELD
        )
    }
    with transaction.atomic():
        for outcome in outcomes:
            item = items[outcome.custom_id]
            _record_outcome(job, item, outcome, holds.get(item.request_id), now=now)
            pending.pop(outcome.custom_id, None)


def _record_outcome(
    job: BatchJob, item: BatchItem, outcome: BatchOutcome, hold: Hold | None, *, now: datetime
) -> None:
    status, error = outcome.outcome, outcome.error
    usage = None
    if status == "succeeded":
        try:
            usage = Usage(**outcome.completion.usage.__dict__)
        except (PricingError, TypeError) as exc:
            status, error = "invalid", f"unusable usage: {exc}"
    # The item changes once: a second ingest of the same line finds it no longer pending.
    changed = BatchItem.objects.filter(pk=item.pk, status=BatchItem.Status.PENDING).update(
        status=status, error=error[:500], ended_at=now
    )
    if changed != 1:
        return
    item.status = status
    if status == BatchItem.Status.INVALID:
        log.error("batch job %s item %s quarantined: %s", job.pk, item.custom_id, error)
    if usage is None:
        return
    request = item.request
    key = f"batch:{item.custom_id}"
    # A request cancelled while the provider had it: the provider still billed its answer,
    # and so do we, against the hold kept for exactly this.
    note = (
        "answered after its request was cancelled"
        if request.status == Request.Status.CANCELLED
        else ""
    )
    if hold is not None:
        hold_settle(hold=hold, key=key, model=job.model, mode=Mode.BATCH, usage=usage, note=note)
    else:  # its hold expired (a batch far past its deadline): the provider still billed it
        ledger_record_usage(
            key=key,
            team=request.team,
            workload=request.workload,
            request=request,
            model=job.model,
            mode=Mode.BATCH,
            usage=usage,
            note=note,
        )
    if request.status != Request.Status.RUNNING:
        return  # cancelled by its client while the batch ran: billed, not reopened
    completion = outcome.completion
    request.model = job.model
    request.mode = Request.Mode.BATCH
    request.output = completion.text
    request.finish_reason = completion.finish_reason
    request.usage = usage.as_dict()
    request.status = Request.Status.COMPLETED
    request.completed_at = request.first_token_at = now
    request_touch(request)
    request.save(
        update_fields=[
            "model",
            "mode",
            "output",
            "finish_reason",
            "usage",
            "status",
            "completed_at",
            "first_token_at",
            "updated_at",
        ]
    )
    request_changed(request)


def _finish(job: BatchJob, *, now: datetime) -> list[str]:
    """Every item still pending did not run; decide what happens to each unfinished request,
    then close the job with the provider's final status. In slices of bounded transactions
    (a cancelled 50,000-line job must not hold the database for minutes); a crash between two
    resumes with the items not yet decided."""
    never_ran = {
        "cancelled": BatchItem.Status.CANCELLED,
        "expired": BatchItem.Status.EXPIRED,
    }.get(job.provider_status, BatchItem.Status.NOT_RUN)
    failed_batch = job.provider_status == "failed"
    BatchItem.objects.filter(job=job, status=BatchItem.Status.PENDING).update(
        status=BatchItem.Status.ERRORED if failed_batch else never_ran,
        error=(job.last_error or "the provider refused the batch")[:500] if failed_batch else "",
        ended_at=now,
    )
    leftovers = (
        _items(job)
        .exclude(status=BatchItem.Status.SUCCEEDED)
        .filter(next_step="")
        .select_related("request__workload__policy")
    )
    escalate = []
    while chunk := list(leftovers[:FINISH_CHUNK]):
        with transaction.atomic():
            if job.cancel_reason in BatchJob.STOPPED:
                _items_stop(job, chunk, now=now)
            else:
                escalate.extend(_items_decide(job, chunk, now=now))
        write_pause()
    with transaction.atomic():
        counts = item_counts(job)
        errored = counts[BatchItem.Status.ERRORED] + counts[BatchItem.Status.INVALID]
        succeeded = counts[BatchItem.Status.SUCCEEDED]
        status = {
            "cancelled": BatchJob.Status.CANCELLED,
            "expired": BatchJob.Status.EXPIRED,
            "failed": BatchJob.Status.FAILED,
        }.get(job.provider_status, BatchJob.Status.COMPLETED)
        unfinished = job.item_count - succeeded - errored
        if job.cancel_requested_at and status == BatchJob.Status.COMPLETED and unfinished:
            status = BatchJob.Status.CANCELLED
        _save(
            job,
            status=status,
            # When the last result was recorded, not when this step began: a long ingest's
            # last slice starts well before it ends.
            finished_at=max(now, timezone.now()),
            succeeded_count=succeeded,
            errored_count=errored,
            unfinished_count=unfinished,
        )
        if (
            Request.objects.filter(batch_items__job=job)
            .exclude(workload__batch_webhook_url="")
            .exists()
        ):
            enqueue("batches.tasks.notify", job.pk)
        if job.client_batch_id:
            # The client's batch may be whole now: its output files are written by a worker,
            # not by whichever client call looks first.
            enqueue("batches.tasks.client_batch_refresh", job.client_batch_id)
    return escalate


# Unfinished items decided per transaction when a job ends.
FINISH_CHUNK = 1000


def _items_decide(job: BatchJob, items: list[BatchItem], *, now: datetime) -> list[str]:
    """Each unfinished item of a job that ended on its own (or was cancelled to make a
    deadline): retried, resubmitted, escalated to realtime or failed, per its policy."""
    escalate = []
    for item in items:
        next_step = _item_next_step(job, item, now=now)
        BatchItem.objects.filter(pk=item.pk).update(next_step=next_step)
        if next_step == BatchItem.Next.ESCALATED:
            escalate.append(item.request)
    if escalate:
        reason = (
            "the batch would miss the deadline"
            if job.cancel_reason == BatchJob.CancelReason.DEADLINE
            else f"batch {job.provider_status}"
        )
        _requests_escalate(escalate, now=now, why=reason)
    return [str(r.pk) for r in escalate]


def _items_stop(job: BatchJob, items: list[BatchItem], *, now: datetime) -> None:
    """The unfinished items of a job someone cancelled: the promise was to stop spending, so
    nothing is retried or served elsewhere. What never ran ends cancelled, what the provider
    refused ends failed, and every hold still open goes back (they were kept until now so
    that answers arriving after the cancel settled against them)."""
    why = BatchJob.CancelReason(job.cancel_reason).label.lower()
    stopped = [i for i in items if i.request.status == Request.Status.RUNNING]
    dropped = [i for i in items if i.request.status != Request.Status.RUNNING]
    refusals = (BatchItem.Status.ERRORED, BatchItem.Status.INVALID)
    refused = [i for i in stopped if i.status in refusals]
    never_ran = [i for i in stopped if i.status not in refusals]
    requests = Request.objects.filter(pk__in=[i.request_id for i in items])
    holds_release(requests=requests)
    for group, status, note in (
        (never_ran, Request.Status.CANCELLED, "the provider never ran it"),
        (refused, Request.Status.FAILED, "the provider refused it"),
    ):
        if not group:
            continue
        Request.objects.filter(
            pk__in=[i.request_id for i in group], status=Request.Status.RUNNING
        ).update(
            status=status,
            completed_at=now,
            updated_at=now,
            error=f"batch job {job.pk} was cancelled ({why}); {note}",
            decision_reason=Concat(
                F("decision_reason"),
                Value(f" Batch job {job.pk} cancelled ({why}): {note}; its hold was released."),
            ),
        )
        for item in group:
            item.request.status = status
            request_changed(item.request)
    BatchItem.objects.filter(pk__in=[i.pk for i in never_ran]).update(
        next_step=BatchItem.Next.CANCELLED
    )
    BatchItem.objects.filter(pk__in=[i.pk for i in refused]).update(next_step=BatchItem.Next.FAILED)
    BatchItem.objects.filter(pk__in=[i.pk for i in dropped]).update(
        next_step=BatchItem.Next.DROPPED
    )


def _item_next_step(job: BatchJob, item: BatchItem, *, now: datetime) -> str:
    """What happens to a request whose item did not succeed (the item is final)."""
    request = item.request
    if request.status != Request.Status.RUNNING:
        # Its client cancelled it while the provider had it. Its hold stayed so that a late
        # answer settled against it (a hard budget is never passed); none came: it goes back.
        holds_release(requests=Request.objects.filter(pk=request.pk))
        return BatchItem.Next.DROPPED
    policy = request.workload.policy
    if item.status in (BatchItem.Status.ERRORED, BatchItem.Status.INVALID):
        tries = BatchItem.objects.filter(request=request).count()
        if tries >= MAX_ITEM_ATTEMPTS or item.status == BatchItem.Status.INVALID:
            _request_fail(request, error=f"batch item failed {tries} time(s): {item.error}")
            return BatchItem.Next.FAILED
        if _batch_can_make(request, job.model, policy, now=now):
            _request_requeue(request, now=now, why=f"its item in batch job {job.pk} errored")
            return BatchItem.Next.RETRIED
        return BatchItem.Next.ESCALATED
    # It never ran (cancelled, expired, missing): the policy says batch again or serve now.
    if policy.on_deadline_risk == RoutingPolicy.Escalation.REBATCH and _batch_can_make(
        request, job.model, policy, now=now
    ):
        _request_requeue(
            request, now=now, why=f"batch job {job.pk} ended ({job.provider_status}) first"
        )
        return BatchItem.Next.REBATCHED
    return BatchItem.Next.ESCALATED


def _batch_can_make(request: Request, model: LlmModel, policy, *, now: datetime) -> bool:
    return batch_can_make(
        now=now,
        deadline_at=request.deadline_at,
        turnaround=expected_turnaround(model=model),
        margin=policy.deadline_margin,
    )


def _request_requeue(request: Request, *, now: datetime, why: str) -> None:
    """Back to the buffer (a new item in a later job); its hold stays reserved."""
    request.status = Request.Status.QUEUED
    request.decision_reason = f"{request.decision_reason} Back to the buffer: {why}."[-2000:]
    request_touch(request)
    request.save(update_fields=["status", "decision_reason", "updated_at"])
    request_changed(request)


def _request_fail(request: Request, *, error: str) -> None:
    for hold in Hold.objects.filter(request=request, status=Hold.Status.HELD):
        hold_release(hold=hold)
    request.status = Request.Status.FAILED
    request.error = error[:2000]
    request.completed_at = timezone.now()
    request_touch(request)
    request.save(update_fields=["status", "error", "completed_at", "updated_at"])
    request_changed(request)


# --- cancellation and recovery ---------------------------------------------------------


def batch_cancel(*, job: BatchJob, reason: str = BatchJob.CancelReason.USER) -> bool:
    """Ask for a job's cancellation: its next step cancels the provider batch, keeps what
    completed (billed once) and recovers the rest per policy. False if already ended or asked."""
    now = timezone.now()
    changed = (
        BatchJob.objects.filter(pk=job.pk, cancel_requested_at__isnull=True)
        .exclude(status__in=BatchJob.TERMINAL)
        .update(cancel_requested_at=now, cancel_reason=reason, next_check_at=now)
    )
    if changed:
        job.cancel_requested_at, job.cancel_reason = now, reason
    return changed == 1


def job_unfinished(job: BatchJob):
    """The requests a cancelled job left unanswered: they never ran and ended cancelled with
    it (not those their own client cancelled)."""
    return Request.objects.filter(
        batch_items__job=job,
        batch_items__next_step=BatchItem.Next.CANCELLED,
        status=Request.Status.CANCELLED,
    )


@dataclass
class ServeEstimate:
    requests: int
    worst_case_usd: Decimal  # USD: every prompt and max_tokens of output at realtime price


def job_unfinished_estimate(*, job: BatchJob) -> ServeEstimate:
    """What serving a cancelled job's unanswered requests now would cost at most: each at the
    standard (realtime) price of the model it was to run on, with its whole max_tokens."""
    worst = Decimal(0)
    count = 0
    for request in job_unfinished(job).select_related("model").iterator(chunk_size=1000):
        count += 1
        worst += reservation_amount(
            model=request.model or job.model,
            mode=Mode.REALTIME,
            prompt_tokens=prompt_tokens_bound(request.params["messages"]),
            max_output_tokens=request.params["max_tokens"],
        )
    return ServeEstimate(requests=count, worst_case_usd=worst)


def job_serve_unfinished(*, job: BatchJob) -> list[str]:
    """An operator's explicit choice after a cancel: serve the job's unanswered requests now,
    realtime at full price (never a side effect of cancelling). Each goes to routing's
    realtime path, which takes a realtime hold (a budget that cannot take one fails that
    request). Returns their ids."""
    now = timezone.now()
    served = []
    note = (
        f" Served realtime at full price on an operator's word after batch job {job.pk} was "
        "cancelled."
    )
    with transaction.atomic():
        for request in job_unfinished(job):
            changed = Request.objects.filter(pk=request.pk, status=Request.Status.CANCELLED).update(
                status=Request.Status.QUEUED,
                mode=Request.Mode.REALTIME,
                completed_at=None,
                error="",
                decision_reason=Concat(F("decision_reason"), Value(note)),
                updated_at=now,
            )
            if not changed:
                continue
            BatchItem.objects.filter(job=job, request=request).update(
                next_step=BatchItem.Next.ESCALATED
            )
            request.status = Request.Status.QUEUED
            request_changed(request)
            served.append(str(request.pk))
            enqueue("routing.tasks.serve_escalated", str(request.pk))
    return served


def enqueue(func: str, *args) -> None:
    """A django-q2 task by name, after commit: a worker must never pick up an id whose row it
    cannot see yet. (By name: routing's tasks are above this layer.)"""
    transaction.on_commit(lambda: async_task(func, *args))


def job_recover(*, job: BatchJob) -> bool:
    """Recover a job's results now. A job that ended is ingested again (results an interrupted
    ingest missed are recorded; recorded ones are skipped, so nothing bills twice); one still
    running is polled now, whatever its backoff. False for a job that never reached a
    provider and has ended."""
    now = timezone.now()
    ended = BatchJob.objects.filter(
        pk=job.pk, status__in=BatchJob.TERMINAL, provider_batch_id__isnull=False
    ).update(status=BatchJob.Status.INGESTING, next_check_at=now)
    running = (
        BatchJob.objects.filter(pk=job.pk)
        .exclude(status__in=BatchJob.TERMINAL)
        .update(next_check_at=now)
    )
    return bool(ended or running)


# A person may retry past the automatic bound, within reason.
MAX_MANUAL_ATTEMPTS = 2 * MAX_ITEM_ATTEMPTS


@dataclass
class RetryReport:
    retried: list[str] = field(default_factory=list)
    refused: dict[str, str] = field(default_factory=dict)  # request id → why not


class _ChangedMeanwhile(Exception):
    pass


def job_retry_failed(*, job: BatchJob, now: datetime | None = None) -> RetryReport:
    """Put the failed requests of an ended job back in the buffer, and only those: each gets a
    new hold at the batch price (a budget that cannot take it refuses that one) and a new item
    in a later job. Items already succeeded, resubmitted or escalated are left alone."""
    now = now or timezone.now()
    report = RetryReport()
    if not job.is_terminal:
        return report
    failed = (
        _items(job)
        .filter(next_step=BatchItem.Next.FAILED, request__status=Request.Status.FAILED)
        .select_related("request__team", "request__workload")
    )
    for item in failed:
        request = item.request
        tries = BatchItem.objects.filter(request=request).count()
        if tries >= MAX_MANUAL_ATTEMPTS:
            report.refused[str(request.pk)] = f"already tried {tries} times"
            continue
        try:
            with transaction.atomic():
                request_hold(
                    request=request,
                    models=[job.model],
                    mode=Mode.BATCH,
                    key=f"req:{request.pk}:retry{tries}",
                    ttl=RETRY_HOLD_TTL,
                    at=now,
                )
                changed = Request.objects.filter(
                    pk=request.pk, status=Request.Status.FAILED
                ).update(status=Request.Status.QUEUED, mode=Request.Mode.BATCH, error="")
                if changed != 1:
                    raise _ChangedMeanwhile
                BatchItem.objects.filter(pk=item.pk).update(next_step=BatchItem.Next.RETRIED)
                request.status = Request.Status.QUEUED
                request_touch(request)
                Request.objects.filter(pk=request.pk).update(updated_at=request.updated_at)
                request_changed(request)
        except (BudgetExceeded, PricingError) as exc:
            report.refused[str(request.pk)] = str(exc)
            continue
        except _ChangedMeanwhile:
            continue  # someone else retried or cancelled it: the hold rolled back with it
        report.retried.append(str(request.pk))
    return report


# --- the reconciler --------------------------------------------------------------------

# How far back the reconciler looks at the provider's batches and files.
ORPHAN_LOOKBACK = timedelta(days=2)
INPUT_FILENAME = re.compile(r"llmops-job-(\d+)\.jsonl")


@dataclass
class ReconcileReport:
    cancelled: list[str] = field(default_factory=list)  # provider batches nobody owns
    deleted_files: list[str] = field(default_factory=list)  # input files nobody references
    errors: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {
            "cancelled": self.cancelled,
            "deleted_files": self.deleted_files,
            "errors": self.errors,
        }


def batches_reconcile(*, now: datetime | None = None) -> ReconcileReport:
    """Clean up after crashes the job steps cannot see: a provider batch no job owns (a
    duplicate create, a job deleted) is cancelled, since it costs money; an input file no job
    references is deleted. Stalled jobs need nothing here: their lease lapses and the tick
    enqueues them again. A batch or file a job is still submitting is left for it to adopt."""
    now = now or timezone.now()
    report = ReconcileReport()
    since = now - ORPHAN_LOOKBACK
    providers_used = Provider.objects.filter(
        supports_batch=True, batch_jobs__created_at__gte=since
    ).distinct()
    for provider in providers_used:
        try:
            _reconcile_provider(provider, since=since, report=report)
        except ProviderError as exc:
            report.errors.append(f"{provider.slug}: {exc}")
            log.warning("batch reconcile of %s: %s", provider.slug, exc)
    return report


def _reconcile_provider(provider: Provider, *, since: datetime, report: ReconcileReport) -> None:
    endpoint = provider.endpoint()
    api = providers.batch_api(provider.kind)
    jobs = BatchJob.objects.filter(provider=provider, created_at__gte=since - ORPHAN_LOOKBACK)
    owned = set(jobs.exclude(provider_batch_id=None).values_list("provider_batch_id", flat=True))
    submitting = list(jobs.filter(status=BatchJob.Status.SUBMITTING, provider_batch_id=None))
    for info in api.batch_list(endpoint, created_after=since.timestamp()):
        if info.id in owned or info.ended or info.status == "cancelling":
            continue
        if not _unowned(provider, info, jobs=jobs, submitting=submitting):
            continue
        api.batch_cancel(endpoint, batch_id=info.id)
        report.cancelled.append(info.id)
        log.warning("cancelled provider batch %s of %s: no job owns it", info.id, provider.slug)
    if provider.kind == Provider.Kind.ANTHROPIC:
        return
    referenced = set(jobs.exclude(input_file_id="").values_list("input_file_id", flat=True))
    for file_id, filename in api.batch_files(endpoint):
        match = INPUT_FILENAME.fullmatch(filename or "")
        if not match or file_id in referenced:
            continue
        job = jobs.filter(pk=int(match[1])).first()
        if job is not None and not job.input_file_id and not job.is_terminal:
            continue  # its upload crashed before the id was saved: the job adopts it
        api.batch_delete_file(endpoint, file_id=file_id)
        report.deleted_files.append(file_id)


def _unowned(provider: Provider, info: BatchInfo, *, jobs, submitting: list[BatchJob]) -> bool:
    if provider.kind != Provider.Kind.ANTHROPIC:
        job_ref = info.metadata.get("llmops_job")
        if job_ref is None or not job_ref.isdigit():
            return False  # not ours: somebody else's batch on the same account
        return not any(job.pk == int(job_ref) for job in submitting)
    # Anthropic batches carry no metadata: ours are those created while one of our jobs was
    # submitting, with its number of requests. One such job still submitting adopts it; one
    # that already has another batch got a duplicate.
    created = datetime.fromtimestamp(info.created_at, tz=UTC)
    window = (created - CREATE_CLOCK_SLACK, created + CREATE_CLOCK_SLACK)
    candidates = jobs.filter(item_count=info.total, submit_started_at__range=window).values_list(
        "provider_batch_id", flat=True
    )
    return bool(candidates) and all(batch_id is not None for batch_id in candidates)


# --- the OpenAI-compatible surface: stored files and client batches --------------------

FILE_RETENTION = timedelta(days=30)
COMPLETION_WINDOW = timedelta(hours=24)


class SurfaceError(Exception):
    """A refused call of /v1/files or /v1/batches: HTTP status, message, the param at fault."""

    def __init__(self, status: int, message: str, *, param: str = "", code: str = "") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def files_dir() -> Path:
    path = Path(settings.DATA_DIR) / "files"
    path.mkdir(parents=True, exist_ok=True)
    return path


def file_path(stored: StoredFile) -> Path:
    return files_dir() / f"{stored.id}.jsonl"


def file_store(*, team, filename: str, purpose: str, chunks) -> StoredFile:
    """Validate an uploaded batch input file as it streams to disk (never whole in memory);
    a bad file is refused naming its lines (SurfaceError 400) and nothing is kept."""
    if purpose != StoredFile.Purpose.BATCH:
        raise SurfaceError(
            400,
            f"purpose must be 'batch' (llmops stores batch files only), got {purpose!r}",
            param="purpose",
        )
    file_id = StoredFile.new_id()
    path = files_dir() / f"{file_id}.jsonl"
    size = 0

    def tee():
        nonlocal size
        with path.open("wb") as out:
            for chunk in chunks:
                size += len(chunk)
                if size > jsonl.OPENAI_MAX_BYTES:
                    raise SurfaceError(
                        413, f"the file is over {jsonl.OPENAI_MAX_BYTES} bytes", param="file"
                    )
                out.write(chunk)
                yield chunk

    try:
        scanned = jsonl.scan(tee())
        if scanned.lines > jsonl.OPENAI_MAX_LINES:
            raise SurfaceError(
                400,
                f"the file has {scanned.lines} lines; a batch takes at most "
                f"{jsonl.OPENAI_MAX_LINES}",
                param="file",
            )
    except jsonl.BatchFileError as exc:
        path.unlink(missing_ok=True)
        raise SurfaceError(400, f"Invalid batch file: {exc}", param="file") from None
    except SurfaceError:
        path.unlink(missing_ok=True)
        raise
    now = timezone.now()
    return StoredFile.objects.create(
        id=file_id,
        team=team,
        purpose=purpose,
        filename=(filename or "batch.jsonl")[:255],
        bytes=size,
        lines=scanned.lines,
        model=next(iter(scanned.models), ""),
        created_at=now,
        expires_at=now + FILE_RETENTION,
    )


def file_chunks(stored: StoredFile, size: int = 1 << 16):
    with file_path(stored).open("rb") as source:
        while chunk := source.read(size):
            yield chunk


# Jobs of a client's batch are built while a worker admits the file (routing.client_batches):
# each admitted chunk of lines goes straight into the batch's `building` job, which only
# becomes `pending` (submittable) once the last line is in. They never pass through the
# buffer: a client that batches itself wants its batch now and its cancel to hit only it.


class ClientBatchJobs:
    """Puts a client's admitted lines into its batch's building jobs, opening a new job where
    the provider's limits end the last. One per admission slice: it remembers the open job's
    size between chunks instead of reading it back each time."""

    def __init__(self, batch: ClientBatch) -> None:
        self.batch = batch
        self.max_lines, self.max_bytes = batch.model.provider.batch_limits
        self.job = (
            BatchJob.objects.filter(client_batch=batch, status=BatchJob.Status.BUILDING)
            .order_by("-pk")
            .first()
        )
        # Resuming a job an earlier slice began: its size again, bounded as _chunks does.
        self.size = (
            sum(
                _line_bytes(r)
                for r in Request.objects.filter(batch_items__job=self.job).only("params")
            )
            if self.job
            else 0
        )

    def prepare(self, requests: list[Request], *, now: datetime) -> list[BatchItem]:
        """The items of admitted `requests`, each in the open job or a new one where the
        provider's limits end it (new jobs are only built here; `add` saves them)."""
        batch = self.batch
        items: list[BatchItem] = []
        for request in requests:
            line_bytes = _line_bytes(request)
            job = self.job
            if (
                job is None
                or job.item_count >= self.max_lines
                or (self.size + line_bytes > self.max_bytes)
            ):
                job = self.job = BatchJob(
                    team_id=batch.team_id,
                    provider=batch.model.provider,
                    model=batch.model,
                    lane=batch.workload.latency_class,
                    client_batch=batch,
                    status=BatchJob.Status.BUILDING,
                    reason=BatchJob.Reason.CLIENT,
                    earliest_deadline_at=request.deadline_at,
                    created_at=now,
                    next_check_at=now,
                )
                self.size = 0
            items.append(BatchItem(job=job, request=request))
            job.item_count += 1
            self.size += line_bytes
        return items

    def add(self, items: list[BatchItem]) -> None:
        """Save what `prepare` built, inside the transaction that admits its requests."""
        jobs: dict[int, BatchJob] = {}
        added: dict[int, int] = defaultdict(int)
        for item in items:
            jobs[id(item.job)] = item.job  # by identity: a job not saved yet has no pk
            added[id(item.job)] += 1
        for key, job in jobs.items():
            count = added[key]
            if job.pk is None:
                job.save(force_insert=True)  # item_count already counts its items
            else:
                BatchJob.objects.filter(pk=job.pk).update(item_count=F("item_count") + count)
        for item in items:
            item.job_id = item.job.pk
            item.custom_id = f"{item.job.custom_id_prefix}{item.request.pk.hex}"
        BatchItem.objects.bulk_create(items, batch_size=1000)


def client_batch_jobs_release(*, batch: ClientBatch, now: datetime) -> list[int]:
    """The batch is admitted whole: its jobs may be submitted. Returns their ids (the caller
    enqueues their first step after its transaction commits)."""
    jobs = list(
        BatchJob.objects.filter(client_batch=batch, status=BatchJob.Status.BUILDING).values_list(
            "pk", flat=True
        )
    )
    BatchJob.objects.filter(pk__in=jobs).update(
        status=BatchJob.Status.PENDING, created_at=now, next_check_at=now
    )
    return jobs


def client_batch_jobs_abandon(*, batch: ClientBatch, now: datetime) -> None:
    """The client cancelled while its file was being admitted: the jobs built so far never
    reached a provider, so their requests end cancelled and their holds go back, in bounded
    transactions (a crash between two resumes where it stopped)."""
    for job in BatchJob.objects.filter(client_batch=batch, status=BatchJob.Status.BUILDING):
        BatchJob.objects.filter(pk=job.pk).update(
            cancel_requested_at=now, cancel_reason=BatchJob.CancelReason.CLIENT
        )
        job.cancel_requested_at, job.cancel_reason = now, BatchJob.CancelReason.CLIENT
        _save(job, provider_status="cancelled")
        pending = BatchItem.objects.filter(job=job, status=BatchItem.Status.PENDING)
        pending.update(status=BatchItem.Status.CANCELLED, ended_at=now)
        _finish(job, now=now)


def client_batch_refresh(*, batch: ClientBatch) -> ClientBatch:
    """Bring the client's view up to date from its requests; once none is pending, write its
    output and error files (streamed to disk) and end it. Idempotent and race-safe: the end
    is a conditional UPDATE, and a loser deletes the files it wrote."""
    if batch.status in ClientBatch.ENDED or batch.status == ClientBatch.Status.VALIDATING:
        return batch
    statuses = dict(
        Request.objects.filter(batch_line__batch=batch)
        .values_list("status")
        .annotate(n=models.Count("pk"))
        .order_by()
    )
    completed = statuses.get(Request.Status.COMPLETED, 0)
    failed = statuses.get(Request.Status.FAILED, 0) + statuses.get(Request.Status.CANCELLED, 0)
    # Lines a cancel stopped before they were admitted never became requests.
    never_admitted = 0 if batch.in_progress_at else batch.total - batch.admitted
    fields = {"completed": completed, "failed": failed + never_admitted}
    unended = (
        BatchJob.objects.filter(client_batch=batch).exclude(status__in=BatchJob.TERMINAL).exists()
    )
    if (
        completed + failed + never_admitted < batch.total
        or unended
        or (not batch.in_progress_at and _admission_running(batch))
    ):
        ClientBatch.objects.filter(pk=batch.pk).update(**fields)
        for name, value in fields.items():
            setattr(batch, name, value)
        return batch
    now = timezone.now()
    output, errors = _write_results(batch)
    # A cancel that came after every line was answered leaves a completed batch.
    cancelled = batch.cancelling_at is not None and completed < batch.total
    final = ClientBatch.Status.CANCELLED if cancelled else ClientBatch.Status.COMPLETED
    fields.update(
        status=final,
        finalizing_at=now,
        output_file=output,
        error_file=errors,
        **({"cancelled_at": now} if cancelled else {"completed_at": now}),
    )
    won = (
        ClientBatch.objects.filter(pk=batch.pk)
        .exclude(status__in=ClientBatch.ENDED)
        .update(**fields)
    )
    if not won:
        for stored in (output, errors):
            if stored is not None:
                file_path(stored).unlink(missing_ok=True)
                stored.delete()
    batch.refresh_from_db()
    return batch


def _admission_running(batch: ClientBatch) -> bool:
    # A worker holds the batch (cancelled mid-admission, still tidying its building jobs).
    return bool(batch.lease_until and batch.lease_until > timezone.now())


def _write_results(batch: ClientBatch) -> tuple[StoredFile | None, StoredFile | None]:
    """OpenAI's output file (answered lines) and error file (the rest), in input order."""
    now = timezone.now()
    files = {}
    handles = {}

    def write(kind: str, record: dict) -> None:
        if kind not in handles:
            stored = StoredFile(
                id=StoredFile.new_id(),
                team=batch.team,
                purpose=StoredFile.Purpose.BATCH_OUTPUT,
                filename=f"{batch.id}_{kind}.jsonl",
                created_at=now,
                expires_at=now + FILE_RETENTION,
            )
            files[kind], handles[kind] = stored, file_path(stored).open("wb")
        encoded = (json.dumps(record, separators=(",", ":"), ensure_ascii=False) + "\n").encode()
        handles[kind].write(encoded)
        files[kind].bytes += len(encoded)
        files[kind].lines += 1

    try:
        lines = (
            ClientBatchLine.objects.filter(batch=batch)
            .select_related("request__model")
            .order_by("line")
            .iterator(chunk_size=2000)
        )
        for line in lines:
            write(*_result_line(line))
        if not batch.in_progress_at and batch.admitted < batch.total:
            for number, custom_id in _input_custom_ids(batch.input_file, after=batch.admitted):
                write("error", _cancelled_line(f"batch_req_{batch.id}_{number}", custom_id))
    finally:
        for handle in handles.values():
            handle.close()
    for stored in files.values():
        stored.save(force_insert=True)
    return files.get("output"), files.get("error")


def _input_custom_ids(stored: StoredFile, *, after: int) -> Iterator[tuple[int, str]]:
    """(line number, custom_id) of the input file's lines past `after` (validated at upload)."""
    for number, raw in jsonl.raw_lines(file_chunks(stored)):
        if number > after:
            yield number, jsonl.parse_line(number, raw).custom_id


CANCELLED_MESSAGE = "The batch was cancelled before this request ran."


def _cancelled_line(line_id: str, custom_id: str, message: str = CANCELLED_MESSAGE) -> dict:
    error = {"code": "batch_cancelled", "message": message}
    return {"id": line_id, "custom_id": custom_id, "response": None, "error": error}


def _result_line(line: ClientBatchLine) -> tuple[str, dict]:
    request = line.request
    ident = {"id": f"batch_req_{request.pk.hex}", "custom_id": line.custom_id}
    if request.status == Request.Status.COMPLETED:
        completion = Completion(
            text=request.output,
            finish_reason=request.finish_reason or "stop",
            usage=TokenUsage(**request.usage),
            model=request.model.model_id,
        )
        body = providers.to_openai_response(
            completion,
            id=f"chatcmpl-{request.pk.hex}",
            created=int(request.completed_at.timestamp()),
            model=request.model.model_id,
        )
        response = {"status_code": 200, "request_id": f"req_{request.pk.hex}", "body": body}
        return "output", {**ident, "response": response, "error": None}
    if request.status == Request.Status.CANCELLED:
        message = request.error or CANCELLED_MESSAGE
        return "error", _cancelled_line(ident["id"], line.custom_id, message)
    error = {"code": "request_failed", "message": request.error or "The request failed."}
    return "error", {**ident, "response": None, "error": error}


def client_batch_cancelling(*, batch: ClientBatch) -> bool:
    """Mark a client's batch cancelling. False if it already ended or was being cancelled."""
    now = timezone.now()
    changed = (
        ClientBatch.objects.filter(pk=batch.pk, cancelling_at__isnull=True)
        .exclude(status__in=ClientBatch.ENDED)
        .update(status=ClientBatch.Status.CANCELLING, cancelling_at=now)
    )
    if changed:
        batch.status, batch.cancelling_at = ClientBatch.Status.CANCELLING, now
    return changed == 1


# --- notify ----------------------------------------------------------------------------

WEBHOOK_TIMEOUT_SECONDS = 10
WEBHOOK_TRIES = 3


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    """What X-Llmops-Signature carries: HMAC-SHA256 over `timestamp.body` (the timestamp,
    also sent, lets a receiver refuse replays)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"sha256={digest.hexdigest()}"


def job_notify(*, job: BatchJob) -> dict[str, str]:
    """POST each workload's signed notice that the job ended (its own requests only: a job is
    one team's, but its workloads may have different receivers). Returns workload → outcome;
    failures are logged, never raised (the ledger and the requests are already final)."""
    outcomes = {}
    requests = Request.objects.filter(batch_items__job=job).select_related("workload")
    by_workload: dict[int, list[Request]] = defaultdict(list)
    for request in requests:
        if request.workload.batch_webhook_url:
            by_workload[request.workload_id].append(request)
    for group in by_workload.values():
        workload = group[0].workload
        body = json.dumps(
            {
                "event": "batch_job.ended",
                "job": {
                    "id": job.pk,
                    "status": job.status,
                    "provider": job.provider.slug,
                    "model": job.model.model_id,
                    "succeeded": job.succeeded_count,
                    "errored": job.errored_count,
                    "unfinished": job.unfinished_count,
                },
                "workload": workload.slug,
                "requests": [{"id": str(r.pk), "status": r.status} for r in group],
            },
            separators=(",", ":"),
        ).encode()
        outcomes[workload.slug] = _deliver(workload, body)
    return outcomes


def _deliver(workload, body: bytes) -> str:
    """POST one notice, at most WEBHOOK_TRIES times. A redirect or a refused target
    (llmops.outbound: private addresses need the operator's allow-list, checked again here
    because DNS and the list may have changed since the URL was saved) fails at once: neither
    changes on a retry, and the signed headers must never go to a second address."""
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "llmops-webhook/1",
        "X-Llmops-Timestamp": timestamp,
        "X-Llmops-Signature": webhook_signature(workload.get_webhook_secret(), timestamp, body),
    }
    error = ""
    for attempt in range(WEBHOOK_TRIES):
        try:
            status = outbound.post(
                workload.batch_webhook_url,
                body=body,
                headers=headers,
                timeout=WEBHOOK_TIMEOUT_SECONDS,
            )
        except (outbound.OutboundRefused, outbound.RedirectRefused) as exc:
            error = str(exc)
            break
        except OSError as exc:
            error = str(exc) or repr(exc)
        else:
            if 200 <= status < 300:
                return f"delivered ({status})"
            error = f"HTTP {status}"
        if attempt + 1 < WEBHOOK_TRIES:
            time.sleep(2**attempt)
    log.warning("batch webhook of %s failed: %s", workload.slug, error)
    return f"failed: {error}"
