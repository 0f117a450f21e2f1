"""T7: the primary provider failing 1% to 50% of its calls. Requests fall back along their
policy's chain (gpt-4o → claude-sonnet-4-6 → gpt-4o-mini), the circuit breaker skips a
provider that keeps failing, and what the simulator billed equals what the ledger holds.

At each error rate the simulator's OpenAI chat endpoint answers a seeded share of calls with a
503 (no output, nothing billed); the test sends the same mix of plain and streamed requests
through the OpenAI-compatible API and reports the share answered, by whom, and the bill
reconciled against the ledger (tests/faults/bill.py) for that step alone."""

from __future__ import annotations

import datetime as dt
import json
import time
from concurrent.futures import ThreadPoolExecutor

import openai
import pytest

from tests.faults.bill import drift, reconcile, usage_delta
from tests.faults.conftest import fault_stack

RATES = [0.01, 0.05, 0.10, 0.25, 0.50]
REQUESTS_PER_RATE = 120
CONCURRENCY = 8
SEED = 7
WORKLOAD = "dashboard-qa"  # globex's realtime workload on the "interactive" chain


@pytest.fixture(scope="module")
def stack(own_sim, tmp_path_factory):
    with fault_stack(
        own_sim,
        tmp_path_factory.mktemp("t7"),
        # the defaults a deployment runs with: 5 failures in a row open a provider's circuit
        # for 30 s (a shorter cool-down would only make the steps look alike)
        LLMOPS_CIRCUIT_FAILURES="5",
        LLMOPS_CIRCUIT_COOLDOWN="30",
    ) as llmops:
        # The demo key is acme's; dashboard-qa is globex's: give the test a globex key.
        llmops.api_key = llmops.shell(
            "from routing.models import Team\n"
            "from routing.keys import api_key_create\n"
            "_, raw = api_key_create(team=Team.objects.get(slug='globex'), name='t7')\n"
            "print(raw)"
        )
        yield llmops


def ask(client: openai.OpenAI, i: int) -> str:
    """One request; returns the model that answered, or "failed: <status>"."""
    messages = [{"role": "user", "content": f"outage drill {i}: summarise the dashboard"}]
    try:
        if i % 2:
            stream = client.chat.completions.create(
                model="gpt-4o",
                messages=messages,
                max_tokens=24,
                stream=True,
                stream_options={"include_usage": True},
            )
            model = None
            for chunk in stream:
                model = chunk.model or model
            return model
        return client.chat.completions.create(
            model="gpt-4o", messages=messages, max_tokens=24
        ).model
    except openai.APIStatusError as exc:
        return f"failed: {exc.status_code}"


def attempts_since(stack, since: str) -> dict:
    code = f"""
import json
from django.db.models import Count
from django.utils.dateparse import parse_datetime
from routing.models import RequestAttempt
from routing.models import Request
since = parse_datetime({since!r})
rows = RequestAttempt.objects.filter(request__created_at__gte=since)
counts = {{f"{{r['model__model_id']}}:{{r['outcome']}}": r['n']
          for r in rows.values('model__model_id', 'outcome').annotate(n=Count('id'))}}
# An open circuit takes the model out of the chain at admission: no attempt row at all.
counts["primary_not_called"] = Request.objects.filter(created_at__gte=since).exclude(
    attempts__model__model_id="gpt-4o", attempts__outcome__in=["ok", "error"]).count()
print(json.dumps(counts))
"""
    return json.loads(stack.shell(code))


@pytest.mark.parametrize("rate", RATES)
def test_fallback_under_outage(stack, own_sim, figures, rate):
    own_sim.clear_faults()
    fault = own_sim.fault(
        provider="openai", endpoint="chat", status=503, rate=rate, seed=SEED, count=10**9
    )
    before = own_sim.usage()
    since = dt.datetime.now(dt.UTC).isoformat()  # the server's clock is this machine's
    client = stack.openai(WORKLOAD)
    started = time.monotonic()
    with ThreadPoolExecutor(CONCURRENCY) as pool:
        answers = list(pool.map(lambda i: ask(client, i), range(REQUESTS_PER_RATE)))
    seconds = time.monotonic() - started
    [fired] = [f["fired"] for f in own_sim.faults() if f["id"] == fault]
    own_sim.clear_faults()
    books = drift(reconcile(stack, usage_delta(before, own_sim.usage()), since))
    attempts = attempts_since(stack, since)
    served = [a for a in answers if not a.startswith("failed")]
    by_primary = sum(1 for a in served if a.startswith("gpt-4o") and "mini" not in a)
    figures.record(
        "T7",
        f"{rate:.0%} of primary calls fail",
        requests=REQUESTS_PER_RATE,
        primary_errors_injected=fired,
        served_by_primary=by_primary,
        served_by_fallback=len(served) - by_primary,
        failed=len(answers) - len(served),
        fallback_success_rate=f"{len(served) / len(answers):.1%}",
        primary_skipped_open_circuit=attempts["primary_not_called"],
        billed_usd=books["billed_usd"],
        ledger_usd=books["ledger_usd"],
        billed_minus_ledger_usd=books["billed_usd"] - books["ledger_usd"],
        token_drift=books["token_drift"],
        seconds=round(seconds, 1),
    )
    # Every injected error was seen as one, and moved the request on (or was skipped past).
    assert attempts.get("gpt-4o:error", 0) == fired
    assert fired > 0 or rate * REQUESTS_PER_RATE < 5
    assert served and all(not a.startswith("failed") for a in answers), answers
    assert books["usd_drift"] == 0 and books["token_drift"] == 0 and books["request_drift"] == 0
    assert books["estimated_usd"] == 0  # a failed call made no output: nothing to estimate
