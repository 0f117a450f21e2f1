"""OpenAI Responses API through the official SDK: create, stream, parse, tools, the stored
conversation, batches and faults (contract §10)."""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import openai
import pydantic
import pytest

from llmops.simulator.testing import SimulatorHandle
from tests.simulator.test_openai_batches import jsonl, read_lines

MODEL = "gpt-4o-mini"
TEXT = "Hello there"
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}, "days": {"type": "integer", "minimum": 1}},
    "required": ["city", "days"],
    "additionalProperties": False,
}
TOOLS = [
    {
        "type": "function",
        "name": "get_weather",
        "description": "The forecast for a city.",
        "parameters": WEATHER,
        "strict": True,
    }
]


def create(client: openai.OpenAI, input: Any = TEXT, **kwargs: Any) -> Any:
    return client.responses.create(model=MODEL, input=input, **kwargs)


def chat_usage(client: openai.OpenAI, messages: list[dict[str, Any]]) -> Any:
    return client.chat.completions.create(model=MODEL, messages=messages).usage


def without_parsed(value: Any) -> Any:
    """A parsed response's dict without the `parsed`/`parsed_arguments` the helpers add."""
    if isinstance(value, dict):
        return {
            k: without_parsed(v)
            for k, v in value.items()
            if k not in ("parsed", "parsed_arguments")
        }
    if isinstance(value, list):
        return [without_parsed(v) for v in value]
    return value


def test_a_plain_response_answers_and_counts_as_chat_does(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    raw = oai.responses.with_raw_response.create(model=MODEL, input=TEXT)
    response = raw.parse()
    chat = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": TEXT}])

    assert raw.headers["x-request-id"].startswith("req_")
    assert response.id.startswith("resp_")
    assert response.object == "response"
    assert response.status == "completed"
    assert response.completed_at >= response.created_at
    assert response.error is None and response.incomplete_details is None
    assert response.model == MODEL
    [message] = response.output
    assert message.type == "message"
    assert message.id.startswith("msg_")
    assert message.role == "assistant"
    assert message.status == "completed"
    assert message.content[0].type == "output_text"
    # The same question on either endpoint gets the same answer and the same count.
    assert response.output_text == chat.choices[0].message.content
    usage = response.usage
    assert usage.input_tokens == chat.usage.prompt_tokens
    assert usage.output_tokens == chat.usage.completion_tokens
    assert usage.total_tokens == usage.input_tokens + usage.output_tokens
    assert usage.input_tokens_details.cached_tokens == 0
    assert usage.output_tokens_details.reasoning_tokens == 0
    assert response.store is True
    assert response.tools == [] and response.tool_choice == "auto"
    assert response.text.format.type == "text"
    billed = sim.usage()["openai"][MODEL]["realtime"]
    assert billed["requests"] == 2
    assert billed["input_tokens"] == 2 * usage.input_tokens
    assert billed["output_tokens"] == 2 * usage.output_tokens


def test_instructions_are_counted_and_repeated(oai: openai.OpenAI) -> None:
    plain = create(oai)
    instructed = create(oai, instructions="Answer like a pirate.")

    chat = chat_usage(
        oai,
        [
            {"role": "developer", "content": "Answer like a pirate."},
            {"role": "user", "content": TEXT},
        ],
    )
    assert instructed.instructions == "Answer like a pirate."
    assert plain.instructions is None
    assert instructed.usage.input_tokens == chat.prompt_tokens > plain.usage.input_tokens
    assert instructed.output_text != plain.output_text


def test_input_items_with_or_without_type_and_with_images(oai: openai.OpenAI) -> None:
    def image(detail: str) -> dict[str, Any]:
        return {"type": "input_image", "image_url": "data:image/png;base64,AAAA", "detail": detail}

    items: list[Any] = [
        {"role": "system", "content": "Be brief."},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "output_text", "text": "Hello!"}]},
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {"role": "developer", "content": "Mind the weather."},
        {"role": "user", "content": "Describe it."},
    ]

    plain = create(oai, items)
    low = create(oai, [*items[:-1], {"role": "user", "content": [image("low")]}])
    high = create(oai, [*items[:-1], {"role": "user", "content": [image("high")]}])

    chat = chat_usage(
        oai,
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hello!"},
            {"role": "developer", "content": "Mind the weather."},
            {"role": "user", "content": "Describe it."},
        ],
    )
    assert plain.status == "completed" and plain.output_text
    assert plain.usage.input_tokens == chat.prompt_tokens
    # An image costs what chat charges for it: 85 tokens at low detail, 765 at high.
    assert high.usage.input_tokens - low.usage.input_tokens == 765 - 85


def test_streamed_events_are_numbered_in_order_and_end_in_the_stored_response(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    plain = create(oai)

    events = list(create(oai, stream=True))

    assert [event.sequence_number for event in events] == list(range(len(events)))
    kinds = [event.type for event in events]
    deltas = kinds.count("response.output_text.delta")
    assert deltas > 1
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    created, in_progress = events[0].response, events[1].response
    assert created.status == in_progress.status == "in_progress"
    assert created.output == [] and created.usage is None
    text = "".join(event.delta for event in events if event.type == "response.output_text.delta")
    assert text == plain.output_text
    assert events[-4].text == text
    final = events[-1].response
    assert final.id == created.id
    assert final.output_text == text
    assert final.usage == plain.usage
    assert oai.responses.retrieve(final.id) == final
    billed = sim.usage()["openai"][MODEL]
    assert billed["stream"]["requests"] == 1
    assert billed["stream"]["output_tokens"] == final.usage.output_tokens


def test_the_stream_helper_accepts_text_and_function_call_streams(oai: openai.OpenAI) -> None:
    with oai.responses.stream(model=MODEL, input=TEXT) as stream:
        kinds = [event.type for event in stream]
        text = stream.get_final_response()
    with oai.responses.stream(model=MODEL, input="Weather in Paris?", tools=TOOLS) as stream:
        called = stream.get_final_response()

    assert kinds[-1] == "response.completed"
    assert text.output_text
    assert without_parsed(text.to_dict()) == oai.responses.retrieve(text.id).to_dict()
    [call] = called.output
    assert call.type == "function_call"
    assert call.parsed_arguments == json.loads(call.arguments)
    assert without_parsed(called.to_dict()) == oai.responses.retrieve(called.id).to_dict()


class Forecast(pydantic.BaseModel):
    city: str
    days: int
    tags: list[str]


def test_parse_returns_an_instance_of_the_text_format(oai: openai.OpenAI) -> None:
    parsed = oai.responses.parse(model=MODEL, input="A forecast, please.", text_format=Forecast)

    assert isinstance(parsed.output_parsed, Forecast)
    assert parsed.text.format.type == "json_schema"
    assert parsed.text.format.name == "Forecast"
    assert Forecast.model_validate_json(parsed.output_text) == parsed.output_parsed


def test_json_object_needs_the_word_json(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    text = {"format": {"type": "json_object"}}

    answer = create(oai, "Reply in JSON.", text=text)
    with pytest.raises(openai.BadRequestError) as caught:
        create(oai, "Reply please.", text=text)
    told = create(oai, "Reply please.", text=text, instructions="Always answer in json.")

    assert isinstance(json.loads(answer.output_text), dict)
    assert isinstance(json.loads(told.output_text), dict)
    assert caught.value.param == "text.format"
    assert sim.usage()["openai"][MODEL]["realtime"]["requests"] == 2


def test_a_function_call_round_trip_with_items(oai: openai.OpenAI) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}

    first = create(oai, [question], tools=TOOLS)
    [call] = first.output
    second = create(
        oai,
        [
            question,
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 20}'},
        ],
        tools=TOOLS,
    )

    assert call.type == "function_call"
    assert call.id.startswith("fc_")
    assert call.call_id.startswith("call_")
    assert call.name == "get_weather"
    assert call.status == "completed"
    jsonschema.validate(json.loads(call.arguments), WEATHER)
    assert first.output_text == ""
    assert first.tools[0].name == "get_weather"
    assert second.output[0].type == "message"
    assert second.output_text
    assert second.usage.input_tokens > first.usage.input_tokens


def test_a_function_call_round_trip_through_previous_response_id(oai: openai.OpenAI) -> None:
    first = create(oai, "What is the weather in Paris?", tools=TOOLS)
    [call] = first.output
    output = {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 20}'}

    second = create(oai, [output], tools=TOOLS, previous_response_id=first.id)

    assert second.previous_response_id == first.id
    assert second.output[0].type == "message"
    assert second.output_text
    assert second.usage.input_tokens > first.usage.input_tokens
    with pytest.raises(openai.BadRequestError) as unanswered:
        create(oai, "And in Rome?", tools=TOOLS, previous_response_id=first.id)
    with pytest.raises(openai.BadRequestError) as stray:
        create(oai, [{**output, "call_id": "call_unknown"}], previous_response_id=second.id)
    assert unanswered.value.param == "input"
    assert call.call_id in unanswered.value.message
    assert stray.value.param == "input"
    assert "No tool call found" in stray.value.message


def test_tool_choice_none_named_and_required(oai: openai.OpenAI) -> None:
    other = {**TOOLS[0], "name": "get_time", "parameters": {"type": "object", "properties": {}}}
    tools = [*TOOLS, other]

    none = create(oai, "Weather?", tools=tools, tool_choice="none")
    named = create(
        oai, "Weather?", tools=tools, tool_choice={"type": "function", "name": "get_time"}
    )
    required = create(
        oai, "Weather?", tools=tools, tool_choice="required", parallel_tool_calls=False
    )

    assert none.output[0].type == "message"
    assert [item.name for item in named.output] == ["get_time"]
    assert named.tool_choice.name == "get_time"
    assert [item.type for item in required.output] == ["function_call"]
    assert required.parallel_tool_calls is False


def test_a_continuation_counts_every_stored_turn_but_not_their_instructions(
    oai: openai.OpenAI,
) -> None:
    first = create(oai, "Name a river.", instructions="Answer like a pirate.")

    second = create(oai, "And a mountain?", previous_response_id=first.id)

    chat = chat_usage(
        oai,
        [
            {"role": "user", "content": "Name a river."},
            {"role": "assistant", "content": first.output_text},
            {"role": "user", "content": "And a mountain?"},
        ],
    )
    assert second.instructions is None
    assert second.usage.input_tokens == chat.prompt_tokens
    assert second.usage.input_tokens > first.usage.input_tokens


def test_a_long_conversation_continued_reads_its_prefix_from_the_prompt_cache(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    long = "word " * 1200

    first = create(oai, long)
    second = create(oai, "Go on.", previous_response_id=first.id)

    assert first.usage.input_tokens_details.cached_tokens == 0
    cached = second.usage.input_tokens_details.cached_tokens
    assert 1024 <= cached < second.usage.input_tokens
    assert (cached - 1024) % 128 == 0
    assert sim.usage()["openai"][MODEL]["realtime"]["cached_input_tokens"] == cached


def test_max_output_tokens_makes_an_incomplete_response(oai: openai.OpenAI) -> None:
    response = create(oai, max_output_tokens=16)
    events = list(create(oai, max_output_tokens=16, stream=True))

    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.completed_at is None
    assert response.max_output_tokens == 16
    assert response.usage.output_tokens == 16
    assert response.output[0].status == "incomplete"
    assert events[-1].type == "response.incomplete"
    assert events[-1].response.status == "incomplete"
    assert events[-1].response.output_text == response.output_text


def test_responses_are_retrieved_and_deleted(oai: openai.OpenAI) -> None:
    kept = create(oai)
    unstored = create(oai, store=False)

    retrieved = oai.responses.retrieve(kept.id)
    deleted = oai.responses.with_raw_response.delete(kept.id)

    assert retrieved == kept
    assert json.loads(deleted.content) == {"id": kept.id, "object": "response", "deleted": True}
    assert unstored.store is False
    for gone in (kept.id, unstored.id, "resp_unknown"):
        with pytest.raises(openai.NotFoundError) as caught:
            oai.responses.retrieve(gone)
        assert caught.value.body["message"] == f"Response with id '{gone}' not found."
    with pytest.raises(openai.NotFoundError):
        oai.responses.delete(kept.id)


@pytest.mark.parametrize("previous", ["resp_unknown", "deleted", "unstored"])
def test_an_unknown_previous_response_is_a_bad_request(
    oai: openai.OpenAI, sim: SimulatorHandle, previous: str
) -> None:
    if previous == "deleted":
        previous = create(oai).id
        oai.responses.delete(previous)
    elif previous == "unstored":
        previous = create(oai, store=False).id

    with pytest.raises(openai.BadRequestError) as caught:
        create(oai, previous_response_id=previous)

    assert caught.value.code == "previous_response_not_found"
    assert caught.value.param == "previous_response_id"
    assert caught.value.body["message"] == f"Previous response with id '{previous}' not found."


def test_unknown_and_embedding_models_are_refused(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        oai.responses.create(model="gpt-x", input=TEXT)
    with pytest.raises(openai.BadRequestError) as embedding:
        oai.responses.create(model="text-embedding-3-small", input=TEXT)

    assert unknown.value.code == "model_not_found"
    assert "gpt-x" in unknown.value.message
    assert embedding.value.param == "model"
    assert sim.usage()["totals"]["requests"] == 0


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"input": openai.omit}, "input"),
        ({"input": []}, "input"),
        ({"input": [{"role": "robot", "content": "hi"}]}, "input[0].role"),
        (
            {"input": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]},
            "input[0].content[0].type",
        ),
        (
            {"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]},
            "input[0].call_id",
        ),
        ({"tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"tools": [{"type": "function", "name": "bad name!"}]}, "tools[0].name"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "name": "nope"}}, "tool_choice"),
        ({"tool_choice": "required"}, "tool_choice"),
        ({"max_output_tokens": 15}, "max_output_tokens"),
        ({"max_output_tokens": 10**6}, "max_output_tokens"),
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 1.5}, "top_p"),
        ({"text": {"format": {"type": "xml"}}}, "text.format.type"),
        ({"text": {"format": {"type": "json_schema", "name": "W"}}}, "text.format.schema"),
        ({"reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"truncation": "sometimes"}, "truncation"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"stream_options": {"include_obfuscation": False}}, "stream_options"),
        ({"instructions": 7}, "instructions"),
    ],
)
def test_malformed_requests_are_bad_requests_naming_the_field(
    oai: openai.OpenAI, sim: SimulatorHandle, kwargs: dict, param: str
) -> None:
    kwargs = {"input": TEXT, **kwargs}

    with pytest.raises(openai.BadRequestError) as caught:
        oai.responses.create(model=MODEL, **kwargs)

    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert sim.usage()["totals"]["requests"] == 0


def test_unknown_fields_are_ignored_as_chat_ignores_them(oai: openai.OpenAI) -> None:
    response = create(oai, extra_body={"some_future_option": {"x": 1}}, reasoning={"effort": "low"})

    assert response.status == "completed"
    assert response.reasoning.effort == "low"


def test_faults_target_responses_apart_from_chat(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.fault(provider="openai", endpoint="chat", status=500)
    sim.fault(provider="openai", endpoint="responses", model="gpt-4o", status=429, count=1)

    fine = create(oai)
    with pytest.raises(openai.RateLimitError):
        oai.responses.create(model="gpt-4o", input=TEXT)
    recovered = oai.responses.create(model="gpt-4o", input=TEXT)
    with pytest.raises(openai.InternalServerError):
        chat_usage(oai, [{"role": "user", "content": TEXT}])
    sim.fault(provider="openai", endpoint="responses", status=503)
    with pytest.raises(openai.InternalServerError):
        oai.responses.retrieve(fine.id)

    assert fine.output_text and recovered.output_text
    assert sim.usage()["totals"]["requests"] == 2


def test_a_stream_error_fault_fails_the_response_mid_stream(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(provider="openai", endpoint="responses", kind="stream_error", after_tokens=3)

    events = list(create(oai, stream=True))

    assert [event.sequence_number for event in events] == list(range(len(events)))
    assert [event.type for event in events].count("response.output_text.delta") == 3
    failed = events[-1]
    assert failed.type == "response.failed"
    assert failed.response.status == "failed"
    assert failed.response.error.code == "server_error"
    assert sim.usage()["openai"][MODEL]["stream"]["output_tokens"] == 3
    with pytest.raises(openai.NotFoundError):
        oai.responses.retrieve(failed.response.id)


def line(custom_id: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": "/v1/responses",
        "body": {"model": MODEL, "input": TEXT, **body},
    }


def test_a_batch_of_responses_runs_to_completion_and_bills_as_batch(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(batch_validating_s=10, batch_turnaround_s=100, batch_finalizing_s=5)
    earlier = create(oai)
    lines = [
        line("plain"),
        line("tools", input="Weather in Paris?", tools=TOOLS),
        line("short", max_output_tokens=16),
        line("continued", input="More.", previous_response_id=earlier.id),
        line("bad", max_output_tokens=1),
        line("gone", previous_response_id="resp_unknown"),
    ]
    uploaded = oai.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")
    batch = oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h"
    )

    assert batch.status == "validating"
    sim.advance(10 + 100 + 5)
    done = oai.batches.retrieve(batch.id)

    assert done.status == "completed"
    assert done.endpoint == "/v1/responses"
    assert done.request_counts.completed == 4
    assert done.request_counts.failed == 2
    output = {o["custom_id"]: o for o in read_lines(oai, done.output_file_id)}
    assert set(output) == {"plain", "tools", "short", "continued"}
    bodies = {key: o["response"]["body"] for key, o in output.items()}
    for result in output.values():
        assert result["response"]["status_code"] == 200
        assert result["response"]["body"]["object"] == "response"
        assert result["response"]["body"]["id"].startswith("resp_")
    plain = openai.types.responses.Response.model_validate(bodies["plain"])
    assert plain.output_text == create(oai).output_text
    assert bodies["tools"]["output"][0]["type"] == "function_call"
    assert bodies["short"]["status"] == "incomplete"
    assert bodies["continued"]["usage"]["input_tokens"] > earlier.usage.input_tokens
    errors = {e["custom_id"]: e for e in read_lines(oai, done.error_file_id)}
    assert errors["bad"]["response"]["status_code"] == 400
    assert errors["bad"]["response"]["body"]["error"]["param"] == "max_output_tokens"
    gone = errors["gone"]["response"]["body"]["error"]
    assert gone["code"] == "previous_response_not_found"

    billed = sim.usage()["openai"][MODEL]["batch"]
    assert billed["requests"] == 4
    assert billed["input_tokens"] == sum(b["usage"]["input_tokens"] for b in bodies.values())
    assert billed["output_tokens"] == sum(b["usage"]["output_tokens"] for b in bodies.values())


def test_a_responses_batch_refuses_lines_of_another_url(oai: openai.OpenAI) -> None:
    lines = [line("a"), {**line("b"), "url": "/v1/chat/completions"}]
    uploaded = oai.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")

    batch = oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/responses", completion_window="24h"
    )

    assert batch.status == "failed"
    [error] = batch.errors.data
    assert error.code == "invalid_url"
    assert error.line == 2
