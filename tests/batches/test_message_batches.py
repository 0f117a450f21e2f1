"""Anthropic's message batches as client batches (batches/services/message_batches.py): the
create's envelope checks, the stored file of /v1/messages lines and the batch's id, which every
database must store (PostgreSQL refuses an id longer than its column; SQLite would not say)."""

from __future__ import annotations

import json

import pytest

from batches import jsonl
from batches.models import ClientBatch
from batches.services import SurfaceError, file_chunks, message_batches

pytestmark = pytest.mark.django_db

PARAMS = {"model": "gpt-4o", "max_tokens": 20, "messages": [{"role": "user", "content": "x"}]}


def create(demo, requests):
    return message_batches.message_batch_create(
        api_key=None, workload=demo.workloads["ticket-summaries"], requests=requests
    )


def test_a_create_stores_its_requests_as_messages_lines_under_an_id_that_fits(demo):
    batch = create(demo, [{"custom_id": f"r-{i}", "params": PARAMS} for i in range(3)])

    assert batch.id.startswith("msgbatch_")
    assert len(batch.id) <= ClientBatch._meta.get_field("id").max_length
    assert (batch.endpoint, batch.status, batch.total) == (jsonl.MESSAGES_ENDPOINT, "validating", 3)
    lines = [json.loads(x) for x in b"".join(file_chunks(batch.input_file)).splitlines()]
    assert [x["custom_id"] for x in lines] == ["r-0", "r-1", "r-2"]
    assert {x["url"] for x in lines} == {"/v1/messages"} and lines[0]["body"] == PARAMS


@pytest.mark.parametrize(
    ("requests", "named"),
    [
        ([], "requests:"),
        ([{"custom_id": "a b", "params": PARAMS}], "requests.0.custom_id"),
        ([{"custom_id": "a", "params": PARAMS}] * 2, "requests.1.custom_id"),
        ([{"custom_id": "a", "params": "x"}], "requests.0.params"),
        ([{"custom_id": "a", "params": {**PARAMS, "stream": True}}], "requests.0.params.stream"),
        (
            [
                {"custom_id": "a", "params": PARAMS},
                {"custom_id": "b", "params": {**PARAMS, "model": "claude-sonnet-4-6"}},
            ],
            "requests.1.params.model",
        ),
    ],
)
def test_a_bad_envelope_is_refused_naming_the_request_and_nothing_is_kept(demo, requests, named):
    with pytest.raises(SurfaceError) as refused:
        create(demo, requests)

    assert refused.value.status == 400 and named in refused.value.message
    assert not ClientBatch.objects.exists()


def test_results_walk_the_file_beside_the_batchs_lines(demo):
    """Lines a cancel stopped before admission never became requests: `canceled`, in order."""
    batch = create(demo, [{"custom_id": f"r-{i}", "params": PARAMS} for i in range(3)])

    lines = [json.loads(x) for x in message_batches.message_batch_results(batch)]

    assert lines == [{"custom_id": f"r-{i}", "result": {"type": "canceled"}} for i in range(3)]


def test_a_create_may_be_larger_than_a_serving_body_up_to_its_own_cap(api, settings):
    """The requests travel in the body: past LLMOPS_MAX_BODY_BYTES (1 MB) is fine, past
    LLMOPS_MAX_MESSAGE_BATCH_BYTES is a 413 in Anthropic's shape."""
    long = {**PARAMS, "messages": [{"role": "user", "content": "x" * 600_000}]}
    body = {"requests": [{"custom_id": f"r-{i}", "params": long} for i in range(2)]}
    headers = {"HTTP_X_WORKLOAD": "ticket-summaries"}

    created = api.post("/v1/messages/batches", body, format="json", **headers)
    assert created.status_code == 200, created.content
    assert created.json()["request_counts"]["processing"] == 2
    assert created["request-id"] == created["x-request-id"]

    settings.LLMOPS_MAX_MESSAGE_BATCH_BYTES = 1_000_000
    refused = api.post("/v1/messages/batches", body, format="json", **headers)
    assert refused.status_code == 413
    assert refused.json()["error"]["type"] == "request_too_large"
