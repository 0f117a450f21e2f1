"""Deferred requests through the whole batch lifecycle against the simulator over HTTP:
flush → upload/create → poll → ingest, billed at the batch price."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.utils import timezone

from batches import services
from batches.models import BatchItem, BatchJob
from billing.models import Hold, LedgerEntry
from billing.pricing import Usage, price_usage
from billing.selectors import price_in_force
from routing.models import Request

pytestmark = pytest.mark.django_db


def run_until_idle(limit: int = 20) -> None:
    for _ in range(limit):
        due = [j.pk for j in BatchJob.objects.exclude(status__in=BatchJob.TERMINAL)]
        if not due:
            return
        for job_id in due:
            BatchJob.objects.filter(pk=job_id).update(next_check_at=timezone.now())
            services.job_advance(job_id=job_id)
    raise AssertionError("jobs did not finish")


@pytest.mark.parametrize(
    ("workload", "provider_kind"),
    [("review-moderation", "openai"), ("ticket-summaries", "anthropic")],
)
def test_scheduled_requests_become_one_batch_and_resolve_at_the_batch_price(
    defer, workload, provider_kind
):
    ids = defer(workload, 5)

    report = services.batches_flush(force=True)

    assert len(report.jobs) == 1
    job = report.jobs[0]
    assert job.item_count == 5 and job.provider.kind == provider_kind
    run_until_idle()
    job.refresh_from_db()
    assert job.status == BatchJob.Status.COMPLETED
    assert job.succeeded_count == 5 and job.provider_batch_id
    for request in Request.objects.filter(pk__in=ids):
        assert request.status == Request.Status.COMPLETED and request.output
        entry = LedgerEntry.objects.get(request=request)
        assert entry.mode == "batch"
        usage = Usage(**request.usage)
        batch = price_usage(usage, price_in_force(job.model, "batch", entry.occurred_at)).total
        standard = price_usage(
            usage, price_in_force(job.model, "standard", entry.occurred_at)
        ).total
        assert entry.cost_usd == batch
        assert entry.cost_usd * 2 == standard or abs(entry.cost_usd * 2 - standard) <= Decimal(
            "1e-12"
        )
    assert not Hold.objects.filter(request_id__in=ids, status=Hold.Status.HELD).exists()
    assert set(BatchItem.objects.values_list("status", flat=True)) == {"succeeded"}


def test_ingesting_twice_bills_once(defer):
    defer("review-moderation", 3)
    job = services.batches_flush(force=True).jobs[0]
    run_until_idle()
    before = LedgerEntry.objects.count()

    assert services.job_recover(job=job)
    run_until_idle()

    assert LedgerEntry.objects.count() == before == 3


def test_observed_turnaround_replaces_the_providers_promise_in_routing(api, demo):
    from datetime import timedelta

    from django.core.cache import cache

    from batches.selectors import expected_turnaround, turnaround
    from routing.models import LlmModel, Team

    model = LlmModel.objects.get(model_id="gpt-4o-mini")
    now = timezone.now()
    for hours in (1, 2, 2, 3, 4):  # five slow batches: p50 2 h, p90 4 h
        BatchJob.objects.create(
            team=Team.objects.get(slug="acme"),
            provider=model.provider,
            model=model,
            lane="near_realtime",
            reason="manual",
            status=BatchJob.Status.COMPLETED,
            submitted_at=now - timedelta(hours=hours),
            ended_at=now,
        )
    cache.clear()
    stats = turnaround(model=model)
    assert (stats.p50, stats.p90, stats.observed) == (
        timedelta(hours=2),
        timedelta(hours=4),
        5,
    )
    assert expected_turnaround(model=model) == timedelta(hours=4)

    # review-moderation has a 1 h deadline: a 4 h gpt-4o-mini batch cannot make it, so the
    # request is deferred to the chain's other model, whose batches still promise 10 min.
    response = api.post(
        "/api/v1/requests",
        {"workload": "review-moderation", "messages": [{"role": "user", "content": "x"}]},
        format="json",
    )

    assert response.status_code == 202
    assert response.json()["mode"] == "batch"
    assert response.json()["model"] == "claude-haiku-4-5"
