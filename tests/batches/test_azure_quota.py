"""Azure refuses a Global Batch whose tokens would overflow the deployment's enqueued-token
quota (the batch fails at once with token_limit_exceeded: nothing ran, nothing is billed).
The job is submitted again after a backoff; when waiting would make it miss its deadline it
ends instead, and its requests are served before the deadline. Against the simulator over
HTTP; the live test runs the retried job to completion with a worker cluster."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from batches import services
from batches.models import BatchJob
from batches.services.rules import QUOTA_FIRST
from billing.models import Hold, LedgerEntry
from routing.models import Request
from routing.services import request_serve_escalated
from tests.batches.test_lifecycle import run_until_idle

pytestmark = pytest.mark.django_db

WORKLOAD = "listing-translations"  # gpt-4.1-mini on Azure's Global Batch


def refused(defer, sim, *, deadline: timedelta | None = None) -> BatchJob:
    """A job of three deferred requests whose first provider batch Azure refused; `deadline`:
    their deadline moved to that far from now before the submit."""
    sim.fault(provider="azure", endpoint="batches", code="token_limit_exceeded", count=1)
    defer(WORKLOAD, 3)
    [job] = services.batches_flush(force=True).jobs
    assert job.provider.kind == "azure_openai"
    if deadline is not None:
        soon = timezone.now() + deadline
        Request.objects.update(deadline_at=soon)
        BatchJob.objects.filter(pk=job.pk).update(earliest_deadline_at=soon)
    services.job_advance(job_id=job.pk)  # upload, create, and the first look: refused
    job.refresh_from_db()
    return job


def test_a_refused_batch_waits_then_goes_again_and_completes(defer, sim):
    before = timezone.now()
    job = refused(defer, sim)

    assert job.status == BatchJob.Status.SUBMITTING and job.quota_refusals == 1
    assert job.provider_batch_id is None and "enqueued tokens" in job.last_error
    assert job.next_check_at >= before + QUOTA_FIRST
    assert set(Request.objects.values_list("status", flat=True)) == {Request.Status.RUNNING}
    assert not LedgerEntry.objects.exists()

    run_until_idle()  # the wait moved to now

    job.refresh_from_db()
    assert job.status == BatchJob.Status.COMPLETED and job.succeeded_count == 3
    assert job.provider_batch_id and job.quota_refusals == 1
    assert list(LedgerEntry.objects.values_list("mode", flat=True)) == ["batch"] * 3
    assert sim.usage()["azure"]["gpt-4.1-mini"]["batch"]["requests"] == 3  # billed once


def test_a_refused_batch_that_cannot_wait_ends_and_its_requests_are_served_now(defer, sim):
    # Due in 20 seconds: the quota's first wait alone (30 s) would miss it, so the job ends at
    # the refusal and its requests escalate to realtime.
    job = refused(defer, sim, deadline=timedelta(seconds=20))
    run_until_idle()
    waiting = Request.objects.filter(status=Request.Status.QUEUED, mode="realtime")
    assert waiting.count() == 3  # escalated: a worker serves each (as the task would)
    for request_id in waiting.values_list("pk", flat=True):
        request_serve_escalated(request_id=str(request_id))

    job.refresh_from_db()
    assert job.status in BatchJob.TERMINAL and job.quota_refusals == 0
    assert job.cancel_reason == BatchJob.CancelReason.DEADLINE
    assert "too late to wait" in job.last_error
    assert set(Request.objects.values_list("status", flat=True)) == {Request.Status.COMPLETED}
    assert list(LedgerEntry.objects.values_list("mode", flat=True)) == ["realtime"] * 3
    assert not Hold.objects.filter(status=Hold.Status.HELD).exists()
    assert "batch" not in sim.usage()["azure"]["gpt-4.1-mini"]  # the refused batch billed nothing
