"""One workload rule for every synchronous surface (chat completions, the Responses API,
embeddings, Anthropic Messages): the X-Workload header, else the key's default workload; a
deferrable workload reached through them is answered now and recorded as a missed saving."""

from __future__ import annotations

import uuid

import pytest

from tests.live.conftest import Llmops


def call(llmops: Llmops, surface: str, workload: str | None):
    """One call through `surface` with the official SDK; returns its answer object."""
    text = f"Summarise ticket {uuid.uuid4().hex[:8]}."  # never a cache hit
    if surface == "messages":
        return llmops.anthropic(workload).messages.create(
            model="claude-sonnet-4-6" if workload else "claude-haiku-4-5",
            max_tokens=30,
            messages=[{"role": "user", "content": text}],
        )
    client = llmops.openai(workload)
    if surface == "chat":
        return client.chat.completions.create(
            model="gpt-4o" if workload else "gpt-4o-mini",
            max_tokens=30,
            messages=[{"role": "user", "content": text}],
        )
    if surface == "responses":
        return client.responses.create(
            model="gpt-4o" if workload else "gpt-4o-mini", input=text, max_output_tokens=30
        )
    return client.embeddings.create(model="text-embedding-3-small", input=text)


SURFACES = pytest.mark.parametrize("surface", ["chat", "responses", "embeddings", "messages"])
DEFERRABLE = {"embeddings": "catalog-embeddings"}  # scheduled, 24 h: a batch would do


@SURFACES
def test_a_deferrable_workload_is_served_now_and_flagged(llmops, sim, surface):
    workload = DEFERRABLE.get(surface, "ticket-summaries")
    request = llmops.request_of(call(llmops, surface, workload))

    assert request["workload"] == workload and request["status"] == "completed"
    assert request["mode"] == "realtime"
    assert request["missed_saving"] is True
    assert request["counterfactual_cost_usd"] is not None


@pytest.mark.parametrize("surface", ["chat", "responses", "messages"])
def test_without_x_workload_the_keys_default_workload_serves(llmops, sim, surface):
    request = llmops.request_of(call(llmops, surface, None))

    assert request["workload"] == "product-search"  # the demo key's default
    assert request["missed_saving"] is False
