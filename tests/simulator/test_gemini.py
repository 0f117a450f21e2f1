"""Gemini realtime: the OpenAI-compatible API through the openai SDK and the native API
through the google-genai SDK."""

from __future__ import annotations

import json

import httpx2
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from llmops.simulator.testing import SimulatorHandle

MODEL = "gemini-2.5-flash"
HELLO = [{"role": "user", "content": "Hello there"}]
WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
WEATHER_DECLARATION = types.FunctionDeclaration(
    name="get_weather",
    description="The weather in a city",
    parameters={"type": "OBJECT", "properties": {"city": {"type": "STRING"}}, "required": ["city"]},
)
NO_AUTOMATIC_CALLS = types.AutomaticFunctionCallingConfig(disable=True)


# --- the OpenAI-compatible API ---------------------------------------------------------------


def test_compatible_chat_answers_and_bills_under_gemini(
    gemini_compat: openai.OpenAI, sim: SimulatorHandle
) -> None:
    answer = gemini_compat.chat.completions.create(model=MODEL, messages=HELLO)

    assert answer.model == MODEL
    assert answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.content
    billed = sim.usage()["gemini"][MODEL]["realtime"]
    assert billed["requests"] == 1
    assert billed["output_tokens"] == answer.usage.completion_tokens


def test_compatible_stream_reports_usage_last(
    gemini_compat: openai.OpenAI, sim: SimulatorHandle
) -> None:
    plain = gemini_compat.chat.completions.create(model=MODEL, messages=HELLO)
    chunks = list(
        gemini_compat.chat.completions.create(
            model=MODEL, messages=HELLO, stream=True, stream_options={"include_usage": True}
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    assert chunks[-1].usage.completion_tokens == plain.usage.completion_tokens
    assert sim.usage()["gemini"][MODEL]["stream"]["requests"] == 1


def test_compatible_tools_give_tool_calls(gemini_compat: openai.OpenAI) -> None:
    answer = gemini_compat.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "get_weather for Rome"}],
        tools=[WEATHER],
    )

    call = answer.choices[0].message.tool_calls[0]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)


def test_compatible_json_schema_output(gemini_compat: openai.OpenAI) -> None:
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"],
    }
    answer = gemini_compat.chat.completions.create(
        model=MODEL,
        messages=HELLO,
        response_format={"type": "json_schema", "json_schema": {"name": "book", "schema": schema}},
    )

    book = json.loads(answer.choices[0].message.content)
    assert isinstance(book["title"], str)
    assert isinstance(book["year"], int)


def test_compatible_embeddings_have_3072_dimensions_unless_asked(
    gemini_compat: openai.OpenAI, sim: SimulatorHandle
) -> None:
    full = gemini_compat.embeddings.create(model="gemini-embedding-001", input="some text")
    short = gemini_compat.embeddings.create(
        model="gemini-embedding-001", input=["some text", "more"], dimensions=256
    )

    assert len(full.data[0].embedding) == 3072
    assert [len(d.embedding) for d in short.data] == [256, 256]
    assert sim.usage()["gemini"]["gemini-embedding-001"]["realtime"]["requests"] == 2


def test_compatible_models_are_listed_by_resource_name(gemini_compat: openai.OpenAI) -> None:
    ids = {m.id for m in gemini_compat.models.list()}

    assert ids == {
        "models/gemini-2.5-flash",
        "models/gemini-2.5-flash-lite",
        "models/gemini-2.5-pro",
        "models/gemini-embedding-001",
    }


def test_compatible_errors_come_in_googles_shape(gemini_compat: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as missing_model:
        gemini_compat.chat.completions.create(model="gemini-0-nope", messages=HELLO)
    with pytest.raises(openai.BadRequestError) as too_long:
        gemini_compat.chat.completions.create(model=MODEL, messages=HELLO, max_tokens=65_537)
    with pytest.raises(openai.BadRequestError) as tier:
        gemini_compat.chat.completions.create(model=MODEL, messages=HELLO, service_tier="flex")

    assert missing_model.value.body["status"] == "NOT_FOUND"
    assert missing_model.value.body["code"] == 404
    assert too_long.value.body["status"] == "INVALID_ARGUMENT"
    assert "65536" in too_long.value.body["message"]
    assert tier.value.body == {
        "code": 400,
        "message": 'Invalid JSON payload received. Unknown name "service_tier": Cannot find field.',
        "status": "INVALID_ARGUMENT",
    }


def test_compatible_api_needs_a_bearer_key(sim: SimulatorHandle) -> None:
    refused = httpx2.post(
        f"{sim.gemini_openai_base_url}/chat/completions", json={"model": MODEL, "messages": HELLO}
    )

    assert refused.status_code == 401
    assert refused.json()["error"]["status"] == "UNAUTHENTICATED"


def test_compatible_and_native_answers_agree(
    gemini_compat: openai.OpenAI, gemini: genai.Client
) -> None:
    compatible = gemini_compat.chat.completions.create(
        model=MODEL,
        messages=[{"role": "system", "content": "Be brief"}, *HELLO],
    )
    native = gemini.models.generate_content(
        model=MODEL,
        contents="Hello there",
        config=types.GenerateContentConfig(system_instruction="Be brief"),
    )

    assert native.text == compatible.choices[0].message.content
    assert native.usage_metadata.prompt_token_count == compatible.usage.prompt_tokens


# --- the native API --------------------------------------------------------------------------


def test_generate_content_answers_with_usage(gemini: genai.Client, sim: SimulatorHandle) -> None:
    answer = gemini.models.generate_content(model=MODEL, contents="Hello there")

    usage = answer.usage_metadata
    assert answer.text
    assert answer.candidates[0].finish_reason == types.FinishReason.STOP
    assert answer.model_version == MODEL
    assert answer.response_id
    assert usage.total_token_count == usage.prompt_token_count + usage.candidates_token_count
    assert usage.candidates_token_count == len(answer.text.split(" "))
    billed = sim.usage()["gemini"][MODEL]["realtime"]
    assert billed["input_tokens"] == usage.prompt_token_count
    assert billed["output_tokens"] == usage.candidates_token_count


def test_generation_config_is_honoured(gemini: genai.Client) -> None:
    capped = gemini.models.generate_content(
        model=MODEL,
        contents="Hello there",
        config=types.GenerateContentConfig(max_output_tokens=3, candidate_count=2, seed=7),
    )
    again = gemini.models.generate_content(
        model=MODEL,
        contents="Hello there",
        config=types.GenerateContentConfig(max_output_tokens=3, candidate_count=2, seed=7),
    )
    other_seed = gemini.models.generate_content(
        model=MODEL, contents="Hello there", config=types.GenerateContentConfig(seed=8)
    )

    assert len(capped.candidates) == 2
    assert {c.finish_reason for c in capped.candidates} == {types.FinishReason.MAX_TOKENS}
    assert capped.usage_metadata.candidates_token_count == 6
    assert [c.content.parts[0].text for c in again.candidates] == [
        c.content.parts[0].text for c in capped.candidates
    ]
    assert other_seed.text != capped.text


def test_thinking_tokens_are_reported_and_billed_as_output(
    gemini: genai.Client, sim: SimulatorHandle
) -> None:
    answer = gemini.models.generate_content(
        model=MODEL,
        contents="Hello there",
        config=types.GenerateContentConfig(
            thinking_config=types.ThinkingConfig(thinking_budget=1024)
        ),
    )

    usage = answer.usage_metadata
    assert usage.thoughts_token_count > 0
    assert usage.total_token_count == (
        usage.prompt_token_count + usage.candidates_token_count + usage.thoughts_token_count
    )
    billed = sim.usage()["gemini"][MODEL]["realtime"]["output_tokens"]
    assert billed == usage.candidates_token_count + usage.thoughts_token_count


def test_json_output_follows_the_response_schema(gemini: genai.Client) -> None:
    schema = {
        "type": "OBJECT",
        "properties": {"name": {"type": "STRING"}, "age": {"type": "INTEGER"}},
        "required": ["name", "age"],
    }
    answer = gemini.models.generate_content(
        model=MODEL,
        contents="A person",
        config={"response_mime_type": "application/json", "response_schema": schema},
    )
    by_json_schema = gemini.models.generate_content(
        model=MODEL,
        contents="A list",
        config={
            "response_mime_type": "application/json",
            "response_json_schema": {"type": "array", "items": {"type": "boolean"}},
        },
    )

    assert isinstance(answer.parsed["name"], str)
    assert isinstance(answer.parsed["age"], int)
    assert all(isinstance(x, bool) for x in json.loads(by_json_schema.text))


def test_an_enum_answer_is_one_of_the_values(gemini: genai.Client) -> None:
    answer = gemini.models.generate_content(
        model=MODEL,
        contents="Pick a colour",
        config={
            "response_mime_type": "text/x.enum",
            "response_schema": {"type": "STRING", "enum": ["red", "green"]},
        },
    )

    assert answer.text in ("red", "green")


def test_a_function_is_called_when_the_prompt_asks_for_it(gemini: genai.Client) -> None:
    config = types.GenerateContentConfig(
        tools=[types.Tool(function_declarations=[WEATHER_DECLARATION])],
        automatic_function_calling=NO_AUTOMATIC_CALLS,
    )

    called = gemini.models.generate_content(
        model=MODEL, contents="What does get_weather say for Oslo?", config=config
    )
    answered = gemini.models.generate_content(
        model=MODEL,
        contents=[
            types.Content(role="user", parts=[types.Part(text="get_weather for Oslo")]),
            types.Content(
                role="model",
                parts=[types.Part(function_call=types.FunctionCall(name="get_weather", args={}))],
            ),
            types.Content(
                role="user",
                parts=[
                    types.Part(
                        function_response=types.FunctionResponse(
                            name="get_weather", response={"forecast": "rain"}
                        )
                    )
                ],
            ),
        ],
        config=config,
    )

    assert called.function_calls[0].name == "get_weather"
    assert isinstance(called.function_calls[0].args["city"], str)
    assert called.candidates[0].finish_reason == types.FinishReason.STOP
    assert answered.function_calls is None
    assert answered.text


def test_tool_config_modes_decide_the_call(gemini: genai.Client) -> None:
    def ask(mode: str, **calling):
        return gemini.models.generate_content(
            model=MODEL,
            contents="Hello there",
            config=types.GenerateContentConfig(
                tools=[types.Tool(function_declarations=[WEATHER_DECLARATION])],
                tool_config=types.ToolConfig(
                    function_calling_config=types.FunctionCallingConfig(mode=mode, **calling)
                ),
                automatic_function_calling=NO_AUTOMATIC_CALLS,
            ),
        )

    forced = ask("ANY", allowed_function_names=["get_weather"])
    never = ask("NONE")

    assert forced.function_calls[0].name == "get_weather"
    assert never.function_calls is None
    with pytest.raises(genai_errors.ClientError) as caught:
        ask("ANY", allowed_function_names=["no_such_function"])
    assert caught.value.code == 400


def test_streamed_content_matches_the_plain_answer(
    gemini: genai.Client, sim: SimulatorHandle
) -> None:
    plain = gemini.models.generate_content(model=MODEL, contents="Hello there")
    chunks = list(gemini.models.generate_content_stream(model=MODEL, contents="Hello there"))

    assert "".join(c.text or "" for c in chunks) == plain.text
    assert chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP
    assert chunks[-1].usage_metadata.candidates_token_count == (
        plain.usage_metadata.candidates_token_count
    )
    streamed = sim.usage()["gemini"][MODEL]["stream"]
    assert streamed["output_tokens"] == plain.usage_metadata.candidates_token_count


def test_a_stream_error_fault_reaches_the_sdk(gemini: genai.Client, sim: SimulatorHandle) -> None:
    sim.fault(provider="gemini", endpoint="chat", kind="stream_error", after_tokens=2)

    with pytest.raises(genai_errors.ServerError):
        list(gemini.models.generate_content_stream(model=MODEL, contents="Hello there"))

    assert sim.usage()["gemini"][MODEL]["stream"]["output_tokens"] == 2


@pytest.mark.parametrize(
    ("contents", "config", "named"),
    [
        ("hi", {"max_output_tokens": 65_537}, "maxOutputTokens value of 65537"),
        ("hi", {"temperature": 3}, "temperature"),
        ("hi", {"stop_sequences": ["a", "b", "c", "d", "e", "f"]}, "stop_sequences"),
        ([{"role": "bot", "parts": [{"text": "hi"}]}], None, "valid role"),
        ([{"role": "user", "parts": []}], None, "contents[0].parts"),
        ("hi", {"response_mime_type": "text/csv"}, "response_mime_type"),
    ],
)
def test_malformed_requests_are_refused_naming_the_field(
    gemini: genai.Client, contents, config, named: str
) -> None:
    with pytest.raises(genai_errors.ClientError) as caught:
        gemini.models.generate_content(model=MODEL, contents=contents, config=config)

    assert caught.value.code == 400
    assert caught.value.status == "INVALID_ARGUMENT"
    assert named in caught.value.message


def test_unknown_fields_are_refused_as_the_json_parser_does(sim: SimulatorHandle) -> None:
    refused = httpx2.post(
        f"{sim.gemini_base_url}/v1beta/models/{MODEL}:generateContent",
        headers={"x-goog-api-key": "sim"},
        json={"contents": [{"parts": [{"text": "hi"}]}], "max_tokens": 5},
    )

    assert refused.status_code == 400
    assert refused.json()["error"]["message"] == (
        'Invalid JSON payload received. Unknown name "max_tokens": Cannot find field.'
    )


def test_an_unknown_model_is_not_found(gemini: genai.Client) -> None:
    with pytest.raises(genai_errors.ClientError) as caught:
        gemini.models.generate_content(model="gemini-0-nope", contents="hi")

    assert caught.value.code == 404
    assert caught.value.status == "NOT_FOUND"


def test_the_native_api_needs_a_key(sim: SimulatorHandle) -> None:
    url = f"{sim.gemini_base_url}/v1beta/models/{MODEL}:generateContent"
    body = {"contents": [{"parts": [{"text": "hi"}]}]}

    refused = httpx2.post(url, json=body)
    by_query = httpx2.post(url, params={"key": "sim"}, json=body)

    assert refused.status_code == 403
    assert refused.json()["error"]["status"] == "PERMISSION_DENIED"
    assert by_query.status_code == 200


def test_faults_target_gemini(
    gemini: genai.Client, gemini_compat: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(provider="gemini", endpoint="chat", status=429, count=2)

    with pytest.raises(genai_errors.ClientError) as native:
        gemini.models.generate_content(model=MODEL, contents="hi")
    with pytest.raises(openai.RateLimitError) as compatible:
        gemini_compat.chat.completions.create(model=MODEL, messages=HELLO)

    assert native.value.code == 429
    assert native.value.status == "RESOURCE_EXHAUSTED"
    assert compatible.value.body["status"] == "RESOURCE_EXHAUSTED"
    assert gemini.models.generate_content(model=MODEL, contents="hi").text


def test_tokens_are_counted_and_models_listed(gemini: genai.Client) -> None:
    counted = gemini.models.count_tokens(model=MODEL, contents="Hello there")
    answer = gemini.models.generate_content(model=MODEL, contents="Hello there")
    model = gemini.models.get(model=MODEL)

    assert counted.total_tokens == answer.usage_metadata.prompt_token_count
    assert model.output_token_limit == 65_536
    assert "batchGenerateContent" in model.supported_actions


def test_native_embeddings(gemini: genai.Client, sim: SimulatorHandle) -> None:
    answer = gemini.models.embed_content(
        model="gemini-embedding-001",
        contents=["one", "two"],
        config=types.EmbedContentConfig(output_dimensionality=128),
    )

    assert [len(e.values) for e in answer.embeddings] == [128, 128]
    assert sim.usage()["gemini"]["gemini-embedding-001"]["realtime"]["requests"] == 1
