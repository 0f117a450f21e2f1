"""Embeddings through the native API: a realtime workload answers now; a deferrable one gets a
ticket, goes to a provider batch of /v1/embeddings lines and is billed at the batch price."""

from __future__ import annotations

import json
import math
from decimal import Decimal

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from batches import services
from batches.models import BatchJob
from batches.services import client_batches
from billing.models import Hold, LedgerEntry
from routing.models import Request
from tests.batches.test_lifecycle import run_until_idle

pytestmark = pytest.mark.django_db

SMALL_PER_MTOK = Decimal("0.02")  # text-embedding-3-small, standard; batch is half


def embed(api, workload: str, texts: list[str], **fields):
    return api.post(
        "/api/v1/embeddings", {"workload": workload, "input": texts, **fields}, format="json"
    )


def unit(vector) -> bool:
    return math.isclose(sum(x * x for x in vector), 1, rel_tol=1e-4)


def test_a_realtime_workload_answers_now_with_the_vectors(api, sim):
    response = embed(api, "query-embeddings", ["tent", "stove"], dimensions=64)

    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["kind"], body["status"], body["mode"]) == ("embeddings", "completed", "realtime")
    assert [len(v) for v in body["embeddings"]] == [64, 64]
    assert all(unit(v) for v in body["embeddings"])
    [charge] = LedgerEntry.objects.filter(request_id=body["id"])
    assert charge.output_tokens == 0
    assert charge.cost_usd == SMALL_PER_MTOK * charge.input_tokens / 10**6


def test_a_deferrable_workload_batches_the_inputs_at_half_price(api, sim):
    tickets = [embed(api, "catalog-embeddings", [f"product {i}", f"sku {i}"]) for i in range(3)]
    assert [t.status_code for t in tickets] == [202] * 3, tickets[0].content
    assert all(t.json()["kind"] == "embeddings" for t in tickets)

    [job] = services.batches_flush(force=True).jobs
    run_until_idle()

    assert job.model.model_id == "text-embedding-3-small"
    for ticket in tickets:
        request = Request.objects.get(pk=ticket.json()["id"])
        assert (request.status, request.mode) == ("completed", "batch")
        shown = api.get(f"/api/v1/requests/{request.pk}").json()
        assert len(shown["embeddings"]) == 2 and all(unit(v) for v in shown["embeddings"])
        [charge] = LedgerEntry.objects.filter(request=request)
        assert charge.cost_usd == SMALL_PER_MTOK / 2 * charge.input_tokens / 10**6
    job.refresh_from_db()
    assert job.status == BatchJob.Status.COMPLETED and job.succeeded_count == 3
    assert not Hold.objects.filter(status=Hold.Status.HELD).exists()


def test_a_chat_workload_is_not_an_embeddings_one(api, sim):
    response = embed(api, "product-search", ["tent"])
    assert response.status_code == 400
    assert response.json()["code"] == "wrong_model_kind"


def embeddings_file(n: int, *, model: str = "text-embedding-3-small") -> bytes:
    return b"".join(
        json.dumps(
            {
                "custom_id": f"e-{i}",
                "method": "POST",
                "url": "/v1/embeddings",
                "body": {"model": model, "input": [f"product {i}", f"colour {i}"]},
            }
        ).encode()
        + b"\n"
        for i in range(n)
    )


def upload(api, data: bytes) -> str:
    response = api.post(
        "/v1/files",
        {"purpose": "batch", "file": SimpleUploadedFile("in.jsonl", data)},
        format="multipart",
    )
    assert response.status_code == 200, response.content
    return response.json()["id"]


def create(api, file_id: str, endpoint: str = "/v1/embeddings"):
    return api.post(
        "/v1/batches",
        {"input_file_id": file_id, "endpoint": endpoint, "completion_window": "24h"},
        format="json",
        HTTP_X_WORKLOAD="catalog-embeddings",
    )


def test_a_client_batch_of_embeddings_lines_runs_to_its_output_file(api, sim, settings):
    settings.LLMOPS_BATCH_WRITE_PAUSE_MS = 0
    created = create(api, upload(api, embeddings_file(4)))
    assert created.status_code == 200, created.content
    batch_id = created.json()["id"]
    assert created.json()["endpoint"] == "/v1/embeddings"

    while client_batches.client_batch_admit(batch_id=batch_id).more:
        pass
    run_until_idle()

    batch = api.get(f"/v1/batches/{batch_id}").json()
    assert batch["status"] == "completed", batch
    assert batch["request_counts"] == {"total": 4, "completed": 4, "failed": 0}
    output = api.get(f"/v1/files/{batch['output_file_id']}/content")
    lines = [json.loads(x) for x in b"".join(output.streaming_content).splitlines()]
    assert sorted(line["custom_id"] for line in lines) == [f"e-{i}" for i in range(4)]
    for line in lines:
        body = line["response"]["body"]
        assert body["object"] == "list" and body["model"] == "text-embedding-3-small"
        assert [d["index"] for d in body["data"]] == [0, 1]
        assert all(unit(d["embedding"]) for d in body["data"])
    for request in Request.objects.all():
        [charge] = LedgerEntry.objects.filter(request=request)
        assert charge.mode == "batch"
        assert charge.cost_usd == SMALL_PER_MTOK / 2 * charge.input_tokens / 10**6


def test_a_batch_whose_endpoint_is_not_its_lines_url_is_refused(api, sim):
    refused = create(api, upload(api, embeddings_file(1)), endpoint="/v1/chat/completions")
    assert refused.status_code == 400
    assert refused.json()["error"]["param"] == "endpoint"
    assert "/v1/embeddings" in refused.json()["error"]["message"]


def test_a_file_mixing_endpoints_is_refused_at_the_line_that_differs(api, sim):
    chat = {
        "custom_id": "c-1",
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]},
    }
    data = embeddings_file(1) + json.dumps(chat).encode() + b"\n"
    response = api.post(
        "/v1/files",
        {"purpose": "batch", "file": SimpleUploadedFile("in.jsonl", data)},
        format="multipart",
    )
    assert response.status_code == 400
    assert "line 2: url '/v1/chat/completions' differs" in response.json()["error"]["message"]


def test_a_chat_model_in_an_embeddings_file_is_refused_at_creation(api, sim):
    refused = create(api, upload(api, embeddings_file(1, model="gpt-4o-mini")))
    assert refused.status_code == 400, refused.content
    error = refused.json()["error"]
    assert error["code"] == "model_not_allowed" and "text-embedding-3-small" in error["message"]


def test_a_deferrable_workload_called_through_v1_answers_now_as_a_missed_saving(api, sim):
    response = api.post(
        "/v1/embeddings",
        {"model": "text-embedding-3-small", "input": ["a tent"]},
        format="json",
        HTTP_X_WORKLOAD="catalog-embeddings",
    )

    assert response.status_code == 200, response.content
    assert len(response.json()["data"]) == 1
    request = Request.objects.get(pk=response["x-request-id"])
    assert (request.mode, request.missed_saving) == ("realtime", True)
