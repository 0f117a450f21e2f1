"""OpenAI chat completions and models through the official SDK."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import openai
import pytest

from llmops.simulator.testing import SimulatorHandle

MODEL = "gpt-4o-mini"
HELLO = [{"role": "user", "content": "Hello there"}]


def test_plain_chat_returns_a_complete_answer_with_usage(oai: openai.OpenAI, sim) -> None:
    raw = oai.chat.completions.with_raw_response.create(model=MODEL, messages=HELLO)
    completion = raw.parse()

    assert raw.headers["x-request-id"].startswith("req_")
    assert completion.object == "chat.completion"
    assert completion.model == MODEL
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content
    assert choice.finish_reason == "stop"
    usage = completion.usage
    assert usage.completion_tokens == len(choice.message.content.split(" "))
    assert 16 <= usage.completion_tokens <= 256
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    assert usage.prompt_tokens_details.cached_tokens == 0
    assert sim.usage()["openai"][MODEL]["realtime"]["requests"] == 1


def test_streamed_chat_with_include_usage_ends_with_a_usage_only_chunk(oai: openai.OpenAI) -> None:
    plain = oai.chat.completions.create(model=MODEL, messages=HELLO)

    chunks = list(
        oai.chat.completions.create(
            model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )

    *content_chunks, usage_chunk = chunks
    assert usage_chunk.choices == []
    assert usage_chunk.usage.completion_tokens == plain.usage.completion_tokens
    assert usage_chunk.usage.prompt_tokens == plain.usage.prompt_tokens
    assert all(chunk.usage is None for chunk in content_chunks)
    assert content_chunks[0].choices[0].delta.role == "assistant"
    assert content_chunks[-1].choices[0].finish_reason == "stop"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in content_chunks)
    assert text == plain.choices[0].message.content
    assert len({chunk.id for chunk in chunks}) == 1


def test_stream_without_include_usage_sends_no_usage(oai: openai.OpenAI, sim) -> None:
    chunks = list(oai.chat.completions.create(model=MODEL, messages=HELLO, stream=True))

    assert all(chunk.choices for chunk in chunks)
    assert all(chunk.usage is None for chunk in chunks)
    billed = sim.usage()["openai"][MODEL]["stream"]
    assert billed["output_tokens"] == sum(1 for chunk in chunks if chunk.choices[0].delta.content)


def test_several_choices_stream_interleaved_by_index(oai: openai.OpenAI) -> None:
    plain = oai.chat.completions.create(model=MODEL, messages=HELLO, n=3)

    texts = {0: "", 1: "", 2: ""}
    finished = {}
    for chunk in oai.chat.completions.create(model=MODEL, messages=HELLO, n=3, stream=True):
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason:
                finished[choice.index] = choice.finish_reason

    assert [c.index for c in plain.choices] == [0, 1, 2]
    assert texts == {c.index: c.message.content for c in plain.choices}
    assert len(set(texts.values())) == 3
    assert finished == {0: "stop", 1: "stop", 2: "stop"}
    assert plain.usage.completion_tokens == sum(len(t.split(" ")) for t in texts.values())


def test_max_completion_tokens_cuts_the_answer_with_finish_reason_length(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(output_tokens=50)

    cut = oai.chat.completions.create(model=MODEL, messages=HELLO, max_completion_tokens=5)
    legacy = oai.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=5)
    roomy = oai.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=500)

    assert cut.choices[0].finish_reason == "length"
    assert cut.usage.completion_tokens == 5
    assert legacy.choices[0].message.content == cut.choices[0].message.content
    assert roomy.choices[0].finish_reason == "stop"
    assert roomy.usage.completion_tokens == 50
    assert roomy.choices[0].message.content.startswith(cut.choices[0].message.content)


def test_stop_sequence_ends_the_answer_early(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.config(output_tokens=60)
    full = oai.chat.completions.create(model=MODEL, messages=HELLO).choices[0].message.content
    stop_word = full.split(" ")[10]

    cut = oai.chat.completions.create(model=MODEL, messages=HELLO, stop=[stop_word])

    assert cut.choices[0].finish_reason == "stop"
    assert stop_word not in cut.choices[0].message.content
    assert full.startswith(cut.choices[0].message.content)
    assert cut.usage.completion_tokens < 60


def test_answers_are_deterministic_per_model_and_prompt(oai: openai.OpenAI) -> None:
    first = oai.chat.completions.create(model=MODEL, messages=HELLO)
    again = oai.chat.completions.create(model=MODEL, messages=HELLO)
    other_prompt = oai.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Something else"}]
    )
    other_model = oai.chat.completions.create(model="gpt-4.1", messages=HELLO)

    assert again.choices[0].message.content == first.choices[0].message.content
    assert again.usage == first.usage
    assert other_prompt.choices[0].message.content != first.choices[0].message.content
    assert other_model.choices[0].message.content != first.choices[0].message.content


def test_a_repeated_long_prefix_reports_cached_tokens_in_128_token_steps(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    system = {"role": "system", "content": " ".join(f"rule{i}" for i in range(1500))}

    first = oai.chat.completions.create(
        model=MODEL, messages=[system, {"role": "user", "content": "first question"}]
    )
    second = oai.chat.completions.create(
        model=MODEL, messages=[system, {"role": "user", "content": "second question"}]
    )
    other_model = oai.chat.completions.create(
        model="gpt-4o", messages=[system, {"role": "user", "content": "second question"}]
    )

    assert first.usage.prompt_tokens > 1500
    assert first.usage.prompt_tokens_details.cached_tokens == 0
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert cached >= 1024
    assert (cached - 1024) % 128 == 0
    assert cached <= second.usage.prompt_tokens
    assert other_model.usage.prompt_tokens_details.cached_tokens == 0
    billed = sim.usage()["openai"][MODEL]["realtime"]
    assert billed["cached_input_tokens"] == cached
    assert billed["input_tokens"] == first.usage.prompt_tokens + second.usage.prompt_tokens


def test_short_prompts_are_never_cached(oai: openai.OpenAI) -> None:
    oai.chat.completions.create(model=MODEL, messages=HELLO)
    again = oai.chat.completions.create(model=MODEL, messages=HELLO)

    assert again.usage.prompt_tokens_details.cached_tokens == 0


def test_unknown_extra_fields_are_ignored(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        temperature=0.2,
        extra_body={"some_future_option": {"x": 1}, "seed": 7},
    )

    assert completion.choices[0].message.content


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"messages": [{"role": "robot", "content": "hi"}]}, "messages[0].role"),
        ({"messages": [{"role": "user"}]}, "messages[0].content"),
        ({"messages": []}, "messages"),
        ({"messages": HELLO, "max_tokens": 0}, "max_tokens"),
        ({"messages": HELLO, "max_completion_tokens": "ten"}, "max_completion_tokens"),
        ({"messages": HELLO, "max_tokens": True}, "max_tokens"),
        ({"messages": HELLO, "max_tokens": 10**6}, "max_tokens"),
        ({"messages": HELLO, "temperature": 2.5}, "temperature"),
        ({"messages": HELLO, "temperature": -1}, "temperature"),
        ({"messages": HELLO, "stream_options": {"include_usage": True}}, "stream_options"),
        ({"messages": HELLO, "n": 0}, "n"),
    ],
)
def test_malformed_chat_requests_are_bad_requests_naming_the_field(
    oai: openai.OpenAI, sim: SimulatorHandle, kwargs: dict, field: str
) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        oai.chat.completions.create(model=MODEL, **kwargs)

    assert field in str(caught.value)
    assert caught.value.param == field
    assert sim.usage()["totals"]["requests"] == 0


def test_missing_model_and_messages_are_bad_requests(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="model"):
        oai.chat.completions.create(messages=HELLO, extra_body={"model": None}, model=MODEL)
    with pytest.raises(openai.BadRequestError, match="'messages'"):
        oai.post("/chat/completions", body={"model": MODEL}, cast_to=object)


def test_unknown_model_is_not_found(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        oai.chat.completions.create(model="gpt-0", messages=HELLO)

    assert caught.value.code == "model_not_found"
    assert "gpt-0" in str(caught.value)


def test_invalid_json_is_a_bad_request(sim: SimulatorHandle) -> None:
    request = urllib.request.Request(
        f"{sim.openai_base_url}/chat/completions",
        data=b"{not json",
        headers={"Authorization": "Bearer sim", "Content-Type": "application/json"},
        method="POST",
    )

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)

    assert caught.value.code == 400
    assert b"invalid_request_error" in caught.value.read()


def test_a_missing_api_key_is_unauthorized(sim: SimulatorHandle) -> None:
    request = urllib.request.Request(
        f"{sim.openai_base_url}/chat/completions",
        data=b'{"model": "gpt-4o-mini", "messages": []}',
        headers={"Content-Type": "application/json"},
        method="POST",
    )

    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)

    assert caught.value.code == 401
    body = json.loads(caught.value.read())
    assert body["error"]["type"] == "invalid_request_error"
    assert "API key" in body["error"]["message"]


def test_models_are_listed_and_retrieved(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.config(add_models={"openai": ["my-local-llama"]})

    ids = [model.id for model in oai.models.list()]
    model = oai.models.retrieve("gpt-4.1")
    local = oai.chat.completions.create(model="my-local-llama", messages=HELLO)

    assert {"gpt-4o-mini", "gpt-4o", "gpt-5", "o3", "my-local-llama"} <= set(ids)
    assert model.id == "gpt-4.1"
    assert local.model == "my-local-llama"
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("gpt-0")


def test_async_client_streams_and_completes(sim: SimulatorHandle) -> None:
    async def run() -> tuple[str, str]:
        async with openai.AsyncOpenAI(
            base_url=sim.openai_base_url, api_key="sim", max_retries=0
        ) as client:
            plain = await client.chat.completions.create(model=MODEL, messages=HELLO)
            stream = await client.chat.completions.create(model=MODEL, messages=HELLO, stream=True)
            text = "".join([c.choices[0].delta.content or "" async for c in stream])
            return plain.choices[0].message.content, text

    plain, streamed = asyncio.run(run())

    assert streamed == plain
    assert set(sim.usage()["openai"][MODEL]) == {"realtime", "stream"}
