"""OpenAI's flex processing tier (`service_tier: "flex"`, contract §7) on chat completions and
the Responses API: which models take it, its extra delay, its 429 Resource Unavailable, the
tier echoed in the answer, and its own mode in the simulator's bill."""

from __future__ import annotations

import time

import openai
import pytest

from llmops.simulator.testing import SimulatorError, SimulatorHandle

FLEX = "gpt-5-mini"
NOT_FLEX = "gpt-4o-mini"
HELLO = [{"role": "user", "content": "Hello there"}]
UNAVAILABLE = {
    "error": {
        "message": "Resource Unavailable: flex processing capacity is temporarily exhausted; "
        "retry later or use the default tier.",
        "type": "requests",
        "param": None,
        "code": "resource_unavailable",
    }
}


def chat(client: openai.OpenAI, model: str = FLEX, **kwargs):
    return client.chat.completions.create(model=model, messages=HELLO, **kwargs)


def test_flex_chat_echoes_the_tier_and_is_billed_as_flex(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    completion = chat(oai, service_tier="flex")

    assert completion.service_tier == "flex"
    assert completion.choices[0].message.content
    usage = sim.usage()
    assert usage["openai"][FLEX] == {
        "flex": {
            "requests": 1,
            "input_tokens": completion.usage.prompt_tokens,
            "cached_input_tokens": 0,
            "cache_creation_tokens": 0,
            "output_tokens": completion.usage.completion_tokens,
        }
    }
    assert usage["totals"]["requests"] == 1


def test_flex_stream_echoes_the_tier_in_every_chunk(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    plain = chat(oai, service_tier="flex")

    chunks = list(
        chat(oai, service_tier="flex", stream=True, stream_options={"include_usage": True})
    )

    assert chunks
    assert {chunk.service_tier for chunk in chunks} == {"flex"}
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == plain.choices[0].message.content
    billed = sim.usage()["openai"][FLEX]
    assert set(billed) == {"flex"}
    assert billed["flex"]["requests"] == 2
    assert billed["flex"]["output_tokens"] == 2 * plain.usage.completion_tokens


@pytest.mark.parametrize("tier", [None, "auto", "default"])
def test_other_tiers_stay_default_and_realtime(
    oai: openai.OpenAI, sim: SimulatorHandle, tier: str | None
) -> None:
    sim.config(flex_unavailable_rate=1)  # only flex calls are ever refused
    extra = {} if tier is None else {"service_tier": tier}

    completion = chat(oai, **extra)
    chunks = list(chat(oai, stream=True, **extra))
    response = oai.responses.create(model=FLEX, input="Hello there", **extra)

    assert completion.service_tier == "default"
    assert {chunk.service_tier for chunk in chunks} == {"default"}
    assert response.service_tier == "default"
    assert set(sim.usage()["openai"][FLEX]) == {"realtime", "stream"}


def test_flex_responses_echo_the_tier_plain_and_streamed(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    response = oai.responses.create(model=FLEX, input="Hello there", service_tier="flex")
    events = list(
        oai.responses.create(model=FLEX, input="Hello there", service_tier="flex", stream=True)
    )

    assert response.service_tier == "flex"
    assert response.output_text
    created, done = events[0], events[-1]
    assert created.type == "response.created"
    assert created.response.service_tier == "flex"
    assert done.type == "response.completed"
    assert done.response.service_tier == "flex"
    assert done.response.output_text == response.output_text
    billed = sim.usage()["openai"][FLEX]
    assert set(billed) == {"flex"}
    assert billed["flex"]["requests"] == 2
    assert billed["flex"]["output_tokens"] == 2 * response.usage.output_tokens


@pytest.mark.parametrize("model", ["gpt-5", "gpt-5-nano", "o3", "o4-mini"])
def test_every_default_flex_model_takes_flex(oai: openai.OpenAI, model: str) -> None:
    assert chat(oai, model, service_tier="flex").service_tier == "flex"
    assert oai.responses.create(model=model, input="Hi", service_tier="flex").service_tier == (
        "flex"
    )


def test_flex_on_a_model_without_it_is_a_400_naming_service_tier(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(flex_unavailable_rate=1)  # the model check comes first

    with pytest.raises(openai.BadRequestError) as plain:
        chat(oai, NOT_FLEX, service_tier="flex")
    with pytest.raises(openai.BadRequestError) as streamed:
        chat(oai, NOT_FLEX, service_tier="flex", stream=True)
    with pytest.raises(openai.BadRequestError) as responses:
        oai.responses.create(model=NOT_FLEX, input="Hi", service_tier="flex")

    for caught in (plain, streamed, responses):
        error = caught.value
        assert error.param == "service_tier"
        assert error.code == "unsupported_value"
        assert error.type == "invalid_request_error"
        assert error.body["message"] == f"Flex processing is not available for model {NOT_FLEX}."
    assert sim.usage()["totals"]["requests"] == 0


def test_an_unknown_tier_is_a_400_on_chat_as_on_responses(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        chat(oai, service_tier="cheap")

    assert caught.value.param == "service_tier"
    assert caught.value.code == "invalid_value"


def test_unavailable_rate_one_refuses_every_flex_call_with_a_429_billed_nothing(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(flex_unavailable_rate=1.0)

    refusals = []
    for call in (
        lambda: chat(oai, service_tier="flex"),
        lambda: chat(oai, service_tier="flex", stream=True),
        lambda: oai.responses.create(model=FLEX, input="Hi", service_tier="flex"),
        lambda: oai.responses.create(model=FLEX, input="Hi", service_tier="flex", stream=True),
    ):
        with pytest.raises(openai.RateLimitError) as caught:
            call()
        refusals.append(caught.value)

    for error in refusals:
        assert error.status_code == 429
        assert error.code == "resource_unavailable"
        assert error.response.json() == UNAVAILABLE
        assert error.response.headers["content-type"].startswith("application/json")
        assert error.response.headers["x-request-id"].startswith("req_")
        assert "retry-after" not in error.response.headers
    usage = sim.usage()
    assert usage["openai"] == {}
    assert usage["totals"]["requests"] == 0
    # the same model on the default tier is served
    assert chat(oai).service_tier == "default"


def test_unavailable_rate_is_per_model_too(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.config(model="gpt-5", flex_unavailable_rate=1)

    with pytest.raises(openai.RateLimitError):
        chat(oai, "gpt-5", service_tier="flex")
    assert chat(oai, FLEX, service_tier="flex").service_tier == "flex"


def test_unavailable_rate_zero_never_refuses(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.config(flex_unavailable_rate=0)

    tiers = [chat(oai, service_tier="flex").service_tier for _ in range(30)]

    assert tiers == ["flex"] * 30
    assert sim.usage()["openai"][FLEX]["flex"]["requests"] == 30


def test_a_partial_rate_refuses_some_and_serves_the_rest(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(flex_unavailable_rate=0.5)

    served = refused = 0
    for _ in range(40):
        try:
            chat(oai, service_tier="flex")
            served += 1
        except openai.RateLimitError:
            refused += 1

    assert served and refused
    assert sim.usage()["openai"][FLEX]["flex"]["requests"] == served


def test_the_flex_delay_comes_before_the_first_byte(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(flex_delay_ms=400)

    start = time.monotonic()
    chat(oai, service_tier="flex")
    plain_s = time.monotonic() - start

    start = time.monotonic()
    stream = chat(oai, service_tier="flex", stream=True)
    next(iter(stream))
    first_chunk_s = time.monotonic() - start
    stream.close()

    start = time.monotonic()
    oai.responses.create(model=FLEX, input="Hi", service_tier="flex")
    response_s = time.monotonic() - start

    assert plain_s >= 0.35
    assert first_chunk_s >= 0.35
    assert response_s >= 0.35


def test_the_flex_delay_can_be_set_per_model(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.config(model=FLEX, flex_delay_ms=400)

    start = time.monotonic()
    chat(oai, service_tier="flex")
    elapsed = time.monotonic() - start

    assert elapsed >= 0.35
    assert sim.config()["models"][FLEX] == {"flex_delay_ms": 400}


def test_flex_models_can_be_replaced_and_reset_restores_them(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    defaults = sim.config()["flex_models"]
    assert defaults == ["gpt-5", "gpt-5-mini", "gpt-5-nano", "o3", "o4-mini"]

    sim.config(flex_models=[NOT_FLEX])

    assert chat(oai, NOT_FLEX, service_tier="flex").service_tier == "flex"
    with pytest.raises(openai.BadRequestError, match=FLEX):
        chat(oai, FLEX, service_tier="flex")
    assert sim.config()["flex_models"] == [NOT_FLEX]
    sim.reset()
    assert sim.config()["flex_models"] == defaults


def test_a_model_added_with_flex_in_the_same_update_takes_it(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(add_models={"openai": ["gpt-5-flexy"]}, flex_models=["gpt-5-flexy"])

    assert chat(oai, "gpt-5-flexy", service_tier="flex").service_tier == "flex"


def test_instant_timings_zero_the_flex_delay(sim: SimulatorHandle) -> None:
    config = sim.config()

    assert config["flex_delay_ms"] == 0
    assert config["flex_unavailable_rate"] == 0


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"flex_unavailable_rate": 1.5}, "flex_unavailable_rate"),
        ({"flex_unavailable_rate": "often"}, "flex_unavailable_rate"),
        ({"flex_delay_ms": -1}, "flex_delay_ms"),
        ({"models": {FLEX: {"flex_unavailable_rate": -0.1}}}, "flex_unavailable_rate"),
        ({"flex_models": "gpt-5"}, "flex_models"),
        ({"flex_models": ["gpt-0"]}, "gpt-0"),
        ({"flex_models": ["claude-haiku-4-5"]}, "claude-haiku-4-5"),
        ({"flex_models": ["text-embedding-3-small"]}, "text-embedding-3-small"),
        ({"model": FLEX, "flex_models": [FLEX]}, "flex_models"),
        ({"models": {FLEX: {"flex_models": [FLEX]}}}, "flex_models"),
    ],
)
def test_bad_flex_config_is_refused_naming_the_key_and_changes_nothing(
    sim: SimulatorHandle, settings: dict, named: str
) -> None:
    before = sim.config()

    with pytest.raises(SimulatorError) as caught:
        sim.config(**settings)

    assert caught.value.status == 400
    assert named in str(caught.value)
    assert sim.config() == before


def test_the_sdk_parses_a_raw_flex_answer(oai: openai.OpenAI) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model=FLEX, messages=HELLO, service_tier="flex"
    )

    assert raw.http_response.json()["service_tier"] == "flex"
    assert raw.parse().service_tier == "flex"
