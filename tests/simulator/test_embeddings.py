"""OpenAI embeddings through the official SDK: realtime and in batches (contract §9)."""

from __future__ import annotations

import base64
import math
import struct
import time
from typing import Any

import openai
import pytest

from llmops.simulator.testing import SimulatorHandle
from llmops.simulator.textgen import count_tokens
from tests.simulator.test_openai_batches import jsonl, read_lines

SMALL = "text-embedding-3-small"
LARGE = "text-embedding-3-large"
ADA = "text-embedding-ada-002"
ENDPOINT = "/v1/embeddings"
TEXT = "The quick brown fox jumps over the lazy dog."


def embed(client: openai.OpenAI, input: Any, model: str = SMALL, **kwargs: Any) -> Any:
    return client.embeddings.create(model=model, input=input, **kwargs)


def length(vector: list[float]) -> float:
    return math.sqrt(sum(x * x for x in vector))


def test_base64_the_sdk_default_and_float_give_the_same_unit_vectors(oai: openai.OpenAI) -> None:
    default = embed(oai, TEXT)
    floats = embed(oai, TEXT, encoding_format="float")

    assert default.object == "list"
    assert default.model == SMALL
    [item] = default.data
    assert item.object == "embedding"
    assert item.index == 0
    assert len(item.embedding) == 1536
    assert item.embedding == floats.data[0].embedding
    assert length(item.embedding) == pytest.approx(1, abs=1e-5)


def test_base64_is_little_endian_float32(oai: openai.OpenAI) -> None:
    # Asked for explicitly, the SDK hands the string over undecoded.
    raw = embed(oai, TEXT, encoding_format="base64").data[0].embedding
    floats = embed(oai, TEXT, encoding_format="float").data[0].embedding

    assert isinstance(raw, str)
    assert list(struct.unpack("<1536f", base64.b64decode(raw))) == floats


def test_native_lengths_per_model(oai: openai.OpenAI) -> None:
    assert len(embed(oai, TEXT, model=LARGE).data[0].embedding) == 3072
    assert len(embed(oai, TEXT, model=ADA).data[0].embedding) == 1536


@pytest.mark.parametrize(("model", "dimensions"), [(SMALL, 256), (SMALL, 1), (LARGE, 1024)])
def test_dimensions_shorten_the_native_vector_and_renormalise(
    oai: openai.OpenAI, model: str, dimensions: int
) -> None:
    full = embed(oai, TEXT, model=model).data[0].embedding
    short = embed(oai, TEXT, model=model, dimensions=dimensions).data[0].embedding

    assert len(short) == dimensions
    assert length(short) == pytest.approx(1, abs=1e-5)
    # As text-embedding-3 does: the native vector's head, scaled back to length 1.
    head = full[:dimensions]
    scale = length(head)
    assert short == pytest.approx([x / scale for x in head], abs=1e-5)


def test_several_inputs_keep_their_order_and_indexes(oai: openai.OpenAI) -> None:
    texts = ["alpha", "beta", "gamma", "delta"]

    together = embed(oai, texts)
    alone = [embed(oai, text).data[0].embedding for text in texts]

    assert [item.index for item in together.data] == [0, 1, 2, 3]
    assert [item.embedding for item in together.data] == alone
    assert len({tuple(vector) for vector in alone}) == 4


def test_embeddings_are_deterministic_per_model_and_input(oai: openai.OpenAI) -> None:
    first = embed(oai, TEXT).data[0].embedding
    again = embed(oai, TEXT).data[0].embedding
    other_text = embed(oai, TEXT + "!").data[0].embedding
    other_model = embed(oai, TEXT, model=ADA).data[0].embedding

    assert first == again
    assert first != other_text
    assert first != other_model


def test_token_id_inputs_count_their_length(oai: openai.OpenAI) -> None:
    one = embed(oai, [1212, 318, 257])
    several = embed(oai, [[1212, 318], [42], [1212, 318]])

    assert len(one.data) == 1
    assert one.usage.prompt_tokens == one.usage.total_tokens == 3
    assert [item.index for item in several.data] == [0, 1, 2]
    assert several.usage.prompt_tokens == 5
    assert several.data[0].embedding == several.data[2].embedding
    assert several.data[0].embedding != several.data[1].embedding


def test_usage_is_reported_and_billed_as_realtime_input(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    texts = [TEXT, "hello there"]

    response = embed(oai, texts, user="u1")
    embed(oai, "one more")

    expected = count_tokens(texts[0]) + count_tokens(texts[1])
    assert response.usage.prompt_tokens == response.usage.total_tokens == expected
    billed = sim.usage()["openai"][SMALL]
    assert set(billed) == {"realtime"}
    assert billed["realtime"]["requests"] == 2
    assert billed["realtime"]["input_tokens"] == expected + count_tokens("one more")
    assert billed["realtime"]["output_tokens"] == 0


LONG = "word " * 8192  # 8192 tokens: the most one input may have


@pytest.mark.parametrize(
    ("kwargs", "param", "message"),
    [
        ({"input": openai.omit}, "input", "Missing required parameter: 'input'"),
        ({"input": 42}, "input", "Invalid type for 'input'"),
        ({"input": {"text": "hi"}}, "input", "Invalid type for 'input'"),
        ({"input": ["a", 1]}, "input", "Invalid type for 'input[1]'"),
        ({"input": [[1, 2], "a"]}, "input", "Invalid type for 'input[1]'"),
        ({"input": ""}, "input", "'$.input' is invalid"),
        ({"input": ["a", ""]}, "input", "'$.input' is invalid"),
        ({"input": []}, "input", "'$.input' is invalid"),
        ({"input": [[1], []]}, "input", "'$.input' is invalid"),
        ({"input": ["x"] * 2049}, "input", "maximum length 2048"),
        (
            {"input": ["short", LONG + "over"]},
            None,
            "Invalid 'input': maximum context length is 8192 tokens.",
        ),
        ({"input": [LONG] * 37}, None, "Requested 303104 tokens, max 300000 tokens per request"),
        ({"input": TEXT, "dimensions": 0}, "dimensions", "dimensions"),
        ({"input": TEXT, "dimensions": 1537}, "dimensions", "dimensions"),
        (
            {"input": TEXT, "model": ADA, "dimensions": 512},
            "dimensions",
            "This model does not support specifying dimensions.",
        ),
        ({"input": TEXT, "encoding_format": "int8"}, "encoding_format", "encoding_format"),
        ({"input": TEXT, "user": 7}, "user", "user"),
        ({"input": TEXT, "model": "gpt-4o-mini"}, "model", "does not support embeddings"),
    ],
)
def test_bad_requests_are_refused_naming_the_field(
    oai: openai.OpenAI, sim: SimulatorHandle, kwargs: dict, param: str | None, message: str
) -> None:
    kwargs = {"model": SMALL, **kwargs}

    with pytest.raises(openai.BadRequestError) as caught:
        oai.embeddings.create(**kwargs)

    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert message in caught.value.message
    assert sim.usage()["totals"]["requests"] == 0


def test_the_token_limits_are_inclusive(oai: openai.OpenAI) -> None:
    response = embed(oai, [LONG, "x"], model=ADA, encoding_format="float")

    assert response.usage.prompt_tokens == 8193


def test_unknown_models_are_not_found_and_each_endpoint_keeps_its_models(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    with pytest.raises(openai.NotFoundError) as unknown:
        embed(oai, TEXT, model="text-embedding-4")
    with pytest.raises(openai.NotFoundError) as not_chat:
        oai.chat.completions.create(model=SMALL, messages=[{"role": "user", "content": "hi"}])

    assert unknown.value.code == "model_not_found"
    assert "text-embedding-4" in unknown.value.message
    assert "not a chat model" in not_chat.value.message
    assert sim.usage()["totals"]["requests"] == 0
    listed = {model.id for model in oai.models.list()}
    assert {SMALL, LARGE, ADA, "gpt-4o-mini"} <= listed
    assert oai.models.retrieve(LARGE).id == LARGE


def test_faults_can_target_embeddings_and_their_model(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.fault(provider="openai", endpoint="chat", status=500)
    sim.fault(provider="openai", endpoint="embeddings", model=LARGE, status=429, count=1)

    fine = embed(oai, TEXT)
    with pytest.raises(openai.RateLimitError):
        embed(oai, TEXT, model=LARGE)
    recovered = embed(oai, TEXT, model=LARGE)

    assert fine.data and recovered.data
    assert sim.usage()["totals"]["requests"] == 2


def test_an_embedding_models_latency_is_its_time_to_first_token(
    oai: openai.OpenAI, sim: SimulatorHandle
) -> None:
    sim.config(model=SMALL, ttft_ms=300)

    started = time.monotonic()
    embed(oai, TEXT)
    slow = time.monotonic() - started
    started = time.monotonic()
    embed(oai, TEXT, model=LARGE)
    fast = time.monotonic() - started

    assert slow >= 0.3
    assert fast < 0.3


def line(custom_id: str, **body: Any) -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": ENDPOINT,
        "body": {"model": SMALL, **body},
    }


def submit(client: openai.OpenAI, lines: list[Any]) -> Any:
    uploaded = client.files.create(file=("input.jsonl", jsonl(lines)), purpose="batch")
    return client.batches.create(
        input_file_id=uploaded.id, endpoint=ENDPOINT, completion_window="24h"
    )


@pytest.fixture
def slow_batches(sim: SimulatorHandle) -> SimulatorHandle:
    sim.config(batch_validating_s=10, batch_turnaround_s=100, batch_finalizing_s=5)
    return sim


def test_an_embeddings_batch_runs_to_completion_and_bills_as_batch(
    oai: openai.OpenAI, slow_batches: SimulatorHandle
) -> None:
    sim = slow_batches
    batch = submit(
        oai,
        [
            line("one", input=TEXT),
            line("many", input=["alpha", "beta"], dimensions=64),
            line("tokens", input=[1212, 318], encoding_format="base64"),
            line("bad", input=""),
        ],
    )

    assert batch.status == "validating"
    assert batch.endpoint == ENDPOINT
    sim.advance(10 + 100 + 5)
    done = oai.batches.retrieve(batch.id)

    assert done.status == "completed"
    assert done.model == SMALL
    assert done.request_counts.completed == 3
    assert done.request_counts.failed == 1
    output = {o["custom_id"]: o for o in read_lines(oai, done.output_file_id)}
    assert set(output) == {"one", "many", "tokens"}
    for result in output.values():
        assert result["error"] is None
        assert result["id"].startswith("batch_req_")
        assert result["response"]["status_code"] == 200
        assert result["response"]["request_id"].startswith("req_")
        assert result["response"]["body"]["object"] == "list"
    one = output["one"]["response"]["body"]
    assert one["data"][0]["embedding"] == embed(oai, TEXT).data[0].embedding
    many = output["many"]["response"]["body"]["data"]
    assert [item["index"] for item in many] == [0, 1]
    assert [len(item["embedding"]) for item in many] == [64, 64]
    tokens = output["tokens"]["response"]["body"]
    assert isinstance(tokens["data"][0]["embedding"], str)
    assert tokens["usage"] == {"prompt_tokens": 2, "total_tokens": 2}
    [bad] = read_lines(oai, done.error_file_id)
    assert bad["custom_id"] == "bad"
    assert bad["error"] is None
    assert bad["response"]["status_code"] == 400
    assert bad["response"]["body"]["error"]["param"] == "input"

    billed = sim.usage()["openai"][SMALL]
    batch_tokens = count_tokens(TEXT) + count_tokens("alpha") + count_tokens("beta") + 2
    assert billed["batch"]["requests"] == 3
    assert billed["batch"]["input_tokens"] == batch_tokens
    assert billed["batch"]["output_tokens"] == 0
    assert done.usage.input_tokens == batch_tokens


@pytest.mark.parametrize(
    ("lines", "code", "line_number"),
    [
        (
            [line("a", input="x"), {**line("b", input="y"), "url": "/v1/chat/completions"}],
            "invalid_url",
            2,
        ),
        ([line("a", input="x"), line("b", input="y", model="gpt-4o-mini")], "mismatched_model", 2),
        ([line("a", input="x", model="gpt-4o-mini")], "model_not_found", 1),
        ([line(f"r{i}", input=["x"] * 2048) for i in range(25)], "too_many_embedding_inputs", None),
    ],
)
def test_invalid_embeddings_batches_fail_validation(
    oai: openai.OpenAI,
    slow_batches: SimulatorHandle,
    lines: list,
    code: str,
    line_number: int | None,
) -> None:
    batch = submit(oai, lines)
    slow_batches.advance(10)
    failed = oai.batches.retrieve(batch.id)

    assert failed.status == "failed"
    assert failed.output_file_id is None
    [error] = failed.errors.data
    assert error.code == code
    assert error.line == line_number
    assert slow_batches.usage()["totals"]["requests"] == 0


def test_a_chat_batch_still_refuses_embeddings_lines(oai: openai.OpenAI) -> None:
    uploaded = oai.files.create(
        file=("input.jsonl", jsonl([line("a", input="x")])), purpose="batch"
    )

    batch = oai.batches.create(
        input_file_id=uploaded.id, endpoint="/v1/chat/completions", completion_window="24h"
    )

    assert batch.status == "failed"
    assert batch.errors.data[0].code == "invalid_url"
