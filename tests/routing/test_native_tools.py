"""The native API takes OpenAI's tools, response_format and stop and returns tool calls in the
request record, on an OpenAI model and a Claude model alike."""

from __future__ import annotations

import json

import pytest

TOOL = {
    "type": "function",
    "function": {
        "name": "lookup_order",
        "parameters": {
            "type": "object",
            "properties": {"order_id": {"type": "string"}},
            "required": ["order_id"],
        },
    },
}
ASK = [{"role": "user", "content": "Where is my order A-17?"}]


@pytest.mark.parametrize("model", ["gpt-4o-mini", "claude-haiku-4-5"])
def test_a_tool_call_comes_back_in_the_record_and_the_second_turn_answers(api, sim, model):
    body = {"workload": "product-search", "model": model, "messages": ASK, "max_tokens": 100}

    first = api.post("/api/v1/requests", {**body, "tools": [TOOL]}, format="json").json()

    assert first["status"] == "completed" and first["finish_reason"] == "tool_calls", first
    [call] = first["tool_calls"]
    assert call["function"]["name"] == "lookup_order"
    assert set(json.loads(call["function"]["arguments"])) == {"order_id"}
    second = api.post(
        "/api/v1/requests",
        {
            **body,
            "tools": [TOOL],
            "messages": [
                *ASK,
                {"role": "assistant", "content": None, "tool_calls": first["tool_calls"]},
                {"role": "tool", "tool_call_id": call["id"], "content": "Shipped yesterday."},
            ],
        },
        format="json",
    ).json()
    assert second["status"] == "completed" and second["tool_calls"] == [], second
    assert second["output"]


def test_a_tool_message_without_its_call_id_is_a_400_naming_the_field(api, sim):
    response = api.post(
        "/api/v1/requests",
        {
            "workload": "product-search",
            "messages": [*ASK, {"role": "tool", "content": "done"}],
        },
        format="json",
    )

    assert response.status_code == 400
    assert response.json()["field"] == "messages.1.tool_call_id"
