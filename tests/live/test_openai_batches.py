"""The official openai SDK's batch workflow against llmops over HTTP: files.create →
batches.create → batches.retrieve until done → files.content. A worker process
(`manage.py advance_batches`, what the django-q2 tasks run) moves the jobs meanwhile."""

from __future__ import annotations

import io
import json

import openai
import pytest

from tests.live.conftest import Llmops


@pytest.fixture(autouse=True)
def _instant_simulator(simulator_server):
    # The session's simulator is shared: start from its instant timings, whatever an earlier
    # test configured.
    simulator_server.reset()


def jsonl(lines: list[dict]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def line(custom_id: str, text: str, model: str = "gpt-4o-mini") -> dict:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 20},
    }


def work(llmops: Llmops) -> None:
    llmops.shell(
        "from django.core.management import call_command; import io; "
        "call_command('advance_batches', '--until-idle', '30', stdout=io.StringIO()); print(1)"
    )


@pytest.mark.parametrize(
    ("workload", "model"),
    [("review-moderation", "gpt-4o-mini"), ("ticket-summaries", "claude-sonnet-4-5")],
)
def test_the_openai_sdk_batch_workflow_completes_against_llmops(llmops, workload, model):
    client = llmops.openai(workload)
    source = jsonl([line(f"row-{i}", f"summarise ticket {i}", model) for i in range(4)])

    uploaded = client.files.create(file=("in.jsonl", io.BytesIO(source)), purpose="batch")
    assert uploaded.bytes == len(source) and uploaded.purpose == "batch"
    assert client.files.retrieve(uploaded.id).filename == "in.jsonl"
    assert client.files.content(uploaded.id).content == source

    batch = client.batches.create(
        input_file_id=uploaded.id,
        endpoint="/v1/chat/completions",
        completion_window="24h",
        metadata={"purpose": "test"},
    )
    # Answered at once, as OpenAI does; a worker checks and admits the lines.
    assert batch.status == "validating" and batch.request_counts.total == 4
    for _ in range(10):
        work(llmops)
        batch = client.batches.retrieve(batch.id)
        if batch.status == "completed":
            break
    assert batch.status == "completed", batch
    assert batch.request_counts.completed == 4 and batch.error_file_id is None
    assert batch.metadata == {"purpose": "test"}

    lines = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(x["custom_id"] for x in lines) == [f"row-{i}" for i in range(4)]
    for result in lines:
        body = result["response"]["body"]
        assert result["response"]["status_code"] == 200
        assert body["object"] == "chat.completion" and body["choices"][0]["message"]["content"]
        assert body["model"] == model
        # Billed at the batch price, through the ordinary ledger.
        request = llmops.request_of(body["id"])
        assert request["mode"] == "batch" and request["source"] == "batch_api"
        assert request["cost_usd"] is not None
    assert batch.id in [b.id for b in client.batches.list(limit=100)]


def test_an_invalid_batch_file_is_refused_naming_its_lines(llmops):
    client = llmops.openai("review-moderation")
    bad = (
        b"\xef\xbb\xbf"
        + json.dumps(line("a", "fine")).encode()
        + b"\n"
        + b"{not json\n"
        + json.dumps(line("a", "dup")).encode()
        + b"\n"
        + json.dumps({**line("c", "x"), "url": "/v1/embeddings"}).encode()
        + b"\n"
        + json.dumps(line("d", "x", model="gpt-4o")).encode()
        + b"\n"
    )

    with pytest.raises(openai.BadRequestError) as refused:
        client.files.create(file=("bad.jsonl", io.BytesIO(bad)), purpose="batch")

    message = refused.value.body["message"]
    assert "line 2: not valid JSON" in message
    assert "line 3: duplicate custom_id 'a'" in message
    assert "line 4: url must be /v1/chat/completions" in message
    assert "line 5: model 'gpt-4o' differs" in message
    assert "line 1:" not in message  # a BOM on line 1 is fine
    assert all(f.filename != "bad.jsonl" for f in client.files.list(purpose="batch"))


def test_a_cancelled_client_batch_ends_cancelled_with_what_finished(llmops):
    client = llmops.openai("review-moderation")
    uploaded = client.files.create(
        file=("c.jsonl", io.BytesIO(jsonl([line(f"c-{i}", f"x {i}") for i in range(3)]))),
        purpose="batch",
    )
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    cancelled = client.batches.cancel(batch.id)

    assert cancelled.status in ("cancelling", "cancelled")
    work(llmops)
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled"
    assert batch.request_counts.failed + batch.request_counts.completed == 3
    errors = client.files.content(batch.error_file_id).text.splitlines()
    assert {json.loads(x)["error"]["code"] for x in errors} == {"batch_cancelled"}
    with pytest.raises(openai.BadRequestError):
        client.batches.cancel(batch.id)
    with pytest.raises(openai.NotFoundError):
        client.batches.retrieve("batch_nope")
