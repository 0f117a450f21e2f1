"""A finished provider batch's results: each line billed once against its request's hold (the
ledger entry's key makes a repeat a no-op), requests completed, failed or sent to a new batch,
and the job ended once every item has an outcome."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache, partial

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from batches.models import BatchItem, BatchJob
from batches.selectors import expected_turnaround, item_counts
from batches.services.buffer import requests_escalate
from batches.services.common import (
    INGEST_SLICE_SECONDS,
    MAX_ITEM_ATTEMPTS,
    WriteGaps,
    crash_point,
    enqueue,
    job_items,
    job_save,
)
from batches.services.rules import batch_can_make
from billing import ledger_bulk
from billing.models import Hold
from billing.pricing import PricingError, Usage
from billing.services import hold_release, holds_release
from llmops import memory, rows
from routing import conversations, providers
from routing.events import request_changed, request_touch, requests_changed
from routing.models import LlmModel, Mode, Request, RoutingPolicy, Team, Workload
from routing.providers import (
    BatchInfo,
    BatchOutcome,
)
from routing.response_cache import response_cache_put

log = logging.getLogger(__name__)


def job_ingest(job: BatchJob, *, now: datetime, deadline: float | None = None) -> list[str]:
    """Record every result the provider has for the job, then decide for each item that did
    not succeed. Idempotent: an item already recorded is skipped, and the ledger's key is the
    item's custom_id. Long ingests yield after a slice of time and continue next step."""
    if job.ingest_started_at is None:
        job_save(job, ingest_started_at=now)
    pending = _items_pending(job)
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
        outcomes = api.batch_results(endpoint, info=info)
        with (
            rows.bulk_page_cache(),
            rows.checkpoints_aside(),
            memory.collector_on_new_objects_only(),
        ):
            read_all = _outcomes_record(job, outcomes, pending, now=now, deadline=deadline)
        if not read_all:
            job_save(job, next_check_at=timezone.now())
            return []  # the next step goes on where this one stopped
    crash_point("after_ingest")
    return job_finish(job, now=now)


def _outcomes_record(
    job: BatchJob, outcomes, pending: dict[str, tuple[int, object]], *, now, deadline: float
) -> bool:
    """Record the outcomes of pending items a chunk per transaction, until the deadline:
    whether every one was read."""
    chunk: list[BatchOutcome] = []
    unknown = 0
    gaps = WriteGaps()
    for outcome in outcomes:
        if outcome.custom_id not in pending:
            if not outcome.custom_id.startswith(job.custom_id_prefix):
                unknown += 1  # not ours, or malformed: quarantined by not being recorded
            continue
        chunk.append(outcome)
        # Items per transaction: one commit per item would make 50,000 results 50,000 fsyncs.
        if len(chunk) >= settings.LLMOPS_BATCH_INGEST_CHUNK:
            _record_outcomes(job, chunk, pending, now=now, gaps=gaps)
            chunk = []
            crash_point("mid_ingest")
            if time.monotonic() > deadline:
                return False
    if chunk:
        _record_outcomes(job, chunk, pending, now=now, gaps=gaps)
    if unknown:
        log.error("batch job %s: %d result lines with unknown custom_ids", job.pk, unknown)
        job_save(job, last_error=f"{unknown} result lines with unknown custom_ids ignored")
    return True


def _items_pending(job: BatchJob) -> dict[str, tuple[int, object]]:
    """The job's items still waiting for a result: (the item's id, its request's) by
    custom_id."""
    # Without the ORM's compiler per row (a 50,000-line job's items: a thirtieth of its ingest).
    found = rows.values_in(
        BatchItem, ("request", "custom_id"), "job", [job.pk], status=BatchItem.Status.PENDING
    )
    return {custom_id: (pk, request_id) for pk, request_id, custom_id in found}


@dataclass(slots=True)
class _Item:
    """A pending item, as recording its line needs it."""

    pk: int
    custom_id: str
    request: Request

    @property
    def request_id(self):
        return self.request.pk


@dataclass
class _Line:
    """A result line for a pending item, read: what the item becomes, and the usage to bill."""

    item: _Item
    outcome: BatchOutcome
    status: str
    error: str
    usage: Usage | None


def _line(item: _Item, outcome: BatchOutcome) -> _Line:
    status, error = outcome.outcome, outcome.error
    usage = None
    if status == "succeeded":
        usage = outcome.completion.usage
        if type(usage) is not Usage:  # a Usage checked its counts when it was made
            try:
                usage = Usage(**usage.__dict__)
            except (PricingError, TypeError) as exc:
                status, error, usage = "invalid", f"unusable usage: {exc}", None
    return _Line(item=item, outcome=outcome, status=status, error=error, usage=usage)


def _record_outcomes(
    job: BatchJob,
    outcomes: list[BatchOutcome],
    pending: dict[str, tuple[int, object]],
    *,
    now: datetime,
    gaps: WriteGaps,
) -> None:
    """One transaction for the chunk, a few statements for all its lines (not a few per line):
    the items that were still pending end, the ledger bills those that answered, settling
    their holds, and their requests complete."""
    # A custom_id twice in the chunk: its first line counts (recorded one at a time, the
    # repeat found its item no longer pending).
    firsts: dict[str, BatchOutcome] = {}
    for outcome in outcomes:
        firsts.setdefault(outcome.custom_id, outcome)
    items = _items_read({custom_id: pending[custom_id] for custom_id in firsts})
    holds = {
        hold.request_id: hold
        for hold in rows.select_in(
            Hold,
            HOLD_FIELDS,
            "request",
            [i.request_id for i in items.values()],
            status=Hold.Status.HELD,
        )
    }
    lines = [_line(items[custom_id], outcome) for custom_id, outcome in firsts.items()]
    billed = [line for line in lines if line.usage is not None]
    # What the statements write is worked out before the transaction: on SQLite its write
    # lock, which every tenant's writes wait for, is held from its BEGIN to its COMMIT.
    charges = ledger_bulk.charges_price(
        [_charge(line, holds.get(line.item.request_id)) for line in billed],
        model=job.model,
        mode=Mode.BATCH,
    )
    # Cancelled by its client while the batch ran: billed, not reopened.
    completed = _requests_completed(
        job,
        [line for line in billed if line.item.request.status == Request.Status.RUNNING],
        now=now,
    )
    with gaps.kept(), transaction.atomic():
        # Each item changes once: a second ingest of the same line finds it no longer pending
        # and records nothing for it.
        ended = _items_end(lines, now=now)
        lines = [line for line in lines if line.item.pk in ended]
        for line in lines:
            if line.status == BatchItem.Status.INVALID:
                log.error(
                    "batch job %s item %s quarantined: %s", job.pk, line.item.custom_id, line.error
                )
        ledger_bulk.charges_write(charges, keys={_charge_key(line) for line in lines})
        _requests_complete(completed, ended)
    for outcome in outcomes:
        pending.pop(outcome.custom_id, None)


# What billing a line reads of its hold (ledger_bulk.charges_record).
HOLD_FIELDS = ("id", "team_id", "workload_id", "request_id", "amount_usd", "status")


# What recording a line reads of its request (the rest of a row is read at a cost per row
# and not needed: what completing it writes is set first, see COMPLETED_FIELDS).
REQUEST_FIELDS = (
    "team",
    "workload",
    "source",
    "params",
    "status",
    "prompt_fingerprint",  # the response cache's key
    "created_at",  # a Responses answer's
    "model",  # left out of the UPDATE when it is the job's already (see _requests_completed)
)


def _items_read(pending: dict[str, tuple[int, object]]) -> dict[str, _Item]:
    """The pending items by custom_id, each with its request, and the request's team and
    workload (with its policy): the few teams and workloads of a chunk read once, not once per
    item."""
    requests = {
        request.pk: request
        for request in rows.select_in(
            Request, REQUEST_FIELDS, "id", [request_id for _, request_id in pending.values()]
        )
    }
    teams = Team.objects.order_by().in_bulk({r.team_id for r in requests.values()})
    workloads = (
        Workload.objects.order_by()
        .select_related("policy")
        .in_bulk({r.workload_id for r in requests.values()})
    )
    # Their ids are the rows' already: only the related objects are set (as assigning them
    # would, without the descriptor's checks: three per result, a twentieth of an ingest).
    team_field, workload_field = Request.team.field, Request.workload.field
    for request in requests.values():
        team_field.set_cached_value(request, teams[request.team_id])
        workload_field.set_cached_value(request, workloads[request.workload_id])
    return {
        custom_id: _Item(pk, custom_id, requests[request_id])
        for custom_id, (pk, request_id) in pending.items()
    }


def _items_end(lines: list[_Line], *, now: datetime) -> set[int]:
    """Give the still-pending items of `lines` their status, error and end: one UPDATE per
    status. The ids of those that changed."""
    by_status: dict[str, list[_Line]] = {}
    for line in lines:
        by_status.setdefault(line.status, []).append(line)
    prep = partial(_prep, BatchItem)
    ended_at = prep("ended_at", now)
    changed: set[int] = set()
    with connection.cursor() as cursor:
        for status, group in sorted(by_status.items()):
            for start in range(0, len(group), _PER_STATEMENT):
                part = group[start : start + _PER_STATEMENT]
                errors = {line.error[:500] for line in part}
                # Lines of one status mostly share their error (none for answers); else a CASE.
                case = len(errors) > 1
                params = [prep("status", status)]
                if case:
                    for line in part:
                        params += [line.item.pk, prep("error", line.error[:500])]
                else:
                    params.append(prep("error", errors.pop()))
                params += [ended_at, *(line.item.pk for line in part)]
                params.append(prep("status", BatchItem.Status.PENDING))
                cursor.execute(_items_end_sql(connection.vendor, len(part), case), params)
                changed.update(pk for (pk,) in cursor.fetchall())
    return changed


# Items per statement (up to 3 parameters each): well inside SQLite's 32,766 host parameters.
_PER_STATEMENT = 5_000


def _prep(model, name: str, value):
    """`value` for `model`'s column `name`, as the ORM sends it."""
    return model._meta.get_field(name).get_db_prep_save(value, connection)


@lru_cache(maxsize=16)
def _items_end_sql(vendor: str, items: int, case: bool) -> str:
    quote = connection.ops.quote_name
    marks = ", ".join(["%s"] * items)
    error = f"CASE {quote('id')} {'WHEN %s THEN %s ' * items}END" if case else "%s"
    # Identifiers from the model's metadata; every value is a parameter.
    return (
        f"UPDATE {quote(BatchItem._meta.db_table)} SET {quote('status')} = %s, "  # noqa: S608
        f"{quote('error')} = {error}, {quote('ended_at')} = %s "
        f"WHERE {quote('id')} IN ({marks}) AND {quote('status')} = %s RETURNING {quote('id')}"
    )


def _charge_key(line: _Line) -> str:
    """The line's ledger entry's idempotency key: a result billed once, however often read."""
    return f"batch:{line.item.custom_id}"


def _charge(line: _Line, hold: Hold | None) -> ledger_bulk.Charge:
    """What the line bills: as hold_settle(hold=hold, ...) with a hold, as ledger_record_usage
    against its request when its hold expired (a batch far past its deadline: the provider
    still billed it)."""
    request = line.item.request
    # A request cancelled while the provider had it: the provider still billed its answer,
    # and so do we, against the hold kept for exactly this.
    note = (
        "answered after its request was cancelled"
        if request.status == Request.Status.CANCELLED
        else ""
    )
    key = _charge_key(line)
    if hold is None:
        return ledger_bulk.Charge(
            key=key,
            team=request.team,
            workload=request.workload,
            request_id=request.pk,
            usage=line.usage,
            note=note,
        )
    # The hold's team and workload (its request's, read already, but for a rare hold that
    # names others).
    return ledger_bulk.Charge(
        key=key,
        team=request.team if hold.team_id == request.team_id else hold.team,
        workload=request.workload if hold.workload_id == request.workload_id else hold.workload,
        request_id=hold.request_id,
        usage=line.usage,
        hold=hold,
        note=note,
    )


# What completing a request from its batch answer writes.
COMPLETED_FIELDS = (
    "model",
    "mode",
    "output",
    "finish_reason",
    "answer",
    "usage",
    "status",
    "completed_at",
    "first_token_at",
    "updated_at",
)


@dataclass
class _Completed:
    """The items whose requests a chunk answered, each request's row's new values prepared
    (in the same order)."""

    items: list[_Item]
    fields: tuple[str, ...]  # the columns written, in the order of each row's params
    params: list[list]


def _requests_completed(job: BatchJob, lines: list[_Line], *, now: datetime) -> _Completed:
    """The answered requests as they complete, each with its row's new values: what
    _requests_complete writes of them."""
    # One status change for the chunk, as its one transaction: one time, prepared once.
    touched = timezone.now()
    # A column named in an UPDATE moves the row's entry in each index on it, changed or not
    # (SQLite does not compare): the model, indexed, is mostly the job's already (chosen when
    # the request was deferred), and is then left out.
    fields = COMPLETED_FIELDS
    if all(line.item.request.model_id == job.model_id for line in lines):
        fields = tuple(name for name in COMPLETED_FIELDS if name != "model")
    model, model_field = job.model, Request.model.field
    for line in lines:
        request, completion = line.item.request, line.outcome.completion
        request.model_id = model.pk  # and the object, as `request.model = model` sets both
        model_field.set_cached_value(request, model)
        request.mode = Mode.BATCH
        request.output = completion.text
        request.finish_reason = completion.finish_reason
        request.answer = conversations.recorded_answer(request, completion)
        request.usage = line.usage.as_dict()
        request.status = Request.Status.COMPLETED
        request.completed_at = request.first_token_at = now
        request.updated_at = touched
    items = [line.item for line in lines]
    return _Completed(
        items=items, fields=fields, params=rows.update_params([i.request for i in items], fields)
    )


def _requests_complete(completed: _Completed, ended: set[int]) -> None:
    """The requests of the items that ended now completed: their rows written in one
    statement, then each told to its subscribers, kept for a Responses client, and put in the
    response cache, as one realtime answer is."""
    requests, params = [], []
    for item, values in zip(completed.items, completed.params, strict=True):
        if item.pk in ended:
            requests.append(item.request)
            params.append(values)
    if not requests:
        return
    rows.update_rows(Request, completed.fields, params)
    requests_changed(requests)
    for request in requests:
        if request.params.get("kind") == "responses":
            conversations.response_store(request)
        policy = request.workload.policy
        if policy.cache_enabled and request.source != Request.Source.BATCH_API:
            # A deferred answer serves later repeats too, once it is committed. Not a client's
            # own batch file: tens of thousands of writes to the cache for answers its client
            # asked for in bulk.
            transaction.on_commit(
                partial(response_cache_put, policy=policy, params=request.params, request=request)
            )


def job_finish(job: BatchJob, *, now: datetime) -> list[str]:
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
        job_items(job)
        .exclude(status=BatchItem.Status.SUCCEEDED)
        .filter(next_step="")
        .select_related("request__workload__policy")
    )
    escalate = []
    gaps = WriteGaps()
    while chunk := list(leftovers[:FINISH_CHUNK]):
        with gaps.kept(), transaction.atomic():
            if job.cancel_reason in BatchJob.STOPPED:
                _items_stop(job, chunk, now=now)
            else:
                escalate.extend(_items_decide(job, chunk, now=now))
    with gaps.kept(), transaction.atomic():
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
        job_save(
            job,
            status=status,
            # When the last result was recorded, not when this step began: a long ingest's
            # last slice starts well before it ends.
            finished_at=max(now, timezone.now()),
            succeeded_count=succeeded,
            errored_count=errored,
            unfinished_count=unfinished,
        )
        # The few workloads with a webhook first: most have none, and then the job's 50,000
        # items need not be joined to their requests to find out.
        hooked = list(Workload.objects.exclude(batch_webhook_url="").values_list("pk", flat=True))
        if hooked and Request.objects.filter(batch_items__job=job, workload__in=hooked).exists():
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
        requests_escalate(escalate, now=now, why=reason)
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
