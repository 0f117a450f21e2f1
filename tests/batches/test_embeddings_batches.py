"""Embeddings through the native API: a realtime workload answers now; a deferrable one gets a
ticket, goes to a provider batch of /v1/embeddings lines and is billed at the batch price."""

from __future__ import annotations

import math
from decimal import Decimal

import pytest

from batches import services
from batches.models import BatchJob
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
