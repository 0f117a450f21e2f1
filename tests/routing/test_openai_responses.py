"""The OpenAI Responses protocol module (provider-contract §10): Responses bodies as chat
requests for a Claude model, chat answers and deltas back as Response objects and stream
events, checked against the openai SDK's own types, accumulator and client."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from openai._models import validate_type
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseStreamEvent, ResponseUsage
from pydantic import BaseModel

from billing.pricing import Usage
from routing.protocols import openai_chat, translation
from routing.protocols import openai_responses as responses
from routing.protocols.openai_responses import Untranslatable

TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
}
CHAT_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        "strict": True,
    },
}
USAGE = Usage(input_tokens=20, cached_input_tokens=10, output_tokens=7, reasoning_tokens=0)
IDENTITY = {"id": "resp_ab12", "created_at": 1741476542, "model": "claude-haiku-4-5"}


def call(n: int, name: str = "get_weather", arguments: str = '{"city":"Paris"}') -> dict:
    return {
        "id": f"call_{n}",
        "type": "function",
        "function": {"name": name, "arguments": arguments},
    }


def answer(text: str, *, finish: str = "stop", calls: list | None = None) -> dict:
    return openai_chat.text_answer(
        text, finish_reason=finish, model="claude-haiku-4-5", tool_calls=calls
    )


def sdk_state(events: list[dict], **kwargs) -> ResponseStreamState:
    """Events validated as the SDK's ResponseStreamEvent and fed to its stream accumulator
    (which raises RuntimeError at anything §10 lists)."""
    state = ResponseStreamState(
        input_tools=kwargs.get("tools", omit), text_format=kwargs.get("text_format", omit)
    )
    for event in events:
        state.handle_event(validate_type(type_=ResponseStreamEvent, value=event))
    return state


def client(handler) -> openai.OpenAI:
    transport = httpx2.MockTransport(handler)
    return openai.OpenAI(
        api_key="k", base_url="http://llmops/v1", http_client=httpx2.Client(transport=transport)
    )


def serving_events(events: list[dict]) -> openai.OpenAI:
    body = b"".join(responses.sse(e) for e in events)
    return client(
        lambda request: httpx2.Response(
            200, content=body, headers={"content-type": "text/event-stream"}
        )
    )


def assert_numbered(events: list[dict]) -> None:
    assert [e["sequence_number"] for e in events] == list(range(len(events)))


# --- bodies -------------------------------------------------------------------------------


def test_the_body_goes_up_as_sent_and_the_cache_ignores_only_transport_fields():
    body = {
        "model": "auto",
        "input": "Hi",
        "stream": True,
        "store": False,
        "metadata": {"a": "b"},
        "user": "u-1",
        "background": False,
        "previous_response_id": "resp_0",
        "include": ["message.output_text.logprobs"],
        "some_future_field": 1,
    }
    options = responses.options_of(body)

    assert "model" not in options
    assert responses.upstream_body(model="gpt-5.4", options=options) == {
        **body,
        "model": "gpt-5.4",
    }
    # The earlier turns and what the Response includes change the answer: they stay in the key.
    assert responses.answer_material(options) == {
        "input": "Hi",
        "previous_response_id": "resp_0",
        "include": ["message.output_text.logprobs"],
        "some_future_field": 1,
    }


# --- chat_of ------------------------------------------------------------------------------


def test_a_full_body_becomes_chat_messages_and_options():
    options = {
        "input": "Weather in Paris?",
        "instructions": "Be brief.",
        "max_output_tokens": 500,
        "temperature": 0.5,
        "top_p": 0.9,
        "metadata": {"team": "x"},
        "user": "u-1",
        "parallel_tool_calls": False,
        "tools": [TOOL],
        "tool_choice": "required",
        "store": True,
        "stream": True,
        "stream_options": {"include_obfuscation": False},
        "previous_response_id": "resp_0",
        "service_tier": "auto",
        "prompt_cache_key": "k",
        "include": [],
        "truncation": "disabled",
        "background": False,
        "reasoning": {"effort": None},
        "text": {"format": {"type": "text"}},
    }

    messages, chat = responses.chat_of(options)

    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
    ]
    assert chat == {
        "max_completion_tokens": 500,
        "temperature": 0.5,
        "top_p": 0.9,
        "metadata": {"team": "x"},
        "user": "u-1",
        "parallel_tool_calls": False,
        "service_tier": "auto",
        "tools": [CHAT_TOOL],
        "tool_choice": "required",
    }


def test_items_become_turns_with_consecutive_calls_in_one_assistant_message():
    image = "data:image/png;base64,iVBORw0KGgo="
    items = [
        {"role": "developer", "content": [{"type": "input_text", "text": "Use tools."}]},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "Weather here?"},
                {"type": "input_image", "image_url": image, "detail": "auto"},
            ],
        },
        {"type": "reasoning", "id": "rs_1", "summary": []},
        {
            "type": "message",
            "id": "msg_1",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Checking.", "annotations": []},
                {"type": "refusal", "refusal": "Not that."},
            ],
        },
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
        {"type": "function_call", "call_id": "call_2", "name": "get_time", "arguments": "{}"},
        {"type": "function_call_output", "call_id": "call_1", "output": '{"temp":20}'},
        {
            "type": "function_call_output",
            "call_id": "call_2",
            "output": [{"type": "input_text", "text": "12"}, {"type": "input_text", "text": ":00"}],
        },
        {"role": "system", "content": "Answer in French."},
    ]

    messages, _ = responses.chat_of({"input": items})

    assert messages == [
        {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Weather here?"},
                {"type": "image_url", "image_url": {"url": image, "detail": "auto"}},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Checking."},
                {"type": "text", "text": "Not that."},
            ],
            "tool_calls": [
                call(1, arguments="{}"),
                call(2, name="get_time", arguments="{}"),
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp":20}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
        {"role": "system", "content": "Answer in French."},
    ]
    assert items[3].get("tool_calls") is None  # the client's items are left as they came


def test_calls_without_text_open_an_assistant_turn_of_their_own():
    items = [
        {"role": "user", "content": "Weather?"},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
    ]
    messages, _ = responses.chat_of({"input": items})
    assert messages[1] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [call(1, arguments="{}")],
    }


def test_history_comes_after_the_instructions_and_before_the_input():
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {"type": "reasoning", "id": "rs_0", "summary": []},
        {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{}"},
    ]
    options = {
        "instructions": "Be brief.",
        "previous_response_id": "resp_0",
        "input": [{"type": "function_call_output", "call_id": "call_1", "output": "20C"}],
    }

    messages, chat = responses.chat_of(options, history=history)

    assert messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call(1, arguments="{}")]},
        {"role": "tool", "tool_call_id": "call_1", "content": "20C"},
    ]
    assert chat == {}


def test_a_chat_request_of_a_tool_round_trip_translates_for_claude():
    history = [
        {"role": "user", "content": "Weather in Paris?"},
        {
            "type": "function_call",
            "call_id": "toolu_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
    ]
    options = {
        "input": [{"type": "function_call_output", "call_id": "toolu_1", "output": "20C"}],
        "tools": [TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": {"type": "json_schema", "name": "W", "schema": {"type": "object"}}},
    }
    messages, chat = responses.chat_of(options, history=history)

    body = translation.anthropic_body(
        model="claude-haiku-4-5", messages=messages, options=chat, max_tokens=100
    )

    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
        {
            "role": "assistant",
            "content": [
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Paris"},
                }
            ],
        },
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "20C"}],
        },
    ]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather"}
    assert body["tools"][0]["name"] == "get_weather"
    assert body["output_config"] == {
        "format": {"type": "json_schema", "schema": {"type": "object"}}
    }


@pytest.mark.parametrize(
    ("choice", "chat"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        (
            {"type": "function", "name": "get_weather"},
            {"type": "function", "function": {"name": "get_weather"}},
        ),
    ],
)
def test_tool_choice_takes_its_chat_form(choice, chat):
    _, options = responses.chat_of({"input": "Hi", "tools": [TOOL], "tool_choice": choice})
    assert options["tool_choice"] == chat


@pytest.mark.parametrize(
    ("text", "response_format"),
    [
        (
            {"format": {"type": "json_schema", "name": "W", "schema": {"type": "object"}}},
            {"type": "json_schema", "json_schema": {"name": "W", "schema": {"type": "object"}}},
        ),
        (
            {
                "format": {
                    "type": "json_schema",
                    "name": "W",
                    "description": "A weather report.",
                    "schema": {"type": "object"},
                    "strict": True,
                },
                "verbosity": None,
            },
            {
                "type": "json_schema",
                "json_schema": {
                    "name": "W",
                    "description": "A weather report.",
                    "schema": {"type": "object"},
                    "strict": True,
                },
            },
        ),
        ({"format": {"type": "json_object"}}, {"type": "json_object"}),
        ({"format": {"type": "text"}}, None),
        ({}, None),
    ],
)
def test_text_format_becomes_response_format(text, response_format):
    _, chat = responses.chat_of({"input": "Answer in json.", "text": text})
    assert chat.get("response_format") == response_format


def test_the_safety_identifier_is_the_user_claude_is_told_of():
    _, chat = responses.chat_of({"input": "Hi", "user": "u-1", "safety_identifier": "s-1"})
    assert chat["user"] == "s-1"
    _, chat = responses.chat_of({"input": "Hi", "safety_identifier": "s-1"})
    assert chat["user"] == "s-1"


def test_what_claude_does_anyway_is_accepted():
    # No reasoning is what a Claude model does here; null fields are as good as absent.
    messages, chat = responses.chat_of(
        {
            "input": "Hi",
            "reasoning": {"effort": "none", "summary": None},
            "conversation": None,
            "top_logprobs": None,
            "text": {"format": None, "verbosity": None},
            "tools": [{**TOOL, "defer_loading": None}],
        }
    )
    assert messages == [{"role": "user", "content": "Hi"}]
    assert chat == {"tools": [CHAT_TOOL]}


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"tools": [TOOL, {"type": "web_search"}]}, "tools[1].type"),
        ({"tools": [{"type": "custom", "name": "grammar"}]}, "tools[0].type"),
        ({"tools": [{**TOOL, "defer_loading": True}]}, "tools[0].defer_loading"),
        ({"tool_choice": {"type": "allowed_tools", "mode": "auto", "tools": []}}, "tool_choice"),
        ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice"),
        ({"text": {"format": {"type": "text"}, "verbosity": "low"}}, "text.verbosity"),
        ({"text": {"format": {"type": "grammar"}}}, "text.format"),
        # json_object rides on a forced tool call: anthropic_refuses' response_format.
        ({"text": {"format": {"type": "json_object"}}, "tools": [TOOL]}, "text.format"),
        ({"reasoning": {"effort": "high"}}, "reasoning.effort"),
        ({"reasoning": {"summary": "auto"}}, "reasoning.summary"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"top_logprobs": 3}, "top_logprobs"),
        ({"max_tool_calls": 2}, "max_tool_calls"),
        ({"some_future_field": 1}, "some_future_field"),
        ({"include": ["message.output_text.logprobs"]}, "include"),
        ({"truncation": "auto"}, "truncation"),
        ({"instructions": [{"role": "system", "content": "x"}]}, "instructions"),
        ({"temperature": 1.5}, "temperature"),  # anthropic_refuses: Claude's stops at 1
        ({"service_tier": "priority"}, "service_tier"),
    ],
)
def test_what_claude_cannot_honour_is_refused_by_name(options, param):
    with pytest.raises(Untranslatable) as refused:
        responses.chat_of({"input": "Hi", **options})
    assert refused.value.param == param
    assert isinstance(refused.value, ValueError) and str(refused.value)


@pytest.mark.parametrize(
    ("item", "param"),
    [
        (
            {"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]},
            "input[1].content[0].file_id",
        ),
        (
            {"role": "user", "content": [{"type": "input_file", "file_data": "data:…"}]},
            "input[1].content[0].type",
        ),
        ({"type": "item_reference", "id": "msg_1"}, "input[1].type"),
        ({"type": "web_search_call", "id": "ws_1"}, "input[1].type"),
        ({"role": "tool", "content": "x"}, "input[1].role"),
        ({"role": "user", "content": 3}, "input[1].content"),
        (
            {
                "role": "system",
                "content": [{"type": "input_image", "image_url": "https://x/y.png"}],
            },
            "input[1].content",
        ),
        (
            {
                "type": "function_call_output",
                "call_id": "call_1",
                "output": [{"type": "input_image", "image_url": "https://x/y.png"}],
            },
            "input[1].output",
        ),
    ],
)
def test_input_items_claude_cannot_read_are_refused_where_they_are(item, param):
    with pytest.raises(Untranslatable) as refused:
        responses.chat_of({"input": [{"role": "user", "content": "Hi"}, item]})
    assert refused.value.param == param


def test_an_unreadable_earlier_turn_is_refused_as_the_previous_response():
    history = [{"type": "web_search_call", "id": "ws_1", "status": "completed"}]
    with pytest.raises(Untranslatable) as refused:
        responses.chat_of({"input": "And now?", "previous_response_id": "resp_0"}, history=history)
    assert refused.value.param == "previous_response_id"


def test_an_input_neither_text_nor_items_is_refused():
    with pytest.raises(Untranslatable) as refused:
        responses.chat_of({"input": 3})
    assert refused.value.param == "input"


def test_items_of_keeps_the_input_to_rebuild_history():
    items = [{"role": "user", "content": "Hi"}]
    assert responses.items_of({"input": "Hi"}) == items
    assert responses.items_of({"input": items}) == items
    assert responses.items_of({"input": items}) is not items
    assert responses.items_of({}) == []


# --- usage --------------------------------------------------------------------------------


def test_usage_round_trips_and_validates_as_the_sdks():
    usage = Usage(input_tokens=26, cached_input_tokens=10, output_tokens=87, reasoning_tokens=5)
    wire = responses.usage_json(usage)

    assert wire == {
        "input_tokens": 36,
        "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 0},
        "output_tokens": 87,
        "output_tokens_details": {"reasoning_tokens": 5},
        "total_tokens": 123,
    }
    ResponseUsage.model_validate(wire, strict=True)
    assert responses.usage_of(wire) == usage


def test_cache_writes_count_in_the_input_tokens():
    usage = Usage(input_tokens=5, cached_input_tokens=10, cache_write_tokens=20, output_tokens=1)
    wire = responses.usage_json(usage)
    assert wire["input_tokens"] == 35 and wire["total_tokens"] == 36
    assert wire["input_tokens_details"]["cache_write_tokens"] == 20
    # Read back as OpenAI's usage is read: whatever is not cached is input.
    assert responses.usage_of(wire) == Usage(
        input_tokens=25, cached_input_tokens=10, output_tokens=1
    )


@pytest.mark.parametrize("usage", [None, {}, {"input_tokens": "3"}, "x"])
def test_no_usage_reads_as_none(usage):
    assert responses.usage_of(usage) is None


def test_usage_without_details_reads_as_uncached():
    assert responses.usage_of({"input_tokens": 3, "output_tokens": 2}) == Usage(
        input_tokens=3, output_tokens=2
    )


# --- response_of --------------------------------------------------------------------------


def test_a_text_answer_is_a_completed_response_with_openais_echo_defaults():
    response = responses.response_of(
        answer("Hello"), usage=USAGE, options={"input": "Hi"}, **IDENTITY
    )

    parsed = Response.model_validate(response)
    assert parsed.output_text == "Hello"
    assert response["status"] == "completed" and response["incomplete_details"] is None
    assert response["output"] == [
        {
            "id": "msg_ab12",
            "type": "message",
            "status": "completed",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "Hello", "annotations": [], "logprobs": []}
            ],
        }
    ]
    assert response["usage"] == responses.usage_json(USAGE)
    assert {k: response[k] for k in ("id", "object", "created_at", "model")} == {
        **{k: IDENTITY[k] for k in ("id", "created_at", "model")},
        "object": "response",
    }
    assert {
        k: response[k]
        for k in (
            "instructions",
            "max_output_tokens",
            "temperature",
            "top_p",
            "tools",
            "tool_choice",
            "text",
            "parallel_tool_calls",
            "previous_response_id",
            "store",
            "metadata",
            "user",
            "truncation",
            "reasoning",
        )
    } == {
        "instructions": None,
        "max_output_tokens": None,
        "temperature": 1.0,
        "top_p": 1.0,
        "tools": [],
        "tool_choice": "auto",
        "text": {"format": {"type": "text"}},
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "store": True,
        "metadata": {},
        "user": None,
        "truncation": "disabled",
        "reasoning": {"effort": None, "summary": None},
    }
    # Each response has defaults of its own: a caller filling one in leaves the next alone.
    response["metadata"]["k"] = "v"
    response["tools"].append(TOOL)
    again = responses.response_of(answer("Hi"), usage=USAGE, options={}, **IDENTITY)
    assert again["metadata"] == {} and again["tools"] == []


def test_a_response_echoes_the_request_as_sent():
    fmt = {"type": "json_schema", "name": "W", "schema": {"type": "object"}, "strict": True}
    options = {
        "input": "Hi",
        "instructions": "Be brief.",
        "max_output_tokens": 50,
        "temperature": 0.2,
        "top_p": 0.5,
        "tools": [TOOL],
        "tool_choice": {"type": "function", "name": "get_weather"},
        "text": {"format": fmt},
        "parallel_tool_calls": False,
        "previous_response_id": "resp_0",
        "store": False,
        "metadata": {"a": "b"},
        "user": "u-1",
        "truncation": "disabled",
        "reasoning": {"effort": "none"},
    }
    response = responses.response_of(answer("{}"), usage=USAGE, options=options, **IDENTITY)

    Response.model_validate(response)
    for key in options.keys() - {"input", "reasoning"}:
        assert response[key] == options[key], key
    assert response["reasoning"] == {"effort": "none", "summary": None}


def test_tool_calls_are_function_call_items_after_the_message():
    calls = [call(1), call(2, name="get_time", arguments="{}")]
    response = responses.response_of(
        answer("Let me check.", finish="tool_calls", calls=calls),
        usage=USAGE,
        options={"input": "Hi", "tools": [TOOL]},
        **IDENTITY,
    )

    parsed = Response.model_validate(response)
    assert parsed.output_text == "Let me check."
    assert [item.type for item in parsed.output] == ["message", "function_call", "function_call"]
    assert response["output"][1:] == [
        {
            "id": "fc_ab12_0",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_1",
            "name": "get_weather",
            "arguments": '{"city":"Paris"}',
        },
        {
            "id": "fc_ab12_1",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_2",
            "name": "get_time",
            "arguments": "{}",
        },
    ]
    assert response["status"] == "completed"
    assert responses.finish_of(response) == "tool_calls"
    assert responses.tool_calls_of(response) == calls


def test_a_call_only_answer_has_no_message_item():
    response = responses.response_of(
        answer("", finish="tool_calls", calls=[call(1)]), usage=USAGE, options={}, **IDENTITY
    )
    assert [item["type"] for item in response["output"]] == ["function_call"]
    assert Response.model_validate(response).output_text == ""


@pytest.mark.parametrize(
    ("finish", "reason"), [("length", "max_output_tokens"), ("content_filter", "content_filter")]
)
def test_a_cut_answer_is_incomplete_with_openais_reason(finish, reason):
    response = responses.response_of(
        answer("Once upon", finish=finish), usage=USAGE, options={"input": "Hi"}, **IDENTITY
    )

    parsed = Response.model_validate(response)
    assert parsed.status == "incomplete"
    assert parsed.incomplete_details.reason == reason
    assert response["output"][0]["status"] == "incomplete"
    assert responses.finish_of(response) == finish
    assert responses.text_of(response) == "Once upon"


def test_the_sdk_client_reads_a_response_and_parses_its_json():
    class Weather(BaseModel):
        city: str
        temp: int

    options = {"input": "Weather in json?"}
    body = responses.response_of(
        answer('{"city":"Paris","temp":20}'), usage=USAGE, options=options, **IDENTITY
    )
    sdk = client(lambda request: httpx2.Response(200, json=body))

    created = sdk.responses.create(model="claude-haiku-4-5", input="Weather in json?")
    assert created.output_text == '{"city":"Paris","temp":20}'
    assert created.usage.input_tokens_details.cached_tokens == 10
    parsed = sdk.responses.parse(model="claude-haiku-4-5", input="x", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris", temp=20)


# --- streams ------------------------------------------------------------------------------

TEXT = [{"content": "Hel"}, {"content": "lo"}]
TWO_CALLS = [
    {
        "tool_calls": [
            {
                "index": 0,
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": ""},
            }
        ]
    },
    {"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]},
    {"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]},
    {
        "tool_calls": [
            {
                "index": 1,
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": "{}"},
            }
        ]
    },
]
CALLS = [call(1), call(2, name="get_time", arguments="{}")]


def translated(deltas: list[dict], finished: dict, options: dict | None = None) -> list[dict]:
    stream = responses.EventStream(options=options or {"input": "Hi"}, **IDENTITY)
    events = stream.start()
    for delta in deltas:
        events += stream.add(delta)
    return events + stream.finish(finished, USAGE)


def test_a_streamed_text_answer_is_openais_event_sequence():
    events = translated(TEXT, answer("Hello"))

    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert_numbered(events)
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == [] and events[0]["response"]["usage"] is None
    assert events[6]["text"] == "Hello"
    assert events[2]["item"] == {
        "id": "msg_ab12",
        "type": "message",
        "status": "in_progress",
        "role": "assistant",
        "content": [],
    }
    final = events[-1]["response"]
    assert final == responses.response_of(
        answer("Hello"), usage=USAGE, options={"input": "Hi"}, **IDENTITY
    )
    assert events[8]["item"] == final["output"][0]

    state = sdk_state(events)
    assert state._completed_response.output_text == "Hello"
    assert state._completed_response.usage.output_tokens == 7


def test_streamed_calls_are_told_one_after_the_other():
    events = translated(TWO_CALLS, answer("", finish="tool_calls", calls=CALLS))

    assert [(e["type"], e.get("output_index")) for e in events[2:]] == [
        ("response.output_item.added", 0),
        ("response.function_call_arguments.delta", 0),
        ("response.function_call_arguments.delta", 0),
        ("response.function_call_arguments.done", 0),
        ("response.output_item.done", 0),
        ("response.output_item.added", 1),
        ("response.function_call_arguments.delta", 1),
        ("response.function_call_arguments.done", 1),
        ("response.output_item.done", 1),
        ("response.completed", None),
    ]
    assert_numbered(events)
    assert events[2]["item"] == {
        "id": "fc_ab12_0",
        "type": "function_call",
        "status": "in_progress",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": "",
    }
    final = events[-1]["response"]
    assert [e["item"] for e in events if e["type"] == "response.output_item.done"] == final[
        "output"
    ]

    response = sdk_state(events, tools=[TOOL])._completed_response
    assert [(c.call_id, c.name, c.arguments) for c in response.output] == [
        ("call_1", "get_weather", '{"city":"Paris"}'),
        ("call_2", "get_time", "{}"),
    ]


def test_text_then_calls_stream_through_the_sdk_client():
    events = translated(
        [{"content": "Let me "}, {"content": "check."}, *TWO_CALLS],
        answer("Let me check.", finish="tool_calls", calls=CALLS),
    )
    final = events[-1]["response"]
    assert [e["item"] for e in events if e["type"] == "response.output_item.done"] == final[
        "output"
    ]
    assert [e["output_index"] for e in events if e["type"] == "response.output_item.added"] == [
        0,
        1,
        2,
    ]

    sdk = serving_events(events)
    with sdk.responses.stream(model="claude-haiku-4-5", input="Hi", tools=[TOOL]) as stream:
        deltas = [e.delta for e in stream if e.type == "response.output_text.delta"]
        response = stream.get_final_response()
    assert deltas == ["Let me ", "check."]
    assert response.output_text == "Let me check."
    assert [o.type for o in response.output] == ["message", "function_call", "function_call"]
    assert response.output[1].call_id == "call_1"


def test_a_cut_stream_ends_incomplete():
    events = translated(TEXT, answer("Hello", finish="length"))

    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert events[-2]["item"]["status"] == "incomplete"
    sdk_state(events)  # the SDK takes it (its get_final_response then raises, as for OpenAI)


def test_text_after_a_call_opens_a_message_of_its_own():
    # Claude sends text before its calls; should it ever send some after, the stream stays
    # one the SDK accepts, the final Response telling all text in its first message.
    events = translated(
        [{"content": "Let me check."}, *TWO_CALLS[:1], {"content": " Done."}],
        answer("Let me check. Done.", finish="tool_calls", calls=[call(1, arguments="")]),
    )
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["id"]) for e in added] == [
        (0, "msg_ab12"),
        (1, "fc_ab12_0"),
        (2, "msg_ab12_2"),
    ]
    assert_numbered(events)
    final = sdk_state(events)._completed_response
    assert final.output_text == "Let me check. Done."
    assert [o.id for o in final.output] == ["msg_ab12", "fc_ab12_0"]


def test_text_only_after_a_call_is_the_responses_message():
    events = translated(
        [*TWO_CALLS[:1], {"content": "Done."}],
        answer("Done.", finish="tool_calls", calls=[call(1, arguments="")]),
    )
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["id"]) for e in added] == [
        (0, "fc_ab12_0"),
        (1, "msg_ab12"),
    ]
    assert sdk_state(events)._completed_response.output_text == "Done."


def test_a_failed_stream_ends_with_response_failed():
    stream = responses.EventStream(options={"input": "Hi"}, **IDENTITY)
    events = stream.start() + stream.add({"content": "Hel"})
    events += stream.failed("The provider went away.", "server_error")

    assert_numbered(events)
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["status"] == "failed"
    assert events[-1]["response"]["error"] == {
        "code": "server_error",
        "message": "The provider went away.",
    }
    assert "response.output_text.done" not in [e["type"] for e in events]
    sdk_state(events)


def test_a_finished_response_replays_as_events_the_sdk_accumulates_back():
    response = responses.response_of(
        answer("Let me check.", finish="tool_calls", calls=CALLS),
        usage=USAGE,
        options={"input": "Hi", "tools": [TOOL]},
        **IDENTITY,
    )
    events = responses.answer_events(response)

    assert_numbered(events)
    assert [e["type"] for e in events][:2] == ["response.created", "response.in_progress"]
    assert events[0]["response"]["status"] == "in_progress"
    assert events[0]["response"]["output"] == []
    assert events[-1] == {
        "type": "response.completed",
        "sequence_number": len(events) - 1,
        "response": response,
    }
    deltas = [e["delta"] for e in events if e["type"].endswith(".delta")]
    assert deltas == ["Let me check.", '{"city":"Paris"}', "{}"]

    sdk = serving_events(events)
    with sdk.responses.stream(model="claude-haiku-4-5", input="Hi") as stream:
        final = stream.get_final_response()
    assert final.output_text == "Let me check."
    assert [o.call_id for o in final.output[1:]] == ["call_1", "call_2"]


def test_a_relayed_response_with_reasoning_and_a_refusal_replays_whole():
    response = {
        **responses.response_of(answer(""), usage=USAGE, options={}, **IDENTITY),
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {"type": "output_text", "text": "Hi", "annotations": []},
                    {"type": "refusal", "refusal": "Not that."},
                ],
            },
        ],
    }
    events = responses.answer_events(response)

    assert_numbered(events)
    assert "response.refusal.delta" in [e["type"] for e in events]
    state = sdk_state(events)
    assert state._completed_response.output_text == "Hi"
    assert state._completed_response.output[1].content[1].refusal == "Not that."


def test_an_incomplete_response_replays_ending_incomplete():
    response = responses.response_of(
        answer("Once", finish="length"), usage=USAGE, options={}, **IDENTITY
    )
    events = responses.answer_events(response)
    assert_numbered(events)
    assert events[-1]["type"] == "response.incomplete"
    assert events[-1]["response"]["status"] == "incomplete"
    sdk_state(events)


def test_sse_frames_an_event_with_its_type():
    event = {"type": "response.output_text.delta", "sequence_number": 4, "delta": "é\n"}
    raw = responses.sse(event)

    assert raw.startswith(b"event: response.output_text.delta\ndata: {")
    assert raw.endswith(b"}\n\n") and raw.count(b"\n") == 3  # the JSON keeps to one line
    frames, rest = openai_chat.sse_events(raw)
    assert rest == b"" and json.loads(openai_chat.sse_data(frames[0])) == event


def test_a_relayed_stream_folds_into_its_text_and_response():
    response = responses.response_of(answer("Hello"), usage=USAGE, options={}, **IDENTITY)
    fold = responses.StreamFold()

    texts = [fold.add(e) for e in responses.answer_events(response)]

    assert "".join(texts) == "Hello"
    assert fold.response == response and fold.error is None


def test_a_relayed_stream_keeps_its_error_and_failed_response():
    fold = responses.StreamFold()
    error = {"type": "error", "code": "server_error", "message": "x", "param": None}
    assert fold.add({"type": "response.created", "response": {"id": "r"}}) == ""
    assert fold.response is None
    fold.add({**error, "sequence_number": 1})
    assert fold.error == {**error, "sequence_number": 1}
    failed = {"id": "r", "status": "failed", "error": {"code": "server_error", "message": "x"}}
    fold.add({"type": "response.failed", "sequence_number": 2, "response": failed})
    assert fold.response == failed


# --- reading a Response -------------------------------------------------------------------


def test_a_response_reads_in_chat_vocabulary():
    response = {
        "status": "completed",
        "output": [
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {
                "type": "message",
                "content": [
                    {"type": "output_text", "text": "Hel"},
                    {"type": "refusal", "refusal": "no"},
                    {"type": "output_text", "text": "lo"},
                ],
            },
            {"type": "message", "content": [{"type": "output_text", "text": "!"}]},
        ],
    }
    assert responses.text_of(response) == "Hello!"
    assert responses.finish_of(response) == "stop"
    assert responses.tool_calls_of(response) == []
    incomplete = {"status": "incomplete", "incomplete_details": {"reason": "max_output_tokens"}}
    assert responses.finish_of(incomplete) == "length"
    assert responses.text_of({}) == ""
