"""T3: the ledger reconciled against the provider's own bill. A day's mix of traffic over four
providers (OpenAI, Anthropic, Azure OpenAI, Gemini; plain and
streamed answers through both APIs, prompts long enough to be cached, response-cache hits, tool
calls plain and streamed, n=2 and images on an OpenAI and a Claude model, the Responses API
(function calls, streams, continued conversations) relayed and translated, the Anthropic
Messages API through the anthropic SDK (cache writes and reads, streams, tool use, message
batches) relayed and translated, embeddings realtime and batched, OpenAI and Anthropic batches
ingested by a worker) goes through llmops to the
simulator, whose `/_sim/usage` book counts every token it served; the two must agree per
provider, model and mode, in requests, tokens and dollars (tests/faults/bill.py): drift 0."""

from __future__ import annotations

import json
import urllib.request

import pytest

from tests.faults.bill import drift, reconcile, usage_delta
from tests.faults.conftest import fault_stack
from tests.live.stack import Llmops
from tests.live.test_batch_crashes import ITEMS, defer, worker

# A shared system prompt long enough for the providers' prompt caches (≥ 1,024 tokens).
SYSTEM = "You answer questions about our outdoor catalogue. " + "Tents, boots and stoves. " * 400


@pytest.fixture(scope="module")
def stack(own_sim, tmp_path_factory):
    with fault_stack(own_sim, tmp_path_factory.mktemp("t3")) as llmops:
        yield llmops


def native_stream(stack: Llmops, body: dict) -> str:
    """The native API's SSE answer, read to its end."""
    request = urllib.request.Request(
        f"{stack.base_url}/api/v1/requests",
        data=json.dumps({**body, "stream": True}).encode(),
        headers={"Authorization": f"Bearer {stack.api_key}", "Content-Type": "application/json"},
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=60) as response:
        return response.read().decode()


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


def rich_traffic(client) -> dict:
    """Tool calls (plain and streamed), n=2 and image parts, relayed to an OpenAI model and
    translated for a Claude one: the usage the ledger reads from each must be the bill's."""
    sent = {}
    image = {"type": "image_url", "image_url": {"url": "https://example.com/tent.png"}}
    for model in ("gpt-4o-mini", "claude-haiku-4-5"):
        for i in range(4):
            ask = [{"role": "user", "content": f"Weather in city {i}? Use get_weather."}]
            answer = client.chat.completions.create(
                model=model, messages=ask, tools=[WEATHER], max_tokens=60
            )
            assert answer.choices[0].message.tool_calls, answer
            stream = client.chat.completions.create(
                model=model, messages=ask, tools=[WEATHER], max_tokens=60, stream=True
            )
            for _ in stream:
                pass
            photo = [{"type": "text", "text": f"What is in picture {i}?"}, image]
            client.chat.completions.create(
                model=model, messages=[{"role": "user", "content": photo}], max_tokens=30
            )
        sent[f"openai SDK on {model}: tool calls, streamed tool calls, images"] = 12
    for i in range(4):
        answer = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"two takes on {i}"}],
            max_tokens=30,
            n=2,
        )
        assert len(answer.choices) == 2
    sent["openai SDK, n=2"] = 4
    sent.update(responses_traffic(client))
    return sent


def responses_traffic(client) -> dict:
    """The Responses API on both models: a function call, its output in a continued
    conversation (the earlier turn is billed again as prompt: OpenAI's store, llmops' for
    Claude), and a stream whose usage arrives in its last event."""
    sent = {}
    tool = {
        "type": "function",
        "name": "get_weather",
        **{"parameters": WEATHER["function"]["parameters"]},
    }
    for model in ("gpt-4o-mini", "claude-haiku-4-5"):
        for i in range(3):
            first = client.responses.create(
                model=model,
                input=f"Weather in town {i}? Use get_weather.",
                tools=[tool],
                tool_choice="required",
                max_output_tokens=60,
            )
            call = next(item for item in first.output if item.type == "function_call")
            client.responses.create(
                model=model,
                previous_response_id=first.id,
                input=[{"type": "function_call_output", "call_id": call.call_id, "output": "20C"}],
                tools=[tool],
                max_output_tokens=40,
            )
            # Cut at max_output_tokens or not, the stream's last event carries the usage
            # (get_final_response raises on an incomplete one, as OpenAI's SDK does).
            with client.responses.stream(
                model=model, input=f"Describe tent {i}.", max_output_tokens=40
            ) as stream:
                last = [event.type for event in stream][-1]
            assert last in ("response.completed", "response.incomplete"), last
        sent[f"openai SDK Responses on {model}: function call, continuation, stream"] = 9
    return sent


def messages_traffic(stack: Llmops) -> dict:
    """The Anthropic Messages API on both models: a cached system prompt (written once, then
    read: each bucket at its price), a stream, a forced tool use; and a message batch on each,
    which the worker below runs with the rest."""
    sent = {}
    client = stack.anthropic("product-search")
    system = [{"type": "text", "text": SYSTEM, "cache_control": {"type": "ephemeral"}}]
    tool = {"name": "get_weather", "input_schema": WEATHER["function"]["parameters"]}
    for model in ("claude-haiku-4-5", "gpt-4o-mini"):
        for i in range(3):
            client.messages.create(
                model=model,
                max_tokens=40,
                system=system,
                messages=[{"role": "user", "content": f"Messages question {i}"}],
            )
            with client.messages.stream(
                model=model, max_tokens=40, messages=[{"role": "user", "content": f"Tent {i}?"}]
            ) as stream:
                stream.get_final_message()
            client.messages.create(
                model=model,
                max_tokens=60,
                tools=[tool],
                tool_choice={"type": "tool", "name": "get_weather"},
                messages=[{"role": "user", "content": f"Weather in town {i}?"}],
            )
        sent[f"anthropic SDK Messages on {model}: cached system, stream, tool use"] = 9
    batcher = stack.anthropic("ticket-summaries")
    for model in ("claude-sonnet-4-6", "gpt-4o"):
        batcher.messages.batches.create(
            requests=[
                {
                    "custom_id": f"m-{i}",
                    "params": {
                        "model": model,
                        "max_tokens": 40,
                        "messages": [{"role": "user", "content": f"Summarise ticket {i}."}],
                    },
                }
                for i in range(3)
            ]
        )
        sent[f"anthropic SDK message batch on {model}"] = 3
    return sent


def flex_traffic(stack: Llmops) -> dict:
    """support-triage (due in 10 min, gpt-5-mini first): served at flex, plain and streamed; the
    simulator refuses a share of flex calls, which are then served at the standard tier. The
    provider bills flex calls under their own mode, at the flex price."""
    client = stack.openai("support-triage")
    for i in range(12):
        body = {"model": "gpt-5-mini", "max_tokens": 40}
        messages = [{"role": "user", "content": f"Tag support email {i}."}]
        if i % 3:
            client.chat.completions.create(messages=messages, **body)
        else:
            for _ in client.chat.completions.create(messages=messages, stream=True, **body):
                pass
    return {"openai SDK at flex (some refused: served at standard)": 12}


def other_clouds_traffic(stack: Llmops) -> dict:
    """Azure OpenAI and Gemini: realtime on globex's three-cloud workload (plain, streamed,
    tools; Gemini's usage through its OpenAI-compatible API), and deferred tickets on each
    one's batch (Azure's Global Batch, Gemini's batch mode), which the worker below runs."""
    from tests.live.test_azure_gemini import globex

    sent = {}
    client = globex(stack).openai("exec-briefings")
    for model in ("gemini-2.5-flash", "gpt-4.1-mini"):
        for i in range(3):
            ask = [{"role": "user", "content": f"Brief {i}? Use get_weather."}]
            client.chat.completions.create(model=model, messages=ask, max_tokens=40)
            for _ in client.chat.completions.create(
                model=model, messages=ask, max_tokens=40, stream=True
            ):
                pass
            client.chat.completions.create(
                model=model, messages=ask, tools=[WEATHER], tool_choice="required", max_tokens=60
            )
        sent[f"openai SDK on {model}: plain, streamed, tool calls"] = 9
    for workload in ("listing-translations", "log-summaries"):  # Azure's and Gemini's
        for round_ in range(3):
            defer(stack, workload, f"{workload} round {round_}")
        sent[f"batch via {workload}"] = 3 * ITEMS
    return sent


def traffic(stack: Llmops) -> dict:
    """The mix; returns how many of each kind were sent."""
    sent = {}
    client = stack.openai("product-search")  # economy chain, response cache on
    for i in range(30):
        messages = [
            {"role": "system", "content": SYSTEM},
            {"role": "user", "content": f"question {i % 20}"},  # 10 repeats: cache hits
        ]
        client.chat.completions.create(model="gpt-4o-mini", messages=messages, max_tokens=40)
    sent["openai SDK, plain (10 repeated)"] = 30
    for i in range(20):
        stream = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"s{i}"}],
            max_tokens=40,
            stream=True,
            stream_options={"include_usage": True},
        )
        for _ in stream:
            pass
    sent["openai SDK, streamed"] = 20
    for i in range(20):
        body = {
            "workload": "product-search",
            "messages": [{"role": "user", "content": f"native {i}"}],
            "max_tokens": 30,
        }
        if i % 2:
            events = native_stream(stack, body)
            assert "event: done" in events, events[-500:]
        else:
            status, answer = stack.api("POST", "/api/v1/requests", body)
            assert status == 200, answer
    sent["native API, plain and streamed"] = 20
    sent.update(rich_traffic(client))
    sent.update(messages_traffic(stack))
    sent.update(flex_traffic(stack))
    sent.update(other_clouds_traffic(stack))
    embedder = stack.openai("query-embeddings")  # response cache on: the repeats are hits
    for i in range(6):
        embedder.embeddings.create(model="text-embedding-3-small", input=[f"query {i % 4}", "x"])
    sent["openai SDK, embeddings (2 repeated)"] = 6
    for i in range(4):
        status, body = stack.api(
            "POST",
            "/api/v1/embeddings",
            {"workload": "catalog-embeddings", "input": [f"product {i}", f"sku {i}"]},
        )
        assert status == 202, body
    sent["embeddings batch via catalog-embeddings"] = 4
    for workload in ("review-moderation", "ticket-summaries"):  # OpenAI's and Anthropic's
        for round_ in range(5):
            defer(stack, workload, f"{workload} round {round_}")
        sent[f"batch via {workload}"] = 5 * ITEMS
        for i in range(4):  # tool calls through the batch: lines as sent, or translated
            status, body = stack.api(
                "POST",
                "/api/v1/requests",
                {
                    "workload": workload,
                    "messages": [{"role": "user", "content": f"Weather {i}? Use get_weather."}],
                    "tools": [WEATHER],
                    "max_tokens": 60,
                },
            )
            assert status == 202, body
        sent[f"batch via {workload} with tools"] = 4
    ran = worker(stack, "advance_batches", "--flush", "--until-idle", "30")
    assert ran.returncode == 0, ran.stderr
    return sent


def test_the_ledger_matches_the_providers_bill(stack, own_sim, figures):
    own_sim.reset()
    own_sim.config(flex_unavailable_rate=0.4)  # seeded: the same calls refused in every run
    before = own_sim.usage()
    sent = traffic(stack)
    rows = reconcile(stack, usage_delta(before, own_sim.usage()))
    totals = drift(rows)
    cached = sum(r["billed"][2] for r in rows.values())
    figures.record(
        "T3",
        "a mixed day through both APIs and both providers' batches",
        requests_sent=sum(sent.values()),
        mix=sent,
        provider_lines=len(rows),
        provider_requests=sum(r["billed"][0] for r in rows.values()),
        cached_prompt_tokens=cached,
        billed_usd=totals["billed_usd"],
        ledger_usd=totals["ledger_usd"],
        request_drift=totals["request_drift"],
        token_drift=totals["token_drift"],
        usd_drift=totals["usd_drift"],
    )
    assert {key.split("|")[2] for key in rows} >= {"realtime", "stream", "flex", "batch"}
    assert any(key.startswith("openai|gpt-5-mini|") and "flex" not in key for key in rows)
    kinds = {key.split("|")[0] for key in rows}
    assert kinds == {"openai", "anthropic", "azure_openai", "gemini"}, kinds
    assert {"azure_openai|gpt-4.1-mini|batch", "gemini|gemini-2.5-flash-lite|batch"} <= set(rows)
    assert cached > 0  # the cached-prompt price was exercised, not only the plain one
    assert totals["estimated_usd"] == 0
    assert (totals["request_drift"], totals["token_drift"], totals["usd_drift"]) == (0, 0, 0), rows
