"""Cancelled, expired and partly failed batches against the simulator: what completed is kept
and billed once; what did not run is resubmitted or served realtime, per policy."""

from __future__ import annotations

import openai
import pytest
from django.urls import reverse
from django.utils import timezone

from batches import selectors, services
from batches.models import BatchItem, BatchJob
from batches.services import request_cancel
from batches.services.common import MAX_ITEM_ATTEMPTS
from billing.models import Hold, LedgerEntry
from billing.pricing import plain
from routing.models import Mode, Request, RoutingPolicy
from routing.services import request_serve_escalated
from tests.batches.test_lifecycle import run_until_idle

pytestmark = pytest.mark.django_db


def submitted_job(defer, sim, workload: str, n: int) -> BatchJob:
    sim.config(batch_turnaround_s=100)
    defer(workload, n)
    job = services.batches_flush(force=True).jobs[0]
    services.job_advance(job_id=job.pk)
    job.refresh_from_db()
    assert job.status == BatchJob.Status.RUNNING
    return job


def set_policy(workload: str, **fields) -> None:
    RoutingPolicy.objects.filter(workloads__slug=workload).update(**fields)


def serve_escalated() -> list[Request]:
    waiting = Request.objects.filter(status=Request.Status.QUEUED, mode=Mode.REALTIME)
    return [
        request_serve_escalated(request_id=str(pk)) for pk in waiting.values_list("pk", flat=True)
    ]


@pytest.mark.parametrize("workload", ["review-moderation", "ticket-summaries"])
def test_cancelling_a_running_batch_keeps_its_completed_items_and_cancels_the_rest(
    defer, sim, workload, admin_client
):
    job = submitted_job(defer, sim, workload, 10)
    sim.advance(45)  # about 4 of 10 items finish

    assert services.batch_cancel(job=job)
    run_until_idle()

    job.refresh_from_db()
    assert job.status == BatchJob.Status.CANCELLED
    done = BatchItem.objects.filter(job=job, status="succeeded").count()
    assert 0 < done < 10 and job.succeeded_count == done
    assert job.unfinished_count == 10 - done
    # Completed items: billed once, at the batch price.
    assert LedgerEntry.objects.filter(mode="batch").count() == done
    # The rest: cancelled, holds released, never served elsewhere as a side effect.
    rest = BatchItem.objects.filter(job=job).exclude(status="succeeded")
    assert set(rest.values_list("next_step", flat=True)) == {"cancelled"}
    cancelled = Request.objects.filter(batch_items__in=rest)
    assert set(cancelled.values_list("status", flat=True)) == {"cancelled"}
    assert all(
        f"Batch job {job.pk} cancelled (cancelled by a user)" in r.decision_reason
        for r in cancelled
    )
    assert serve_escalated() == []
    assert not LedgerEntry.objects.exclude(mode="batch").exists()
    assert not Hold.objects.filter(status=Hold.Status.HELD).exists()

    # Serving them anyway is an operator's separate, explicit choice, at full price.
    estimate = services.job_unfinished_estimate(job=job)
    assert estimate.requests == 10 - done and estimate.worst_case_usd > 0
    assert len(services.job_serve_unfinished(job=job)) == 10 - done
    served = serve_escalated()
    assert len(served) == 10 - done
    assert all(r.status == Request.Status.COMPLETED and r.mode == "realtime" for r in served)
    assert all("on an operator's word" in r.decision_reason for r in served)
    realtime = LedgerEntry.objects.filter(mode="realtime")
    assert realtime.count() == 10 - done
    assert LedgerEntry.objects.count() == 10  # one entry per request, none twice
    assert not Hold.objects.filter(status=Hold.Status.HELD).exists()
    # The job's cost covers its items wherever they were finally served.
    costs = selectors.job_ledger(job)
    assert costs["elsewhere_cost_usd"] == sum(e.cost_usd for e in realtime)
    assert costs["cost_usd"] == sum(e.cost_usd for e in LedgerEntry.objects.all())
    assert services.job_serve_unfinished(job=job) == []  # once
    # The job list names the part spent after the job, which no sum of the column should
    # count twice.
    listing = admin_client.get(reverse("admin:batches_batchjob_changelist")).content.decode()
    assert f"{plain(costs['elsewhere_cost_usd'])} USD" in listing and "after it" in listing


def test_an_expired_batch_is_recovered_and_unfinished_items_rebatched_when_the_policy_says_so(
    defer, sim
):
    set_policy("review-moderation", on_deadline_risk=RoutingPolicy.Escalation.REBATCH)
    sim.fault(
        provider="openai", kind="batch_expire", after_fraction=0.5, endpoint="batches", count=1
    )
    defer("review-moderation", 6)
    job = services.batches_flush(force=True).jobs[0]

    run_until_idle()

    job.refresh_from_db()
    assert job.status == BatchJob.Status.EXPIRED
    assert job.succeeded_count == 3 and job.unfinished_count == 3
    assert LedgerEntry.objects.count() == 3
    requeued = Request.objects.filter(status=Request.Status.QUEUED, mode="batch")
    assert requeued.count() == 3
    # The resubmission carries only the unfinished items, in a new job.
    second = services.batches_flush(force=True).jobs[0]
    assert second.item_count == 3
    run_until_idle()
    assert Request.objects.filter(status=Request.Status.COMPLETED).count() == 6
    assert LedgerEntry.objects.count() == 6
    assert LedgerEntry.objects.values("request").distinct().count() == 6


def test_failed_items_are_retried_alone_and_fail_their_request_after_the_bound(defer, sim):
    sim.fault(provider="openai", kind="batch_item_error", rate=1.0, endpoint="batches", count=100)
    [request_id] = defer("review-moderation", 1)

    for attempt in range(MAX_ITEM_ATTEMPTS):
        jobs = services.batches_flush(force=True).jobs
        assert len(jobs) == 1, f"attempt {attempt + 1} found nothing to resubmit"
        run_until_idle()

    request = Request.objects.get(pk=request_id)
    assert request.status == Request.Status.FAILED
    assert "failed 3 time" in request.error
    assert BatchItem.objects.filter(request=request, status="errored").count() == 3
    assert not LedgerEntry.objects.exists()
    assert not Hold.objects.filter(status=Hold.Status.HELD).exists()
    assert services.batches_flush(force=True).jobs == []


def test_a_batch_that_would_miss_its_deadline_is_cancelled_and_escalated(defer, sim):
    job = submitted_job(defer, sim, "review-moderation", 4)
    # The deadline is now closer than a batch takes (1 h deadline, 10 min expected).
    Request.objects.update(deadline_at=timezone.now() + timezone.timedelta(minutes=6))
    BatchJob.objects.filter(pk=job.pk).update(
        earliest_deadline_at=timezone.now() + timezone.timedelta(minutes=6)
    )

    run_until_idle()

    job.refresh_from_db()
    assert job.status == BatchJob.Status.CANCELLED
    assert job.cancel_reason == BatchJob.CancelReason.DEADLINE
    served = serve_escalated()
    assert len(served) == 4 and all(r.status == Request.Status.COMPLETED for r in served)
    assert LedgerEntry.objects.count() == 4


def test_a_request_cancelled_inside_a_running_batch_is_not_reopened(defer, sim):
    job = submitted_job(defer, sim, "review-moderation", 2)
    first = Request.objects.filter(batch_items__job=job).order_by("created_at").first()

    assert request_cancel(request=first)
    sim.advance(200)
    run_until_idle()

    first.refresh_from_db()
    assert first.status == Request.Status.CANCELLED
    # The provider still answered (and billed) it: recorded once, flagged.
    entry = LedgerEntry.objects.get(request=first)
    assert "cancelled" in entry.note
    assert Request.objects.filter(status=Request.Status.COMPLETED).count() == 1
    assert not Hold.objects.filter(status=Hold.Status.HELD).exists()


def test_a_job_cancelled_before_submission_sends_nothing_and_cancels_its_tickets(defer, sim):
    # Even where the policy would resubmit what a batch left: a cancel stops spending.
    set_policy("review-moderation", on_deadline_risk=RoutingPolicy.Escalation.REBATCH)
    defer("review-moderation", 2)
    job = services.batches_flush(force=True).jobs[0]

    assert services.batch_cancel(job=job)
    services.job_advance(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == BatchJob.Status.CANCELLED and job.provider_batch_id is None
    assert sim.usage()["totals"]["requests"] == 0
    client = openai.OpenAI(base_url=sim.openai_base_url, api_key="sim", max_retries=0)
    assert client.batches.list().data == [] and client.files.list().data == []
    assert Request.objects.filter(status=Request.Status.CANCELLED).count() == 2
    assert not Hold.objects.filter(status=Hold.Status.HELD).exists()
    assert services.batches_flush(force=True).jobs == []  # nothing went back to the buffer
    assert not services.batch_cancel(job=job)  # already ended


def test_retrying_a_jobs_failed_items_resubmits_only_them_with_a_new_hold(defer, sim, monkeypatch):
    fault = sim.fault(provider="openai", kind="batch_item_error", rate=0.5, seed=7, count=1000)
    with monkeypatch.context() as patch:
        # One try each: the failed items fail their requests at once (ingest reads the bound).
        patch.setattr("batches.services.ingest.MAX_ITEM_ATTEMPTS", 1)
        defer("review-moderation", 8)
        job = services.batches_flush(force=True).jobs[0]
        run_until_idle()
    job.refresh_from_db()
    failed = sorted(
        str(pk) for pk in Request.objects.filter(status="failed").values_list("pk", flat=True)
    )
    assert 0 < len(failed) < 8 and job.errored_count == len(failed)
    sim.delete_fault(fault)

    report = services.job_retry_failed(job=job)

    assert sorted(report.retried) == failed
    assert Hold.objects.filter(status=Hold.Status.HELD).count() == len(report.retried)
    second = services.batches_flush(force=True).jobs[0]
    assert second.item_count == len(report.retried)
    run_until_idle()
    assert Request.objects.filter(status=Request.Status.COMPLETED).count() == 8
    assert LedgerEntry.objects.count() == 8
    assert services.job_retry_failed(job=job).retried == []  # nothing failed any more


def test_a_provider_outage_during_submit_backs_off_and_the_job_recovers(defer, sim):
    defer("review-moderation", 2)
    job = services.batches_flush(force=True).jobs[0]
    sim.fault(provider="openai", endpoint="files", status=503, count=1)

    services.job_advance(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == BatchJob.Status.SUBMITTING
    assert job.attempts == 1 and "503" in job.last_error
    assert job.next_check_at > timezone.now()
    run_until_idle()
    job.refresh_from_db()
    assert job.status == BatchJob.Status.COMPLETED and job.succeeded_count == 2
