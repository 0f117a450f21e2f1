"""/v1/messages, count_tokens, the models list and message batches with the official anthropic
SDK: SDK → llmops → simulator over HTTP, on a Claude model (the body and every event relayed as
sent) and on an OpenAI model (translated to Chat Completions and back). The SDK's own stream
accumulator checks every event; each call has one ledger entry at the model's price, cache
reads and writes included."""

from __future__ import annotations

import json
import time
import uuid
from decimal import Decimal

import anthropic
import httpx2 as httpx
import pytest
from pydantic import BaseModel

from tests.live.conftest import API_KEY, Llmops

MODELS = pytest.mark.parametrize("model", ["claude-haiku-4-5", "gpt-4o-mini"])
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


@pytest.fixture
def client(llmops, sim):
    return llmops.anthropic(workload="product-search")  # gpt-4o-mini, then claude-haiku-4-5


def asked(text: str) -> str:
    # product-search caches answers: every call asks something new unless it means to repeat.
    return f"{text} ({uuid.uuid4().hex[:8]})"


def charge_of(llmops: Llmops, request_id: str) -> dict:
    status, body = llmops.api("GET", f"/api/v1/ledger?request={request_id}&limit=50")
    assert status == 200, body
    [charge] = [e for e in body["results"] if e["kind"] == "charge"]
    return charge


def check_billed_once(llmops: Llmops, message, model: str, *, request_id: str = "") -> dict:
    """The request behind `message` (or `request_id`: a stream's) completed on `model` with one
    charge for its tokens: uncached input, cache reads and cache writes each in their own
    column."""
    request = llmops.request_of(request_id or message)
    assert request["status"] == "completed" and request["model"] == model
    assert request["kind"] == "messages" and request["source"] == "anthropic"
    charge = charge_of(llmops, request["id"])
    usage = message.usage
    assert charge["mode"] == ("stream" if request_id else "realtime")
    assert charge["cached_input_tokens"] == (usage.cache_read_input_tokens or 0)
    assert charge["cache_write_tokens"] == (usage.cache_creation_input_tokens or 0)
    assert charge["input_tokens"] == usage.input_tokens
    assert charge["output_tokens"] == usage.output_tokens > 0
    # At the model's price for each bucket: what the pricing API says these tokens cost.
    status, priced = llmops.api(
        "POST",
        "/api/v1/pricing/estimate",
        {
            "model": model,
            "mode": charge["mode"],
            "input_tokens": charge["input_tokens"]
            + charge["cached_input_tokens"]
            + charge["cache_write_tokens"],
            "cached_input_tokens": charge["cached_input_tokens"],
            "cache_write_tokens": charge["cache_write_tokens"],
            "output_tokens": charge["output_tokens"],
        },
    )
    assert status == 200, priced
    assert Decimal(charge["cost_usd"]) == Decimal(priced["cost_usd"]) > 0
    return charge


@MODELS
def test_a_plain_message_is_answered_and_billed_once(llmops, client, model):
    message = client.messages.create(
        model=model,
        max_tokens=200,
        system="Answer briefly.",
        messages=[{"role": "user", "content": asked("Which tent for two people?")}],
    )

    assert message.type == "message" and message.role == "assistant"
    assert message.model == model
    assert message.stop_reason in ("end_turn", "max_tokens")
    [block] = message.content
    assert block.type == "text" and block.text
    check_billed_once(llmops, message, model)
    assert llmops.request_of(message)["output"] == block.text


@MODELS
def test_a_streamed_message_passes_the_sdks_stream_checks(llmops, client, model):
    pieces, kinds = [], []
    with client.messages.stream(
        model=model,
        max_tokens=200,
        messages=[{"role": "user", "content": asked("Describe a sleeping bag.")}],
    ) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "text":
                pieces.append(event.text)
        final = stream.get_final_message()

    assert kinds[0] == "message_start" and kinds[-1] == "message_stop"
    assert "content_block_start" in kinds and "message_delta" in kinds
    assert final.content[0].text == "".join(pieces) != ""
    assert final.stop_reason in ("end_turn", "max_tokens")
    check_billed_once(llmops, final, model, request_id=stream.request_id)


@MODELS
def test_a_forced_tool_use_and_its_result_in_a_second_turn(llmops, client, model):
    question = asked("What is the weather in Paris?")
    first = client.messages.create(
        model=model,
        max_tokens=300,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
        messages=[{"role": "user", "content": question}],
    )
    [call] = [b for b in first.content if b.type == "tool_use"]
    assert first.stop_reason == "tool_use"
    assert call.name == "get_weather" and isinstance(call.input.get("city"), str)
    check_billed_once(llmops, first, model)
    # The request record names the call in OpenAI's shape, as for every surface.
    [recorded] = llmops.request_of(first)["tool_calls"]
    assert recorded["function"]["name"] == "get_weather" and recorded["id"] == call.id

    second = client.messages.create(
        model=model,
        max_tokens=300,
        tools=[WEATHER],
        messages=[
            {"role": "user", "content": question},
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "20C"}],
            },
        ],
    )
    assert second.stop_reason == "end_turn"
    assert [b.type for b in second.content] == ["text"] and second.content[0].text
    check_billed_once(llmops, second, model)


class Tent(BaseModel):
    name: str
    people: int


@MODELS
def test_structured_output_parses_into_the_callers_model(llmops, client, model):
    parsed = client.messages.parse(
        model=model,
        max_tokens=300,
        output_format=Tent,
        messages=[{"role": "user", "content": asked("Suggest a tent.")}],
    )

    assert isinstance(parsed.parsed_output, Tent)
    assert [b.type for b in parsed.content] == ["text"]
    check_billed_once(llmops, parsed, model)


@MODELS
def test_a_stop_sequence_ends_the_answer(llmops, client, model):
    message = client.messages.create(
        model=model,
        max_tokens=300,
        stop_sequences=["e"],
        messages=[{"role": "user", "content": asked("Tell me about tents.")}],
    )

    assert message.stop_reason in ("stop_sequence", "end_turn")
    # An answer whose first letter is the stop sequence is empty: Anthropic sends no text block.
    text = "".join(block.text for block in message.content if block.type == "text")
    assert "e" not in text
    if model.startswith("claude"):  # relayed: the match is Anthropic's to name
        assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "e")


def test_thinking_blocks_are_relayed_from_claude_and_echoed_back(llmops, client):
    thinking = {"type": "enabled", "budget_tokens": 1024}
    question = asked("Weather in Oslo?")
    with client.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=2000,
        thinking=thinking,
        tools=[WEATHER],
        messages=[{"role": "user", "content": question}],
    ) as stream:
        first = stream.get_final_message()
    kinds = [b.type for b in first.content]
    assert kinds[0] == "thinking" and first.content[0].signature
    check_billed_once(llmops, first, "claude-haiku-4-5", request_id=stream.request_id)
    if first.stop_reason == "tool_use":  # the thinking goes back unchanged with the result
        call = next(b for b in first.content if b.type == "tool_use")
        second = client.messages.create(
            model="claude-haiku-4-5",
            max_tokens=2000,
            thinking=thinking,
            tools=[WEATHER],
            messages=[
                {"role": "user", "content": question},
                {"role": "assistant", "content": [b.model_dump() for b in first.content]},
                {
                    "role": "user",
                    "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "3C"}],
                },
            ],
        )
        assert second.content[-1].type == "text"


def test_thinking_on_an_openai_model_asks_for_its_reasoning_effort(llmops, client):
    message = client.messages.create(
        model="gpt-4o-mini",
        max_tokens=2000,
        thinking={"type": "enabled", "budget_tokens": 2048},
        messages=[{"role": "user", "content": asked("Plan a hike.")}],
    )
    # No thinking block comes back (OpenAI shows no reasoning), the answer does.
    assert [b.type for b in message.content] == ["text"]
    request = llmops.request_of(message)
    assert request["kind"] == "messages" and request["model"] == "gpt-4o-mini"


def test_a_deferrable_workload_reached_here_is_served_now_as_a_missed_saving(llmops):
    client = llmops.anthropic("ticket-summaries")  # scheduled, 24 h: a batch would do
    message = client.messages.create(
        model="claude-sonnet-4-6",
        max_tokens=50,
        messages=[{"role": "user", "content": asked("Summarise ticket 9.")}],
    )
    request = llmops.request_of(message)
    assert request["mode"] == "realtime" and request["workload"] == "ticket-summaries"
    assert request["missed_saving"] is True


def test_a_streamed_tool_use_on_an_openai_model_is_rendered_as_anthropic_events(llmops, client):
    with client.messages.stream(
        model="gpt-4o-mini",
        max_tokens=300,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=[{"role": "user", "content": asked("Weather in Rome?")}],
    ) as stream:
        final = stream.get_final_message()

    [call] = [b for b in final.content if b.type == "tool_use"]
    assert final.stop_reason == "tool_use" and call.name == "get_weather"
    assert isinstance(call.input["city"], str)
    check_billed_once(llmops, final, "gpt-4o-mini", request_id=stream.request_id)


def test_cache_control_reads_and_writes_are_billed_at_their_prices(llmops, client):
    system = [
        {
            "type": "text",
            "text": "You are the shop's assistant. " + "Catalogue facts. " * 400,
            "cache_control": {"type": "ephemeral"},
        }
    ]
    question = "Which stove for winter?"
    first = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        system=system,
        messages=[{"role": "user", "content": asked(question)}],
    )
    second = client.messages.create(
        model="claude-haiku-4-5",
        max_tokens=100,
        system=system,
        messages=[{"role": "user", "content": asked(question)}],
    )

    assert first.usage.cache_creation_input_tokens > 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    written = check_billed_once(llmops, first, "claude-haiku-4-5")
    read = check_billed_once(llmops, second, "claude-haiku-4-5")
    # A cache read costs a tenth of a write (Claude's prices): the second call is cheaper.
    assert Decimal(read["cost_usd"]) < Decimal(written["cost_usd"])


def test_count_tokens_on_claude_is_the_providers_count(llmops, client):
    body = {
        "model": "claude-haiku-4-5",
        "system": "Answer briefly.",
        "tools": [WEATHER],
        "messages": [{"role": "user", "content": asked("How heavy is the tent?")}],
    }
    entries = llmops.api("GET", "/api/v1/ledger?limit=1")[1]["count"]
    counted = client.messages.count_tokens(**body)
    # Counting is free: nothing is billed.
    assert llmops.api("GET", "/api/v1/ledger?limit=1")[1]["count"] == entries
    message = client.messages.create(max_tokens=50, **body)

    usage = message.usage
    total = usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens
    assert counted.input_tokens == total > 0


def test_count_tokens_on_an_openai_model_is_an_estimate_said_so(llmops, client):
    response = client.messages.with_raw_response.count_tokens(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "x " * 400}]
    )
    assert response.headers["llmops-estimate"] == "true"
    assert 100 < response.parse().input_tokens < 2000


def test_models_in_anthropics_shape_for_the_anthropic_sdk(llmops):
    client = llmops.anthropic()
    ids = [m.id for m in client.models.list(limit=1000)]
    assert "claude-haiku-4-5" in ids and "gpt-4o-mini" in ids
    assert "text-embedding-3-small" not in ids  # not a Messages model
    one = client.models.retrieve("claude-haiku-4-5")
    assert one.type == "model" and one.display_name
    paged = client.models.list(limit=1)
    assert len(paged.data) == 1 and paged.has_more
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("no-such-model")
    # Without Anthropic's headers the same path answers the openai SDK.
    assert llmops.openai().models.list().data[0].object == "model"


def test_errors_reach_the_sdk_in_anthropics_shape(llmops, client):
    missing = httpx.post(
        f"{llmops.base_url}/v1/messages",
        headers={"Authorization": f"Bearer {API_KEY}", "anthropic-version": "2023-06-01"},
        json={"model": "claude-haiku-4-5", "messages": [{"role": "user", "content": "x"}]},
        timeout=30,
    )
    assert missing.status_code == 400 and missing.headers["request-id"]
    assert missing.json()["type"] == "error"
    assert missing.json()["error"]["type"] == "invalid_request_error"
    assert "max_tokens" in missing.json()["error"]["message"]

    with pytest.raises(anthropic.NotFoundError):
        client.messages.create(
            model="claude-nope", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )
    # top_k has no Chat Completions counterpart: refused for an OpenAI model named alone
    # (gpt-4o is not ticket-summaries' primary), by name...
    with pytest.raises(anthropic.BadRequestError) as refused:
        llmops.anthropic("ticket-summaries").messages.create(
            model="gpt-4o",
            max_tokens=10,
            extra_body={"top_k": 5},
            messages=[{"role": "user", "content": "x"}],
        )
    assert "top_k" in refused.value.body["error"]["message"]
    # ...and skipped in a chain whose next model, a Claude one, honours it.
    message = client.messages.create(
        model="gpt-4o-mini",
        max_tokens=10,
        extra_body={"top_k": 5},
        messages=[{"role": "user", "content": asked("Any tents?")}],
    )
    assert message.model == "claude-haiku-4-5"
    bad_key = anthropic.Anthropic(base_url=llmops.base_url, api_key="llm_wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        bad_key.messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=[{"role": "user", "content": "x"}]
        )


@MODELS
def test_a_claude_code_request_is_served_with_its_headers(llmops, model):
    """Claude Code's shape (captured from 2.1.332): ?beta=true, x-api-key, betas llmops has
    never heard of, the billing-header system block, a `system` turn among the messages,
    `Accept: application/json` on a streamed call."""
    body = {
        "model": model,
        "max_tokens": 200,
        "stream": True,
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.185"},
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [
            {"role": "user", "content": asked("List the files.")},
            {"role": "system", "content": [{"type": "text", "text": "# Environment: linux"}]},
        ],
        "metadata": {"user_id": "user_abc_account_def_session_123"},
    }
    headers = {
        "x-api-key": API_KEY,
        "anthropic-version": "2023-06-01",
        "anthropic-beta": "claude-code-20250219,some-future-beta-2027-01-01",
        "Accept": "application/json",
        "X-Claude-Code-Session-Id": "s-1",
    }
    with httpx.stream(
        "POST", f"{llmops.base_url}/v1/messages?beta=true", json=body, headers=headers, timeout=30
    ) as response:
        assert response.status_code == 200, response.read()
        assert response.headers["content-type"].startswith("text/event-stream")
        raw = response.read().decode()
    events = [
        line.removeprefix("event: ") for line in raw.splitlines() if line.startswith("event:")
    ]
    assert events[0] == "message_start" and events[-1] == "message_stop"
    request = llmops.request_of(response.headers["request-id"])
    assert request["status"] == "completed" and request["model"] == model
    assert request["params"]["headers"]["anthropic-beta"] == headers["anthropic-beta"]


def test_telemetry_path_is_a_json_404(llmops):
    response = httpx.post(
        f"{llmops.base_url}/api/event_logging/batch",
        json={"events": []},
        headers={"x-api-key": API_KEY},
        timeout=30,
    )
    assert response.status_code == 404
    assert response.json()["type"] == "error"


# --- message batches -------------------------------------------------------------------------


def work_until(llmops: Llmops, done, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        llmops.shell(
            "from django.core.management import call_command; import io; "
            "call_command('advance_batches', '--until-idle', '30', stdout=io.StringIO()); print(1)"
        )
        if done() or time.monotonic() > deadline:
            return
        time.sleep(1)


@pytest.mark.parametrize("model", ["claude-sonnet-4-6", "gpt-4o"])
def test_a_message_batch_runs_from_create_to_results(llmops, sim, model):
    client = llmops.anthropic("ticket-summaries")
    requests = [
        {
            "custom_id": f"t-{i}",
            "params": {
                "model": model,
                "max_tokens": 60,
                "system": "One line.",
                "messages": [{"role": "user", "content": f"Summarise ticket {i}."}],
            },
        }
        for i in range(3)
    ]

    batch = client.messages.batches.create(requests=requests)
    assert batch.id.startswith("msgbatch_") and batch.processing_status == "in_progress"
    assert batch._request_id
    assert batch.request_counts.processing == 3 and batch.results_url is None

    work_until(
        llmops, lambda: client.messages.batches.retrieve(batch.id).processing_status == "ended"
    )

    batch = client.messages.batches.retrieve(batch.id)
    assert batch.processing_status == "ended", batch
    assert batch.request_counts.succeeded == 3 and batch.request_counts.processing == 0
    assert batch.ended_at is not None and batch.results_url
    results = list(client.messages.batches.results(batch.id))
    assert [r.custom_id for r in results] == ["t-0", "t-1", "t-2"]
    for result in results:
        assert result.result.type == "succeeded"
        message = result.result.message
        assert message.content[0].text and message.model == model
        request = llmops.request_of(message.id.removeprefix("msg_")) if model == "gpt-4o" else None
        if request is not None:
            assert request["mode"] == "batch" and request["kind"] == "messages"
    assert batch.id in [b.id for b in client.messages.batches.list(limit=100)]
    status, ledger = llmops.api("GET", "/api/v1/ledger?mode=batch&limit=100")
    assert status == 200, ledger


def test_a_message_batch_is_refused_naming_the_request_at_fault(llmops):
    client = llmops.anthropic("ticket-summaries")
    ok = {"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    with pytest.raises(anthropic.BadRequestError) as duplicate:
        client.messages.batches.create(
            requests=[{"custom_id": "a", "params": ok}, {"custom_id": "a", "params": ok}]
        )
    assert "requests.1.custom_id" in duplicate.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError) as streamed:
        client.messages.batches.create(
            requests=[{"custom_id": "a", "params": {**ok, "stream": True}}]
        )
    assert "requests.0.params.stream" in streamed.value.body["error"]["message"]
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_nope")


def test_a_cancelled_message_batch_ends_with_its_requests_canceled(llmops, sim):
    client = llmops.anthropic("ticket-summaries")
    requests = [
        {
            "custom_id": f"c-{i}",
            "params": {
                "model": "gpt-4o",
                "max_tokens": 20,
                "messages": [{"role": "user", "content": f"Cancel me {i}."}],
            },
        }
        for i in range(2)
    ]
    batch = client.messages.batches.create(requests=requests)

    cancelling = client.messages.batches.cancel(batch.id)

    assert cancelling.processing_status in ("canceling", "ended")
    assert cancelling.cancel_initiated_at is not None
    work_until(
        llmops, lambda: client.messages.batches.retrieve(batch.id).processing_status == "ended"
    )
    batch = client.messages.batches.retrieve(batch.id)
    counts = batch.request_counts
    assert counts.canceled + counts.succeeded == 2 and counts.processing == 0
    kinds = {r.result.type for r in client.messages.batches.results(batch.id)}
    assert kinds <= {"canceled", "succeeded"}
    with pytest.raises(anthropic.BadRequestError):
        client.messages.batches.cancel(batch.id)


def test_a_message_batch_result_is_the_message_and_its_json_lines(llmops):
    """results() reads the JSONL at results_url: each line one object, no blank lines."""
    client = llmops.anthropic("ticket-summaries")
    batch = client.messages.batches.create(
        requests=[
            {
                "custom_id": "j-0",
                "params": {
                    "model": "gpt-4o",
                    "max_tokens": 30,
                    "messages": [{"role": "user", "content": "A JSON line."}],
                },
            }
        ]
    )
    work_until(
        llmops, lambda: client.messages.batches.retrieve(batch.id).processing_status == "ended"
    )
    url = client.messages.batches.retrieve(batch.id).results_url
    raw = httpx.get(url, headers={"x-api-key": API_KEY}, timeout=30).text
    lines = raw.split("\n")
    assert lines[-1] == "" and all(lines[:-1])
    [line] = [json.loads(x) for x in lines[:-1]]
    assert line["custom_id"] == "j-0" and line["result"]["type"] == "succeeded"
    assert line["result"]["message"]["type"] == "message"


def test_a_message_batch_with_bad_params_ends_with_each_request_errored(llmops):
    """Anthropic checks params after the create: a bad one is an errored result, not a 400."""
    client = llmops.anthropic("ticket-summaries")
    ok = {"model": "gpt-4o", "max_tokens": 10, "messages": [{"role": "user", "content": "x"}]}
    batch = client.messages.batches.create(
        requests=[
            {"custom_id": "good", "params": ok},
            {"custom_id": "bad", "params": {**ok, "max_tokens": "ten"}},
        ]
    )
    assert batch.processing_status == "in_progress"

    work_until(
        llmops, lambda: client.messages.batches.retrieve(batch.id).processing_status == "ended"
    )

    batch = client.messages.batches.retrieve(batch.id)
    assert batch.request_counts.errored == 2 and batch.request_counts.succeeded == 0
    results = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert results["bad"].type == "errored"
    assert "max_tokens" in results["bad"].error.error.message
    assert results["good"].type == "errored"  # the batch was refused as a whole
    status, ledger = llmops.api("GET", "/api/v1/ledger?limit=100")
    assert status == 200 and not [e for e in ledger["results"] if e.get("batch") == batch.id]


@MODELS
def test_a_repeat_is_a_cache_hit_told_as_a_message_and_as_a_stream(llmops, client, model):
    """product-search caches answers: the same body again costs nothing, in either form."""
    body = {
        "model": model,
        "max_tokens": 60,
        "messages": [{"role": "user", "content": asked("Which lamp for a tent?")}],
    }
    first = client.messages.create(**body)
    again = client.messages.create(**body)
    with client.messages.stream(**body) as stream:
        streamed = stream.get_final_message()

    for hit, request_id in ((again, again._request_id), (streamed, stream.request_id)):
        assert [b.text for b in hit.content] == [b.text for b in first.content]
        assert hit.stop_reason == first.stop_reason
        assert hit.id != first.id  # a Message of its own
        request = llmops.request_of(request_id)
        assert request["mode"] == "cache" and request["kind"] == "messages"
        assert Decimal(charge_of(llmops, request["id"])["cost_usd"]) == 0
