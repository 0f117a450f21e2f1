"""Real application traffic through /v1/chat/completions with the official openai SDK: every
parameter reaches the provider and every field of its answer reaches the client (tools,
structured output, stop, n, seed, logprobs, images), the model is the client's, and errors
come back in the shape and status the SDK understands. SDK → llmops → simulator over HTTP."""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import pydantic
import pytest

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
ASK_WEATHER = [{"role": "user", "content": "What is the weather in Paris? Use get_weather."}]


@pytest.fixture
def client(llmops):
    return llmops.openai(workload="product-search")  # gpt-4o-mini, then claude-haiku-4-5


def ledger_of(llmops, request_id: str) -> list[dict]:
    status, body = llmops.api("GET", "/api/v1/ledger?limit=500")
    assert status == 200, body
    return [e for e in body["results"] if e["request"] == request_id]


# The same OpenAI request served by an OpenAI model (relayed) and a Claude model (translated).
MODELS = pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"])


@MODELS
def test_a_tool_call_and_the_second_turn_with_its_result(llmops, sim, client, model):
    first = client.chat.completions.create(
        model=model, messages=ASK_WEATHER, tools=[WEATHER], max_tokens=200
    )

    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    [call] = choice.message.tool_calls
    arguments = json.loads(call.function.arguments)
    assert call.function.name == "get_weather" and call.id
    assert set(arguments) == {"city", "unit"} and arguments["unit"] in ("celsius", "fahrenheit")
    request = llmops.request_of(first)
    assert request["finish_reason"] == "tool_calls" and request["status"] == "completed"
    [entry] = ledger_of(llmops, request["id"])
    assert entry["output_tokens"] == first.usage.completion_tokens > 0

    assert first.model == model
    second = client.chat.completions.create(
        model=model,
        messages=[
            *ASK_WEATHER,
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": '{"temp": 20}'},
        ],
        tools=[WEATHER],
        max_tokens=30,
    )
    assert second.choices[0].finish_reason in ("stop", "length")
    assert second.choices[0].message.content and not second.choices[0].message.tool_calls


@MODELS
def test_a_streamed_tool_call_arrives_whole_through_the_sdk(llmops, sim, client, model):
    with client.chat.completions.stream(
        model=model,
        messages=ASK_WEATHER,
        tools=[openai.pydantic_function_tool(Weather, name="get_weather")],
        max_tokens=200,
    ) as stream:
        for _ in stream:
            pass
        final = stream.get_final_completion()

    [call] = final.choices[0].message.tool_calls
    assert call.function.name == "get_weather"
    assert isinstance(call.function.parsed_arguments, Weather)
    status, listed = llmops.api("GET", "/api/v1/requests?workload=product-search")
    assert status == 200, listed
    request = listed["results"][0]  # the newest
    assert request["mode"] == "stream" and request["finish_reason"] == "tool_calls"
    assert request["usage"]["output_tokens"] > 0


class Weather(pydantic.BaseModel):
    city: str
    unit: str


class Product(pydantic.BaseModel):
    name: str
    price_usd: float
    tags: list[str]
    in_stock: bool


@MODELS
def test_parse_with_a_pydantic_model_gets_a_valid_object(sim, client, model):
    completion = client.chat.completions.parse(
        model=model,
        messages=[{"role": "user", "content": "Describe a tent as a product."}],
        response_format=Product,
        max_tokens=300,
    )

    parsed = completion.choices[0].message.parsed
    assert isinstance(parsed, Product)
    assert json.loads(completion.choices[0].message.content) == parsed.model_dump()


def test_json_object_answers_json_and_the_providers_400_reaches_the_client(llmops, sim, client):
    ok = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Reply in JSON: a tent's name."}],
        response_format={"type": "json_object"},
        max_tokens=100,
    )
    assert isinstance(json.loads(ok.choices[0].message.content), dict)

    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Reply with a tent's name."}],
            response_format={"type": "json_object"},
            max_tokens=100,
        )
    # The provider's own words, status and param; not a 502, not fallen back from.
    assert refused.value.status_code == 400
    assert "must contain the word 'json'" in refused.value.message
    assert refused.value.param == "messages"
    request = llmops.request_of(refused.value.response.headers["x-request-id"])
    assert [(a["model"], a["outcome"]) for a in request["attempts"]] == [("gpt-4o-mini", "error")]
    assert request["status"] == "failed" and not ledger_of(llmops, request["id"])


@pytest.mark.parametrize("stream", [False, True])
def test_json_object_on_a_claude_model_answers_a_json_object(llmops, sim, client, stream):
    ask = {
        "model": "claude-haiku-4-5",
        "messages": [{"role": "user", "content": "Reply in JSON: a tent's name."}],
        "response_format": {"type": "json_object"},
        "max_tokens": 100,
    }
    if stream:
        chunks = list(client.chat.completions.create(**ask, stream=True))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        finish = next(c.choices[0].finish_reason for c in chunks if c.choices[0].finish_reason)
        assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    else:
        answer = client.chat.completions.create(**ask)
        content, finish = answer.choices[0].message.content, answer.choices[0].finish_reason
        assert answer.choices[0].message.tool_calls is None
    # A JSON object as content, ended as a plain answer: the tool it rode on stays llmops'.
    value = json.loads(content)
    assert isinstance(value, dict) and value
    assert finish == "stop"


def test_stop_is_honoured_and_not_served_another_requests_cache_entry(llmops, sim, client):
    ask = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "Tell me about hiking boots."}],
        "max_tokens": 60,
    }
    plain = client.chat.completions.create(**ask)
    text = plain.choices[0].message.content
    stop = text.split(" ")[3]

    stopped = client.chat.completions.create(**ask, stop=[stop])

    assert stopped.choices[0].message.content == text[: text.index(stop)]
    assert llmops.request_of(stopped)["mode"] == "realtime"  # not the first one's cache entry
    again = client.chat.completions.create(**ask, stop=[stop])
    assert again.choices[0].message.content == stopped.choices[0].message.content
    assert llmops.request_of(again)["mode"] == "cache"


def test_n_choices_are_all_returned_and_all_billed(llmops, sim, client):
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Suggest a name for a camping stove."}],
        n=2,
        max_tokens=20,
    )

    assert [c.index for c in completion.choices] == [0, 1]
    assert completion.choices[0].message.content != completion.choices[1].message.content
    request = llmops.request_of(completion)
    [entry] = ledger_of(llmops, request["id"])
    assert entry["output_tokens"] == completion.usage.completion_tokens
    assert completion.usage.completion_tokens > 20  # both choices, each up to 20


def test_seed_brings_a_system_fingerprint_and_logprobs_come_back(sim, client):
    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "One word for calm."}],
        seed=42,
        logprobs=True,
        top_logprobs=2,
        max_tokens=10,
    )

    assert completion.system_fingerprint
    tokens = completion.choices[0].logprobs.content
    assert "".join(t.token for t in tokens) == completion.choices[0].message.content
    assert all(len(t.top_logprobs) == 2 and t.logprob <= 0 for t in tokens)


@MODELS
def test_an_image_part_is_relayed_and_counted(llmops, sim, client, model):
    text = {"type": "text", "text": "What is in this picture?"}
    image = {"type": "image_url", "image_url": {"url": "https://example.com/tent.png"}}

    without = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": [text]}], max_tokens=10
    )
    with_image = client.chat.completions.create(
        model=model, messages=[{"role": "user", "content": [text, image]}], max_tokens=10
    )

    # The image's tokens (765 on gpt-4o's tiles, ~1,400 on Claude) are in the usage and bill.
    assert with_image.usage.prompt_tokens > without.usage.prompt_tokens + 700
    request = llmops.request_of(with_image)
    assert with_image.usage.prompt_tokens == sum(
        request["usage"][k] for k in ("input_tokens", "cached_input_tokens", "cache_write_tokens")
    )
    [entry] = ledger_of(llmops, request["id"])
    assert Decimal(entry["cost_usd"]) > 0


def test_the_model_is_the_clients(llmops, sim, client):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(
            model="gpt-99-nonexistent", messages=ASK_WEATHER, max_tokens=5
        )
    assert unknown.value.code == "model_not_found" and unknown.value.param == "model"

    with pytest.raises(openai.BadRequestError) as not_allowed:
        client.chat.completions.create(model="gpt-4.1", messages=ASK_WEATHER, max_tokens=5)
    assert not_allowed.value.code == "model_not_allowed"
    assert "gpt-4o-mini" in not_allowed.value.message and "auto" in not_allowed.value.message

    # The chain's fallback, named: served by that model alone.
    pinned = client.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "Hello"}],
        max_tokens=5,
    )
    assert pinned.model == "claude-haiku-4-5"
    assert llmops.request_of(pinned)["model"] == "claude-haiku-4-5"
    auto = client.chat.completions.create(
        model="auto", messages=[{"role": "user", "content": "Hello"}], max_tokens=5
    )
    assert auto.model == "gpt-4o-mini"


def test_a_parameter_claude_cannot_honour_is_a_400_naming_it_and_the_model(sim, client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.chat.completions.create(
            model="claude-haiku-4-5", messages=[{"role": "user", "content": "Hi"}], seed=7
        )
    assert refused.value.param == "seed"
    assert "seed" in refused.value.message and "claude-haiku-4-5" in refused.value.message


def test_models_lists_what_the_keys_workloads_may_use(client):
    ids = [m.id for m in client.models.list()]

    assert {"gpt-4o-mini", "claude-haiku-4-5", "gpt-4o", "auto"} <= set(ids)
    assert "gpt-4.1" not in ids  # in no chain of the team's policies
    assert client.models.retrieve("gpt-4o-mini").owned_by == "sim-openai"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4.1")


def test_every_answer_names_its_request(llmops, sim, client):
    completion = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi there"}], max_tokens=5
    )
    assert llmops.request_of(completion)["output"] == completion.choices[0].message.content

    with pytest.raises(openai.NotFoundError) as refused:
        client.chat.completions.create(model="nope", messages=ASK_WEATHER, max_tokens=5)
    assert refused.value.request_id  # an error before any request row still carries one


def test_a_claude_stream_names_one_model_in_every_chunk_and_ends_with_the_usage(
    llmops, sim, client
):
    stream = client.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "Name two tents."}],
        max_tokens=20,
        stop=["zzz"],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    assert {c.model for c in chunks} == {"claude-haiku-4-5"}
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] in ("stop", "length")
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens > 0
    request = llmops.request_of(stream.response.headers["x-request-id"])
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert request["output"] == text and request["model"] == "claude-haiku-4-5"
