"""Azure's Global Batch takes at most 100,000 requests in a file (uploaded with an expiry, as
llmops always uploads it), every line on one deployment. A client's /v1/batches file of
100,001 lines is accepted and split into two provider jobs on the same deployment, at Azure's
own default limit (no override). Admitting 100,001 requests takes minutes, so the split is
checked on the admission's job builder with the batch's own lines in memory; the live tests
run Azure jobs through admission, the simulator and ingest to completion."""

from __future__ import annotations

import json

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from batches.models import ClientBatch, StoredFile
from batches.services.files import ClientBatchJobs, file_chunks
from routing.models import Provider, Request
from tests.batches.test_client_batches import create, jsonl

pytestmark = pytest.mark.django_db

AZURE_LIMIT = 100_000


def test_an_azure_file_over_100000_lines_becomes_two_jobs_on_one_deployment(api, sim):
    azure = Provider.objects.get(slug="sim-azure")
    assert azure.batch_limits[0] == AZURE_LIMIT and not azure.batch_max_requests

    created = create(
        api, jsonl(AZURE_LIMIT + 1, model="gpt-4.1-mini", max_tokens=8), "listing-translations"
    )

    assert created["status"] == "validating"
    assert created["request_counts"]["total"] == AZURE_LIMIT + 1
    batch = ClientBatch.objects.select_related("model__provider").get(pk=created["id"])
    assert (batch.model.provider, batch.model.deployment) == (azure, "llmops-gpt-41-mini")
    stored = StoredFile.objects.get(pk=created["input_file_id"])
    lines = b"".join(file_chunks(stored)).splitlines()
    requests = [
        Request(params={"messages": json.loads(line)["body"]["messages"]}) for line in lines
    ]

    items = ClientBatchJobs(batch).prepare(requests, now=batch.created_at)

    jobs = list({id(item.job): item.job for item in items}.values())
    assert [job.item_count for job in jobs] == [AZURE_LIMIT, 1]
    assert {(job.provider, job.model) for job in jobs} == {(azure, batch.model)}
    assert [item.request for item in items] == requests  # every line, in order, once


def test_a_file_is_refused_over_the_configured_line_limit(api, settings):
    settings.LLMOPS_BATCH_FILE_MAX_LINES = 3
    upload = api.post(
        "/v1/files",
        {"purpose": "batch", "file": SimpleUploadedFile("in.jsonl", jsonl(4))},
        format="multipart",
    )
    assert upload.status_code == 400
    assert upload.json()["error"]["message"] == (
        "the file has 4 lines; a batch file takes at most 3"
    )
    assert not StoredFile.objects.exists()
