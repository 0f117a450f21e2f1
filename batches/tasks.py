"""django-q2 entry points for batch jobs: thin, by name, ids only.

`tick` runs every minute (a Schedule): it flushes due buffers and enqueues a step for every
job that has one due, so a task lost with a dead worker (the Redis broker keeps no receipts)
is simply enqueued again on the next tick. `reconcile` runs every ten minutes.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from django.utils import timezone

from batches import selectors, services
from batches.models import BatchJob, ClientBatch
from batches.services import enqueue
from routing.models import Mode, Request

log = logging.getLogger(__name__)

# An escalated request nobody served within this long lost its task: enqueue it again.
ESCALATION_STALE = timedelta(minutes=2)


def tick() -> dict:
    now = timezone.now()
    report = services.flush_then_enqueue(now=now)
    flushed = {job.pk for job in report.jobs}
    due = [
        job_id
        for job_id in selectors.jobs_due(now=now).values_list("pk", flat=True)
        if job_id not in flushed
    ]
    for job_id in due:
        enqueue("batches.tasks.advance", job_id)
    stale = Request.objects.filter(
        status=Request.Status.QUEUED,
        mode=Mode.REALTIME,
        updated_at__lt=now - ESCALATION_STALE,
    ).values_list("pk", flat=True)
    for request_id in stale:
        enqueue("routing.tasks.serve_escalated", str(request_id))
    # A client's batch whose admission task was lost (the Redis broker keeps no receipts).
    admitting = list(selectors.client_batches_admitting(now=now).values_list("pk", flat=True))
    for batch_id in admitting:
        enqueue("batches.tasks.admit_client_batch", batch_id)
    return {"flushed_jobs": len(report.jobs), "due_jobs": len(due), "admitting": len(admitting)}


def advance(job_id: int) -> str:
    result = services.job_advance(job_id=job_id)
    for request_id in result.escalated:
        enqueue("routing.tasks.serve_escalated", request_id)
    if result.ran and result.status == "ingesting":
        enqueue("batches.tasks.advance", job_id)  # a long ingest goes on in the next slice
    return result.status


def reconcile() -> dict:
    return services.batches_reconcile().as_dict()


def notify(job_id: int) -> dict:
    return services.job_notify(
        job=BatchJob.objects.select_related("provider", "model").get(pk=job_id)
    )


def client_batch_refresh(batch_id: str) -> str:
    """A job of a client's batch ended: write its files and end it if it is whole now."""
    batch = ClientBatch.objects.select_related("team", "input_file").get(pk=batch_id)
    return services.client_batch_refresh(batch=batch).status


def admit_client_batch(batch_id: str) -> str:
    """The next slice of a client's batch admission (OpenAI-compatible /v1/batches); enqueues
    the following one while there is more."""
    step = services.client_batch_admit(batch_id=batch_id)
    if step.more:
        enqueue("batches.tasks.admit_client_batch", batch_id)
    return step.status or "busy"
