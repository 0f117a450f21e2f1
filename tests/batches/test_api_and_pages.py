"""The batch job API, admin and pages: scoped to the caller's teams, bad input is a 400."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from batches import selectors, services
from batches.models import BatchItem, BatchJob
from billing.models import LedgerEntry
from billing.pricing import plain
from routing.keys import api_key_create
from routing.models import Request, Team, Workload
from tests.batches.test_lifecycle import run_until_idle

pytestmark = pytest.mark.django_db


@pytest.fixture
def job(defer, sim) -> BatchJob:
    sim.config(batch_turnaround_s=100)
    defer("review-moderation", 3)
    job = services.batches_flush(force=True).jobs[0]
    services.job_advance(job_id=job.pk)
    job.refresh_from_db()
    return job


@pytest.fixture
def globex_api(demo, client_for):
    _, raw = api_key_create(team=Team.objects.get(slug="globex"), name="globex")
    return client_for(raw)


def member_of(slug: str) -> Client:
    user = User.objects.create_user(f"member-{slug}", password="pw-123456789")
    Team.objects.get(slug=slug).members.add(user)
    client = Client()
    client.force_login(user)
    return client


def test_jobs_are_listed_with_counts_and_progress(api, job):
    response = api.get("/api/v1/batches")

    assert response.status_code == 200
    [row] = response.json()["results"]
    assert row["id"] == job.pk and row["status"] == "running"
    assert row["counts"]["total"] == 3 and row["model"] == "gpt-4o-mini"
    assert 0 <= row["progress"] <= 1
    assert api.get("/api/v1/batches?status=completed").json()["count"] == 0


def test_bad_filters_are_a_400_naming_the_field(api, job):
    response = api.get("/api/v1/batches?status=finished")

    assert response.status_code == 400
    assert "status" in response.json()
    assert api.get(f"/api/v1/batches/{job.pk}/items?status=nope").status_code == 400


def test_another_teams_job_is_invisible(globex_api, job):
    assert globex_api.get("/api/v1/batches").json()["count"] == 0
    assert globex_api.get(f"/api/v1/batches/{job.pk}").status_code == 404
    assert globex_api.get(f"/api/v1/batches/{job.pk}/items").status_code == 404
    assert globex_api.post(f"/api/v1/batches/{job.pk}/cancel").status_code == 404
    job.refresh_from_db()
    assert job.cancel_requested_at is None


def test_cancel_through_the_api_is_202_then_409(api, job, sim):
    response = api.post(f"/api/v1/batches/{job.pk}/cancel")

    assert response.status_code == 202
    assert response.json()["cancel_reason"] == "user"
    assert api.post(f"/api/v1/batches/{job.pk}/cancel").status_code == 409
    sim.advance(50)
    run_until_idle()
    detail = api.get(f"/api/v1/batches/{job.pk}").json()
    assert detail["status"] == "cancelled"
    assert detail["counts"]["succeeded"] + detail["counts"]["unfinished"] == 3
    billed = sum(e.cost_usd for e in LedgerEntry.objects.filter(mode="batch"))
    assert billed > 0 and Decimal(detail["cost"]["cost_usd"]) == billed
    items = api.get(f"/api/v1/batches/{job.pk}/items").json()
    assert items["count"] == 3
    assert {i["status"] for i in items["results"]} <= {"succeeded", "cancelled"}


def test_the_job_page_shows_progress_to_members_of_its_team_only(job):
    page = member_of("acme").get(reverse("batch-job", args=[job.pk]))

    assert page.status_code == 200
    html = page.content.decode()
    assert 'role="progressbar"' in html and job.provider_batch_id in html
    assert html.count("llmops-") >= 3  # its items' custom_ids
    assert member_of("globex").get(reverse("batch-job", args=[job.pk])).status_code == 404
    listing = Client()
    listing.force_login(User.objects.get(username="member-acme"))
    assert f"#{job.pk}" in listing.get(reverse("batch-jobs")).content.decode()


def test_admin_lists_jobs_with_turnaround_and_cancels_by_action(admin_client, job):
    listing = admin_client.get(reverse("admin:batches_batchjob_changelist"))
    assert listing.status_code == 200
    assert "Batch turnaround" in listing.content.decode()
    assert (
        admin_client.get(reverse("admin:batches_batchjob_change", args=[job.pk])).status_code == 200
    )

    response = admin_client.post(
        reverse("admin:batches_batchjob_changelist"),
        {"action": "cancel", "_selected_action": [job.pk]},
        follow=True,
    )

    assert "Cancelling 1 job(s)" in response.content.decode()
    job.refresh_from_db()
    assert job.cancel_requested_at is not None


def test_admin_flushes_a_workloads_buffer_now(admin_client, defer):
    defer("ticket-summaries", 2)
    workload = Workload.objects.get(slug="ticket-summaries")

    response = admin_client.post(
        reverse("admin:routing_workload_changelist"),
        {"action": "flush_batches", "_selected_action": [workload.pk]},
        follow=True,
    )

    assert "Flushed 2 request(s) into 1 batch job(s)" in response.content.decode()
    assert BatchJob.objects.get().item_count == 2
    assert set(Request.objects.values_list("status", flat=True)) == {"running"}


def test_a_jobs_cost_is_the_sum_of_its_batch_charges_in_the_list_and_the_detail(
    admin_client, job, sim
):
    sim.advance(200)
    run_until_idle()
    billed = sum(e.cost_usd for e in LedgerEntry.objects.filter(mode="batch"))
    assert billed > 0

    [listed] = selectors.with_cost(BatchJob.objects.filter(pk=job.pk))

    assert listed.cost_usd == billed == selectors.job_ledger(job)["cost_usd"]
    page = admin_client.get(reverse("admin:batches_batchjob_changelist")).content.decode()
    assert f"{plain(billed)} USD" in page  # the exact amount, on hover


def test_serving_a_cancelled_jobs_requests_is_an_explicit_admin_choice_priced_first(
    admin_client, job, sim
):
    assert services.batch_cancel(job=job)
    run_until_idle()
    job.refresh_from_db()
    assert job.status == "cancelled" and job.unfinished_count == 3
    url = reverse("admin:batches_batchjob_changelist")
    expected = services.job_unfinished_estimate(job=job)

    asked = admin_client.post(url, {"action": "serve_unfinished", "_selected_action": [job.pk]})

    # A confirmation page first, with what it would cost at full price; nothing served yet.
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Serve unfinished requests now, at full price?" in page
    assert expected.requests == 3 and plain(expected.worst_case_usd) in page
    assert set(Request.objects.values_list("status", flat=True)) == {"cancelled"}

    served = admin_client.post(
        url,
        {"action": "serve_unfinished", "_selected_action": [job.pk], "confirm": "yes"},
        follow=True,
    )

    assert "Serving 3 request(s) realtime now, at full price." in served.content.decode()
    requests = Request.objects.all()
    assert {(r.status, r.mode) for r in requests} == {("queued", "realtime")}
    assert all("on an operator's word" in r.decision_reason for r in requests)
    assert set(BatchItem.objects.values_list("next_step", flat=True)) == {"escalated"}


def test_serve_unfinished_refuses_jobs_that_were_not_cancelled(admin_client, job):
    response = admin_client.post(
        reverse("admin:batches_batchjob_changelist"),
        {"action": "serve_unfinished", "_selected_action": [job.pk]},
        follow=True,
    )

    assert "None of the selected jobs is a cancelled job" in response.content.decode()
    assert set(Request.objects.values_list("status", flat=True)) == {"running"}
