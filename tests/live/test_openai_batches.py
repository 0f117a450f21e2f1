"""The official openai SDK's batch workflow against llmops over HTTP: files.create →
batches.create → batches.retrieve until done → files.content. A worker process
(`manage.py advance_batches`, what the django-q2 tasks run) moves the jobs meanwhile."""

from __future__ import annotations

import io
import json
import time
import uuid

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


def work_until(llmops: Llmops, done, timeout: float = 60) -> None:
    """Run the worker's steps, as a worker cluster would, until `done()` or the timeout: a job
    waiting on the provider is polled again POLL_FIRST (10 s) after its last look."""
    deadline = time.monotonic() + timeout
    while True:
        work(llmops)
        if done() or time.monotonic() > deadline:
            return
        time.sleep(1)


@pytest.mark.parametrize(
    ("workload", "model"),
    [("review-moderation", "gpt-4o-mini"), ("ticket-summaries", "claude-sonnet-4-6")],
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
    assert "line 4: url '/v1/embeddings' differs from '/v1/chat/completions'" in message
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


def provider_batch_requests(simulator_server, model: str) -> int:
    """Requests the simulator billed at the batch price for `model` since its last reset."""
    usage = simulator_server.usage()
    return sum(
        models.get(model, {}).get("batch", {}).get("requests", 0)
        for provider, models in usage.items()
        if provider != "totals"
    )


def test_the_sdk_cancels_a_running_batch_and_bill_ledger_and_output_agree_line_for_line(
    llmops, simulator_server
):
    # Found by a new user: the cancel reported every line failed while the provider batch was
    # never cancelled, ran to the end and was billed line by line with no answer returned.
    simulator_server.config(batch_turnaround_s=100, batch_cancel_s=5)
    client = llmops.openai("review-moderation")
    uploaded = client.files.create(
        file=("slow.jsonl", io.BytesIO(jsonl([line(f"s-{i}", f"slow {i}") for i in range(20)]))),
        purpose="batch",
    )
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )
    work(llmops)  # admitted and submitted
    assert client.batches.retrieve(batch.id).status == "in_progress"
    simulator_server.advance(40)  # the provider answers some lines

    cancelling = client.batches.cancel(batch.id)

    assert cancelling.status == "cancelling"
    work(llmops)  # the provider batch's cancel goes out at once
    assert client.batches.retrieve(batch.id).status == "cancelling"  # until the provider ends
    simulator_server.advance(10)  # the provider confirms; llmops sees it at its next poll
    work_until(llmops, lambda: client.batches.retrieve(batch.id).status != "cancelling")
    batch = client.batches.retrieve(batch.id)
    assert batch.status == "cancelled" and batch.cancelled_at is not None
    output = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    errors = [json.loads(x) for x in client.files.content(batch.error_file_id).text.splitlines()]
    billed = provider_batch_requests(simulator_server, "gpt-4o-mini")
    # Every line names its request: batch_req_<request id>.
    lines = {x["custom_id"]: x["id"].removeprefix("batch_req_") for x in output + errors}
    assert sorted(lines) == sorted(f"s-{i}" for i in range(20))
    charges = {}
    for request_id in lines.values():
        status, ledger = llmops.api("GET", f"/api/v1/ledger?request={uuid.UUID(request_id)}")
        assert status == 200, ledger
        charges[request_id] = [e for e in ledger["results"] if e["kind"] == "charge"]
    charged = {request_id for request_id, entries in charges.items() if entries}
    # Lines the provider billed = ledger charges = answered lines in the output file.
    assert 0 < billed < 20
    assert billed == sum(len(e) for e in charges.values()) == len(output)
    assert len(output) == batch.request_counts.completed
    assert charged == {x["id"].removeprefix("batch_req_") for x in output}
    assert all(e["mode"] == "batch" for entries in charges.values() for e in entries)
    assert len(errors) == batch.request_counts.failed == 20 - billed
    assert {x["error"]["code"] for x in errors} == {"batch_cancelled"}
    assert (
        llmops.shell("from billing.selectors import unheld_charges; print(unheld_charges())")
        == "[]"
    )


def test_a_cancelled_jobs_tickets_end_cancelled_with_no_realtime_charge(llmops, simulator_server):
    # Found by a new user: a cancelled job's unfinished tickets were served realtime at full
    # price once someone pressed Recover, and their decision still said "Deferred".
    simulator_server.config(batch_turnaround_s=100)
    tickets = llmops.defer("review-moderation", 6, text="moderate review {i}")
    llmops.shell(
        "from django.core.management import call_command; import io; "
        "call_command('advance_batches', '--flush', '--until-idle', '30', stdout=io.StringIO()); "
        "print(1)"
    )
    status, jobs = llmops.api("GET", "/api/v1/batches?status=running")
    [job] = [j for j in jobs["results"] if j["counts"]["total"] == 6]

    status, cancelled = llmops.api("POST", f"/api/v1/batches/{job['id']}/cancel")

    assert status == 202 and cancelled["cancel_reason"] == "user"
    work(llmops)
    simulator_server.advance(10)  # the provider confirms; llmops sees it at its next poll
    work_until(
        llmops, lambda: llmops.api("GET", f"/api/v1/batches/{job['id']}")[1]["status"] != "running"
    )
    status, ended = llmops.api("GET", f"/api/v1/batches/{job['id']}")
    assert ended["status"] == "cancelled", ended
    assert ended["finished_at"] is not None and ended["ingest_started_at"] is not None
    assert ended["counts"]["unfinished"] == 6
    for ticket in tickets:
        status, request = llmops.api("GET", f"/api/v1/requests/{ticket}")
        assert request["status"] == "cancelled", request
        assert f"Batch job {job['id']} cancelled" in request["decision_reason"]
        assert request["cost_usd"] in (None, "0", "0.000000000000")
    status, ledger = llmops.api("GET", "/api/v1/ledger?workload=review-moderation&mode=realtime")
    assert not {e["request"] for e in ledger["results"]} & set(tickets)
    assert ended["cost"]["cost_usd"] == "0.000000000000"  # never in exponent form


@pytest.mark.parametrize(
    "workload, model",
    [
        ("review-moderation", "gpt-4o-mini"),  # lines as sent to OpenAI's batch
        ("ticket-summaries", "claude-sonnet-4-6"),  # translated into Anthropic's batch params
    ],
)
def test_batch_lines_keep_their_tools_and_the_output_lines_carry_the_tool_calls(
    llmops, workload, model
):
    client = llmops.openai(workload)
    tool = {
        "type": "function",
        "function": {
            "name": "flag_review",
            "parameters": {
                "type": "object",
                "properties": {"fake": {"type": "boolean"}, "reason": {"type": "string"}},
                "required": ["fake", "reason"],
            },
        },
    }
    body = {
        "model": model,
        "messages": [{"role": "user", "content": "Is this review fake? 'Best tent ever!!!'"}],
        "tools": [tool],
        "tool_choice": "required",
        "max_tokens": 100,
    }
    rows = [{"custom_id": "t-1", "method": "POST", "url": "/v1/chat/completions", "body": body}]
    uploaded = client.files.create(file=("tools.jsonl", io.BytesIO(jsonl(rows))), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    work_until(llmops, lambda: client.batches.retrieve(batch.id).status == "completed")

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    [result] = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    choice = result["response"]["body"]["choices"][0]
    assert choice["finish_reason"] == "tool_calls"
    [call] = choice["message"]["tool_calls"]
    assert call["function"]["name"] == "flag_review"
    assert set(json.loads(call["function"]["arguments"])) == {"fake", "reason"}
    assert result["response"]["body"]["model"] == model


def test_a_batch_of_embeddings_lines_runs_to_completion_through_the_sdk(llmops):
    client = llmops.openai("catalog-embeddings")  # text-embedding-3-small, batch-capable
    rows = [
        {
            "custom_id": f"sku-{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": [f"tent {i}", f"stove {i}"]},
        }
        for i in range(3)
    ]
    uploaded = client.files.create(file=("e.jsonl", io.BytesIO(jsonl(rows))), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert batch.endpoint == "/v1/embeddings"

    work_until(llmops, lambda: client.batches.retrieve(batch.id).status == "completed")

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    assert (batch.request_counts.total, batch.request_counts.completed) == (3, 3)
    results = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(r["custom_id"] for r in results) == ["sku-0", "sku-1", "sku-2"]
    for result in results:
        body = result["response"]["body"]
        assert [len(d["embedding"]) for d in body["data"]] == [1536, 1536]
        request = llmops.request_of(result["id"].removeprefix("batch_req_"))
        assert (request["mode"], request["kind"]) == ("batch", "embeddings")
        assert request["usage"]["input_tokens"] == body["usage"]["prompt_tokens"]


@pytest.mark.parametrize(
    ("workload", "model"),
    [("review-moderation", "gpt-4o-mini"), ("ticket-summaries", "claude-sonnet-4-6")],
)
def test_a_batch_of_responses_lines_answers_responses(llmops, workload, model):
    """OpenAI's batch relays the lines to its own /v1/responses; Anthropic's answers Messages,
    which llmops turns back into Responses. Either way each output line's body is a Response,
    billed once at the batch price."""
    client = llmops.openai(workload)
    rows = [
        {
            "custom_id": f"r-{i}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {
                "model": model,
                "instructions": "One line.",
                "input": [{"role": "user", "content": f"Is review {i} fake?"}],
                "max_output_tokens": 40,
            },
        }
        for i in range(2)
    ]
    uploaded = client.files.create(file=("r.jsonl", io.BytesIO(jsonl(rows))), purpose="batch")
    batch = client.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h"
    )
    assert batch.endpoint == "/v1/responses"

    work_until(llmops, lambda: client.batches.retrieve(batch.id).status == "completed")

    batch = client.batches.retrieve(batch.id)
    assert batch.status == "completed", batch
    results = [json.loads(x) for x in client.files.content(batch.output_file_id).text.splitlines()]
    assert sorted(r["custom_id"] for r in results) == ["r-0", "r-1"]
    for result in results:
        body = result["response"]["body"]
        response = openai.types.responses.Response.model_validate(body)
        assert response.object == "response" and response.output_text
        assert response.instructions == "One line."
        request = llmops.request_of(result["id"].removeprefix("batch_req_"))
        assert (request["mode"], request["kind"], request["model"]) == ("batch", "responses", model)
        assert request["usage"]["output_tokens"] == response.usage.output_tokens
        status, ledger = llmops.api("GET", f"/api/v1/ledger?request={request['id']}")
        assert status == 200, ledger
        [charge] = [e for e in ledger["results"] if e["kind"] == "charge"]
        assert charge["mode"] == "batch"
