"""The Anthropic Messages protocol module (provider-contract §3, §11, §12): Messages bodies as
chat requests for an OpenAI model, chat answers and deltas back as Messages and stream events,
and relayed streams folded, checked against the anthropic SDK's own types, accumulator and
client."""

from __future__ import annotations

import json

import anthropic
import httpx2
import pytest
from anthropic._models import validate_type
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent

from billing.pricing import Usage
from llmops.simulator.openai_api import parse_chat
from routing.protocols import anthropic_messages as messages
from routing.protocols import openai_chat
from routing.protocols.anthropic_messages import Untranslatable

USAGE = Usage(input_tokens=20, cached_input_tokens=10, cache_write_tokens=5, output_tokens=7)
USAGE_JSON = {
    "input_tokens": 20,
    "cache_creation_input_tokens": 5,
    "cache_read_input_tokens": 10,
    "output_tokens": 7,
}
IDENTITY = {"id": "msg_ab12", "model": "gpt-5.4"}
TOOL = {
    "name": "get_weather",
    "description": "The weather.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
    "strict": True,
    "cache_control": {"type": "ephemeral"},
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
PNG = {"type": "base64", "media_type": "image/png", "data": "iVBORw0"}


def call(n: int, arguments: str = '{"city":"Paris"}') -> dict:
    return {
        "id": f"call_{n}",
        "type": "function",
        "function": {"name": "get_weather", "arguments": arguments},
    }


def answer(text: str, *, finish: str = "stop", calls: list | None = None) -> dict:
    return openai_chat.text_answer(text, finish_reason=finish, model="gpt-5.4", tool_calls=calls)


def chat(**options) -> tuple[list[dict], dict]:
    return messages.chat_of({"max_tokens": 100, "messages": [USER_HI], **options})


USER_HI = {"role": "user", "content": "Hi"}
MODELS = {"gpt-5.4": 128000}  # the simulator's model -> its completion token limit


def sdk_fold(events: list[dict]) -> Message:
    """Events validated as the SDK's RawMessageStreamEvent and fed to its accumulator."""
    snapshot, json_bufs = None, {}
    for event in events:
        if event["type"] == "ping":
            continue
        parsed = validate_type(type_=RawMessageStreamEvent, value=event)
        snapshot = accumulate_event(event=parsed, current_snapshot=snapshot, json_bufs=json_bufs)
    return snapshot


def sdk_equal(sdk_message: Message, message: dict) -> bool:
    """The SDK's message dumped as ours (its dump leaves out what is None)."""
    return sdk_message.model_dump(exclude_none=True) == {
        k: v for k, v in message.items() if v is not None
    }


def client(handler) -> anthropic.Anthropic:
    transport = httpx2.MockTransport(handler)
    return anthropic.Anthropic(
        api_key="k",
        base_url="http://llmops",
        max_retries=0,
        http_client=httpx2.Client(transport=transport),
    )


def serving(events: list[dict]) -> anthropic.Anthropic:
    body = b"".join(messages.sse(e) for e in events)
    return client(
        lambda request: httpx2.Response(
            200, content=body, headers={"content-type": "text/event-stream"}
        )
    )


def streamed_by_sdk(events: list[dict]) -> Message:
    sdk = serving(events)
    with sdk.messages.stream(model="gpt-5.4", max_tokens=100, messages=[USER_HI]) as stream:
        return stream.get_final_message()


def folded(events: list[dict]) -> tuple[messages.MessageFold, str]:
    fold = messages.MessageFold()
    return fold, "".join(fold.add(e) for e in events)


# --- bodies and usage ---------------------------------------------------------------------


def test_the_body_goes_up_as_sent_with_the_providers_model():
    body = {
        "model": "auto",
        "max_tokens": 10,
        "messages": [USER_HI],
        "stream": True,
        "cache_control": {"type": "ephemeral"},
        "some_future_field": 1,
    }
    options = messages.options_of(body)

    assert options == {k: v for k, v in body.items() if k != "model"}
    assert messages.upstream_body(model="claude-sonnet-4-6", options=options) == {
        **body,
        "model": "claude-sonnet-4-6",
    }


def test_usage_reads_anthropics_counts_and_round_trips():
    usage = messages.usage_of(
        {**USAGE_JSON, "output_tokens_details": {"thinking_tokens": 3}, "service_tier": "standard"}
    )
    assert usage == Usage(
        input_tokens=20,
        cached_input_tokens=10,
        cache_write_tokens=5,
        output_tokens=7,
        reasoning_tokens=3,
    )
    assert messages.usage_json(USAGE) == USAGE_JSON
    assert messages.usage_of(messages.usage_json(USAGE)) == USAGE
    assert anthropic.types.Usage.model_validate(messages.usage_json(USAGE)).input_tokens == 20


def test_usage_without_cache_fields_reads_as_uncached():
    assert messages.usage_of(
        {"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": None}
    ) == Usage(input_tokens=3, output_tokens=2)


@pytest.mark.parametrize(
    "usage",
    [
        None,
        "12",
        {},
        {"input_tokens": 3},
        {"output_tokens": 3},
        {"input_tokens": -1, "output_tokens": 3},
        {"input_tokens": 3, "output_tokens": -1},
        {"input_tokens": True, "output_tokens": 3},
        {"input_tokens": 3, "output_tokens": 2, "cache_read_input_tokens": -4},
    ],
)
def test_no_usage_or_a_broken_one_reads_as_none(usage):
    assert messages.usage_of(usage) is None


# --- chat_of ------------------------------------------------------------------------------


def test_a_claude_code_body_becomes_chat_messages_and_options():
    options = {
        "max_tokens": 32000,
        "stream": True,
        "temperature": 0.5,
        "top_p": 0.9,
        "stop_sequences": ["END", ""],
        "metadata": {"user_id": "user_abc_session_1"},
        "system": [
            {"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.185"},
            {
                "type": "text",
                "text": "You are Claude Code.",
                "cache_control": {"type": "ephemeral"},
            },
            {"type": "text", "text": "Be brief."},
        ],
        "messages": [
            {
                "role": "user",
                "content": [
                    {
                        "type": "text",
                        "text": "What is this?",
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "image", "source": PNG},
                    {"type": "image", "source": {"type": "url", "url": "https://x/y.jpg"}},
                ],
            },
            {
                "role": "assistant",
                "content": [
                    {"type": "thinking", "thinking": "Hmm.", "signature": "sig"},
                    {"type": "redacted_thinking", "data": "opaque"},
                    {"type": "text", "text": "Let me check."},
                    {
                        "type": "tool_use",
                        "id": "toolu_1",
                        "name": "get_weather",
                        "input": {"city": "Paris"},
                    },
                    {"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}},
                ],
            },
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1", "content": "20C"},
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_2",
                        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                        "is_error": True,
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "text", "text": "Thanks."},
                ],
            },
        ],
        "tools": [TOOL],
        "tool_choice": {"type": "auto", "disable_parallel_tool_use": True},
        "thinking": {"type": "enabled", "budget_tokens": 2048},
        "cache_control": {"type": "ephemeral"},
        "service_tier": "auto",
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }

    chat_messages, chat_options = messages.chat_of(options)

    assert chat_messages == [
        {
            "role": "system",
            "content": [
                {"type": "text", "text": "You are Claude Code."},
                {"type": "text", "text": "Be brief."},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0"}},
                {"type": "image_url", "image_url": {"url": "https://x/y.jpg"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Let me check.",
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_1", "content": "20C"},
        {
            "role": "tool",
            "tool_call_id": "toolu_2",
            "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
        },
        {"role": "user", "content": "Thanks."},
    ]
    assert chat_options == {
        "temperature": 0.5,
        "top_p": 0.9,
        "stream": True,
        "max_completion_tokens": 32000,
        "stop": ["END"],
        "user": "user_abc_session_1",
        "tools": [CHAT_TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning_effort": "low",
    }
    # OpenAI's checks, as the simulator makes them, take the translated body.
    call = parse_chat({"model": "gpt-5.4", "messages": chat_messages, **chat_options}, MODELS)
    assert call.stop == ["END"] and call.stream


def test_a_string_system_and_string_turns_stay_strings():
    chat_messages, chat_options = messages.chat_of(
        {
            "max_tokens": 5,
            "system": "Be brief.",
            "messages": [
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello."},
                {"role": "user", "content": [{"type": "text", "text": "Bye"}]},
            ],
        }
    )
    assert chat_messages == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Bye"},
    ]
    assert chat_options == {"max_completion_tokens": 5}


def test_a_billing_header_alone_leaves_no_system_message():
    chat_messages, _ = chat(system=[{"type": "text", "text": "x-anthropic-billing-header: a=1"}])
    assert chat_messages == [USER_HI]


def test_a_tool_call_only_turn_has_no_content_and_tool_results_alone_make_no_user_message():
    chat_messages, _ = messages.chat_of(
        {
            "messages": [
                USER_HI,
                {
                    "role": "assistant",
                    "content": [{"type": "tool_use", "id": "t1", "name": "f", "input": {"a": 1}}],
                },
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1"}]},
            ]
        }
    )
    assert chat_messages[1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {"id": "t1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
            ],
        },
        {"role": "tool", "tool_call_id": "t1", "content": ""},
    ]


def test_a_tool_results_images_follow_in_the_user_message():
    chat_messages, _ = messages.chat_of(
        {
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "t1",
                            "content": [
                                {"type": "text", "text": "screenshot:"},
                                {"type": "image", "source": PNG},
                            ],
                        },
                        {"type": "text", "text": "See?"},
                    ],
                }
            ]
        }
    )
    assert chat_messages == [
        {"role": "tool", "tool_call_id": "t1", "content": "screenshot:"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0"}},
                {"type": "text", "text": "See?"},
            ],
        },
    ]


def test_an_assistant_turn_of_thinking_alone_is_left_out():
    chat_messages, _ = messages.chat_of(
        {
            "messages": [
                USER_HI,
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "x"}]},
            ]
        }
    )
    assert chat_messages == [USER_HI]


@pytest.mark.parametrize(
    ("choice", "chat_choice"),
    [
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "none"}, {"tool_choice": "none"}),
        (
            {"type": "tool", "name": "get_weather"},
            {"tool_choice": {"type": "function", "function": {"name": "get_weather"}}},
        ),
        (
            {"type": "any", "disable_parallel_tool_use": True},
            {"tool_choice": "required", "parallel_tool_calls": False},
        ),
        (
            {"type": "auto", "disable_parallel_tool_use": False},
            {"tool_choice": "auto"},
        ),
    ],
)
def test_tool_choice_takes_its_chat_form(choice, chat_choice):
    _, chat_options = chat(tools=[TOOL], tool_choice=choice)
    assert {k: v for k, v in chat_options.items() if k != "tools"} == {
        "max_completion_tokens": 100,
        **chat_choice,
    }
    parse_chat({"model": "gpt-5.4", "messages": [USER_HI], **chat_options}, MODELS)


def test_auto_or_none_without_tools_is_what_no_tools_does():
    assert chat(tool_choice={"type": "none"})[1] == {"max_completion_tokens": 100}
    assert chat(tool_choice={"type": "auto"}, tools=[])[1] == {"max_completion_tokens": 100}


def test_a_tool_without_schema_takes_no_arguments_and_harmless_fields_are_dropped():
    _, chat_options = chat(
        tools=[
            {
                "type": "custom",
                "name": "now",
                "input_schema": None,
                "eager_input_streaming": True,
                "defer_loading": False,
                "allowed_callers": ["direct"],
            }
        ]
    )
    assert chat_options["tools"] == [
        {
            "type": "function",
            "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
        }
    ]


@pytest.mark.parametrize("key", ["output_config", "output_format"])
def test_a_json_schema_format_becomes_a_strict_response_format(key):
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string"},
            "tags": {
                "type": "array",
                "items": {"type": "object", "properties": {"k": {"type": "string"}}},
            },
        },
        "required": ["name"],
    }
    fmt = {"type": "json_schema", "schema": schema}
    body = {"output_config": {"format": fmt}} if key == "output_config" else {"output_format": fmt}

    _, chat_options = chat(**body)

    assert chat_options["response_format"] == {
        "type": "json_schema",
        "json_schema": {
            "name": "structured_output",
            "schema": {
                "type": "object",
                "properties": {
                    "name": {"type": "string"},
                    "tags": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {"k": {"type": "string"}},
                            "additionalProperties": False,
                            "required": ["k"],
                        },
                    },
                },
                "required": ["name", "tags"],
                "additionalProperties": False,
            },
            "strict": True,
        },
    }
    assert schema["required"] == ["name"]  # the client's schema is left as it came
    parse_chat({"model": "gpt-5.4", "messages": [USER_HI], **chat_options}, MODELS)


@pytest.mark.parametrize(
    ("options", "effort"),
    [
        ({"thinking": {"type": "enabled", "budget_tokens": 1024}}, "low"),
        ({"thinking": {"type": "enabled", "budget_tokens": 4096}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 16383}}, "medium"),
        ({"thinking": {"type": "enabled", "budget_tokens": 16384}}, "high"),
        ({"thinking": {"type": "adaptive", "display": "summarized"}}, "medium"),
        ({"thinking": {"type": "adaptive"}, "output_config": {"effort": "low"}}, "low"),
        (
            {
                "thinking": {"type": "enabled", "budget_tokens": 1024},
                "output_config": {"effort": "high"},
            },
            "high",
        ),
        ({"output_config": {"effort": "medium"}}, "medium"),
        ({"output_config": {"effort": "xhigh"}}, "high"),
        ({"output_config": {"effort": "max"}}, "high"),
        ({"thinking": {"type": "disabled"}}, None),
        ({}, None),
    ],
)
def test_thinking_and_effort_become_reasoning_effort(options, effort):
    assert chat(**options)[1].get("reasoning_effort") == effort


@pytest.mark.parametrize(
    "options",
    [
        {"service_tier": "standard_only"},
        {"speed": "standard"},
        {"diagnostics": {"previous_message_id": None}},
        {"cache_control": {"type": "ephemeral", "ttl": "1h"}},
        {"top_k": None},
    ],
)
def test_what_openai_does_anyway_is_accepted_and_not_passed_on(options):
    assert chat(**options) == ([USER_HI], {"max_completion_tokens": 100})


@pytest.mark.parametrize(
    ("options", "param"),
    [
        ({"top_k": 5}, "top_k"),
        ({"container": "cntr_1"}, "container"),
        ({"mcp_servers": [{"type": "url", "url": "https://m"}]}, "mcp_servers"),
        ({"speed": "fast"}, "speed"),
        ({"service_tier": "priority"}, "service_tier"),
        ({"inference_geo": "us"}, "inference_geo"),
        ({"some_future_field": 1}, "some_future_field"),
        ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
        (
            {"context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]}},
            "context_management.edits.0",
        ),
        ({"context_management": "on"}, "context_management"),
        ({"tools": [TOOL, {"type": "web_search_20250305", "name": "web_search"}]}, "tools.1"),
        ({"tools": [{"type": "bash_20250124", "name": "bash"}]}, "tools.0"),
        ({"tools": [{**TOOL, "name": "m" * 65}]}, "tools.0.name"),
        ({"tools": [{**TOOL, "input_examples": [{"city": "Oslo"}]}]}, "tools.0.input_examples"),
        ({"tools": [{**TOOL, "defer_loading": True}]}, "tools.0.defer_loading"),
        ({"tool_choice": {"type": "any"}}, "tool_choice"),
        ({"tools": [TOOL], "tool_choice": {"type": "sometimes"}}, "tool_choice"),
        ({"output_config": {"format": {"type": "xml"}}}, "output_config.format"),
        ({"output_format": {"type": "json_schema"}}, "output_format.schema"),
        ({"output_config": {"effort": "extreme"}}, "output_config.effort"),
        ({"output_config": {"task_budget": 5}}, "output_config.task_budget"),
        ({"thinking": {"type": "between_tools"}}, "thinking.type"),
        ({"thinking": {"type": "enabled"}}, "thinking.budget_tokens"),
        ({"system": [{"type": "image", "source": PNG}]}, "system.0"),
        ({"messages": []}, "messages"),
    ],
)
def test_what_openai_cannot_honour_is_refused_by_name(options, param):
    with pytest.raises(Untranslatable) as refused:
        chat(**options)
    assert refused.value.param == param
    assert str(refused.value)


DOCUMENT = {"type": "document", "source": {"type": "base64", "media_type": "application/pdf"}}


@pytest.mark.parametrize(
    ("turn", "param"),
    [
        (
            {"role": "user", "content": [{"type": "text", "text": "a"}, DOCUMENT]},
            "messages.1.content.1",
        ),
        (
            {"role": "user", "content": [{"type": "search_result", "source": "s"}]},
            "messages.1.content.0",
        ),
        (
            {"role": "user", "content": [{"type": "container_upload", "file_id": "f"}]},
            "messages.1.content.0",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}],
            },
            "messages.1.content.0.source",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "tool_result", "tool_use_id": "t", "content": [DOCUMENT]}],
            },
            "messages.1.content.0.content.0",
        ),
        (
            {
                "role": "user",
                "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}],
            },
            "messages.1.content.0",
        ),
        (
            {
                "role": "assistant",
                "content": [
                    {"type": "server_tool_use", "id": "s", "name": "web_search", "input": {}}
                ],
            },
            "messages.1.content.0",
        ),
        (
            {"role": "assistant", "content": [{"type": "image", "source": PNG}]},
            "messages.1.content.0",
        ),
        ({"role": "tool", "content": "x"}, "messages.1.role"),
        ({"role": "user", "content": 5}, "messages.1.content"),
    ],
)
def test_blocks_openai_cannot_read_are_refused_where_they_are(turn, param):
    with pytest.raises(Untranslatable) as refused:
        messages.chat_of({"messages": [USER_HI, turn, USER_HI]})
    assert refused.value.param == param


def test_a_prefilled_answer_is_refused():
    with pytest.raises(Untranslatable) as refused:
        messages.chat_of({"messages": [USER_HI, {"role": "assistant", "content": "{"}]})
    assert refused.value.param == "messages.1"


# --- message_of ---------------------------------------------------------------------------


def test_a_text_answer_is_a_message_the_sdk_takes():
    message = messages.message_of(answer("Hello."), usage=USAGE, **IDENTITY)

    assert message == {
        "id": "msg_ab12",
        "type": "message",
        "role": "assistant",
        "model": "gpt-5.4",
        "content": [{"type": "text", "text": "Hello."}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": USAGE_JSON,
    }
    parsed = Message.model_validate(message)
    assert parsed.content[0].text == "Hello."
    assert parsed.usage.cache_read_input_tokens == 10


def test_tool_calls_are_tool_use_blocks_after_the_text():
    message = messages.message_of(
        answer("Checking.", finish="tool_calls", calls=[call(1), call(2, "not json")]),
        usage=USAGE,
        **IDENTITY,
    )
    assert message["content"] == [
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
        {"type": "tool_use", "id": "call_2", "name": "get_weather", "input": {}},
    ]
    assert message["stop_reason"] == "tool_use"
    assert Message.model_validate(message).content[1].input == {"city": "Paris"}


def test_a_forced_call_ending_in_stop_is_still_a_tool_use():
    message = messages.message_of(answer("", calls=[call(1)]), usage=USAGE, **IDENTITY)
    assert [b["type"] for b in message["content"]] == ["tool_use"]
    assert message["stop_reason"] == "tool_use"


def test_an_empty_answer_has_no_blocks():
    message = messages.message_of(answer(""), usage=USAGE, **IDENTITY)
    assert message["content"] == []
    assert Message.model_validate(message).content == []


@pytest.mark.parametrize(
    ("finish", "reason"),
    [
        ("stop", "end_turn"),
        ("length", "max_tokens"),
        ("tool_calls", "tool_use"),
        ("content_filter", "refusal"),
        ("something_new", "end_turn"),
    ],
)
def test_the_finish_reason_becomes_anthropics_stop_reason(finish, reason):
    message = messages.message_of(answer("x", finish=finish), usage=USAGE, **IDENTITY)
    assert message["stop_reason"] == reason


def test_an_openai_refusal_is_its_text_with_stop_reason_refusal():
    refused = answer("")
    refused["choices"][0]["message"].update(content=None, refusal="I can't help with that.")
    message = messages.message_of(refused, usage=USAGE, **IDENTITY)
    assert message["content"] == [{"type": "text", "text": "I can't help with that."}]
    assert message["stop_reason"] == "refusal"


# --- sse and MessageEvents ------------------------------------------------------------------


def test_sse_frames_an_event_with_its_type_in_compact_json():
    event = {
        "type": "content_block_delta",
        "index": 0,
        "delta": {"type": "text_delta", "text": "é\n"},
    }
    raw = messages.sse(event)

    assert (
        raw
        == (
            'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,'
            '"delta":{"type":"text_delta","text":"é\\n"}}\n\n'
        ).encode()
    )
    frames, rest = openai_chat.sse_events(raw)
    assert rest == b"" and json.loads(openai_chat.sse_data(frames[0])) == event


CHAT_DELTAS = [
    {"role": "assistant", "content": ""},
    {"content": "Let me "},
    {"content": "check."},
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
            {"index": 1, "id": "call_2", "function": {"name": "get_weather", "arguments": "{}"}}
        ]
    },
]
CHAT_ANSWER = answer("Let me check.", finish="tool_calls", calls=[call(1), call(2, "{}")])


def translated_stream() -> tuple[list[dict], dict]:
    stream = messages.MessageEvents(input_tokens=35, **IDENTITY)
    message = messages.message_of(CHAT_ANSWER, usage=USAGE, **IDENTITY)
    events = stream.start()
    for delta in CHAT_DELTAS:
        events += stream.add(delta)
    return [*events, *stream.complete(message)], message


def test_a_translated_stream_is_anthropics_event_sequence():
    events, message = translated_stream()

    assert events[0] == {
        "type": "message_start",
        "message": {
            "id": "msg_ab12",
            "type": "message",
            "role": "assistant",
            "model": "gpt-5.4",
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 35, "output_tokens": 1},
        },
    }
    assert events[1:] == [
        {"type": "ping"},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Let me "},
        },
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "check."},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "content_block_start",
            "index": 1,
            "content_block": {
                "type": "tool_use",
                "id": "call_1",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"city":'},
        },
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '"Paris"}'},
        },
        {"type": "content_block_stop", "index": 1},
        {
            "type": "content_block_start",
            "index": 2,
            "content_block": {
                "type": "tool_use",
                "id": "call_2",
                "name": "get_weather",
                "input": {},
            },
        },
        {
            "type": "content_block_delta",
            "index": 2,
            "delta": {"type": "input_json_delta", "partial_json": "{}"},
        },
        {"type": "content_block_stop", "index": 2},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": USAGE_JSON,
        },
        {"type": "message_stop"},
    ]
    assert message["stop_reason"] == "tool_use"


def test_a_translated_stream_folds_into_message_of_the_same_answer():
    events, message = translated_stream()
    fold, text = folded(events)

    assert text == "Let me check."
    assert fold.message == message and fold.error is None


def test_the_sdk_accumulates_a_translated_stream_into_the_same_message():
    events, message = translated_stream()

    assert sdk_equal(sdk_fold(events), message)
    final = streamed_by_sdk(events)
    assert final.content[0].text == "Let me check."
    assert [b.input for b in final.content[1:]] == [{"city": "Paris"}, {}]
    assert final.stop_reason == "tool_use"
    # SDK 2.x takes every count of message_delta over message_start's.
    assert final.usage.model_dump(exclude_none=True) == USAGE_JSON


def test_a_refusal_streams_as_text_like_message_of_tells_it():
    refused = answer("")
    refused["choices"][0]["message"].update(content=None, refusal="No.")
    message = messages.message_of(refused, usage=USAGE, **IDENTITY)
    stream = messages.MessageEvents(**IDENTITY)
    events = [*stream.start(), *stream.add({"refusal": "No"}), *stream.add({"refusal": "."})]
    events += stream.complete(message)

    assert folded(events)[0].message == message
    assert streamed_by_sdk(events).stop_reason == "refusal"


def test_a_stream_without_content_ends_with_no_blocks():
    stream = messages.MessageEvents(**IDENTITY)
    message = messages.message_of(answer(""), usage=USAGE, **IDENTITY)
    events = [*stream.start(), *stream.add({"role": "assistant"}), *stream.complete(message)]

    assert [e["type"] for e in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert streamed_by_sdk(events).content == []


def test_a_failed_stream_ends_with_an_error_the_sdk_raises():
    stream = messages.MessageEvents(**IDENTITY)
    events = [*stream.start(), *stream.add({"content": "Hel"})]
    events += stream.failed("The provider went away.", "overloaded_error")

    assert events[-1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "The provider went away."},
    }
    assert events[-2]["type"] == "content_block_delta"  # nothing is stopped before it
    with pytest.raises(anthropic.APIStatusError) as failed:
        streamed_by_sdk(events)
    assert failed.value.body["error"]["type"] == "overloaded_error"
    assert messages.MessageEvents(**IDENTITY).failed("x")[0]["error"]["type"] == "api_error"


# --- answer_events and MessageFold -----------------------------------------------------------

CITATION = {
    "type": "char_location",
    "cited_text": "Paris is the capital.",
    "document_index": 0,
    "document_title": "Facts",
    "start_char_index": 0,
    "end_char_index": 21,
}
STORED = {
    "id": "msg_01A",
    "type": "message",
    "role": "assistant",
    "model": "claude-sonnet-4-6",
    "content": [
        {"type": "thinking", "thinking": "The user wants weather.", "signature": "EqQBCg=="},
        {"type": "redacted_thinking", "data": "EmwKAhgB"},
        {"type": "text", "text": "Paris, per the facts.", "citations": [CITATION]},
        {
            "type": "tool_use",
            "id": "toolu_01",
            "name": "get_weather",
            "input": {"city": "Paris", "n": [1, 2]},
        },
    ],
    "stop_reason": "tool_use",
    "stop_sequence": None,
    "usage": USAGE_JSON,
}


def test_a_stored_message_replays_as_events_that_fold_back_into_it():
    events = messages.answer_events(STORED)

    assert events[0]["message"]["content"] == []
    assert events[0]["message"]["stop_reason"] is None
    assert events[0]["message"]["usage"] == {**USAGE_JSON, "output_tokens": 1}
    assert [e["type"] for e in events[1:4]] == [
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
    ]
    assert events[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    assert [e["delta"]["type"] for e in events[2:4]] == ["thinking_delta", "signature_delta"]
    assert events[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "tool_use", "stop_sequence": None},
        "usage": USAGE_JSON,
    }
    assert events[-1] == {"type": "message_stop"}
    fold, text = folded(events)
    assert text == "Paris, per the facts."
    assert fold.message == STORED


def test_the_sdk_accumulates_a_replay_into_the_stored_message():
    events = messages.answer_events(STORED)

    assert sdk_equal(sdk_fold(events), STORED)
    final = streamed_by_sdk(events)
    assert final.content[2].citations[0].cited_text == "Paris is the capital."
    assert final.content[3].input == {"city": "Paris", "n": [1, 2]}
    assert final.content[0].signature == "EqQBCg=="


def test_a_replayed_stop_sequence_and_refusal_details_come_back():
    stored = {
        **STORED,
        "content": [{"type": "text", "text": "1, 2, 3"}],
        "stop_reason": "stop_sequence",
        "stop_sequence": "4",
    }
    assert folded(messages.answer_events(stored))[0].message == stored
    assert streamed_by_sdk(messages.answer_events(stored)).stop_sequence == "4"

    refusal = {**stored, "stop_reason": "refusal", "stop_sequence": None}
    refusal["stop_details"] = {"type": "refusal", "category": "cyber", "explanation": None}
    events = messages.answer_events(refusal)
    assert events[0]["message"]["stop_details"] is None
    assert folded(events)[0].message == refusal
    assert streamed_by_sdk(events).stop_details.category == "cyber"


def test_a_relayed_stream_folds_with_cumulative_usage_and_skips_pings():
    fold = messages.MessageFold()
    start = {
        **STORED,
        "content": [],
        "stop_reason": None,
        "usage": {"input_tokens": 20, "cache_read_input_tokens": 10, "output_tokens": 1},
    }
    assert fold.add({"type": "ping"}) == ""
    assert fold.add({"type": "message_start", "message": start}) == ""
    fold.add(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    )
    assert fold.add({"type": "ping"}) == ""
    assert (
        fold.add(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hi"},
            }
        )
        == "Hi"
    )
    fold.add({"type": "content_block_stop", "index": 0})
    start_tool = {"type": "tool_use", "id": "t", "name": "f", "input": {}}
    fold.add({"type": "content_block_start", "index": 1, "content_block": start_tool})
    fold.add(
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": ""},
        }
    )
    fold.add(
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": '{"a":'},
        }
    )
    fold.add(
        {
            "type": "content_block_delta",
            "index": 1,
            "delta": {"type": "input_json_delta", "partial_json": "1}"},
        }
    )
    fold.add({"type": "content_block_stop", "index": 1})
    fold.add(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "tool_use", "stop_sequence": None},
            "usage": {"output_tokens": 9, "input_tokens": None, "cache_creation_input_tokens": 4},
        }
    )
    assert fold.message is None  # not until message_stop
    fold.add({"type": "message_stop"})

    assert fold.message["content"] == [
        {"type": "text", "text": "Hi"},
        {"type": "tool_use", "id": "t", "name": "f", "input": {"a": 1}},
    ]
    assert fold.message["stop_reason"] == "tool_use"
    assert fold.message["usage"] == {
        "input_tokens": 20,
        "cache_read_input_tokens": 10,
        "cache_creation_input_tokens": 4,
        "output_tokens": 9,
    }
    # The event's message is not folded into.
    assert start["content"] == [] and start["usage"]["output_tokens"] == 1


def test_a_block_the_stream_never_stopped_is_whole_at_message_stop():
    fold = messages.MessageFold()
    fold.add({"type": "message_start", "message": {**STORED, "content": []}})
    fold.add(
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}
    )
    pieces = [f"{n} " for n in range(500)]
    for piece in pieces:
        fold.add(
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            }
        )
    fold.add(
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn"},
            "usage": {"output_tokens": 3},
        }
    )
    fold.add({"type": "message_stop"})

    assert fold.message["content"] == [{"type": "text", "text": "".join(pieces)}]
    assert fold.message["stop_reason"] == "end_turn"


def test_a_relayed_stream_keeps_its_error():
    fold = messages.MessageFold()
    error = {"type": "overloaded_error", "message": "Overloaded"}
    fold.add({"type": "message_start", "message": {**STORED, "content": []}})
    fold.add({"type": "error", "error": error})
    assert fold.error == error
    assert fold.message is None


# --- reading a Message --------------------------------------------------------------------


def test_a_message_reads_in_chat_vocabulary():
    assert messages.text_of(STORED) == "Paris, per the facts."
    assert (
        messages.text_of(
            {"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}
        )
        == "ab"
    )
    assert messages.tool_calls_of(STORED) == [
        {
            "id": "toolu_01",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris", "n": [1, 2]}'},
        }
    ]
    assert messages.tool_calls_of({"content": [{"type": "text", "text": "a"}]}) == []


@pytest.mark.parametrize(
    ("reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("model_context_window_exceeded", "stop"),
        (None, "stop"),
    ],
)
def test_the_stop_reason_reads_as_a_finish_reason(reason, finish):
    assert messages.finish_of({"stop_reason": reason}) == finish


# --- errors -------------------------------------------------------------------------------


def test_an_error_body_is_anthropics_envelope():
    assert messages.error_body(429, "Slow down.", request_id="req_1") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Slow down."},
        "request_id": "req_1",
    }
    assert messages.error_body(418, "x")["error"]["type"] == "invalid_request_error"
    assert messages.error_body(599, "x")["error"]["type"] == "api_error"


@pytest.mark.parametrize(
    ("status", "kind", "exception"),
    [
        (400, "invalid_request_error", anthropic.BadRequestError),
        (401, "authentication_error", anthropic.AuthenticationError),
        (403, "permission_error", anthropic.PermissionDeniedError),
        (404, "not_found_error", anthropic.NotFoundError),
        (413, "request_too_large", anthropic.APIStatusError),
        (429, "rate_limit_error", anthropic.RateLimitError),
        (500, "api_error", anthropic.InternalServerError),
        (503, "api_error", anthropic.ServiceUnavailableError),
        (504, "timeout_error", anthropic.InternalServerError),
        (529, "overloaded_error", anthropic.OverloadedError),
    ],
)
def test_the_sdk_raises_its_class_for_each_status_and_reads_the_type(status, kind, exception):
    body = messages.error_body(status, "Nope.", request_id="req_9")
    assert body["error"]["type"] == kind
    sdk = client(lambda request: httpx2.Response(status, json=body))

    with pytest.raises(exception) as raised:
        sdk.messages.create(model="m", max_tokens=5, messages=[USER_HI])
    assert raised.value.status_code == status
    assert raised.value.body["error"] == {"type": kind, "message": "Nope."}


def test_a_providers_error_reaches_an_anthropic_client_in_anthropics_envelope():
    anthropic_body = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
        "request_id": "req_x",
    }
    assert messages.error_envelope(anthropic_body, status=529, message="m") is anthropic_body

    openai_body = {
        "error": {
            "message": "Rate limit reached.",
            "type": "requests",
            "code": "rate_limit_exceeded",
            "param": None,
        }
    }
    assert messages.error_envelope(openai_body, status=429, message="m") == {
        "type": "error",
        "error": {"type": "rate_limit_error", "message": "Rate limit reached."},
        "request_id": None,
    }
    assert messages.error_envelope(None, status=502, message="The provider failed.") == {
        "type": "error",
        "error": {"type": "api_error", "message": "The provider failed."},
        "request_id": None,
    }
    assert messages.error_envelope({"detail": "x"}, status=400, message="Bad.")["error"] == {
        "type": "invalid_request_error",
        "message": "Bad.",
    }


def test_a_system_turn_among_the_messages_is_a_system_message():
    chat, _ = messages.chat_of(
        {
            "max_tokens": 10,
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "system", "content": [{"type": "text", "text": "be brief"}]},
            ],
        }
    )
    assert chat == [
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "be brief"},
    ]
    with pytest.raises(Untranslatable) as refused:
        messages.chat_of({"messages": [{"role": "system", "content": [{"type": "image"}]}]})
    assert refused.value.param == "messages.0.content.0"
