"""OpenAI chat requests as Gemini GenerateContentRequests and GenerateContentResponses back as
OpenAI answers (routing/protocols/gemini.py), checked against the google-genai SDK's own types
(a misspelt field fails validation: the SDK's models forbid unknown fields) and the openai
SDK's ChatCompletion."""

from __future__ import annotations

import json

import pytest
from google.genai import _common, batches, types
from google.genai._api_client import BaseApiClient
from openai.types.chat import ChatCompletion

from billing.pricing import Usage
from routing.protocols import gemini, openai_chat
from routing.protocols.translation import Untranslatable

PARAMETERS = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
    "additionalProperties": False,
}
TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "description": "The weather.", "parameters": PARAMETERS},
}
CLOCK = {"type": "function", "function": {"name": "get_time"}}
USER = {"role": "user", "content": "Weather in Paris?"}
PNG = "iVBORw0KGgo="


def call(id: str, name: str, arguments: str, **extra) -> dict:
    return {
        "id": id,
        "type": "function",
        "function": {"name": name, "arguments": arguments},
        **extra,
    }


def request(options: dict | None = None, messages: list | None = None, **kwargs) -> dict:
    return gemini.generate_request(messages=messages or [USER], options=options or {}, **kwargs)


def sdk_dump(model: type, value: dict) -> dict:
    """`value` read by the SDK as its REST JSON and written back the same way."""
    parsed = model.model_validate_json(json.dumps(value))
    return parsed.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- refusals ------------------------------------------------------------------------------

REFUSED_OPTIONS = [
    ({"logprobs": True}, "logprobs"),
    ({"top_logprobs": 3}, "top_logprobs"),
    ({"logit_bias": {"50256": -100}}, "logit_bias"),
    ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
    ({"modalities": ["text", "audio"]}, "modalities"),
    ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ({"web_search_options": {}}, "web_search_options"),
    ({"service_tier": "flex"}, "service_tier"),
    ({"service_tier": "priority"}, "service_tier"),
    ({"verbosity": "low"}, "verbosity"),
    ({"functions": [{"name": "f"}]}, "functions"),
    ({"n": 9}, "n"),
    ({"n": 0}, "n"),
    ({"temperature": 2.5}, "temperature"),
    ({"temperature": True}, "temperature"),
    ({"top_p": 1.5}, "top_p"),
    ({"max_tokens": 0}, "max_tokens"),
    ({"max_completion_tokens": "100"}, "max_completion_tokens"),
    ({"stop": ["a", "b", "c", "d", "e", "f"]}, "stop"),
    ({"stop": 5}, "stop"),
    ({"seed": 1.5}, "seed"),
    ({"presence_penalty": 3}, "presence_penalty"),
    ({"reasoning_effort": "xhigh"}, "reasoning_effort"),
    ({"reasoning_effort": "max"}, "reasoning_effort"),
    ({"response_format": {"type": "grammar"}}, "response_format"),
    ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
    ({"tools": [{"type": "custom", "custom": {"name": "sh"}}]}, "tools.0.type"),
    ({"tools": [TOOL, {"type": "function"}]}, "tools.1.function"),
    ({"tools": [TOOL, {"type": "function", "function": {"name": "1st"}}]}, "tools.1.function.name"),
    ({"tools": [{"type": "function", "function": {"name": "-x"}}]}, "tools.0.function.name"),
    (
        {"tools": [{"type": "function", "function": {"name": "f", "parameters": "{}"}}]},
        "tools.0.function.parameters",
    ),
    ({"tool_choice": "required"}, "tool_choice"),
    (
        {"tools": [TOOL], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
        "tool_choice",
    ),
    ({"tools": [TOOL], "tool_choice": {"type": "custom", "custom": {"name": "x"}}}, "tool_choice"),
    (
        {
            "tools": [TOOL],
            "tool_choice": {
                "type": "allowed_tools",
                "allowed_tools": {"mode": "auto", "tools": [{"type": "custom", "name": "x"}]},
            },
        },
        "tool_choice",
    ),
    ({"tools": [TOOL], "parallel_tool_calls": False}, "parallel_tool_calls"),
    # The first refused option in the client's order is the one named.
    ({"temperature": 0.2, "logit_bias": {"1": 1}, "logprobs": True}, "logit_bias"),
]


@pytest.mark.parametrize(("options", "param"), REFUSED_OPTIONS)
def test_an_option_gemini_cannot_honour_is_refused_by_name(options, param):
    assert gemini.gemini_refuses(options=options, messages=[USER]) == param
    with pytest.raises(Untranslatable) as refused:
        gemini.generate_request(messages=[USER], options=options)
    assert refused.value.param == param


ASSISTANT_CALL = {
    "role": "assistant",
    "content": None,
    "tool_calls": [call("call_1", "get_weather", '{"city": "Paris"}')],
}


def user_part(part: dict) -> list[dict]:
    return [{"role": "user", "content": [{"type": "text", "text": "Look:"}, part]}]


REFUSED_MESSAGES = [
    (user_part({"type": "file", "file": {"file_id": "file-abc"}}), "messages.0.content.1"),
    (
        user_part({"type": "file", "file": {"file_data": "JVBERi0x", "filename": "a.pdf"}}),
        "messages.0.content.1",
    ),
    (
        user_part({"type": "image_url", "image_url": {"url": "http://example.com/a.png"}}),
        "messages.0.content.1",
    ),
    (
        user_part({"type": "image_url", "image_url": {"url": "https://example.com/img?id=7"}}),
        "messages.0.content.1",
    ),
    (
        user_part({"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}),
        "messages.0.content.1",
    ),
    (
        user_part({"type": "input_audio", "input_audio": {"data": "AAAA", "format": "opus"}}),
        "messages.0.content.1",
    ),
    (user_part({"type": "video_url", "video_url": {"url": "x"}}), "messages.0.content.1"),
    (user_part({"type": "text"}), "messages.0.content.1"),
    (
        [{"role": "system", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}, USER],
        "messages.0.content.0",
    ),
    ([{"role": "function", "name": "f", "content": "1"}, USER], "messages.0.role"),
    (
        [USER, {"role": "tool", "tool_call_id": "call_9", "content": "20"}],
        "messages.1.tool_call_id",
    ),
    (
        [USER, {"role": "assistant", "function_call": {"name": "f", "arguments": "{}"}}],
        "messages.1.function_call",
    ),
    ([USER, {"role": "assistant", "audio": {"id": "audio_1"}}], "messages.1.audio"),
    (
        [USER, {"role": "assistant", "tool_calls": [call("c", "get_weather", "{oops")]}],
        "messages.1.tool_calls.0.function.arguments",
    ),
    (
        [USER, {"role": "assistant", "tool_calls": [call("c", "get_weather", "[1]")]}],
        "messages.1.tool_calls.0.function.arguments",
    ),
    (
        [USER, {"role": "assistant", "tool_calls": [{"id": "c", "type": "custom"}]}],
        "messages.1.tool_calls.0",
    ),
    (
        [USER, {"role": "assistant", "content": [{"type": "refusal", "refusal": "No."}]}],
        "messages.1.content.0",
    ),
]


@pytest.mark.parametrize(("messages", "param"), REFUSED_MESSAGES)
def test_a_message_gemini_cannot_read_is_refused_by_its_path(messages, param):
    assert gemini.gemini_refuses(options={}, messages=messages) == param
    with pytest.raises(Untranslatable) as refused:
        gemini.generate_request(messages=messages, options={})
    assert refused.value.param == param


def test_what_gemini_honours_or_what_changes_nothing_is_not_refused():
    options = {
        "max_completion_tokens": 200,
        "temperature": 2,
        "top_p": 0.9,
        "n": 8,
        "stop": ["a", "b", "c", "d", "e"],
        "seed": 42,
        "presence_penalty": 0.5,
        "frequency_penalty": -0.5,
        "response_format": {"type": "json_object"},
        "tools": [TOOL],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
        "reasoning_effort": "minimal",
        "modalities": ["text"],
        "stream": True,
        "stream_options": {"include_usage": True},
        "user": "u-1",
        "safety_identifier": "s-1",
        "metadata": {"team": "x"},
        "store": False,
        "prompt_cache_key": "k",
        "logprobs": False,
        "top_logprobs": 0,
        "service_tier": "default",
        "function_call": None,  # a null is no ask at all
    }
    assert gemini.gemini_refuses(options=options, messages=[USER]) is None
    # Without tools, parallel_tool_calls promises nothing.
    assert gemini.gemini_refuses(options={"parallel_tool_calls": False}, messages=[USER]) is None


# --- requests ------------------------------------------------------------------------------

GENERATION_CONFIGS = [
    ({"max_completion_tokens": 50, "max_tokens": 99}, None, {"maxOutputTokens": 50}),
    ({"max_tokens": 99}, 10, {"maxOutputTokens": 99}),
    ({}, 77, {"maxOutputTokens": 77}),
    ({"temperature": 0.2, "top_p": 0.9}, None, {"temperature": 0.2, "topP": 0.9}),
    ({"stop": "END"}, None, {"stopSequences": ["END"]}),
    ({"stop": ["END", "", "STOP"]}, None, {"stopSequences": ["END", "STOP"]}),
    ({"n": 3}, None, {"candidateCount": 3}),
    ({"n": 1, "presence_penalty": 0, "frequency_penalty": 0}, None, None),
    (
        {"seed": 7, "presence_penalty": 0.5, "frequency_penalty": 1},
        None,
        {"seed": 7, "presencePenalty": 0.5, "frequencyPenalty": 1},
    ),
    ({"response_format": {"type": "text"}}, None, None),
    ({"response_format": {"type": "json_object"}}, None, {"responseMimeType": "application/json"}),
    (
        {
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": PARAMETERS, "strict": True},
            }
        },
        None,
        {"responseMimeType": "application/json", "responseJsonSchema": PARAMETERS},
    ),
    ({"reasoning_effort": "none"}, None, {"thinkingConfig": {"thinkingBudget": 0}}),
    ({"reasoning_effort": "minimal"}, None, {"thinkingConfig": {"thinkingBudget": 1024}}),
    ({"reasoning_effort": "low"}, None, {"thinkingConfig": {"thinkingBudget": 1024}}),
    ({"reasoning_effort": "medium"}, None, {"thinkingConfig": {"thinkingBudget": 8192}}),
    ({"reasoning_effort": "high"}, None, {"thinkingConfig": {"thinkingBudget": 24576}}),
    ({"stream": True, "user": "u", "metadata": {"a": "b"}, "store": True}, None, None),
]


@pytest.mark.parametrize(("options", "max_tokens", "config"), GENERATION_CONFIGS)
def test_options_become_the_generation_config(options, max_tokens, config):
    body = request(options, max_tokens=max_tokens)

    assert body.get("generationConfig") == config
    if config is not None:
        assert sdk_dump(types.GenerationConfig, config) == config


TOOL_CONFIGS = [
    (None, None),
    ("auto", None),
    ("none", {"mode": "NONE"}),
    ("required", {"mode": "ANY"}),
    (
        {"type": "function", "function": {"name": "get_time"}},
        {"mode": "ANY", "allowedFunctionNames": ["get_time"]},
    ),
    (
        {
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "required",
                "tools": [{"type": "function", "function": {"name": "get_weather"}}],
            },
        },
        {"mode": "ANY", "allowedFunctionNames": ["get_weather"]},
    ),
    (
        {
            "type": "allowed_tools",
            "allowed_tools": {
                "mode": "auto",
                "tools": [{"type": "function", "function": {"name": "get_weather"}}],
            },
        },
        {"mode": "VALIDATED", "allowedFunctionNames": ["get_weather"]},
    ),
]


@pytest.mark.parametrize(("tool_choice", "calling"), TOOL_CONFIGS)
def test_tool_choice_becomes_the_function_calling_config(tool_choice, calling):
    body = request({"tools": [TOOL, CLOCK], "tool_choice": tool_choice})

    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "The weather.",
                    "parametersJsonSchema": PARAMETERS,
                },
                {"name": "get_time"},  # no parameters: no arguments, as on OpenAI
            ]
        }
    ]
    expected = None if calling is None else {"functionCallingConfig": calling}
    assert body.get("toolConfig") == expected
    if expected is not None:
        assert sdk_dump(types.ToolConfig, expected) == expected


def test_a_strict_tool_is_called_under_validated_mode():
    strict = {"type": "function", "function": {**TOOL["function"], "strict": True}}

    assert request({"tools": [strict]})["toolConfig"] == {
        "functionCallingConfig": {"mode": "VALIDATED"}
    }
    # ANY already holds calls to their schema.
    assert request({"tools": [strict], "tool_choice": "required"})["toolConfig"] == {
        "functionCallingConfig": {"mode": "ANY"}
    }


def test_tool_choice_without_tools_sends_no_tools():
    body = request({"tool_choice": "none"})

    assert "tools" not in body
    assert "toolConfig" not in body


CONTENT_CASES = [
    (
        "text, an inline image, an https image, audio and a pdf",
        [
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "What is it?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "low"},
                    },
                    {"type": "image_url", "image_url": {"url": "https://ex.com/cat.JPEG?s=1"}},
                    {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
                    {
                        "type": "file",
                        "file": {"file_data": "data:application/pdf;base64,JVBERi0x"},
                    },
                ],
            }
        ],
        [
            {
                "role": "user",
                "parts": [
                    {"text": "What is it?"},
                    {"inlineData": {"mimeType": "image/png", "data": PNG}},
                    {
                        "fileData": {
                            "mimeType": "image/jpeg",
                            "fileUri": "https://ex.com/cat.JPEG?s=1",
                        }
                    },
                    {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                    {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0x"}},
                ],
            }
        ],
    ),
    (
        "consecutive turns of one role merge; empty ones are dropped",
        [
            {"role": "user", "content": "One."},
            {"role": "user", "content": [{"type": "text", "text": "Two."}]},
            {"role": "assistant", "content": ""},
            {"role": "assistant", "content": "Three."},
            {"role": "assistant", "content": [{"type": "text", "text": "Four."}]},
            {"role": "user", "content": "Five."},
        ],
        [
            {"role": "user", "parts": [{"text": "One."}, {"text": "Two."}]},
            {"role": "model", "parts": [{"text": "Three."}, {"text": "Four."}]},
            {"role": "user", "parts": [{"text": "Five."}]},
        ],
    ),
]


@pytest.mark.parametrize(
    ("messages", "contents"), [c[1:] for c in CONTENT_CASES], ids=[c[0] for c in CONTENT_CASES]
)
def test_messages_become_contents(messages, contents):
    body = request(messages=messages)

    assert body["contents"] == contents
    assert "systemInstruction" not in body
    for content in contents:
        assert sdk_dump(types.Content, content) == content


def test_system_and_developer_turns_become_the_system_instruction():
    body = request(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            USER,
        ]
    )

    assert body["systemInstruction"] == {
        "parts": [{"text": "Be brief."}, {"text": "Answer in French."}]
    }
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Weather in Paris?"}]}]
    assert sdk_dump(types.Content, body["systemInstruction"]) == body["systemInstruction"]


def test_tool_calls_and_their_results_become_function_call_and_response_turns():
    messages = [
        {"role": "system", "content": "Be brief."},
        USER,
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                call("call_1", "get_weather", '{"city": "Paris"}'),
                call("call_2", "get_time", ""),
            ],
        },
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
        {"role": "tool", "tool_call_id": "call_1", "content": [{"type": "text", "text": "20C"}]},
        {"role": "user", "content": "And Rome?"},
    ]

    body = request({"tools": [TOOL, CLOCK]}, messages)

    assert body["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Paris?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Checking both."},
                {
                    "functionCall": {
                        "name": "get_weather",
                        "args": {"city": "Paris"},
                        "id": "call_1",
                    },
                    # The call came without Gemini's signature: the documented stand-in, on
                    # the turn's first call only.
                    "thoughtSignature": gemini.FOREIGN_SIGNATURE,
                },
                {"functionCall": {"name": "get_time", "args": {}, "id": "call_2"}},
            ],
        },
        {
            # Both results in the one turn after the calls, each named by its call's function.
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": "call_2",
                        "name": "get_time",
                        "response": {"output": "12:00"},
                    }
                },
                {
                    "functionResponse": {
                        "id": "call_1",
                        "name": "get_weather",
                        "response": {"output": "20C"},
                    }
                },
                {"text": "And Rome?"},
            ],
        },
    ]
    for content in body["contents"]:
        assert sdk_dump(types.Content, content) == content


def test_a_tool_call_keeps_the_thought_signature_it_came_with():
    signature = "CrICAdHtim827fQ="
    assistant = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            call(
                "call_1",
                "get_weather",
                '{"city": "Paris"}',
                extra_content={"google": {"thought_signature": signature}},
            )
        ],
    }

    body = request({"tools": [TOOL]}, [USER, assistant])

    assert body["contents"][1]["parts"] == [
        {
            "functionCall": {"name": "get_weather", "args": {"city": "Paris"}, "id": "call_1"},
            "thoughtSignature": signature,
        }
    ]


def test_a_full_request_is_what_the_sdk_itself_would_send():
    """The request as the batch adapter hands it to the SDK (an InlinedRequest: the
    generationConfig and the rest flattened into `config`), converted by the SDK's own
    Gemini-API converter: no field is refused, and each lands where this module put it."""
    options = {
        "tools": [TOOL, CLOCK],
        "tool_choice": "required",
        "temperature": 0.5,
        "n": 2,
        "stop": ["END"],
        "seed": 3,
        "max_completion_tokens": 300,
        "reasoning_effort": "low",
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": PARAMETERS},
        },
    }
    messages = [
        {"role": "system", "content": "Be brief."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "hi"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            ],
        },
        ASSISTANT_CALL,
        {"role": "tool", "tool_call_id": "call_1", "content": "20C"},
    ]
    body = gemini.generate_request(messages=messages, options=options)
    line = dict(body)
    contents = line.pop("contents")
    inlined = {"contents": contents, "config": {**line.pop("generationConfig"), **line}}

    parsed = types.InlinedRequest.model_validate_json(json.dumps(inlined))
    sent = batches._InlinedRequest_to_mldev(BaseApiClient(api_key="unset"), parsed)
    sent = _common.encode_unserializable_types(_common.convert_to_dict(sent))["request"]

    assert set(sent) == set(body)
    assert set(sent["generationConfig"]) == set(body["generationConfig"])
    assert sent["toolConfig"] == body["toolConfig"]
    assert sent["systemInstruction"] == body["systemInstruction"]
    assert [c["role"] for c in sent["contents"]] == ["user", "model", "user"]
    for name, model in (
        ("generationConfig", types.GenerationConfig),
        ("systemInstruction", types.Content),
        ("toolConfig", types.ToolConfig),
    ):
        assert sdk_dump(model, body[name]) == body[name]
    assert [sdk_dump(types.Tool, t) for t in body["tools"]] == body["tools"]
    assert [sdk_dump(types.Content, c) for c in body["contents"]] == body["contents"]


def test_a_misspelt_field_fails_the_sdk_check():
    with pytest.raises(ValueError):
        sdk_dump(types.GenerationConfig, {"maxOutputToken": 5})
    with pytest.raises(ValueError):
        sdk_dump(types.Content, {"role": "user", "parts": [{"inline_data_x": {}}]})


# --- answers -------------------------------------------------------------------------------

USAGE_METADATA = {"promptTokenCount": 12, "candidatesTokenCount": 5, "totalTokenCount": 17}


def response(*candidates, usage=USAGE_METADATA, **extra) -> dict:
    body = {
        "candidates": list(candidates),
        "usageMetadata": usage,
        "modelVersion": "gemini-2.5-flash",
        "responseId": "resp-1",
        **extra,
    }
    # Every fixture is a GenerateContentResponse as the SDK reads one.
    types.GenerateContentResponse.model_validate_json(json.dumps(body))
    return body


def candidate(*parts, finish="STOP", **extra) -> dict:
    return {"content": {"role": "model", "parts": list(parts)}, "finishReason": finish, **extra}


def choice(content, finish: str, index: int = 0, tool_calls=None) -> dict:
    message = {"role": "assistant", "content": content, "refusal": None}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {"index": index, "message": message, "logprobs": None, "finish_reason": finish}


ANSWERS = [
    ("text", response(candidate({"text": "Hel"}, {"text": "lo"})), [choice("Hello", "stop")]),
    (
        "several candidates, the first without its index",
        response(
            candidate({"text": "B"}, index=1),
            candidate({"text": "A"}),
            candidate({"text": "C"}, index=2, finish="MAX_TOKENS"),
        ),
        [choice("A", "stop"), choice("B", "stop", 1), choice("C", "length", 2)],
    ),
    (
        "several candidates, none with an index",
        response(candidate({"text": "A"}), candidate({"text": "B"})),
        [choice("A", "stop"), choice("B", "stop", 1)],
    ),
    (
        "thought summaries are not the answer",
        response(candidate({"text": "Thinking…", "thought": True}, {"text": "42"})),
        [choice("42", "stop")],
    ),
    (
        "cut at the limit",
        response(candidate({"text": "Once upon"}, finish="MAX_TOKENS")),
        [choice("Once upon", "length")],
    ),
    ("stopped for safety", response({"finishReason": "SAFETY"}), [choice("", "content_filter")]),
    (
        "recitation keeps what came before it",
        response(candidate({"text": "To be"}, finish="RECITATION")),
        [choice("To be", "content_filter")],
    ),
    (
        "a blocked prompt has no candidates",
        response(promptFeedback={"blockReason": "PROHIBITED_CONTENT"}),
        [choice("", "content_filter")],
    ),
    ("no candidates, not blocked", response(), [choice("", "stop")]),
    (
        "a malformed call ends as a stop",
        response({"finishReason": "MALFORMED_FUNCTION_CALL"}),
        [choice("", "stop")],
    ),
]


@pytest.mark.parametrize(("body", "choices"), [a[1:] for a in ANSWERS], ids=[a[0] for a in ANSWERS])
def test_a_response_becomes_an_openai_answer(body, choices):
    answer, usage = gemini.chat_answer(body, model="gemini-2.5-flash")

    assert answer == {"model": "gemini-2.5-flash", "choices": choices}
    assert usage == Usage(input_tokens=12, output_tokens=5)
    completion = openai_chat.response_body(
        answer, usage=usage, id="chatcmpl-1", created=1, model="gemini-2.5-flash"
    )
    ChatCompletion.model_validate(completion)


def test_a_text_answer_has_the_shape_llmops_builds_itself():
    answer, _ = gemini.chat_answer(response(candidate({"text": "Hi"})), model="gemini-x")

    assert answer == openai_chat.text_answer("Hi", finish_reason="stop", model="gemini-x")


def test_a_function_call_becomes_a_tool_call():
    body = response(
        candidate(
            {"text": "Let me check."},
            {
                "functionCall": {"id": "fc-1", "name": "get_weather", "args": {"city": "Rome"}},
                "thoughtSignature": "CrICAdHt",
            },
            {"functionCall": {"name": "get_time"}},
        )
    )

    answer, _ = gemini.chat_answer(body, model="")

    assert answer["model"] == "gemini-2.5-flash"  # the response's own when none is given
    [only] = answer["choices"]
    assert only["finish_reason"] == "tool_calls"
    assert only["message"]["content"] == "Let me check."
    first, second = only["message"]["tool_calls"]
    assert first == {
        "id": "fc-1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city": "Rome"}'},
        "extra_content": {"google": {"thought_signature": "CrICAdHt"}},
    }
    assert second["function"] == {"name": "get_time", "arguments": "{}"}
    assert second["id"].startswith("call_")
    assert "extra_content" not in second
    # A call without Gemini's id gets one derived from the response: the same every time.
    again, _ = gemini.chat_answer(body, model="")
    assert again["choices"][0]["message"]["tool_calls"][1]["id"] == second["id"]
    ChatCompletion.model_validate(
        openai_chat.response_body(answer, usage=Usage(), id="c", created=1, model="m")
    )


def test_a_tool_call_answer_replayed_by_the_client_reaches_gemini_as_it_came():
    """The round trip: Gemini's call, as the client gets it and sends it back with its
    result, is Gemini's own call again (id and thought signature), answered by name."""
    part = {
        "functionCall": {"name": "get_weather", "args": {"city": "Rome"}},
        "thoughtSignature": "CrICAdHt",
    }
    answer, _ = gemini.chat_answer(response(candidate(part)), model="gemini-3-flash")
    message = answer["choices"][0]["message"]
    call_id = message["tool_calls"][0]["id"]
    messages = [
        USER,
        message,
        {"role": "tool", "tool_call_id": call_id, "content": "18C"},
    ]

    body = request({"tools": [TOOL]}, messages)

    assert body["contents"][1:] == [
        {
            "role": "model",
            "parts": [{**part, "functionCall": {**part["functionCall"], "id": call_id}}],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "id": call_id,
                        "name": "get_weather",
                        "response": {"output": "18C"},
                    }
                }
            ],
        },
    ]


USAGES = [
    (
        {"promptTokenCount": 100, "candidatesTokenCount": 20, "thoughtsTokenCount": 30},
        Usage(input_tokens=100, output_tokens=50, reasoning_tokens=30),
    ),
    (
        {"promptTokenCount": 100, "cachedContentTokenCount": 60, "candidatesTokenCount": 5},
        Usage(input_tokens=40, cached_input_tokens=60, output_tokens=5),
    ),
    (
        {"promptTokenCount": 10, "toolUsePromptTokenCount": 4, "candidatesTokenCount": 1},
        Usage(input_tokens=14, output_tokens=1),
    ),
    ({"promptTokenCount": 9}, Usage(input_tokens=9)),  # proto3 leaves out zero counts
]


@pytest.mark.parametrize(("metadata", "usage"), USAGES)
def test_usage_metadata_becomes_the_ledgers_usage(metadata, usage):
    body = response(candidate({"text": "x"}), usage=metadata)

    assert gemini.chat_answer(body, model="m")[1] == usage


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        ["a list"],
        {"candidates": [candidate({"text": "no usage"})]},
        {"candidates": [], "usageMetadata": "12 tokens"},
        {"candidates": [], "usageMetadata": {"promptTokenCount": "12"}},
        {"candidates": [], "usageMetadata": {"promptTokenCount": -1}},
        {"candidates": {"text": "x"}, "usageMetadata": USAGE_METADATA},
        {"candidates": ["x"], "usageMetadata": USAGE_METADATA},
        {"candidates": [{"content": "x"}], "usageMetadata": USAGE_METADATA},
        {"candidates": [{"content": {"parts": ["x"]}}], "usageMetadata": USAGE_METADATA},
    ],
)
def test_what_is_not_a_response_with_usage_is_a_value_error(body):
    with pytest.raises(ValueError):
        gemini.chat_answer(body, model="m")


ERRORS = [
    (
        {"code": 400, "message": "Invalid JSON payload.", "status": "INVALID_ARGUMENT"},
        "400 INVALID_ARGUMENT: Invalid JSON payload.",
    ),
    (
        {"error": {"code": 429, "message": "Quota\n  exceeded.", "status": "RESOURCE_EXHAUSTED"}},
        "429 RESOURCE_EXHAUSTED: Quota exceeded.",
    ),
    # A batch result line's google.rpc.Status: a gRPC code and no status name.
    ({"code": 3, "message": "Bad request."}, "3 INVALID_ARGUMENT: Bad request."),
    ({"code": 500}, "500"),
    ({"message": "Something broke."}, "Something broke."),
    ({}, "unknown error"),
    (None, "unknown error"),
]


@pytest.mark.parametrize(("error", "text"), ERRORS)
def test_an_error_reads_as_one_line(error, text):
    assert gemini.error_text(error) == text
