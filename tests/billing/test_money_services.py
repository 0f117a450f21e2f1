"""Admission's worst case, and the path a request takes through reserve → settle."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import BudgetPeriod, Hold, LedgerEntry
from billing.pricing import Usage
from billing.services import budget_reserve, hold_settle, reservation_amount
from routing.models import LlmModel, Workload
from tests.billing.test_prices import priced_model

pytestmark = pytest.mark.django_db


def test_worst_case_is_the_whole_prompt_written_to_cache_plus_max_tokens_at_the_modes_price(demo):
    # claude-sonnet-4-5: the demo's no more (retired), but its long-context tier is published.
    sonnet = priced_model(demo, "claude-sonnet-4-5")
    realtime = reservation_amount(
        model=sonnet, mode="stream", prompt_tokens=10_000, max_output_tokens=1_000
    )
    batch = reservation_amount(
        model=sonnet, mode="batch", prompt_tokens=10_000, max_output_tokens=1_000
    )
    # Writing the prompt to the cache ($3.75) is dearer than reading it fresh ($3).
    assert realtime == Decimal("0.0525")  # 10k x $3.75 + 1k x $15, per million
    assert batch == Decimal("0.02625")
    assert (
        reservation_amount(
            model=sonnet, mode="cache", prompt_tokens=10_000, max_output_tokens=1_000
        )
        == 0
    )
    # Past 200k prompt tokens the long-context tier applies to every token.
    long = reservation_amount(
        model=sonnet, mode="stream", prompt_tokens=200_001, max_output_tokens=0
    )
    assert long == Decimal("200001") * Decimal("7.5") / Decimal(1_000_000)


def test_a_request_reserves_its_worst_case_then_settles_to_its_actual_cost(demo):
    workload = Workload.objects.get(slug="product-descriptions")  # team + soft workload budget
    sonnet = LlmModel.objects.get(model_id="claude-sonnet-4-6")
    worst = reservation_amount(
        model=sonnet, mode="batch", prompt_tokens=2_000, max_output_tokens=500
    )
    admission = budget_reserve(key="req-1", team=workload.team, workload=workload, amount=worst)
    periods = BudgetPeriod.objects.filter(holds=admission.hold)
    assert periods.count() == 2
    assert all(p.reserved_usd == worst for p in periods)

    entry, created = hold_settle(
        hold=admission.hold, key="req-1:charge", model=sonnet, mode="batch",
        usage=Usage(input_tokens=2_000, output_tokens=120),
    )  # fmt: skip
    assert created
    assert entry.cost_usd == Decimal("0.0039")  # 2k x $1.5 + 120 x $7.5, per million
    assert entry.cost_usd < worst
    for period in periods:
        period.refresh_from_db()
        assert (period.reserved_usd, period.spent_usd) == (0, entry.cost_usd)
    admission.hold.refresh_from_db()
    assert admission.hold.status == Hold.Status.SETTLED
    assert LedgerEntry.objects.get().idempotency_key == "req-1:charge"
