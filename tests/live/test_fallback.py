"""A provider outage is invisible to the client: the fallback answers, and the request's
attempts and the circuit state say what happened. Its own module: it opens a circuit."""

from __future__ import annotations

import json
import urllib.request


def test_an_outage_of_the_primary_is_answered_by_the_fallback(llmops, sim):
    sim.fault(provider="openai", status=503, count=100)
    client = llmops.openai(workload="product-search")  # gpt-4o-mini, then claude-haiku-4-5

    answers = [
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"Question {n} about umbrellas"}],
            max_tokens=20,
        )
        for n in range(3)
    ]

    assert all(a.choices[0].message.content for a in answers)
    assert {a.model for a in answers} == {"claude-haiku-4-5"}
    request = llmops.request_of(answers[0])
    assert request["model"] == "claude-haiku-4-5"
    outcomes = [(a["model"], a["outcome"]) for a in request["attempts"]]
    assert outcomes == [("gpt-4o-mini", "error"), ("claude-haiku-4-5", "ok")]
    assert request["attempts"][0]["status_code"] == 503
    # Two failures open the circuit (LLMOPS_CIRCUIT_FAILURES=2): the router puts openai last.
    last = llmops.request_of(answers[2])
    assert [(a["model"], a["outcome"]) for a in last["attempts"]] == [("claude-haiku-4-5", "ok")]
    assert "Circuit open for sim-openai" in last["decision_reason"]
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        health = json.loads(opener.open(f"{llmops.base_url}/healthz", timeout=10).read())
    except urllib.error.HTTPError as exc:
        health = json.loads(exc.read())
    assert "sim-openai" in json.dumps(health) and "open" in json.dumps(health)
