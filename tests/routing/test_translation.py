"""OpenAI chat bodies as Anthropic Messages bodies and back (provider-contract §12)."""

from __future__ import annotations

import json

from routing.protocols import translation

TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_a_tool_conversation_translates_turn_by_turn():
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Weather in Paris?"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 20}'},
        {"role": "user", "content": "Thanks, and in Rome?"},
    ]
    options = {
        "tools": [TOOL],
        "tool_choice": "required",
        "parallel_tool_calls": False,
        "stop": "END",
    }

    body = translation.anthropic_body(
        model="claude-haiku-4-5", messages=messages, options=options, max_tokens=100
    )

    assert body["system"] == [{"type": "text", "text": "Be brief."}]
    assert [t["role"] for t in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}}
    ]
    # The tool's result and the next user message merge into one user turn.
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "call_1", "content": '{"temp": 20}'},
        {"type": "text", "text": "Thanks, and in Rome?"},
    ]
    assert body["tools"] == [
        {
            "name": "get_weather",
            "input_schema": TOOL["function"]["parameters"],
            "description": "The weather.",
        }
    ]
    assert body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert body["stop_sequences"] == ["END"]


def test_images_and_structured_output_translate():
    messages = [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What is it?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
            ],
        }
    ]
    schema = {"type": "object", "properties": {"name": {"type": "string"}}}
    options = {
        "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": schema}}
    }

    body = translation.anthropic_body(
        model="claude-haiku-4-5", messages=messages, options=options, max_tokens=10
    )

    assert body["messages"][0]["content"][1:] == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
    ]
    assert body["output_config"] == {"format": {"type": "json_schema", "schema": schema}}


def test_an_anthropic_tool_use_answer_reads_as_openai_tool_calls():
    answer = translation.openai_answer(
        {
            "model": "claude-haiku-4-5",
            "stop_reason": "tool_use",
            "content": [
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "toolu_1",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                },
            ],
        }
    )

    [choice] = answer["choices"]
    assert choice["finish_reason"] == "tool_calls"
    assert choice["message"]["content"] == "Let me check."
    [call] = choice["message"]["tool_calls"]
    assert (call["id"], call["function"]["name"]) == ("toolu_1", "get_weather")
    assert json.loads(call["function"]["arguments"]) == {"city": "Rome"}


def test_a_strict_tool_stays_strict():
    strict = {**TOOL, "function": {**TOOL["function"], "strict": True}}
    body = translation.anthropic_body(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "Weather?"}],
        options={"tools": [strict]},
        max_tokens=10,
    )
    assert body["tools"][0]["strict"] is True


def test_json_object_rides_on_a_forced_tool_and_comes_back_as_content():
    body = translation.anthropic_body(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "A tent, in JSON."}],
        options={"response_format": {"type": "json_object"}},
        max_tokens=50,
    )
    # No schema-less output_config: Anthropic's structured outputs refuse "any object".
    assert "output_config" not in body
    assert body["tools"] == [translation.JSON_TOOL_DEFINITION]
    assert body["tool_choice"] == {"type": "tool", "name": translation.JSON_TOOL}

    answer = translation.openai_answer(
        {
            "model": "claude-haiku-4-5",
            "stop_reason": "tool_use",
            "content": [
                {"type": "tool_use", "id": "t1", "name": translation.JSON_TOOL, "input": {"a": 1}}
            ],
        }
    )
    [choice] = answer["choices"]
    assert json.loads(choice["message"]["content"]) == {"a": 1}
    assert choice["finish_reason"] == "stop" and not choice["message"].get("tool_calls")


def test_json_object_with_tools_of_its_own_cannot_be_honoured_by_claude():
    options = {"response_format": {"type": "json_object"}, "tools": [TOOL]}
    assert translation.anthropic_refuses(options=options, messages=[]) == "response_format"
    alone = {"response_format": {"type": "json_object"}}
    assert translation.anthropic_refuses(options=alone, messages=[]) is None
