"""T1: 500 requests at once against a hard budget that fits 50 of them, on one and on two
daphne processes: nothing is spent past the limit (I5).

The budget is 50 times the reservation one request takes (its worst case: the bounded prompt
and max_tokens at the dearest model of its chain), so at most 50 can be admitted at a time;
the rest must get a 402 naming the budget, none a server error. Admission is one conditional
UPDATE per budget period (billing.services.budget_reserve); a check-then-spend version of it
lets several hundred through here. After the burst: the ledger's total for the workload is at
most the limit, the period's counters equal the ledger (I3) and no hold is left open (I4)."""

from __future__ import annotations

import asyncio
import json
from decimal import Decimal

import aiohttp
import pytest

from tests.faults.conftest import fault_stack
from tests.live.stack import Llmops, serving

REQUESTS = 500
FITS = 50
MAX_TOKENS = 64


@pytest.fixture(scope="module")
def stack(own_sim, tmp_path_factory):
    with fault_stack(own_sim, tmp_path_factory.mktemp("t1")) as llmops:
        yield llmops


def budgeted_workload(llmops: Llmops, slug: str) -> Decimal:
    """A workload with a hard daily budget that fits FITS reservations; returns the limit."""
    code = f"""
from decimal import Decimal
from billing.models import Budget
from billing.services import budget_create, reservation_amount
from routing.config import policy_chain
from routing.models import RoutingPolicy, Team, Workload
from billing.pricing import prompt_tokens_bound
team = Team.objects.get(slug="acme")
policy = RoutingPolicy.objects.get(team=team, name="interactive")
workload = Workload.objects.create(team=team, slug={slug!r}, policy=policy,
                                   latency_class="realtime")
messages = [{{"role": "user", "content": "budget race request 000"}}]
one = max(reservation_amount(model=m, mode="realtime", prompt_tokens=prompt_tokens_bound(messages),
                             max_output_tokens={MAX_TOKENS}) for m in policy_chain(policy))
budget = budget_create(team=team, workload=workload, period=Budget.Period.DAY,
                       limit_usd=one * {FITS}, hard=True)
print(budget.limit_usd)
"""
    return Decimal(llmops.shell(code))


async def burst(base_urls: list[str], api_key: str, workload: str) -> list[tuple[int, str]]:
    """REQUESTS chat completions sent at once, spread over `base_urls`; (status, body) each."""
    connector = aiohttp.TCPConnector(limit=REQUESTS, force_close=True)
    timeout = aiohttp.ClientTimeout(total=180)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as client:
        start = asyncio.Event()

        async def one(i: int) -> tuple[int, str]:
            await start.wait()
            async with client.post(
                f"{base_urls[i % len(base_urls)]}/v1/chat/completions",
                headers={"Authorization": f"Bearer {api_key}", "X-Workload": workload},
                json={
                    "model": "gpt-4o",
                    # the same length as the reservation's probe: every reservation is equal
                    "messages": [{"role": "user", "content": f"budget race request {i:03d}"}],
                    "max_tokens": MAX_TOKENS,
                },
            ) as response:
                return response.status, await response.text()

        tasks = [asyncio.create_task(one(i)) for i in range(REQUESTS)]
        await asyncio.sleep(0.5)  # every task waiting on the event: they go together
        start.set()
        return await asyncio.gather(*tasks)


def books(llmops: Llmops, slug: str) -> dict:
    code = f"""
import json
from django.db.models import Sum
from billing.models import BudgetPeriod, Hold, LedgerEntry
workload_q = dict(workload__slug={slug!r}, workload__team__slug="acme")
[period] = BudgetPeriod.objects.filter(budget__workload__slug={slug!r})
ledger = LedgerEntry.objects.filter(**workload_q).aggregate(s=Sum("cost_usd"))["s"] or 0
print(json.dumps({{
    "limit": str(period.limit_usd),
    "spent": str(period.spent_usd),
    "reserved": str(period.reserved_usd),
    "ledger": str(ledger),
    "entries": LedgerEntry.objects.filter(**workload_q).count(),
    "open_holds": Hold.objects.filter(**workload_q, status="held").count(),
}}))
"""
    return json.loads(llmops.shell(code))


def run_case(llmops: Llmops, figures, case: str, slug: str, base_urls: list[str]) -> None:
    limit = budgeted_workload(llmops, slug)
    answers = asyncio.run(burst(base_urls, llmops.api_key, slug))
    ok = sum(1 for status, _ in answers if status == 200)
    refused = [body for status, body in answers if status == 402]
    others = [(status, body[:300]) for status, body in answers if status not in (200, 402)]
    after = books(llmops, slug)
    spent = Decimal(after["ledger"])
    figures.record(
        "T1",
        case,
        requests=REQUESTS,
        daphne_processes=len(base_urls),
        budget_fits=FITS,
        limit_usd=limit,
        admitted=ok,
        refused_402=len(refused),
        other_answers=len(others),
        ledger_usd=spent,
        overspend_usd=max(Decimal(0), spent - limit),
        counters_minus_ledger_usd=Decimal(after["spent"]) - spent,
        open_holds=after["open_holds"],
    )
    assert others == [], others[:5]
    assert spent <= limit, (spent, limit)
    assert Decimal(after["spent"]) == spent  # the period's counter is the ledger's sum (I3)
    assert Decimal(after["reserved"]) == 0 and after["open_holds"] == 0
    assert after["entries"] == ok  # one entry per answered request, none for a refusal
    # The budget fits 50 worst cases; a request costs less than its worst case, so at least
    # 50 get through, and the refusals name the budget.
    assert ok >= FITS, ok
    assert all("budget" in body for body in refused), refused[:1]


def test_one_daphne_never_overspends(stack, figures):
    run_case(stack, figures, "one daphne", "t1-one-daphne", [stack.base_url])


def test_two_daphne_processes_never_overspend(stack, figures):
    with serving(stack.env, stack.data_dir / "daphne-2.log") as second:
        run_case(stack, figures, "two daphne", "t1-two-daphne", [stack.base_url, second])
