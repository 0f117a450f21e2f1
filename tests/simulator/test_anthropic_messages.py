"""Anthropic Messages and models through the official SDK."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import anthropic
import pytest

from llmops.simulator.testing import SimulatorHandle

MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "Hello there"}]


def test_plain_message_returns_text_and_usage(claude: anthropic.Anthropic, sim) -> None:
    raw = claude.messages.with_raw_response.create(model=MODEL, max_tokens=1000, messages=HELLO)
    message = raw.parse()

    assert raw.headers["request-id"].startswith("req_")
    assert message.type == "message"
    assert message.role == "assistant"
    assert message.model == MODEL
    assert message.stop_reason == "end_turn"
    assert message.content[0].type == "text"
    assert message.usage.output_tokens == len(message.content[0].text.split(" "))
    assert message.usage.input_tokens > 0
    assert message.usage.cache_read_input_tokens == 0
    assert sim.usage()["anthropic"][MODEL]["realtime"]["output_tokens"] == (
        message.usage.output_tokens
    )


def test_max_tokens_cuts_the_answer_with_stop_reason_max_tokens(
    claude: anthropic.Anthropic,
) -> None:
    message = claude.messages.create(model=MODEL, max_tokens=3, messages=HELLO)

    assert message.stop_reason == "max_tokens"
    assert message.usage.output_tokens == 3


def test_stop_sequence_is_reported(claude: anthropic.Anthropic, sim: SimulatorHandle) -> None:
    sim.config(output_tokens=60)
    full = claude.messages.create(model=MODEL, max_tokens=100, messages=HELLO).content[0].text
    word = full.split(" ")[7]

    cut = claude.messages.create(model=MODEL, max_tokens=100, messages=HELLO, stop_sequences=[word])

    assert cut.stop_reason == "stop_sequence"
    assert cut.stop_sequence == word
    assert full.startswith(cut.content[0].text)


def test_message_stream_helper_matches_the_plain_answer(claude: anthropic.Anthropic, sim) -> None:
    plain = claude.messages.create(model=MODEL, max_tokens=1000, messages=HELLO)

    with claude.messages.stream(model=MODEL, max_tokens=1000, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert "".join(pieces) == plain.content[0].text
    assert final.content[0].text == plain.content[0].text
    assert final.usage.output_tokens == plain.usage.output_tokens
    assert final.usage.input_tokens == plain.usage.input_tokens
    assert final.stop_reason == "end_turn"
    assert sim.usage()["anthropic"][MODEL]["stream"]["output_tokens"] == len(pieces)


def test_raw_stream_sends_the_full_event_sequence(claude: anthropic.Anthropic) -> None:
    events = list(claude.messages.create(model=MODEL, max_tokens=1000, messages=HELLO, stream=True))

    types = [event.type for event in events]
    assert types[:2] == ["message_start", "content_block_start"]
    assert types[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(types[2:-3]) == {"content_block_delta"}
    assert events[0].message.usage.output_tokens == 1
    deltas = [e.delta.text for e in events if e.type == "content_block_delta"]
    assert events[-2].usage.output_tokens == len(deltas)
    assert events[-2].delta.stop_reason == "end_turn"


def test_every_streamed_event_carries_an_event_line(sim: SimulatorHandle) -> None:
    request = urllib.request.Request(
        f"{sim.anthropic_base_url}/v1/messages",
        data=json.dumps(
            {"model": MODEL, "max_tokens": 5, "messages": HELLO, "stream": True}
        ).encode(),
        headers={"x-api-key": "sim", "Content-Type": "application/json"},
        method="POST",
    )

    with urllib.request.urlopen(request) as response:
        body = response.read().decode()

    blocks = [b for b in body.split("\n\n") if b]
    names = [b.split("\n")[0].removeprefix("event: ") for b in blocks]
    payload_types = [json.loads(b.split("\n")[1].removeprefix("data: "))["type"] for b in blocks]
    assert names == payload_types
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-1] == "message_stop"
    assert "[DONE]" not in body


def test_system_prompt_as_string_or_blocks_counts_the_same_text(
    claude: anthropic.Anthropic,
) -> None:
    bare = claude.messages.create(model=MODEL, max_tokens=50, messages=HELLO)
    as_string = claude.messages.create(
        model=MODEL, max_tokens=50, system="Be terse and exact.", messages=HELLO
    )
    as_blocks = claude.messages.create(
        model=MODEL,
        max_tokens=50,
        system=[{"type": "text", "text": "Be terse and exact."}],
        messages=HELLO,
    )

    assert as_string.usage.input_tokens > bare.usage.input_tokens
    assert as_blocks.usage.input_tokens > bare.usage.input_tokens


def test_cache_control_writes_then_reads_the_prefix(claude: anthropic.Anthropic, sim) -> None:
    system = [
        {
            "type": "text",
            "text": " ".join(f"fact{i}" for i in range(2000)),
            "cache_control": {"type": "ephemeral"},
        }
    ]

    first = claude.messages.create(
        model=MODEL, max_tokens=20, system=system, messages=[{"role": "user", "content": "one"}]
    )
    second = claude.messages.create(
        model=MODEL, max_tokens=20, system=system, messages=[{"role": "user", "content": "two"}]
    )
    uncached = claude.messages.create(
        model=MODEL,
        max_tokens=20,
        system=[{"type": "text", "text": system[0]["text"]}],
        messages=[{"role": "user", "content": "two"}],
    )

    assert first.usage.cache_creation_input_tokens >= 2000
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert uncached.usage.cache_read_input_tokens == 0
    assert uncached.usage.cache_creation_input_tokens == 0
    total = second.usage.input_tokens + second.usage.cache_read_input_tokens
    assert total == uncached.usage.input_tokens
    billed = sim.usage()["anthropic"][MODEL]["realtime"]
    assert billed["cache_creation_tokens"] == first.usage.cache_creation_input_tokens
    assert billed["cached_input_tokens"] == second.usage.cache_read_input_tokens


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"messages": [{"role": "system", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "assistant", "content": "x"}]}, "messages.0.role"),
        ({"messages": [{"role": "user"}]}, "messages.0.content"),
        ({"messages": []}, "messages"),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"messages": HELLO, "max_tokens": 1.5}, "max_tokens"),
        # Streaming, or the SDK itself refuses a max_tokens this large.
        ({"messages": HELLO, "max_tokens": 100_000, "stream": True}, "max_tokens"),
        ({"messages": HELLO, "extra_body": {"temperature": 1.5}}, "temperature"),
    ],
)
def test_malformed_messages_are_bad_requests_naming_the_field(
    claude: anthropic.Anthropic, sim: SimulatorHandle, kwargs: dict, field: str
) -> None:
    kwargs.setdefault("max_tokens", 10)

    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=MODEL, **kwargs)

    assert caught.value.body["error"]["type"] == "invalid_request_error"
    assert caught.value.body["error"]["message"].startswith(field)
    assert sim.usage()["totals"]["requests"] == 0


def test_missing_required_fields_are_bad_requests(claude: anthropic.Anthropic) -> None:
    for body, field in (
        ({"messages": HELLO, "max_tokens": 5}, "model"),
        ({"model": MODEL, "messages": HELLO}, "max_tokens"),
        ({"model": MODEL, "max_tokens": 5}, "messages"),
    ):
        with pytest.raises(anthropic.BadRequestError, match=f"{field}: Field required"):
            claude.post("/v1/messages", body=body, cast_to=object)


def test_unknown_model_is_not_found(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="claude-0", max_tokens=5, messages=HELLO)

    assert caught.value.body["error"]["type"] == "not_found_error"


def test_invalid_json_and_missing_key_get_anthropic_error_shapes(sim: SimulatorHandle) -> None:
    cases = [
        ({"x-api-key": "sim"}, b"{nope", 400, "invalid_request_error"),
        ({}, json.dumps({"model": MODEL}).encode(), 401, "authentication_error"),
    ]
    for headers, data, status, kind in cases:
        request = urllib.request.Request(
            f"{sim.anthropic_base_url}/v1/messages",
            data=data,
            headers={"Content-Type": "application/json", **headers},
            method="POST",
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request)
        body = json.loads(caught.value.read())
        assert caught.value.code == status
        assert body["type"] == "error"
        assert body["error"]["type"] == kind


def test_both_auth_headers_are_accepted(sim: SimulatorHandle) -> None:
    for headers in ({"x-api-key": "k"}, {"Authorization": "Bearer k"}):
        request = urllib.request.Request(
            f"{sim.anthropic_base_url}/v1/models", headers=headers, method="GET"
        )
        with urllib.request.urlopen(request) as response:
            assert response.status == 200


def test_models_are_listed_paged_and_retrieved(claude: anthropic.Anthropic) -> None:
    everything = [m.id for m in claude.models.list(limit=2)]
    model = claude.models.retrieve(MODEL)

    assert everything[:2] == ["claude-haiku-4-5", "claude-sonnet-4-5"]
    assert len(everything) == 6
    assert model.id == MODEL
    assert model.type == "model"
    with pytest.raises(anthropic.NotFoundError):
        claude.models.retrieve("claude-0")


def test_async_client_creates_and_streams(sim: SimulatorHandle) -> None:
    async def run() -> tuple[str, str]:
        async with anthropic.AsyncAnthropic(
            base_url=sim.anthropic_base_url, api_key="sim", max_retries=0
        ) as client:
            plain = await client.messages.create(model=MODEL, max_tokens=100, messages=HELLO)
            async with client.messages.stream(
                model=MODEL, max_tokens=100, messages=HELLO
            ) as stream:
                final = await stream.get_final_message()
            return plain.content[0].text, final.content[0].text

    plain, streamed = asyncio.run(run())

    assert streamed == plain
    assert set(sim.usage()["anthropic"][MODEL]) == {"realtime", "stream"}


WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
}


def test_a_tool_is_called_then_its_result_is_answered_in_text(claude: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    called = claude.messages.create(model=MODEL, max_tokens=200, messages=ask, tools=[WEATHER])

    assert called.stop_reason == "tool_use"
    [block] = called.content
    assert block.type == "tool_use" and block.id.startswith("toolu_")
    assert isinstance(block.input["city"], str)

    answered = claude.messages.create(
        model=MODEL,
        max_tokens=20,
        tools=[WEATHER],
        messages=[
            *ask,
            {"role": "assistant", "content": [block.model_dump()]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": block.id, "content": "20 C"}],
            },
        ],
    )
    assert answered.stop_reason in ("end_turn", "max_tokens")
    assert answered.content[0].type == "text"


def test_a_streamed_tool_call_accumulates_in_the_sdk(claude: anthropic.Anthropic) -> None:
    with claude.messages.stream(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "Weather?"}],
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather"},
    ) as stream:
        message = stream.get_final_message()

    [block] = message.content
    assert block.type == "tool_use" and set(block.input) == {"city"}
    assert message.stop_reason == "tool_use"


def test_output_config_format_answers_json_of_the_schema(claude: anthropic.Anthropic) -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}, "stars": {"type": "integer"}},
        "required": ["name", "stars"],
    }
    message = claude.messages.create(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "Rate a tent."}],
        output_config={"format": {"type": "json_schema", "schema": schema}},
    )

    value = json.loads(message.content[0].text)
    assert isinstance(value["name"], str) and isinstance(value["stars"], int)
