"""Injected faults as the SDKs experience them."""

from __future__ import annotations

import anthropic
import httpx2
import openai
import pytest

from llmops.simulator.testing import SimulatorError, SimulatorHandle

GPT = "gpt-4o-mini"
CLAUDE = "claude-haiku-4-5"
HELLO = [{"role": "user", "content": "Hello there"}]


def chat(client: openai.OpenAI, model: str = GPT, **kwargs):
    return client.chat.completions.create(model=model, messages=HELLO, **kwargs)


def message(client: anthropic.Anthropic, **kwargs):
    return client.messages.create(model=CLAUDE, max_tokens=100, messages=HELLO, **kwargs)


@pytest.mark.parametrize(
    ("status", "exception", "error_type"),
    [
        (429, openai.RateLimitError, "requests"),
        (500, openai.InternalServerError, "server_error"),
        (503, openai.InternalServerError, "server_error"),
        (401, openai.AuthenticationError, "invalid_request_error"),
    ],
)
def test_openai_error_faults_raise_the_matching_sdk_exception(
    oai: openai.OpenAI, sim: SimulatorHandle, status: int, exception: type, error_type: str
) -> None:
    sim.fault(provider="openai", status=status)

    with pytest.raises(exception) as caught:
        chat(oai)

    assert caught.value.status_code == status
    assert caught.value.type == error_type
    assert caught.value.request_id.startswith("req_")
    assert sim.usage()["totals"]["requests"] == 0


@pytest.mark.parametrize(
    ("status", "exception", "error_type"),
    [
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
        (504, anthropic.GatewayTimeoutError, "timeout_error"),
    ],
)
def test_anthropic_error_faults_raise_the_matching_sdk_exception(
    claude: anthropic.Anthropic, sim: SimulatorHandle, status: int, exception: type, error_type: str
) -> None:
    sim.fault(provider="anthropic", model=CLAUDE, status=status)

    with pytest.raises(exception) as caught:
        message(claude)

    assert caught.value.status_code == status
    assert caught.value.body["error"]["type"] == error_type
    assert sim.usage()["totals"]["requests"] == 0


def test_retry_after_is_sent_and_obeyed_by_the_sdk(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(provider="openai", status=429, retry_after=7)
    with pytest.raises(openai.RateLimitError) as caught:
        chat(oai)
    assert caught.value.response.headers["retry-after"] == "7"
    sim.clear_faults()

    sim.fault(provider="openai", status=503, retry_after=0.01, count=1)
    retrying = oai.with_options(max_retries=1)
    raw = retrying.chat.completions.with_raw_response.create(model=GPT, messages=HELLO)

    assert raw.retries_taken == 1
    assert raw.parse().choices[0].message.content
    [fault] = sim.faults()
    assert fault["fired"] == 1
    assert fault["active"] is False


def test_should_retry_false_stops_sdk_retries(
    claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    sim.fault(provider="anthropic", status=529, should_retry=False)

    with pytest.raises(anthropic.OverloadedError):
        message(claude.with_options(max_retries=2))

    assert sim.faults()[0]["fired"] == 1


def test_faults_match_model_and_endpoint(
    oai: openai.OpenAI, claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    sim.fault(provider="openai", model="gpt-4o", status=500)
    sim.fault(provider="*", endpoint="files", status=503)

    assert chat(oai).choices
    assert message(claude).content
    with pytest.raises(openai.InternalServerError):
        chat(oai, model="gpt-4o")
    with pytest.raises(openai.InternalServerError):
        oai.files.list()


def test_count_and_seconds_limit_a_fault(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    sim.fault(provider="openai", status=500, count=2)
    failures = 0
    for _ in range(4):
        try:
            chat(oai)
        except openai.InternalServerError:
            failures += 1
    assert failures == 2

    sim.fault(provider="openai", status=429, seconds=60)
    with pytest.raises(openai.RateLimitError):
        chat(oai)
    sim.advance(61)
    assert chat(oai).choices


def test_rate_with_a_seed_is_deterministic(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    def pattern() -> list[bool]:
        sim.reset()
        sim.fault(provider="openai", status=500, rate=0.5, seed=42)
        outcome = []
        for _ in range(20):
            try:
                chat(oai)
                outcome.append(True)
            except openai.InternalServerError:
                outcome.append(False)
        return outcome

    first, second = pattern(), pattern()

    assert first == second
    assert 0 < first.count(False) < 20


def test_openai_stream_cut_breaks_the_stream_and_bills_what_was_sent(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(provider="openai", kind="stream_cut", after_tokens=4)
    received = []

    with pytest.raises(openai.APIConnectionError):
        for chunk in chat(oai, stream=True, stream_options={"include_usage": True}):
            received.append(chunk.choices[0].delta.content)

    assert [piece for piece in received if piece] == received[1:5]
    assert len(received) == 5
    assert sim.usage()["openai"][GPT]["stream"]["output_tokens"] == 4


def test_anthropic_stream_cut_makes_the_sdk_raise(
    claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    sim.fault(provider="anthropic", kind="stream_cut", after_tokens=2)

    with (
        pytest.raises((anthropic.APIConnectionError, httpx2.TransportError)),
        claude.messages.stream(model=CLAUDE, max_tokens=100, messages=HELLO) as stream,
    ):
        stream.get_final_message()

    assert sim.usage()["anthropic"][CLAUDE]["stream"]["output_tokens"] == 2


def test_stream_error_events_raise_mid_stream(
    oai: openai.OpenAI, claude: anthropic.Anthropic, sim: SimulatorHandle
) -> None:
    sim.fault(kind="stream_error", after_tokens=3)

    with pytest.raises(openai.APIError, match="server had an error"):
        list(chat(oai, stream=True))
    with pytest.raises(anthropic.APIStatusError) as caught:
        list(message(claude, stream=True))

    assert caught.value.body["error"]["type"] == "overloaded_error"
    totals = sim.usage()
    assert totals["openai"][GPT]["stream"]["output_tokens"] == 3
    assert totals["anthropic"][CLAUDE]["stream"]["output_tokens"] == 3


def test_stall_pauses_but_the_stream_completes(oai: openai.OpenAI, sim: SimulatorHandle) -> None:
    plain = chat(oai).choices[0].message.content
    sim.fault(provider="openai", kind="stall", after_tokens=2, stall_s=0.05, count=1)

    streamed = "".join(c.choices[0].delta.content or "" for c in chat(oai, stream=True))

    assert streamed == plain
    assert sim.faults()[0]["fired"] == 1


def test_stream_faults_leave_non_streaming_requests_alone(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(kind="stream_cut", after_tokens=0)

    assert chat(oai).choices
    assert sim.faults()[0]["fired"] == 0


@pytest.mark.parametrize(
    ("spec", "named"),
    [
        ({"status": 500, "rate": 1.5}, "rate"),
        ({"status": 500, "colour": "red"}, "colour"),
        ({"kind": "explode"}, "kind"),
        ({"kind": "error"}, "status"),
        ({"status": 500, "provider": "mistral"}, "provider"),
        ({"status": 500, "endpoint": "images"}, "endpoint"),
        ({"kind": "stream_cut", "after_tokens": -1}, "after_tokens"),
        ({"status": 200}, "status"),
        ({"status": 500, "count": 0}, "count"),
    ],
)
def test_bad_fault_specs_are_refused_naming_the_field(
    sim: SimulatorHandle, spec: dict, named: str
) -> None:
    with pytest.raises(SimulatorError) as caught:
        sim.fault(**spec)

    assert caught.value.status == 400
    assert named in str(caught.value)
    assert sim.faults() == []


def test_faults_are_listed_and_deleted_one_by_one(sim: SimulatorHandle) -> None:
    first = sim.fault(status=500)
    second = sim.fault(status=429, provider="anthropic")

    sim.delete_fault(first)

    assert [f["id"] for f in sim.faults()] == [second]
    with pytest.raises(SimulatorError) as caught:
        sim.delete_fault(first)
    assert caught.value.status == 404
