"""The OpenAI chat protocol module: relayed streams folded into the answer they tell, bodies
relayed as sent, and answers rendered back in shapes the openai SDK parses."""

from __future__ import annotations

import json

from openai.lib.streaming.chat import ChatCompletionStreamState
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from billing.pricing import Usage
from routing.protocols import openai_chat


def chunk(delta: dict, *, index: int = 0, finish=None, **extra) -> dict:
    return {
        "id": "chatcmpl-x",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "gpt-4o-mini",
        "system_fingerprint": "fp_1",
        "choices": [{"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}],
        **extra,
    }


STREAM = [
    chunk(
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "index": 0,
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ""},
                }
            ],
        }
    ),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '{"city":'}}]}),
    chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}),
    chunk({"role": "assistant", "content": "Hel"}, index=1),
    chunk({"content": "lo"}, index=1),
    chunk({}, finish="tool_calls"),
    chunk({}, index=1, finish="stop"),
    {
        **chunk({}),
        "choices": [],
        "usage": {"prompt_tokens": 9, "completion_tokens": 7, "total_tokens": 16},
    },
]


def test_a_stream_folds_into_what_the_sdks_own_accumulator_makes_of_it():
    folded = openai_chat.StreamAnswer()
    sdk = ChatCompletionStreamState()
    for piece in STREAM:
        folded.add(piece)
        sdk.handle_chunk(ChatCompletionChunk.model_validate(piece))

    answer = folded.answer()
    ours = ChatCompletion.model_validate(
        openai_chat.response_body(
            answer,
            usage=openai_chat.usage_of(folded.usage),
            id="x",
            created=1,
            model="gpt-4o-mini",
        )
    )
    theirs = sdk.get_final_completion()

    def calls(completion):
        return [
            [(t.id, t.type, t.function.name, t.function.arguments) for t in c.message.tool_calls]
            for c in completion.choices
            if c.message.tool_calls
        ]

    assert (
        calls(ours)
        == calls(theirs)
        == [[("call_1", "function", "get_weather", '{"city":"Paris"}')]]
    )
    assert [c.message.content for c in theirs.choices] == [None, "Hello"]
    assert [c.message.content for c in ours.choices] == [None, "Hello"]
    assert [c.finish_reason for c in ours.choices] == ["tool_calls", "stop"]
    assert answer["system_fingerprint"] == "fp_1"
    assert folded.usage["completion_tokens"] == 7


def test_sse_events_split_at_blank_lines_whatever_the_reads():
    raw = b"".join(f"data: {json.dumps(c)}\n\n".encode() for c in STREAM) + b"data: [DONE]\n\n"
    events, rest = [], b""
    for start in range(0, len(raw), 7):  # reads that cut events anywhere
        got, rest = openai_chat.sse_events(rest + raw[start : start + 7])
        events += got
    assert rest == b""
    assert b"".join(events) == raw  # byte for byte: what is relayed is what came
    payloads = [openai_chat.sse_data(e) for e in events]
    assert payloads[-1] == "[DONE]" and openai_chat.chunk_of(payloads[0]) == (STREAM[0], "")


def test_the_body_goes_up_as_sent_and_the_cache_ignores_only_transport_fields():
    body = {
        "model": "auto",
        "messages": [{"role": "user", "content": "hi"}],
        "tools": [{"type": "function", "function": {"name": "f"}}],
        "seed": 3,
        "stream": True,
        "user": "u-1",
        "some_future_field": {"x": 1},
    }
    options = openai_chat.options_of(body)

    up = openai_chat.upstream_body(model="gpt-4o-mini", messages=body["messages"], options=options)
    assert up == {**body, "model": "gpt-4o-mini"}
    assert openai_chat.answer_material(options) == {
        "tools": body["tools"],
        "seed": 3,
        "some_future_field": {"x": 1},
    }


def test_a_stored_answer_replays_as_chunks_the_sdk_accumulates_back():
    folded = openai_chat.StreamAnswer()
    for piece in STREAM:
        folded.add(piece)
    usage = Usage(input_tokens=9, output_tokens=7)
    chunks = openai_chat.answer_chunks(
        folded.answer(), id="c", created=1, model="gpt-4o-mini", usage=usage
    )

    sdk = ChatCompletionStreamState()
    for piece in chunks:
        sdk.handle_chunk(ChatCompletionChunk.model_validate(piece))
    final = sdk.get_final_completion()
    assert final.choices[0].message.tool_calls[0].function.arguments == '{"city":"Paris"}'
    assert final.choices[1].message.content == "Hello"
    assert final.usage.completion_tokens == 7
