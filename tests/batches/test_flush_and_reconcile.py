"""The buffer's flush rules (size, age, deadline, lanes, provider limits), the django-q2 tick,
and the reconciler's cleanup of what crashed workers leave at the provider."""

from __future__ import annotations

import io
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import openai
import pytest
from django.utils import timezone
from django_q.conf import Conf

from batches import services, tasks
from batches.models import BatchJob
from routing.models import Provider, Request, RoutingPolicy, Workload
from tests.batches.test_lifecycle import run_until_idle

pytestmark = pytest.mark.django_db


def test_nothing_is_flushed_before_size_age_or_deadline_says_so(defer):
    defer("review-moderation", 3)

    assert services.batches_flush().jobs == []
    assert Request.objects.filter(status="queued").count() == 3


def test_the_oldest_request_reaching_the_policys_wait_flushes_its_group(defer):
    defer("review-moderation", 3)
    later = timezone.now() + timedelta(seconds=301)  # deferrable-economy waits 300 s

    [job] = services.batches_flush(now=later).jobs

    assert job.reason == BatchJob.Reason.AGE and job.item_count == 3


def test_an_earlier_deadline_flushes_before_the_wait(defer):
    RoutingPolicy.objects.filter(workloads__slug="review-moderation").update(
        max_batch_wait_seconds=2400
    )
    defer("review-moderation", 2)
    # Deadlines 30 min away (the workload's was shortened since), 10 min expected turnaround,
    # 5 min margin, 2 min slack for the tick: they leave by 13 min, long before the 40 min wait.
    Request.objects.update(deadline_at=timezone.now() + timedelta(minutes=30))

    assert services.batches_flush(now=timezone.now() + timedelta(minutes=12)).jobs == []
    [job] = services.batches_flush(now=timezone.now() + timedelta(minutes=14)).jobs

    assert job.reason == BatchJob.Reason.DEADLINE


def test_a_request_no_batch_can_serve_in_time_is_escalated_not_batched(defer):
    [request_id] = defer("review-moderation", 1)

    report = services.batches_flush(now=timezone.now() + timedelta(minutes=56))

    assert report.jobs == [] and report.escalated == [request_id]
    request = Request.objects.get(pk=request_id)
    assert request.status == "queued" and request.mode == "realtime"


def test_groups_split_at_the_providers_limit_and_by_lane(defer):
    Provider.objects.filter(slug="sim-openai").update(batch_max_requests=2)
    defer("review-moderation", 5)  # near-realtime lane, gpt-4o-mini
    defer("ticket-summaries", 2)  # scheduled lane, claude-sonnet-4-6 (Anthropic)

    jobs = services.batches_flush(force=True).jobs

    near = sorted(j.item_count for j in jobs if j.lane == "near_realtime")
    assert near == [1, 2, 2]
    assert [j.item_count for j in jobs if j.lane == "scheduled"] == [2]


def test_the_size_rule_flushes_only_full_batches(defer):
    Provider.objects.filter(slug="sim-openai").update(batch_max_requests=2)
    defer("review-moderation", 5)

    jobs = services.batches_flush().jobs

    assert sorted(j.item_count for j in jobs) == [2, 2]
    assert {j.reason for j in jobs} == {"size"}
    assert Request.objects.filter(status="queued").count() == 1


def test_the_tick_flushes_submits_and_finishes_through_the_task_queue(
    defer, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 runs enqueued tasks inline
    ids = defer("review-moderation", 2)
    Request.objects.update(created_at=timezone.now() - timedelta(minutes=6))

    with django_capture_on_commit_callbacks(execute=True):
        tasks.tick()

    assert set(Request.objects.filter(pk__in=ids).values_list("status", flat=True)) == {"completed"}
    assert BatchJob.objects.get().status == "completed"


def test_the_reconciler_cancels_a_provider_batch_no_job_owns_and_deletes_stray_files(defer, sim):
    defer("review-moderation", 1)
    job = services.batches_flush(force=True).jobs[0]
    services.job_advance(job_id=job.pk)
    job.refresh_from_db()
    provider = openai.OpenAI(base_url=sim.openai_base_url, api_key="sim", max_retries=0)
    sim.config(batch_turnaround_s=1000)
    # What a worker that died twice would leave: a second file and batch for the same job.
    stray = provider.files.create(
        file=(
            f"llmops-job-{job.pk}.jsonl",
            io.BytesIO(provider.files.content(job.input_file_id).content),
        ),
        purpose="batch",
    )
    duplicate = provider.batches.create(
        input_file_id=stray.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"llmops_job": str(job.pk)},
    )
    someone_elses = provider.batches.create(
        input_file_id=stray.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    report = services.batches_reconcile()

    assert report.cancelled == [duplicate.id]
    assert report.deleted_files == [stray.id]
    assert provider.batches.retrieve(duplicate.id).status in ("cancelling", "cancelled")
    assert provider.batches.retrieve(someone_elses.id).status not in ("cancelling", "cancelled")
    assert services.batches_reconcile().cancelled == []  # nothing left to do


def test_a_workload_webhook_gets_a_signed_notice_when_its_job_ends(defer):
    received = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            received.append((dict(self.headers), body))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        workload = Workload.objects.get(slug="review-moderation")
        workload.batch_webhook_url = f"http://127.0.0.1:{server.server_port}/hook"
        workload.set_webhook_secret("s3cret-signing-key")
        workload.save()
        ids = defer("review-moderation", 2)
        job = services.batches_flush(force=True).jobs[0]
        run_until_idle()
        job.refresh_from_db()

        outcome = services.job_notify(job=job)
    finally:
        server.shutdown()

    assert outcome == {"review-moderation": "delivered (204)"}
    [(headers, body)] = received
    expected = services.webhook_signature("s3cret-signing-key", headers["X-Llmops-Timestamp"], body)
    assert headers["X-Llmops-Signature"] == expected
    notice = json.loads(body)
    assert notice["job"]["id"] == job.pk and notice["job"]["status"] == "completed"
    assert sorted(r["id"] for r in notice["requests"]) == sorted(ids)
    assert services.webhook_signature("wrong", headers["X-Llmops-Timestamp"], body) != expected
