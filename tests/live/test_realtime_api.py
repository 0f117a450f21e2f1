"""The realtime API with the stack up, as a client application meets it (issue 4 acceptance)."""

from __future__ import annotations

import json
import urllib.request
from decimal import Decimal

import openai
import pytest
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price

from billing.pricing import quantize


def ledger_for(llmops, request_id: str) -> list[dict]:
    status, body = llmops.api("GET", "/api/v1/ledger?limit=500")
    assert status == 200, body
    return [e for e in body["results"] if e["request"] == request_id]


def standard_price(model: str, provider: str, usage: dict) -> Decimal:
    """genai-prices' own figure for this usage at the standard price (what the ledger owes)."""
    price = calc_price(
        GenaiUsage(
            input_tokens=usage["input_tokens"] + usage["cached_input_tokens"],
            cache_read_tokens=usage["cached_input_tokens"],
            output_tokens=usage["output_tokens"],
        ),
        model,
        provider_id=provider,
    )
    return quantize(Decimal(price.total_price))


def test_the_openai_sdk_gets_a_completion_billed_at_the_price_table(llmops, sim):
    client = llmops.openai(workload="product-search")

    completion = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Which running shoes suit flat feet?"}],
        max_tokens=40,
    )

    assert completion.choices[0].message.content
    assert completion.usage.completion_tokens > 0
    request = llmops.request_of(completion)
    assert (request["status"], request["mode"], request["model"]) == (
        "completed",
        "realtime",
        "gpt-4o-mini",
    )
    assert request["source"] == "openai"
    [entry] = ledger_for(llmops, request["id"])
    assert (entry["kind"], entry["mode"]) == ("charge", "realtime")
    assert Decimal(entry["cost_usd"]) == standard_price("gpt-4o-mini", "openai", request["usage"])
    assert Decimal(request["cost_usd"]) == Decimal(entry["cost_usd"]) > 0


def test_the_openai_sdk_streams_and_the_stream_is_billed(llmops, sim):
    client = llmops.openai(workload="product-search")

    stream = client.chat.completions.create(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Name three trail shoes, briefly."}],
        max_tokens=60,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    usage = [c.usage for c in chunks if c.usage]
    assert text and len([c for c in chunks if c.choices and c.choices[0].delta.content]) > 1
    assert usage and usage[-1].completion_tokens > 0
    request = llmops.request_of(stream.response.headers["x-request-id"])
    assert (request["status"], request["mode"], request["output"]) == ("completed", "stream", text)
    [entry] = ledger_for(llmops, request["id"])
    assert entry["mode"] == "stream"
    assert Decimal(entry["cost_usd"]) == standard_price("gpt-4o-mini", "openai", request["usage"])
    assert request["usage"]["output_tokens"] == usage[-1].completion_tokens


def test_a_repeated_prompt_on_a_cached_workload_is_a_free_cache_hit(llmops, sim):
    client = llmops.openai(workload="product-search")
    ask = dict(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Do you ship to Iceland?"}],
        max_tokens=30,
    )

    first = client.chat.completions.create(**ask)
    second = client.chat.completions.create(**ask)

    assert second.choices[0].message.content == first.choices[0].message.content
    hit = llmops.request_of(second)
    assert hit["mode"] == "cache"
    [entry] = ledger_for(llmops, hit["id"])
    assert (entry["mode"], Decimal(entry["cost_usd"])) == ("cache", 0)
    assert Decimal(entry["counterfactual_cost_usd"]) > 0


def test_a_deferrable_workload_through_the_native_api_answers_202_queued(llmops, sim):
    status, body = llmops.api(
        "POST",
        "/api/v1/requests",
        {
            "workload": "ticket-summaries",
            "messages": [{"role": "user", "content": "Summarise ticket #4411."}],
            "max_tokens": 200,
        },
    )

    assert status == 202, body
    assert (body["status"], body["mode"]) == ("queued", "batch")
    assert "deadline" in body["decision_reason"] or "batch" in body["decision_reason"]
    status, again = llmops.api("GET", f"/api/v1/requests/{body['id']}")
    assert (status, again["status"]) == (200, "queued")


def test_the_native_api_serves_a_realtime_workload_with_its_decision(llmops, sim):
    status, body = llmops.api(
        "POST",
        "/api/v1/requests",
        {
            "workload": "product-search",
            "messages": [{"role": "user", "content": "Is the blue kettle in stock?"}],
            "max_tokens": 25,
            "metadata": {"page": "search"},
        },
    )

    assert status == 200, body
    assert (body["status"], body["mode"], body["workload"]) == (
        "completed",
        "realtime",
        "product-search",
    )
    assert body["output"] and body["decision_reason"]
    assert body["attempts"][0]["outcome"] == "ok"
    assert Decimal(body["cost_usd"]) > 0


def test_an_idempotency_key_replays_and_refuses_another_body(llmops, sim):
    ask = {
        "workload": "product-search",
        "messages": [{"role": "user", "content": "What is the return window?"}],
        "max_tokens": 20,
    }
    headers = {"Idempotency-Key": "order-77-question"}

    first_status, first = llmops.api("POST", "/api/v1/requests", ask, headers)
    again_status, again = llmops.api("POST", "/api/v1/requests", ask, headers)
    other_status, other = llmops.api("POST", "/api/v1/requests", {**ask, "max_tokens": 21}, headers)

    assert (first_status, again_status, other_status) == (200, 200, 422)
    assert again["id"] == first["id"] and again["output"] == first["output"]
    assert other["field"] == "idempotency_key"
    assert len(ledger_for(llmops, first["id"])) == 1


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"workload": "no-such-workload"}, 404, "workload"),
        ({"workload": "dashboard-qa"}, 404, "workload"),  # another team's
        ({"max_tokens": 0}, 400, "max_tokens"),
        ({"max_tokens": "20"}, 400, "max_tokens"),
        ({"max_tokens": True}, 400, "max_tokens"),
        ({"max_tokens": 2.5}, 400, "max_tokens"),
        ({"max_tokens": 10_000_000}, 400, "max_tokens"),
        ({"messages": []}, 400, "messages"),
        ({"messages": [{"role": "wizard", "content": "hi"}]}, 400, "messages.0.role"),
        ({"messages": [{"role": "user", "content": 5}]}, 400, "messages.0.content"),
        ({"messages": "hello"}, 400, "messages"),
        ({"temperature": 9}, 400, "temperature"),
        ({"model": "gpt-4.1"}, 400, "model"),
    ],
)
def test_bad_input_is_a_4xx_naming_the_field_and_bills_nothing(llmops, sim, change, status, field):
    before = llmops.api("GET", "/api/v1/ledger?limit=1")[1]["count"]
    ask = {
        "workload": "product-search",
        "messages": [{"role": "user", "content": "Hello"}],
        "max_tokens": 20,
        **change,
    }

    got, body = llmops.api("POST", "/api/v1/requests", ask)

    assert got == status, body
    assert body["field"] == field
    assert llmops.api("GET", "/api/v1/ledger?limit=1")[1]["count"] == before


def test_non_json_and_oversized_bodies_are_refused(llmops):
    def post(data: bytes) -> int:
        return llmops.api("POST", "/api/v1/requests", raw=data)[0]

    assert post(b"{not json") == 400
    assert post(b"[1, 2]") == 400
    assert post(b"[" * 100_000 + b"]" * 100_000) == 400
    hello = b'"messages": [{"role": "user", "content": "%s"}]'
    assert post(b'{"workload": "product-search", ' + hello % b"nul \\u0000 here" + b"}") == 400
    assert post(b'{"workload": "product-search", ' + hello % b"lone \\ud800" + b"}") == 400
    assert post(b'{"workload": "product-search", "temperature": NaN, ' + hello % b"x" + b"}") == 400
    assert post(b'{"workload": "product-search", "pad": "' + b"x" * 2_000_000 + b'"}') == 413


def test_the_openai_sdk_sees_a_clear_error_for_an_unknown_workload(llmops):
    client = llmops.openai(workload="nope")

    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
        )

    assert "nope" in str(caught.value)


def read_sse(llmops, path: str, body: dict) -> list[tuple[str, dict]]:
    request = urllib.request.Request(
        f"{llmops.base_url}{path}",
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Authorization": f"Bearer {llmops.api_key}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    events, name = [], None
    with opener.open(request, timeout=60) as response:
        assert response.headers["Content-Type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                events.append((name, json.loads(line.removeprefix("data: "))))
    return events


def test_the_native_api_streams_server_sent_events_and_bills_the_stream(llmops, sim):
    events = read_sse(
        llmops,
        "/api/v1/requests",
        {
            "workload": "product-search",
            "messages": [{"role": "user", "content": "Describe the red raincoat."}],
            "max_tokens": 30,
            "stream": True,
        },
    )

    names = [name for name, _ in events]
    assert names[0] == "started" and names[-1] == "done"
    assert names.count("delta") > 1
    done = events[-1][1]
    assert done["output"] == "".join(data["text"] for name, data in events if name == "delta")
    assert (done["status"], done["mode"]) == ("completed", "stream")
    assert done["id"] == events[0][1]["request_id"]
    [entry] = ledger_for(llmops, done["id"])
    assert entry["mode"] == "stream" and Decimal(entry["cost_usd"]) > 0


def test_a_queued_request_can_be_cancelled_once_and_its_hold_is_released(llmops, sim):
    status, queued = llmops.api(
        "POST",
        "/api/v1/requests",
        {
            "workload": "ticket-summaries",
            "messages": [{"role": "user", "content": "Summarise ticket #5000."}],
            "max_tokens": 100,
        },
    )
    assert status == 202
    budget_before = reserved_usd(llmops)

    first_status, cancelled = llmops.api("POST", f"/api/v1/requests/{queued['id']}/cancel")
    again_status, _ = llmops.api("POST", f"/api/v1/requests/{queued['id']}/cancel")

    assert (first_status, cancelled["status"], again_status) == (200, "cancelled", 409)
    assert reserved_usd(llmops) < budget_before
    assert ledger_for(llmops, queued["id"]) == []


def reserved_usd(llmops) -> Decimal:
    status, body = llmops.api("GET", "/api/v1/budgets")
    assert status == 200
    team = next(b for b in body if b["scope"] == "team")
    return Decimal(team["reserved_usd"])


def test_metrics_count_requests_in_the_prometheus_format(llmops, sim):
    client = llmops.openai(workload="product-search")
    client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "metrics?"}], max_tokens=5
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    text = opener.open(f"{llmops.base_url}/metrics", timeout=10).read().decode()

    assert (
        'llmops_requests_total{mode="realtime",status="completed",workload="product-search"}'
        in text
    )
    assert "llmops_time_to_first_token_seconds_bucket" in text
    assert 'llmops_circuit_state{provider="sim-openai",state="closed"} 1.0' in text
    assert 'llmops_cache_lookups_total{result="miss",workload="product-search"}' in text
