"""Anthropic count_tokens, thinking, the beta output_format and stop sequences, via the SDK."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import anthropic
import pytest

from llmops.simulator.testing import SimulatorHandle

MODEL = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "Hello there"}]
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
    },
    "cache_control": {"type": "ephemeral"},
}
SYSTEM = [
    {
        "type": "text",
        "text": "You answer weather questions. " * 50,
        "cache_control": {"type": "ephemeral"},
    }
]
PIXEL = {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}
THINK = {"type": "enabled", "budget_tokens": 2048}


def prompt_total(usage: Any) -> int:
    return usage.input_tokens + usage.cache_read_input_tokens + usage.cache_creation_input_tokens


def test_count_tokens_is_what_the_message_is_billed_for(
    claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this, and the weather in Paris?"},
                {"type": "image", "source": PIXEL},
            ],
        }
    ]
    body: dict[str, Any] = {"model": MODEL, "system": SYSTEM, "tools": [WEATHER]}

    counted = claude.messages.count_tokens(**body, messages=messages)
    assert sim.usage()["totals"]["requests"] == 0  # counting is free
    first = claude.messages.create(**body, messages=messages, max_tokens=300)
    second = claude.messages.create(**body, messages=messages, max_tokens=300)

    assert counted.input_tokens > 1_400  # the image's tokens are in
    # Counting wrote nothing to the cache: the first message still writes it.
    assert first.usage.cache_creation_input_tokens > 0
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens > 0
    assert prompt_total(first.usage) == counted.input_tokens
    assert prompt_total(second.usage) == counted.input_tokens
    assert sim.usage()["anthropic"][MODEL]["realtime"]["input_tokens"] == 2 * counted.input_tokens


def test_count_tokens_counts_thinking_and_structured_requests_alike(
    claude: anthropic.Anthropic,
) -> None:
    schema = {"type": "object", "properties": {"x": {"type": "integer"}}}
    extras: dict[str, Any] = {
        "thinking": THINK,
        "output_config": {"format": {"type": "json_schema", "schema": schema}},
        "tool_choice": {"type": "auto"},
        "tools": [WEATHER],
    }
    counted = claude.messages.count_tokens(model=MODEL, messages=HELLO, **extras)
    billed = claude.messages.create(model=MODEL, messages=HELLO, max_tokens=4096, **extras)

    assert counted.input_tokens == prompt_total(billed.usage)


@pytest.mark.parametrize(
    ("body", "error", "message"),
    [
        ({"model": "claude-0", "messages": HELLO}, anthropic.NotFoundError, "model: claude-0"),
        ({"model": MODEL}, anthropic.BadRequestError, "messages: Field required"),
        (
            {
                "model": MODEL,
                "messages": HELLO,
                "thinking": {"type": "enabled", "budget_tokens": 5},
            },
            anthropic.BadRequestError,
            "thinking.budget_tokens: Input should be greater than or equal to 1024",
        ),
    ],
)
def test_count_tokens_refuses_what_messages_refuses(
    claude: anthropic.Anthropic, body: dict, error: type, message: str
) -> None:
    with pytest.raises(error) as caught:
        claude.post("/v1/messages/count_tokens", body=body, cast_to=object)

    assert caught.value.body["error"]["message"] == message


def test_count_tokens_needs_a_key_and_takes_injected_faults(
    claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    keyless = urllib.request.Request(
        f"{sim.anthropic_base_url}/v1/messages/count_tokens",
        data=json.dumps({"model": MODEL, "messages": HELLO}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(keyless)
    assert caught.value.code == 401

    sim.fault(provider="anthropic", endpoint="messages", status=529, count=1)
    with pytest.raises(anthropic.OverloadedError):
        claude.messages.count_tokens(model=MODEL, messages=HELLO)
    assert claude.messages.count_tokens(model=MODEL, messages=HELLO).input_tokens > 0


def test_thinking_comes_first_signed_and_counted(
    claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    message = claude.messages.create(model=MODEL, max_tokens=4096, messages=HELLO, thinking=THINK)
    again = claude.messages.create(model=MODEL, max_tokens=4096, messages=HELLO, thinking=THINK)

    thinking, text = message.content
    assert thinking.type == "thinking" and text.type == "text"
    assert thinking.thinking and thinking.signature
    assert message.usage.output_tokens == (
        len(thinking.thinking.split(" ")) + len(text.text.split(" "))
    )
    assert again.model_dump(exclude={"id"}) == message.model_dump(exclude={"id"})
    assert sim.usage()["anthropic"][MODEL]["realtime"]["output_tokens"] == (
        2 * message.usage.output_tokens
    )


@pytest.mark.parametrize("config", [{"type": "adaptive"}, {"type": "disabled"}, None])
def test_adaptive_thinks_and_disabled_does_not(claude: anthropic.Anthropic, config: Any) -> None:
    kwargs = {} if config is None else {"thinking": config}
    message = claude.messages.create(model=MODEL, max_tokens=200, messages=HELLO, **kwargs)

    kinds = [block.type for block in message.content]
    assert kinds == (["thinking", "text"] if config == {"type": "adaptive"} else ["text"])


def test_omitted_thinking_is_signed_and_still_costs_tokens(claude: anthropic.Anthropic) -> None:
    shown = claude.messages.create(model=MODEL, max_tokens=4096, messages=HELLO, thinking=THINK)
    omitted = claude.messages.create(
        model=MODEL, max_tokens=4096, messages=HELLO, thinking={**THINK, "display": "omitted"}
    )

    assert omitted.content[0].thinking == ""
    assert omitted.content[0].signature == shown.content[0].signature
    assert omitted.usage.output_tokens == shown.usage.output_tokens


def test_streamed_thinking_matches_the_plain_answer(
    claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    plain = claude.messages.create(model=MODEL, max_tokens=4096, messages=HELLO, thinking=THINK)

    with claude.messages.stream(
        model=MODEL, max_tokens=4096, messages=HELLO, thinking=THINK
    ) as stream:
        events = list(stream)
        final = stream.get_final_message()

    assert final.model_dump(exclude={"id"}) == plain.model_dump(exclude={"id"})
    assert sim.usage()["anthropic"][MODEL]["stream"]["output_tokens"] == plain.usage.output_tokens
    raw = [e for e in events if e.type.startswith("content_block")]
    assert raw[0].type == "content_block_start" and raw[0].index == 0
    assert raw[0].content_block.type == "thinking"
    assert raw[0].content_block.thinking == "" and raw[0].content_block.signature == ""
    kinds = [(e.type, e.index, getattr(getattr(e, "delta", None), "type", None)) for e in raw]
    signature = kinds.index(("content_block_delta", 0, "signature_delta"))
    assert set(kinds[1:signature]) == {("content_block_delta", 0, "thinking_delta")}
    assert kinds[signature + 1 : signature + 3] == [
        ("content_block_stop", 0, None),
        ("content_block_start", 1, None),
    ]
    assert kinds[-1] == ("content_block_stop", 1, None)


def test_thinking_then_a_streamed_tool_call_and_its_echo(claude: anthropic.Anthropic) -> None:
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    uncached = {k: v for k, v in WEATHER.items() if k != "cache_control"}
    tools = [uncached, {**uncached, "name": "get_time"}]
    with claude.messages.stream(
        model=MODEL, max_tokens=4096, messages=ask, tools=tools, thinking=THINK
    ) as stream:
        stops = [e.index for e in stream if e.type == "content_block_stop"]
        final = stream.get_final_message()
    plain = claude.messages.create(
        model=MODEL, max_tokens=4096, messages=ask, tools=tools, thinking=THINK
    )

    assert [block.type for block in final.content] == ["thinking", "tool_use"]
    assert stops == [0, 1]
    assert final.stop_reason == "tool_use"
    assert final.model_dump(exclude={"id"}) == plain.model_dump(exclude={"id"})
    call = final.content[1]
    answered = claude.messages.create(
        model=MODEL,
        max_tokens=4096,
        tools=tools,
        thinking=THINK,
        messages=[
            *ask,
            {"role": "assistant", "content": [b.model_dump() for b in final.content]},
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "20 C"}],
            },
        ],
    )
    assert [block.type for block in answered.content] == ["thinking", "text"]


def test_parallel_tool_calls_after_thinking_keep_their_indices(
    claude: anthropic.Anthropic,
) -> None:
    tools = [WEATHER, {**WEATHER, "name": "get_time"}]
    ask = [{"role": "user", "content": "get_weather and get_time for Paris"}]
    with claude.messages.stream(
        model=MODEL, max_tokens=4096, messages=ask, tools=tools, thinking=THINK
    ) as stream:
        starts = [
            (e.index, e.content_block.type) for e in stream if e.type == "content_block_start"
        ]
        final = stream.get_final_message()

    assert starts == [(0, "thinking"), (1, "tool_use"), (2, "tool_use")]
    assert [b.name for b in final.content[1:]] == ["get_weather", "get_time"]
    assert all(set(b.input) == {"city"} for b in final.content[1:])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"max_tokens": 4096, "thinking": {"type": "enabled", "budget_tokens": 1023}},
            "thinking.budget_tokens: Input should be greater than or equal to 1024",
        ),
        (
            {"max_tokens": 2048, "thinking": THINK},
            "max_tokens must be greater than thinking.budget_tokens",
        ),
        (
            {"max_tokens": 4096, "thinking": {"type": "sometimes"}},
            "thinking.type: Input should be",
        ),
        (
            {
                "max_tokens": 4096,
                "thinking": THINK,
                "tools": [WEATHER],
                "tool_choice": {"type": "any"},
            },
            "Thinking may not be enabled when tool_choice forces tool use.",
        ),
    ],
)
def test_bad_thinking_requests_are_refused(
    claude: anthropic.Anthropic, sim: SimulatorHandle, kwargs: dict, message: str
) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(model=MODEL, messages=HELLO, **kwargs)

    assert caught.value.body["error"]["message"].startswith(message)
    assert sim.usage()["totals"]["requests"] == 0


SCHEMA = {
    "type": "object",
    "properties": {"name": {"type": "string"}, "stars": {"type": "integer"}},
    "required": ["name", "stars"],
    "additionalProperties": False,
}
BETA = {"anthropic-beta": "structured-outputs-2025-11-13"}


def test_beta_output_format_answers_json_of_the_schema(claude: anthropic.Anthropic) -> None:
    message = claude.messages.create(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "Rate a tent."}],
        extra_headers=BETA,
        extra_body={"output_format": {"type": "json_schema", "schema": SCHEMA}},
    )

    [block] = message.content
    value = json.loads(block.text)
    assert set(value) == {"name", "stars"} and isinstance(value["stars"], int)


def test_output_config_wins_over_the_beta_output_format(claude: anthropic.Anthropic) -> None:
    other = {"type": "object", "properties": {"ok": {"type": "boolean"}}, "required": ["ok"]}
    message = claude.messages.create(
        model=MODEL,
        max_tokens=200,
        messages=[{"role": "user", "content": "Rate a tent."}],
        output_config={"format": {"type": "json_schema", "schema": other}},
        extra_headers=BETA,
        extra_body={"output_format": {"type": "json_schema", "schema": SCHEMA}},
    )

    assert set(json.loads(message.content[0].text)) == {"ok"}
    with pytest.raises(anthropic.BadRequestError, match=r"output_format\.type"):
        claude.messages.create(
            model=MODEL,
            max_tokens=200,
            messages=HELLO,
            extra_body={"output_format": {"type": "xml"}},
        )


@pytest.mark.parametrize("thinking", [None, THINK])
def test_stop_sequences_report_the_match_plain_and_streamed(
    claude: anthropic.Anthropic, sim: SimulatorHandle, thinking: dict | None
) -> None:
    sim.config(output_tokens=60)
    extra: dict[str, Any] = {"thinking": thinking} if thinking else {}
    full = claude.messages.create(model=MODEL, max_tokens=4096, messages=HELLO, **extra)
    word = full.content[-1].text.split(" ")[7]

    plain = claude.messages.create(
        model=MODEL, max_tokens=4096, messages=HELLO, stop_sequences=[word], **extra
    )
    with claude.messages.stream(
        model=MODEL, max_tokens=4096, messages=HELLO, stop_sequences=[word], **extra
    ) as stream:
        deltas = [e for e in stream if e.type == "message_delta"]
        streamed = stream.get_final_message()

    for message in (plain, streamed):
        assert message.stop_reason == "stop_sequence"
        assert message.stop_sequence == word
        assert full.content[-1].text.startswith(message.content[-1].text)
    assert deltas[-1].delta.stop_sequence == word
    assert streamed.content[-1].text == plain.content[-1].text


def test_batched_thinking_matches_realtime(claude: anthropic.Anthropic) -> None:
    params: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 4096,
        "messages": HELLO,
        "thinking": THINK,
    }
    realtime = claude.messages.create(**params)
    batch = claude.messages.batches.create(
        requests=[
            {"custom_id": "think", "params": params},
            {"custom_id": "too-small", "params": {**params, "max_tokens": 1024}},
        ]
    )
    results = {r.custom_id: r.result for r in claude.messages.batches.results(batch.id)}

    message = results["think"].message
    assert message.model_dump(exclude={"id"}) == realtime.model_dump(exclude={"id"})
    assert results["too-small"].type == "errored"
    assert results["too-small"].error.error.message == (
        "max_tokens must be greater than thinking.budget_tokens"
    )
