"""/v1/responses with the official openai SDK: SDK → llmops → simulator over HTTP, on a model
that speaks the Responses API itself (gpt-4o-mini: relayed) and on a Claude model (translated to
Messages and back). Plain and streamed (the SDK's own stream accumulator checks every event's
order), function calls and their outputs, structured output, stored responses read and deleted,
conversations continued with previous_response_id on the provider that holds them, one ledger
entry per call at the model's price."""

from __future__ import annotations

import json
from decimal import Decimal

import openai
import pytest
from pydantic import BaseModel

MODELS = pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"])
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "object",
        "properties": {"city": {"type": "string"}},
        "required": ["city"],
        "additionalProperties": False,
    },
    "strict": True,
}


@pytest.fixture
def client(llmops):
    return llmops.openai(workload="product-search")  # gpt-4o-mini, then claude-haiku-4-5


def charges_of(llmops, request_id: str) -> list[dict]:
    status, body = llmops.api("GET", f"/api/v1/ledger?request={request_id}&limit=50")
    assert status == 200, body
    return [e for e in body["results"] if e["kind"] == "charge"]


def check_billed_once(llmops, response, model: str) -> dict:
    """The request behind `response` completed on `model`, with one charge for its tokens."""
    request = llmops.request_of(response)
    assert request["status"] == "completed" and request["model"] == model
    [charge] = charges_of(llmops, request["id"])
    usage = response.usage
    assert charge["input_tokens"] + charge["cached_input_tokens"] == usage.input_tokens
    assert charge["output_tokens"] == usage.output_tokens > 0
    assert Decimal(charge["cost_usd"]) > 0
    return request


@MODELS
def test_a_plain_response_is_answered_and_billed_once(llmops, sim, client, model):
    response = client.responses.create(
        model=model, instructions="Answer briefly.", input="Which tent for two people?"
    )

    assert response.object == "response" and response.status == "completed"
    assert response.model == model
    assert response.output_text
    assert response.instructions == "Answer briefly."
    request = check_billed_once(llmops, response, model)
    assert request["output"] == response.output_text


@MODELS
def test_a_streamed_response_passes_the_sdks_stream_checks(llmops, sim, client, model):
    texts, numbers = [], []
    with client.responses.stream(model=model, input="Describe a sleeping bag.") as stream:
        for event in stream:
            numbers.append(event.sequence_number)
            if event.type == "response.output_text.delta":
                texts.append(event.delta)
        final = stream.get_final_response()

    assert numbers == list(range(len(numbers)))
    assert final.status == "completed" and final.output_text == "".join(texts) != ""
    assert final.usage.output_tokens > 0
    # The stored response is the one the stream ended with; it names its request.
    stored = client.responses.retrieve(final.id)
    assert stored.output_text == final.output_text
    request = llmops.request_of(stored)
    assert request["model"] == model and request["output"] == final.output_text
    [charge] = charges_of(llmops, request["id"])
    assert charge["output_tokens"] == final.usage.output_tokens


@MODELS
def test_a_function_call_and_its_output_in_a_second_turn(llmops, sim, client, model):
    first = client.responses.create(
        model=model, input="What is the weather in Paris?", tools=[WEATHER], tool_choice="required"
    )
    [call] = [item for item in first.output if item.type == "function_call"]
    assert call.name == "get_weather" and "city" in json.loads(call.arguments)
    check_billed_once(llmops, first, model)

    second = client.responses.create(
        model=model,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "What is the weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": '{"temp": 20}'},
        ],
    )
    assert second.status == "completed" and second.output_text
    check_billed_once(llmops, second, model)


@MODELS
def test_previous_response_id_continues_on_the_same_provider(llmops, sim, client, model):
    # Another question than the test above: a cache hit of its answer would name a response
    # the simulator (reset between tests, unlike a provider's 30-day store) no longer has.
    first = client.responses.create(
        model=model, input="What is the weather in Lyon?", tools=[WEATHER], tool_choice="required"
    )
    [call] = [item for item in first.output if item.type == "function_call"]

    second = client.responses.create(
        model=model,
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "20C"}],
    )

    assert second.status == "completed" and second.output_text
    assert second.previous_response_id == first.id
    # The earlier turn counts in the continuation's prompt, as the provider billed it.
    assert second.usage.input_tokens > first.usage.input_tokens
    check_billed_once(llmops, second, model)


def test_a_conversation_does_not_move_to_another_provider(llmops, sim, client):
    first = client.responses.create(model="gpt-4o-mini", input="Hello")

    with pytest.raises(openai.BadRequestError) as moved:
        client.responses.create(
            model="claude-haiku-4-5", previous_response_id=first.id, input="And then?"
        )
    assert moved.value.code == "previous_response_elsewhere"
    assert moved.value.param == "previous_response_id"

    with pytest.raises(openai.BadRequestError) as unknown:
        client.responses.create(model="gpt-4o-mini", previous_response_id="resp_nope", input="x")
    assert unknown.value.code == "previous_response_not_found"


class Tent(BaseModel):
    name: str
    people: int


@MODELS
def test_parse_with_a_pydantic_model_gets_a_valid_object(llmops, sim, client, model):
    parsed = client.responses.parse(model=model, input="A tent for two.", text_format=Tent)

    assert isinstance(parsed.output_parsed, Tent)
    check_billed_once(llmops, parsed, model)


@MODELS
def test_a_stored_response_is_read_and_deleted(llmops, sim, client, model):
    response = client.responses.create(model=model, input="Name a hiking trail.")

    read = client.responses.retrieve(response.id)
    assert read.id == response.id and read.output_text == response.output_text

    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError) as gone:
        client.responses.create(model=model, previous_response_id=response.id, input="more")
    assert gone.value.code == "previous_response_not_found"


@MODELS
def test_max_output_tokens_cuts_the_answer_as_incomplete(llmops, sim, client, model):
    response = client.responses.create(
        model=model, input="Write a long story about a tent.", max_output_tokens=16
    )

    assert response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert response.usage.output_tokens <= 16
    check_billed_once(llmops, response, model)


def test_what_claude_cannot_honour_is_a_400_naming_it(sim, client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(
            model="claude-haiku-4-5", input="Hi", tools=[{"type": "web_search"}]
        )
    assert refused.value.param == "tools[0].type"
    assert "claude-haiku-4-5" in refused.value.message


def test_an_empty_input_is_a_400_naming_it(sim, client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.responses.create(model="gpt-4o-mini", input=[])
    assert refused.value.param == "input"
