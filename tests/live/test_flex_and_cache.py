"""Issue 23's live checks, through the official SDKs over HTTP to llmops and its simulator:

- a near-realtime request due in 10 minutes on a flex-capable model is answered now at the flex
  price (ledger mode flex, its counterfactual at the standard price), plain and streamed, on
  chat completions and the Responses API;
- a flex 429 ("resource unavailable") is retried at the standard tier of the same model,
  recorded as an attempt, and billed at what served it;
- a repeat asking another max_tokens hits the response cache when the cached answer ended by
  itself within it; a repeat with another `stop` does not, nor one whose cap would have cut it.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest

from tests.live.conftest import Llmops

FLEX_WORKLOAD = "support-triage"  # near_realtime, 10 min deadline, chain gpt-5-mini → gpt-4o-mini
CACHED_WORKLOAD = "product-search"  # realtime, response cache on (interactive-economy)


def unique(text: str) -> str:
    return f"{text} {uuid.uuid4().hex[:8]}"


def money(value) -> Decimal:
    return Decimal(str(value))


@pytest.fixture
def flex_sim(sim):
    """The simulator with flex answering at once (the default delay kept short) and never
    refusing, unless a test says otherwise."""
    sim.config(flex_unavailable_rate=0)
    yield sim
    sim.config(flex_unavailable_rate=0)


def test_due_in_ten_minutes_on_a_flex_model_is_answered_now_at_the_flex_price(llmops, flex_sim):
    answer = llmops.openai(FLEX_WORKLOAD).chat.completions.create(
        model="gpt-5-mini",
        max_tokens=40,
        messages=[{"role": "user", "content": unique("Tag this support email")}],
    )
    request = llmops.request_of(answer)

    assert answer.service_tier == "flex"  # the provider's answer, relayed as sent
    assert request["mode"] == "flex" and request["status"] == "completed"
    assert request["missed_saving"] is False
    assert "flex price" in request["decision_reason"]
    assert [(a["service_tier"], a["outcome"]) for a in request["attempts"]] == [("flex", "ok")]
    # gpt-5-mini's flex rates are half its standard ones (genai-prices): the counterfactual,
    # the same usage at the standard price of the workload's primary (itself), is twice.
    cost, counterfactual = money(request["cost_usd"]), money(request["counterfactual_cost_usd"])
    assert cost > 0 and counterfactual == 2 * cost


def test_a_flex_stream_is_billed_at_the_flex_price(llmops, flex_sim):
    stream = llmops.openai(FLEX_WORKLOAD).chat.completions.create(
        model="gpt-5-mini",
        max_tokens=40,
        stream=True,
        messages=[{"role": "user", "content": unique("Route this email")}],
    )
    chunks = list(stream)
    tiers = {c.service_tier for c in chunks}
    request = llmops.request_of(stream.response.headers["x-request-id"])

    assert tiers == {"flex"}
    assert request["mode"] == "flex"
    assert money(request["counterfactual_cost_usd"]) == 2 * money(request["cost_usd"]) > 0


def test_the_responses_api_is_served_at_flex_too(llmops, flex_sim):
    response = llmops.openai(FLEX_WORKLOAD).responses.create(
        model="gpt-5-mini", input=unique("Which team owns this email?"), max_output_tokens=40
    )
    request = llmops.request_of(response)

    assert response.service_tier == "flex"
    assert request["mode"] == "flex"
    assert money(request["counterfactual_cost_usd"]) == 2 * money(request["cost_usd"]) > 0


def test_a_flex_429_is_retried_at_the_standard_tier_and_billed_as_such(llmops, flex_sim):
    flex_sim.config(flex_unavailable_rate=1.0)  # every flex call refused
    answer = llmops.openai(FLEX_WORKLOAD).chat.completions.create(
        model="gpt-5-mini",
        max_tokens=40,
        messages=[{"role": "user", "content": unique("Tag this urgent email")}],
    )
    request = llmops.request_of(answer)

    assert answer.service_tier == "default"
    attempts = [
        (a["model"], a["service_tier"], a["outcome"], a["status_code"]) for a in request["attempts"]
    ]
    assert attempts == [("gpt-5-mini", "flex", "error", 429), ("gpt-5-mini", "", "ok", None)]
    assert request["mode"] == "realtime"
    assert "Flex was refused" in request["decision_reason"]
    # Billed at the standard price of what served it: no saving, no flex price.
    assert money(request["cost_usd"]) == money(request["counterfactual_cost_usd"]) > 0


def test_a_realtime_workload_on_the_same_model_is_never_served_at_flex(llmops, flex_sim):
    answer = llmops.openai(CACHED_WORKLOAD).chat.completions.create(
        model="gpt-4o-mini",
        max_tokens=20,
        messages=[{"role": "user", "content": unique("Is the red kettle in stock?")}],
    )
    assert answer.service_tier == "default"
    assert llmops.request_of(answer)["mode"] == "realtime"


# --- the response cache -----------------------------------------------------------------


def ask(llmops: Llmops, question: str, **fields):
    return llmops.openai(CACHED_WORKLOAD).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": question}], **fields
    )


def test_a_repeat_with_another_max_tokens_hits_when_the_answer_fits(llmops, sim):
    sim.config(output_tokens=12)  # every answer ends by itself after 12 tokens
    question = unique("Do you ship the blue teapot to Norway?")
    first = ask(llmops, question, max_tokens=100)
    assert first.choices[0].finish_reason == "stop" and first.usage.completion_tokens == 12

    again = ask(llmops, question, max_tokens=12)  # exactly its length: it fits
    more = ask(llmops, question, max_completion_tokens=500)

    for repeat in (again, more):
        request = llmops.request_of(repeat)
        assert request["mode"] == "cache", request["decision_reason"]
        assert money(request["cost_usd"]) == 0
        assert repeat.choices[0].message.content == first.choices[0].message.content


def test_a_repeat_whose_cap_would_cut_the_answer_is_not_served_it(llmops, sim):
    sim.config(output_tokens=12)
    question = unique("What sizes does the green apron come in?")
    ask(llmops, question, max_tokens=100)

    shorter = ask(llmops, question, max_tokens=5)
    request = llmops.request_of(shorter)

    assert request["mode"] == "realtime"
    assert shorter.choices[0].finish_reason == "length"
    # ... and that cut answer is kept for the same cap only.
    same_cap = llmops.request_of(ask(llmops, question, max_tokens=5))
    assert same_cap["mode"] == "cache"
    other_cap = llmops.request_of(ask(llmops, question, max_tokens=6))
    assert other_cap["mode"] == "realtime"


def test_a_repeat_with_another_stop_does_not_hit(llmops, sim):
    sim.config(output_tokens=12)
    question = unique("Is the oak table solid wood?")
    ask(llmops, question, max_tokens=100)

    other_stop = llmops.request_of(ask(llmops, question, max_tokens=100, stop=["wood"]))
    same = llmops.request_of(ask(llmops, question, max_tokens=60))

    assert other_stop["mode"] == "realtime"
    assert same["mode"] == "cache"
