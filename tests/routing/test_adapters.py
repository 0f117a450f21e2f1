"""Provider adapters through the real boundary: official SDK → simulator over HTTP."""

from __future__ import annotations

import asyncio
import json
import socket

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from routing import providers
from routing.protocols import openai_chat
from routing.providers import ChatRequest, Completion, Delta, Endpoint, ProviderError, Timeouts

KINDS = [("openai", "gpt-4o-mini"), ("anthropic", "claude-haiku-4-5")]
ASK = [
    {"role": "system", "content": "Answer briefly."},
    {"role": "user", "content": [{"type": "text", "text": "Which trail shoes are best?"}]},
]


def endpoint(sim, kind: str, **timeouts) -> Endpoint:
    url = sim.anthropic_base_url if kind == "anthropic" else sim.openai_base_url
    return Endpoint(kind=kind, base_url=url, api_key="sim", timeouts=Timeouts(**timeouts))


def collect(ep: Endpoint, request: ChatRequest) -> list:
    async def run():
        return [event async for event in providers.stream(ep, request)]

    return asyncio.run(run())


@pytest.mark.parametrize(("kind", "model"), KINDS)
def test_complete_returns_text_and_the_usage_the_provider_bills(sim, kind, model):
    completion = providers.complete_sync(
        endpoint(sim, kind), ChatRequest(model=model, messages=ASK, max_tokens=25)
    )

    assert completion.text and completion.model == model
    assert completion.finish_reason == "length"
    billed = sim.usage()[kind][model]["realtime"]
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (
        billed["input_tokens"],
        billed["output_tokens"],
    )


@pytest.mark.parametrize(("kind", "model"), KINDS)
def test_stream_yields_deltas_then_one_completion_with_usage(sim, kind, model):
    events = collect(endpoint(sim, kind), ChatRequest(model=model, messages=ASK, max_tokens=25))

    deltas, final = events[:-1], events[-1]
    assert len(deltas) > 1 and all(isinstance(e, Delta) for e in deltas)
    assert isinstance(final, Completion)
    assert final.text == "".join(d.text for d in deltas)
    assert final.usage.output_tokens == sim.usage()[kind][model]["stream"]["output_tokens"] == 25


@pytest.mark.parametrize(("kind", "model"), KINDS)
@pytest.mark.parametrize(
    ("status", "error_kind", "retryable"),
    [
        (429, "rate_limited", True),
        (500, "server_error", True),
        (503, "overloaded", True),  # OpenAI: "overloaded or not ready"
        (400, "bad_request", False),
        (401, "auth", False),
    ],
)
def test_error_statuses_are_classified_and_unbilled(
    sim, kind, model, status, error_kind, retryable
):
    sim.fault(provider=kind, status=status, count=1)

    with pytest.raises(ProviderError) as caught:
        providers.complete_sync(
            endpoint(sim, kind), ChatRequest(model=model, messages=ASK, max_tokens=5)
        )

    error = caught.value
    assert (error.status, error.kind, error.retryable) == (status, error_kind, retryable)
    assert not error.maybe_billed and not error.after_first_byte


def test_a_closed_port_is_a_retryable_unbilled_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ep = Endpoint(kind="openai", base_url=f"http://127.0.0.1:{port}/v1", api_key="k")

    with pytest.raises(ProviderError) as caught:
        providers.complete_sync(ep, ChatRequest(model="gpt-4o-mini", messages=ASK, max_tokens=5))

    assert (caught.value.kind, caught.value.retryable, caught.value.maybe_billed) == (
        "connection",
        True,
        False,
    )


@pytest.mark.parametrize(("kind", "model"), KINDS)
def test_a_slow_first_token_times_out_before_anything_is_billed(sim, kind, model):
    sim.config(ttft_ms=3000)

    with pytest.raises(ProviderError) as caught:
        collect(
            endpoint(sim, kind, first_byte=0.3),
            ChatRequest(model=model, messages=ASK, max_tokens=5),
        )

    assert caught.value.kind == "timeout_first_byte"
    assert caught.value.retryable and not caught.value.after_first_byte


@pytest.mark.parametrize(("kind", "model"), KINDS)
def test_a_stream_cut_mid_way_cannot_fall_back_and_may_be_billed(sim, kind, model):
    sim.fault(provider=kind, kind="stream_cut", after_tokens=5, count=1)

    with pytest.raises(ProviderError) as caught:
        collect(endpoint(sim, kind), ChatRequest(model=model, messages=ASK, max_tokens=40))

    assert caught.value.after_first_byte and caught.value.maybe_billed


@pytest.mark.parametrize(("kind", "model"), KINDS)
def test_answers_translate_to_shapes_the_openai_sdk_parses(sim, kind, model):
    ep = endpoint(sim, kind)
    completion = providers.complete_sync(ep, ChatRequest(model=model, messages=ASK, max_tokens=9))

    identity = {"id": "chatcmpl-1", "created": 1, "model": model}
    body = openai_chat.response_body(completion.answer, usage=completion.usage, **identity)
    parsed = ChatCompletion.model_validate(body)
    assert parsed.choices[0].message.content == completion.text
    assert parsed.usage.completion_tokens == completion.usage.output_tokens
    chunks = openai_chat.answer_chunks(completion.answer, usage=completion.usage, **identity)
    parsed_chunks = [ChatCompletionChunk.model_validate(c) for c in chunks]
    assert parsed_chunks[0].choices[0].delta.content == completion.text
    assert parsed_chunks[1].choices[0].finish_reason == completion.finish_reason
    assert parsed_chunks[2].usage.prompt_tokens == completion.usage.input_tokens


def test_a_claude_answer_without_a_small_max_tokens_is_sent_not_refused_by_the_sdk(sim):
    # Found by the T6 fuzz: with the default timeouts the anthropic SDK refused any
    # non-streamed max_tokens above ~21,333 ("Streaming is required...", a ValueError and a
    # 500) before sending it; a request without max_tokens asks for the model's 64,000.
    completion = providers.complete_sync(
        endpoint(sim, "anthropic"),
        ChatRequest(model="claude-haiku-4-5", messages=ASK, max_tokens=64_000),
    )

    assert completion.text and completion.usage.output_tokens > 0


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "assistant", "content": "How can I help?"}, {"role": "user", "content": "Hi"}],
        [{"role": "system", "content": "Say hello."}],
    ],
    ids=["assistant-first", "system-only"],
)
def test_conversations_openai_takes_but_anthropic_would_refuse_still_reach_claude(sim, messages):
    # Found by the T6 fuzz: Anthropic's first message must be the user's, so these valid
    # OpenAI bodies failed the whole chain (502).
    completion = providers.complete_sync(
        endpoint(sim, "anthropic"),
        ChatRequest(model="claude-haiku-4-5", messages=messages, max_tokens=10),
    )

    assert completion.text


TOOLS = {
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "find_shoe",
                "parameters": {
                    "type": "object",
                    "properties": {"size": {"type": "integer", "minimum": 35, "maximum": 48}},
                    "required": ["size"],
                },
            },
        }
    ],
    "tool_choice": "required",
}


@pytest.mark.parametrize(("kind", "model"), KINDS)
def test_a_streamed_tool_call_ends_as_the_same_answer_on_either_protocol(sim, kind, model):
    request = ChatRequest(model=model, messages=ASK, max_tokens=100, options=TOOLS)

    *deltas, completion = collect(endpoint(sim, kind), request)
    whole = providers.complete_sync(endpoint(sim, kind), request)

    assert all(isinstance(d, Delta) for d in deltas) and isinstance(completion, Completion)
    for answer in (completion.answer, whole.answer):
        [choice] = answer["choices"]
        assert choice["finish_reason"] == "tool_calls"
        [call] = choice["message"]["tool_calls"]
        assert call["function"]["name"] == "find_shoe"
        assert 35 <= json.loads(call["function"]["arguments"])["size"] <= 48
    assert completion.finish_reason == whole.finish_reason == "tool_calls"
