"""A client's own batch (/v1/batches): created at once, admitted by a worker in chunks, and
cancelled the way OpenAI cancels: what the provider finished is kept, billed once against its
hold and returned; the rest ends cancelled; a hard budget is never passed."""

from __future__ import annotations

import io
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.test import override_settings

from batches import services
from batches.models import BatchItem, BatchJob, ClientBatch, StoredFile
from batches.services import client_batches
from billing.models import Budget, BudgetPeriod, Hold, LedgerEntry
from billing.selectors import ledger_drift, unheld_charges
from routing.models import Request
from tests.batches.test_lifecycle import run_until_idle

pytestmark = pytest.mark.django_db

WORKLOAD = "review-moderation"  # gpt-4o-mini on the simulator's OpenAI


def jsonl(n: int, *, model: str = "gpt-4o-mini", max_tokens: int = 20, prefix="row") -> bytes:
    return b"".join(
        json.dumps(
            {
                "custom_id": f"{prefix}-{i}",
                "method": "POST",
                "url": "/v1/chat/completions",
                "body": {
                    "model": model,
                    "messages": [{"role": "user", "content": f"summarise review {i}"}],
                    "max_tokens": max_tokens,
                },
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


def create(api, data: bytes, workload: str = WORKLOAD) -> dict:
    response = upload_and_create(api, data, workload)
    assert response.status_code == 200, response.content
    return response.json()


def admit(batch_id: str) -> int:
    """Run admission slices as the worker would until it says it is done; returns how many."""
    slices = 0
    while True:
        step = client_batches.client_batch_admit(batch_id=batch_id)
        slices += 1
        if not step.more:
            return slices
        assert slices < 100


def retrieve(api, batch_id: str) -> dict:
    response = api.get(f"/v1/batches/{batch_id}")
    assert response.status_code == 200, response.content
    return response.json()


def content(api, file_id: str) -> list[dict]:
    response = api.get(f"/v1/files/{file_id}/content")
    assert response.status_code == 200
    return [json.loads(x) for x in b"".join(response.streaming_content).splitlines()]


def team_budget() -> Budget:
    return Budget.objects.get(team__slug="acme", workload=None)


def no_open_holds_and_no_drift() -> None:
    assert not Hold.objects.filter(status=Hold.Status.HELD).exists()
    assert ledger_drift() == []
    assert unheld_charges() == []


@pytest.fixture(autouse=True)
def _no_pause(settings):
    settings.LLMOPS_BATCH_WRITE_PAUSE_MS = 0


@override_settings(LLMOPS_BATCH_ADMIT_CHUNK=3)
def test_create_answers_validating_and_a_worker_admits_the_lines_chunk_by_chunk(api, sim):
    created = create(api, jsonl(10))

    assert created["status"] == "validating"
    assert created["request_counts"] == {"total": 10, "completed": 0, "failed": 0}
    assert not Request.objects.exists()  # nothing admitted inside the create call

    admit(created["id"])

    batch = ClientBatch.objects.get()
    assert batch.status == "in_progress" and batch.admitted == 10
    [job] = BatchJob.objects.all()
    assert job.status == "pending" and job.item_count == 10 and job.client_batch == batch
    assert Request.objects.filter(status="running", mode="batch").count() == 10
    # One reservation for the file, carved into a hold per line: what the budget holds is
    # exactly the lines' holds, and the file's own hold was given back empty.
    file_hold = Hold.objects.get(key=f"clientbatch:{batch.pk}")
    assert file_hold.status == Hold.Status.RELEASED and file_hold.amount_usd == 0
    lines = Hold.objects.filter(status=Hold.Status.HELD)
    assert lines.count() == 10
    assert sum(h.amount_usd for h in lines) == batch.reservation_usd > 0
    period = BudgetPeriod.objects.get(budget=team_budget())
    assert period.reserved_usd == batch.reservation_usd
    assert ledger_drift() == []

    run_until_idle()
    done = retrieve(api, created["id"])
    assert done["status"] == "completed"
    assert done["request_counts"] == {"total": 10, "completed": 10, "failed": 0}
    output = content(api, done["output_file_id"])
    assert [x["custom_id"] for x in output] == [f"row-{i}" for i in range(10)]
    assert LedgerEntry.objects.filter(mode="batch").count() == 10
    job.refresh_from_db()
    assert job.submitted_at <= job.ended_at <= job.ingest_started_at <= job.finished_at
    no_open_holds_and_no_drift()


@override_settings(LLMOPS_BATCH_ADMIT_CHUNK=2)
def test_admission_in_many_slices_resumes_where_the_last_one_stopped(api, sim, monkeypatch):
    monkeypatch.setattr(client_batches, "SLICE_SECONDS", 0)  # one chunk per slice
    monkeypatch.setattr(client_batches, "CHECK_EVERY", 2)
    created = create(api, jsonl(7))

    slices = admit(created["id"])

    assert slices >= 4
    batch = ClientBatch.objects.get()
    assert batch.status == "in_progress" and batch.admitted == 7
    assert BatchItem.objects.count() == Request.objects.count() == 7
    assert sorted(batch.lines.values_list("line", flat=True)) == list(range(1, 8))


def test_a_line_that_cannot_be_served_fails_the_batch_naming_its_line(api, sim):
    # The T6 fuzz found a refusal that did not say which of the file's lines asked for it.
    data = jsonl(1, model="claude-sonnet-4-6") + jsonl(
        1, model="claude-sonnet-4-6", max_tokens=70_000, prefix="b"
    )
    created = create(api, data, workload="product-descriptions")
    assert created["status"] == "validating"

    admit(created["id"])

    failed = retrieve(api, created["id"])
    assert failed["status"] == "failed" and failed["failed_at"] is not None
    [error] = failed["errors"]["data"]
    assert error["line"] == 2 and error["param"] == "body.max_tokens"
    assert error["message"].startswith("line 2: body.max_tokens: 70000 is above")
    assert failed["request_counts"]["total"] == 0
    assert not Request.objects.exists() and not Hold.objects.exists()


def test_a_budget_that_cannot_cover_the_whole_file_fails_it_and_reserves_nothing(api, sim):
    budget = team_budget()
    budget.limit_usd, budget.hard = Decimal("0.0001"), True
    budget.save()

    created = create(api, jsonl(50, max_tokens=2000))
    admit(created["id"])

    failed = retrieve(api, created["id"])
    assert failed["status"] == "failed"
    [error] = failed["errors"]["data"]
    assert error["code"] == "budget_exceeded" and "50 request(s)" in error["message"]
    assert not Request.objects.exists() and not Hold.objects.exists()
    assert ledger_drift() == []


@override_settings(LLMOPS_BATCH_ADMIT_CHUNK=2)
def test_a_cancel_during_admission_gives_every_hold_back_and_cancels_every_line(
    api, sim, monkeypatch
):
    monkeypatch.setattr(client_batches, "SLICE_SECONDS", 0)
    created = create(api, jsonl(8))
    client_batches.client_batch_admit(batch_id=created["id"])  # validation
    client_batches.client_batch_admit(batch_id=created["id"])  # a first chunk
    batch = ClientBatch.objects.get()
    assert 0 < batch.admitted < 8
    assert BatchJob.objects.get().status == "building"

    response = api.post(f"/v1/batches/{created['id']}/cancel")

    assert response.status_code == 200 and response.json()["status"] == "cancelling"
    admit(created["id"])
    cancelled = retrieve(api, created["id"])
    assert cancelled["status"] == "cancelled"
    assert cancelled["request_counts"] == {"total": 8, "completed": 0, "failed": 8}
    errors = content(api, cancelled["error_file_id"])
    assert [x["custom_id"] for x in errors] == [f"row-{i}" for i in range(8)]
    assert {x["error"]["code"] for x in errors} == {"batch_cancelled"}
    assert BatchJob.objects.get().status == "cancelled"
    assert set(Request.objects.values_list("status", flat=True)) == {"cancelled"}
    assert sim.usage()["totals"]["requests"] == 0  # nothing reached the provider
    no_open_holds_and_no_drift()


def provider_billed_requests(sim) -> int:
    usage = sim.usage()
    return sum(
        modes.get("batch", {}).get("requests", 0)
        for provider, models in usage.items()
        if provider != "totals"
        for modes in models.values()
    )


def test_cancelling_a_running_batch_keeps_and_bills_what_the_provider_finished(api, sim):
    sim.config(batch_turnaround_s=100, batch_cancel_s=5)
    created = create(api, jsonl(20))
    admit(created["id"])
    run_until_idle_or_waiting()
    assert BatchJob.objects.get().status == "running"
    sim.advance(40)  # the provider answers some lines meanwhile

    response = api.post(f"/v1/batches/{created['id']}/cancel")

    assert response.json()["status"] == "cancelling"
    job = BatchJob.objects.get()
    assert job.cancel_requested_at is not None and job.cancel_reason == "client"
    run_until_idle_or_waiting()  # the cancel reaches the provider at once
    job.refresh_from_db()
    assert job.cancel_sent_at is not None
    # Every line's hold is kept while the provider may still answer.
    assert Hold.objects.filter(status=Hold.Status.HELD).count() == 20
    assert retrieve(api, created["id"])["status"] == "cancelling"
    sim.advance(10)  # the provider confirms
    run_until_idle()

    batch = retrieve(api, created["id"])
    assert batch["status"] == "cancelled"
    billed = provider_billed_requests(sim)
    assert 0 < billed < 20
    output = content(api, batch["output_file_id"])
    errors = content(api, batch["error_file_id"])
    charges = LedgerEntry.objects.filter(kind="charge", mode="batch")
    # Lines the provider billed = ledger charges = answered lines in the output file.
    assert billed == charges.count() == len(output) == batch["request_counts"]["completed"]
    assert len(errors) == batch["request_counts"]["failed"] == 20 - billed
    assert {x["error"]["code"] for x in errors} == {"batch_cancelled"}
    assert {x["custom_id"] for x in output} | {x["custom_id"] for x in errors} == {
        f"row-{i}" for i in range(20)
    }
    assert not LedgerEntry.objects.exclude(mode="batch").exists()  # nothing served realtime
    job.refresh_from_db()
    assert job.status == "cancelled" and job.unfinished_count == 20 - billed
    no_open_holds_and_no_drift()


def test_a_cancel_after_the_provider_finished_leaves_a_completed_batch(api, sim):
    sim.config(batch_turnaround_s=10)
    created = create(api, jsonl(5))
    admit(created["id"])
    run_until_idle_or_waiting()
    sim.advance(60)  # the provider has every answer; llmops has not polled yet

    api.post(f"/v1/batches/{created['id']}/cancel")
    run_until_idle()

    batch = retrieve(api, created["id"])
    assert batch["status"] == "completed"
    assert batch["request_counts"] == {"total": 5, "completed": 5, "failed": 0}
    assert len(content(api, batch["output_file_id"])) == 5 == provider_billed_requests(sim)
    assert batch["error_file_id"] is None
    no_open_holds_and_no_drift()


def test_a_hard_budget_is_never_passed_by_batches_cancelled_while_the_provider_runs(api, sim):
    # Found by a hostile tenant: the cancel released each line's hold while the provider still
    # answered, so five cancelled batches spent 1.85x a hard budget.
    sim.config(batch_turnaround_s=100, batch_cancel_s=5)
    budget = team_budget()
    probe = create(api, jsonl(25))
    admit(probe["id"])
    one_file = ClientBatch.objects.get(pk=probe["id"]).reservation_usd
    api.post(f"/v1/batches/{probe['id']}/cancel")
    run_until_idle()
    budget.limit_usd, budget.hard = one_file * Decimal("1.2"), True  # room for one file
    budget.save(update_fields=["limit_usd", "hard"])
    period = BudgetPeriod.objects.get(budget=budget)
    BudgetPeriod.objects.filter(pk=period.pk).update(limit_usd=budget.limit_usd)

    outcomes = []
    for n in range(5):
        created = create(api, jsonl(25, prefix=f"f{n}"))
        admit(created["id"])
        outcomes.append(retrieve(api, created["id"])["status"])
        run_until_idle_or_waiting()
        api.post(f"/v1/batches/{created['id']}/cancel")
        sim.advance(60)  # the provider answers on until the cancel reaches it
        run_until_idle_or_waiting()
        period.refresh_from_db()
        assert period.spent_usd + period.reserved_usd <= period.limit_usd
    sim.advance(60)
    run_until_idle()

    period.refresh_from_db()
    assert period.spent_usd <= period.limit_usd
    assert "failed" in outcomes  # the holds kept for late answers refused a file
    no_open_holds_and_no_drift()


def run_until_idle_or_waiting(limit: int = 5) -> None:
    """Run every job step that is due now (without waiting for a provider to finish)."""
    for _ in range(limit):
        due = BatchJob.objects.exclude(status__in=(*BatchJob.TERMINAL, BatchJob.Status.BUILDING))
        for job in due:
            services.job_advance(job_id=job.pk)


def test_a_failed_validation_is_reported_in_the_sdk_shape_by_the_worker_command(api, sim):
    data = jsonl(1) + jsonl(1, prefix="x").replace(b'"max_tokens": 20', b'"max_tokens": "many"')
    created = create(api, data)

    call_command("advance_batches", "--until-idle", "5", stdout=io.StringIO())

    failed = retrieve(api, created["id"])
    assert failed["status"] == "failed"
    assert failed["errors"]["data"][0]["line"] == 2
    assert StoredFile.objects.filter(purpose="batch").count() == 1


def test_a_stalled_admission_is_picked_up_again_by_the_tick(api, sim, monkeypatch):
    created = create(api, jsonl(3))
    enqueued = []
    monkeypatch.setattr("batches.tasks.enqueue", lambda func, *args: enqueued.append((func, *args)))
    from batches import tasks

    tasks.tick()

    assert ("batches.tasks.admit_client_batch", created["id"]) in enqueued


def test_a_cancel_reaches_lines_a_retry_put_back_in_the_shared_buffer(api, sim):
    sim.fault(provider="openai", kind="batch_item_error", rate=1.0, endpoint="batches", count=1)
    created = create(api, jsonl(3))
    admit(created["id"])
    run_until_idle()
    # The provider refused every line once: they wait in the shared buffer for a retry.
    assert Request.objects.filter(status="queued", mode="batch").count() == 3
    assert retrieve(api, created["id"])["status"] == "in_progress"

    api.post(f"/v1/batches/{created['id']}/cancel")

    batch = retrieve(api, created["id"])
    assert batch["status"] == "cancelled"
    assert batch["request_counts"] == {"total": 3, "completed": 0, "failed": 3}
    assert set(Request.objects.values_list("status", flat=True)) == {"cancelled"}
    assert services.batches_flush(force=True).jobs == []
    no_open_holds_and_no_drift()


def test_a_validation_resumed_after_a_crash_remembers_the_problems_found_before_it(
    api, sim, monkeypatch
):
    monkeypatch.setattr(client_batches, "CHECK_EVERY", 2)
    bad = jsonl(1, prefix="bad").replace(b'"max_tokens": 20', b'"max_tokens": -1')
    created = create(api, bad + jsonl(6))
    lines = client_batches._lines

    def dies_after_the_first_checkpoint(stored, *, after):
        for line in lines(stored, after=after):
            if line.number == 4:
                raise RuntimeError("worker killed")
            yield line

    monkeypatch.setattr(client_batches, "_lines", dies_after_the_first_checkpoint)
    with pytest.raises(RuntimeError, match="worker killed"):
        client_batches.client_batch_admit(batch_id=created["id"])
    assert ClientBatch.objects.get().validated == 2  # the checkpoint before the crash
    monkeypatch.setattr(client_batches, "_lines", lines)

    admit(created["id"])

    failed = retrieve(api, created["id"])
    assert failed["status"] == "failed"
    assert [e["line"] for e in failed["errors"]["data"]] == [1]
    assert not Request.objects.exists() and not Hold.objects.exists()


def test_the_step_that_sends_a_cancel_waits_for_a_quick_provider_and_ends_the_job(
    api, sim, settings
):
    # The scheduler's tick comes once a minute: a provider that confirms within seconds ends
    # the job in the step that sent the cancel, not a minute later.
    settings.LLMOPS_BATCH_CANCEL_WAIT_SECONDS = 10
    sim.config(batch_turnaround_s=100, batch_cancel_s=2)  # two seconds, on the real clock
    created = create(api, jsonl(5))
    admit(created["id"])
    run_until_idle_or_waiting()
    api.post(f"/v1/batches/{created['id']}/cancel")
    job = BatchJob.objects.get()

    services.job_advance(job_id=job.pk)

    job.refresh_from_db()
    assert job.status == "cancelled" and job.cancel_sent_at is not None
    assert job.finished_at - job.cancel_sent_at < timedelta(seconds=10)
    assert retrieve(api, created["id"])["status"] == "cancelled"
    no_open_holds_and_no_drift()


def upload_and_create(api, data: bytes, workload: str = WORKLOAD):
    """The batch create's response for a file of `data` (its upload must succeed)."""
    upload = api.post(
        "/v1/files",
        {"purpose": "batch", "file": SimpleUploadedFile("in.jsonl", data)},
        format="multipart",
    )
    assert upload.status_code == 200, upload.content
    return api.post(
        "/v1/batches",
        {
            "input_file_id": upload.json()["id"],
            "endpoint": "/v1/chat/completions",
            "completion_window": "24h",
        },
        format="json",
        HTTP_X_WORKLOAD=workload,
    )


@pytest.mark.parametrize(
    "model, expected",
    [
        ("gpt-4o-mini", "gpt-4o-mini"),  # the policy's primary: the chain's first that batches
        ("auto", "gpt-4o-mini"),  # an alias of the policy
        ("claude-haiku-4-5", "claude-haiku-4-5"),  # another model of the chain: that one
    ],
)
def test_a_batch_is_answered_by_the_model_its_lines_name(api, sim, model, expected):
    created = create(api, jsonl(2, model=model))
    assert ClientBatch.objects.get(pk=created["id"]).model.model_id == expected
    admit(created["id"])
    assert {r.model.model_id for r in Request.objects.all()} == {expected}


def test_a_batch_naming_an_unknown_model_is_refused_at_creation(api, sim):
    response = upload_and_create(api, jsonl(1, model="gpt-99-nonexistent"))
    assert response.status_code == 404, response.content
    error = response.json()["error"]
    assert error["code"] == "model_not_found" and "gpt-99-nonexistent" in error["message"]
    assert not ClientBatch.objects.exists()


def test_a_batch_naming_a_model_outside_the_policy_is_refused_naming_the_allowed_ones(api, sim):
    response = upload_and_create(api, jsonl(1, model="claude-opus-4-1"))
    assert response.status_code == 400, response.content
    error = response.json()["error"]
    assert error["code"] == "model_not_allowed"
    assert "gpt-4o-mini" in error["message"] and "claude-haiku-4-5" in error["message"]
    assert not ClientBatch.objects.exists()
