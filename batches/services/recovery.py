"""Cancellation and recovery: cancelling a provider batch or one deferred request, serving now
what a batch left unfinished, retrying failed items, and recovering a job a worker left."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Concat
from django.utils import timezone

from batches.models import BatchItem, BatchJob
from batches.services.common import MAX_ITEM_ATTEMPTS, RETRY_HOLD_TTL, enqueue, job_items
from billing.models import Hold
from billing.pricing import PricingError, request_output_bound, request_prompt_bound
from billing.services import (
    BudgetExceeded,
    hold_release,
    request_hold,
    reservation_amount,
)
from routing.events import request_changed, request_touch
from routing.models import Mode, Request


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
            prompt_tokens=request_prompt_bound(request.params),
            max_output_tokens=request_output_bound(request.params),
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
                mode=Mode.REALTIME,
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
        job_items(job)
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
                ).update(status=Request.Status.QUEUED, mode=Mode.BATCH, error="")
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


def request_cancel(*, request: Request) -> bool:
    """Cancel a request still waiting for a batch: in the buffer (its hold is released now),
    or inside a provider batch, which cannot drop one request: if it answers anyway, that
    answer is billed, as the provider bills it, against the hold, which therefore stays until
    the batch has ended (so a hard budget is never passed); the request stays cancelled.
    False if it already finished (a running realtime call ends with its client)."""
    now = timezone.now()
    cancelled = {"status": Request.Status.CANCELLED, "completed_at": now, "updated_at": now}
    rows = Request.objects.filter(pk=request.pk)
    with transaction.atomic():
        # Two conditional UPDATEs, not a read then a write: a flush moving the request into a
        # job meanwhile must not get its hold released.
        if rows.filter(status__in=[Request.Status.RECEIVED, Request.Status.QUEUED]).update(
            **cancelled
        ):
            for hold in Hold.objects.filter(request=request, status=Hold.Status.HELD):
                hold_release(hold=hold)
        elif not rows.filter(status=Request.Status.RUNNING, mode=Mode.BATCH).update(**cancelled):
            return False
        request.status, request.completed_at, request.updated_at = (
            Request.Status.CANCELLED,
            now,
            now,
        )
        request_changed(request)
    return True
