"""A batch worker killed with SIGKILL at each step of the lifecycle, then restarted: nothing
lost, nothing billed twice, one provider batch per job, no orphan left at the provider.

The worker is `manage.py advance_batches` (what the django-q2 tasks run, inline) in its own
process against the live server's database; LLMOPS_BATCH_CRASH_AT makes it SIGKILL itself at
the named point (batches.services.crash_point)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys

import openai
import pytest

from tests.live.conftest import ROOT, Llmops

CRASH_POINTS = [
    "after_claim",
    "after_upload",
    "after_file_saved",
    "after_create",
    "after_batch_saved",
    "after_poll",
    "mid_ingest",
    "after_ingest",
]
ANTHROPIC_CRASH_POINTS = ["after_claim", "after_create", "after_batch_saved", "mid_ingest"]
ITEMS = 5


@pytest.fixture(autouse=True)
def _instant_simulator(simulator_server):
    # The session's simulator is shared: start from its instant timings, whatever an earlier
    # test configured.
    simulator_server.reset()


def worker(llmops: Llmops, *args: str, crash_at: str = "") -> subprocess.CompletedProcess:
    env = {**llmops.env, "LLMOPS_BATCH_CRASH_AT": crash_at, "LLMOPS_BATCH_INGEST_CHUNK": "2"}
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def restart_and_report(llmops: Llmops, ids: list[str]) -> dict:
    """A new worker process: time passes, it runs the machinery until idle (and the
    reconciler), then reports what the database holds for `ids`."""
    code = f"""
import io, json
from django.core.management import call_command
from django.utils import timezone
from batches.models import BatchJob
from billing.models import Hold, LedgerEntry
from routing.models import Request
# Time, not a fault: the dead worker's lease lapses after a few minutes and the next poll
# falls due; both move to now instead of the test waiting.
BatchJob.objects.update(lease_until=None, next_check_at=timezone.now())
call_command("advance_batches", "--until-idle", "60", "--reconcile", stdout=io.StringIO())
ids = {ids!r}
entries = LedgerEntry.objects.filter(request_id__in=ids)
print(json.dumps({{
    "statuses": sorted(Request.objects.filter(pk__in=ids).values_list("status", flat=True)),
    "entries": entries.count(),
    "billed_requests": entries.values("request").distinct().count(),
    "modes": sorted(set(entries.values_list("mode", flat=True))),
    "held": Hold.objects.filter(request_id__in=ids, status="held").count(),
    "jobs": {{str(j.pk): j.provider_batch_id for j in BatchJob.objects.filter(
        items__request_id__in=ids).distinct()}},
}}))
"""
    return json.loads(llmops.shell(code))


def defer(llmops: Llmops, workload: str, tag: str) -> list[str]:
    ids = []
    for i in range(ITEMS):
        status, body = llmops.api(
            "POST",
            "/api/v1/requests",
            {
                "workload": workload,
                "messages": [{"role": "user", "content": f"{tag} {i}"}],
                "max_tokens": 20,
            },
        )
        assert status == 202, body
        ids.append(body["id"])
    return ids


def crash_and_recover(llmops: Llmops, workload: str, point: str) -> dict:
    ids = defer(llmops, workload, point)
    crashed = worker(llmops, "advance_batches", "--flush", "--until-idle", "30", crash_at=point)
    assert crashed.returncode == -signal.SIGKILL, (point, crashed.stdout, crashed.stderr)
    result = restart_and_report(llmops, ids)
    assert result["statuses"] == ["completed"] * ITEMS, (point, result)
    assert result["entries"] == result["billed_requests"] == ITEMS, (point, result)
    assert result["modes"] == ["batch"]
    assert result["held"] == 0
    assert len(result["jobs"]) == 1 and all(result["jobs"].values()), result
    return result


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_openai_batch_survives_a_worker_killed_at(llmops, simulator_server, point):
    result = crash_and_recover(llmops, "review-moderation", point)

    [(job_id, batch_id)] = result["jobs"].items()
    sim = openai.OpenAI(base_url=simulator_server.openai_base_url, api_key="sim", max_retries=0)
    mine = [b for b in sim.batches.list(limit=100) if b.metadata.get("llmops_job") == job_id]
    assert [b.id for b in mine] == [batch_id]  # one provider batch for the job
    files = [
        f for f in sim.files.list(purpose="batch") if f.filename == f"llmops-job-{job_id}.jsonl"
    ]
    assert len(files) == 1  # and one input file: a duplicate upload was deleted or never made


@pytest.mark.parametrize("point", ANTHROPIC_CRASH_POINTS)
def test_anthropic_batch_survives_a_worker_killed_at(llmops, simulator_server, point):
    before = {b.id for b in _anthropic(simulator_server).messages.batches.list(limit=1000)}

    result = crash_and_recover(llmops, "ticket-summaries", point)

    after = _anthropic(simulator_server).messages.batches.list(limit=1000)
    created = [b for b in after if b.id not in before]
    [batch_id] = result["jobs"].values()
    live = [b.id for b in created if b.processing_status != "canceling" and b.id != batch_id]
    assert [b.id for b in created if b.id == batch_id] == [batch_id]
    assert live == [] or all(b.request_counts.canceled for b in created if b.id in live), (
        "a duplicate provider batch was left running"
    )


def _anthropic(sim):
    import anthropic

    return anthropic.Anthropic(base_url=sim.anthropic_base_url, api_key="sim", max_retries=0)


# Azure runs OpenAI's batch protocol (a file uploaded with an expiry, a batch with metadata):
# every crash point of it. Gemini's small jobs go inline (no file): no upload to crash after.
GEMINI_CRASH_POINTS = [p for p in CRASH_POINTS if p not in ("after_upload", "after_file_saved")]


@pytest.mark.parametrize("point", CRASH_POINTS)
def test_azure_batch_survives_a_worker_killed_at(llmops, simulator_server, point):
    result = crash_and_recover(llmops, "listing-translations", point)

    [(job_id, batch_id)] = result["jobs"].items()
    azure = openai.OpenAI(
        base_url=simulator_server.azure_base_url,
        api_key="unused",
        default_headers={"api-key": "sim"},
        max_retries=0,
    )
    mine = [b for b in azure.batches.list(limit=100) if b.metadata.get("llmops_job") == job_id]
    assert [b.id for b in mine] == [batch_id]  # one provider batch for the job
    files = [
        f for f in azure.files.list(purpose="batch") if f.filename == f"llmops-job-{job_id}.jsonl"
    ]
    assert len(files) == 1


@pytest.mark.parametrize("point", GEMINI_CRASH_POINTS)
def test_gemini_batch_survives_a_worker_killed_at(llmops, simulator_server, point):
    from google import genai

    result = crash_and_recover(llmops, "log-summaries", point)

    [(job_id, batch_id)] = result["jobs"].items()
    gemini = genai.Client(
        api_key="sim", http_options={"base_url": simulator_server.gemini_base_url}
    )
    mine = [
        b.name
        for b in gemini.batches.list(config={"page_size": 100})
        if (b.display_name or "").startswith(f"llmops-job-{job_id}-")
    ]
    assert mine == [batch_id]  # one provider batch for the job
