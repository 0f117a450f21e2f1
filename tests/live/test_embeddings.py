"""/v1/embeddings with the official openai SDK: SDK → llmops → simulator over HTTP. Vectors
as the provider made them (float, and base64, the SDK's default), `dimensions`, several inputs
in order, the model the client names, one ledger entry per call at the input price, and the
response cache of a policy that keeps one."""

from __future__ import annotations

import math
from decimal import Decimal

import openai
import pytest


@pytest.fixture
def client(llmops):
    return llmops.openai(workload="query-embeddings")  # text-embedding-3-small, cached


def ledger_of(llmops, request_id: str) -> list[dict]:
    status, body = llmops.api("GET", f"/api/v1/ledger?request={request_id}&limit=50")
    assert status == 200, body
    return body["results"]


def test_vectors_come_back_as_the_provider_made_them_in_either_encoding(llmops, sim, client):
    inputs = ["a two-person tent", "hiking boots for wet trails", "a camping stove"]
    as_float = client.embeddings.create(
        model="text-embedding-3-small", input=inputs, encoding_format="float"
    )
    as_base64 = client.embeddings.create(model="text-embedding-3-small", input=inputs)

    assert [d.index for d in as_float.data] == [0, 1, 2]
    assert as_float.model == "text-embedding-3-small"
    for a, b in zip(as_float.data, as_base64.data, strict=True):
        assert len(a.embedding) == 1536
        assert math.isclose(sum(x * x for x in a.embedding), 1, rel_tol=1e-4)
        assert a.embedding == pytest.approx(b.embedding, abs=1e-6)
    assert as_float.data[0].embedding != as_float.data[1].embedding

    request = llmops.request_of(as_float)
    assert request["status"] == "completed" and request["model"] == "text-embedding-3-small"
    assert request["usage"]["input_tokens"] == as_float.usage.prompt_tokens > 0
    assert request["usage"]["output_tokens"] == 0
    [entry] = ledger_of(llmops, request["id"])
    # $0.02 per million input tokens, nothing for output.
    assert Decimal(entry["cost_usd"]) == Decimal("0.02") * as_float.usage.prompt_tokens / 10**6


def test_dimensions_shorten_the_vector_and_keep_it_a_unit_vector(llmops, sim, client):
    answer = client.embeddings.create(
        model="text-embedding-3-small", input="a sleeping bag", dimensions=256
    )
    [item] = answer.data
    assert len(item.embedding) == 256
    assert math.isclose(sum(x * x for x in item.embedding), 1, rel_tol=1e-4)


def test_a_repeated_input_is_served_from_the_cache_and_billed_nothing_upstream(llmops, sim, client):
    first = client.embeddings.create(model="text-embedding-3-small", input=["trail mix"])
    again = client.embeddings.create(model="text-embedding-3-small", input=["trail mix"])

    assert again.data[0].embedding == first.data[0].embedding
    assert llmops.request_of(again)["mode"] == "cache"
    assert sum(Decimal(e["cost_usd"]) for e in ledger_of(llmops, again._request_id)) == 0


def test_the_model_is_the_clients(llmops, sim, client):
    with pytest.raises(openai.NotFoundError) as unknown:
        client.embeddings.create(model="text-embedding-9", input="x")
    assert unknown.value.code == "model_not_found"

    with pytest.raises(openai.BadRequestError) as chat_model:
        llmops.openai(workload="product-search").embeddings.create(model="gpt-4o-mini", input="x")
    assert chat_model.value.code == "wrong_model_kind" and "chat model" in chat_model.value.message


def test_an_input_openai_refuses_is_a_400_naming_input(llmops, sim, client):
    with pytest.raises(openai.BadRequestError) as refused:
        client.embeddings.create(model="text-embedding-3-small", input=["ok", ""])
    assert refused.value.param == "input"
    assert "empty string" in refused.value.message
