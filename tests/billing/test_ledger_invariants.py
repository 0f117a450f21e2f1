"""The ledger's invariants, one property per test, on the demo: I1 append-only, I2 idempotent by
key, I3 derivable (budget counters rebuilt from entries and holds), I4 a hold resolves once, I5
no overspend of a hard budget, I6 no float money and no silent $0."""

from __future__ import annotations

import io
import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.db.models import F

from billing.fields import MoneyField, from_units, usd_value
from billing.models import Budget, BudgetPeriod, Hold, LedgerEntry
from billing.pricing import MAX_TOKENS_PER_RECORD, PricingError, Usage
from billing.selectors import budget_status, ledger_drift
from billing.services import (
    BudgetExceeded,
    budget_create,
    budget_reserve,
    budget_update,
    hold_release,
    hold_settle,
    holds_sweep,
    ledger_record_usage,
    ledger_reverse,
    prices_sync,
    pricing_estimate,
    reservation_amount,
)
from routing.models import LlmModel, Mode, PolicyModel, Provider, RoutingPolicy, Workload

pytestmark = pytest.mark.django_db

HOUR = timedelta(hours=1)


def counters(budget: Budget, at) -> tuple[Decimal, Decimal]:
    """(spent, reserved) of the budget's period containing `at`."""
    status = budget_status(budget, at)
    return status.spent_usd, status.reserved_usd


def all_periods() -> list[dict]:
    return list(BudgetPeriod.objects.order_by("pk").values())


def record(
    demo,
    key: str,
    *,
    workload: str = "product-search",
    model: str = "gpt-4o-mini",
    mode: str = Mode.REALTIME,
    usage: Usage | None = None,
    at=None,
):
    workload_row = demo.workloads[workload]
    return ledger_record_usage(
        key=key,
        team=workload_row.team,
        workload=workload_row,
        model=demo.models[model],
        mode=mode,
        usage=usage or Usage(input_tokens=1_000, output_tokens=200),
        at=at or demo.at,
    )


def reserve(
    demo,
    key: str,
    amount: str | Decimal,
    *,
    workload: str | None = None,
    team=None,
    at=None,
    ttl: timedelta | None = None,
):
    workload_row = demo.workloads[workload] if workload else None
    extra = {"ttl": ttl} if ttl is not None else {}
    return budget_reserve(
        key=key,
        team=team or (workload_row.team if workload_row else demo.acme),
        workload=workload_row,
        amount=Decimal(amount),
        at=at or demo.at,
        **extra,
    )


# --- I1: append-only ---------------------------------------------------------------------


@pytest.fixture
def entry(demo) -> LedgerEntry:
    return record(demo, "req-1:charge")[0]


def orm_update(entry: LedgerEntry) -> None:
    LedgerEntry.objects.filter(pk=entry.pk).update(cost_usd=Decimal(0))


def orm_save(entry: LedgerEntry) -> None:
    entry.cost_usd = Decimal(0)
    entry.save(update_fields=["cost_usd"])


def orm_delete(entry: LedgerEntry) -> None:
    LedgerEntry.objects.filter(pk=entry.pk).delete()


def orm_instance_delete(entry: LedgerEntry) -> None:
    entry.delete()


def sql_update(entry: LedgerEntry) -> None:
    with connection.cursor() as cursor:
        cursor.execute("UPDATE billing_ledgerentry SET cost_usd = 0 WHERE id = %s", [entry.pk])


def sql_delete(entry: LedgerEntry) -> None:
    with connection.cursor() as cursor:
        cursor.execute("DELETE FROM billing_ledgerentry WHERE id = %s", [entry.pk])


@pytest.mark.parametrize(
    "tamper", [orm_update, orm_save, orm_delete, orm_instance_delete, sql_update, sql_delete]
)
def test_the_database_refuses_to_edit_or_delete_a_ledger_entry(entry, tamper):
    before = LedgerEntry.objects.filter(pk=entry.pk).values().get()
    assert before["cost_usd"] > 0

    # The atomic block is a savepoint, so on PostgreSQL the test's transaction survives.
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        tamper(entry)

    assert LedgerEntry.objects.count() == 1
    assert LedgerEntry.objects.filter(pk=entry.pk).values().get() == before


# --- I2: idempotent ----------------------------------------------------------------------


def test_recording_the_same_key_twice_writes_one_entry_and_counts_it_once(demo):
    team_budget = demo.budget(demo.acme)
    first, created = record(demo, "req-1:charge")
    again, created_again = record(
        demo, "req-1:charge", usage=Usage(input_tokens=999_999, output_tokens=99_999)
    )

    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    assert again.cost_usd == first.cost_usd > 0
    assert LedgerEntry.objects.filter(idempotency_key="req-1:charge").count() == 1
    assert counters(team_budget, demo.at) == (first.cost_usd, 0)


def test_reversing_twice_writes_one_reversal_and_gives_the_spend_back_once(demo):
    team_budget = demo.budget(demo.acme)
    charge, _ = record(demo, "req-1:charge")

    reversal, created = ledger_reverse(entry=charge, reason="refund")
    again, created_again = ledger_reverse(entry=charge, reason="refund")

    assert (created, created_again) == (True, False)
    assert again.pk == reversal.pk
    assert reversal.kind == LedgerEntry.Kind.REVERSAL
    assert reversal.reverses_id == charge.pk
    assert reversal.cost_usd == -charge.cost_usd
    assert reversal.counterfactual_cost_usd == -charge.counterfactual_cost_usd
    assert reversal.input_tokens == -charge.input_tokens
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REVERSAL).count() == 1
    assert counters(team_budget, demo.at) == (0, 0)


def test_a_reversal_cannot_itself_be_reversed_or_be_recorded_as_usage(demo):
    team_budget = demo.budget(demo.acme)
    charge, _ = record(demo, "req-1:charge")
    reversal, _ = ledger_reverse(entry=charge, reason="refund")

    with pytest.raises(ValueError, match="cannot itself be reversed"):
        ledger_reverse(entry=reversal, reason="undo the refund")
    with pytest.raises(ValueError, match="ledger_reverse"):
        ledger_record_usage(
            key="req-1:fake-reversal",
            team=demo.acme,
            model=demo.models["gpt-4o"],
            mode=Mode.REALTIME,
            usage=Usage(input_tokens=1),
            kind=LedgerEntry.Kind.REVERSAL,
            at=demo.at,
        )

    assert LedgerEntry.objects.count() == 2
    assert counters(team_budget, demo.at) == (0, 0)


def test_reserving_the_same_key_twice_holds_the_amount_once(demo):
    team_budget = demo.budget(demo.acme)
    first = reserve(demo, "req-1", "2.5")
    again = reserve(demo, "req-1", "7")

    assert (first.created, again.created) == (True, False)
    assert again.hold.pk == first.hold.pk
    assert Hold.objects.get().amount_usd == Decimal("2.5")
    assert counters(team_budget, demo.at) == (0, Decimal("2.5"))


# --- I3: derivable -----------------------------------------------------------------------


def a_month_of_traffic(demo) -> None:
    """Direct records, a cache hit, reserve→settle, reserve→release, a hold the sweeper expired
    and then settled late, one still open, and a refund."""
    at = demo.at
    sonnet = demo.models["claude-sonnet-4-6"]
    record(demo, "search-1")
    record(demo, "search-2", mode=Mode.CACHE)

    def worst(prompt_tokens: int) -> Decimal:
        return reservation_amount(
            model=sonnet,
            mode=Mode.BATCH,
            prompt_tokens=prompt_tokens,
            max_output_tokens=1_000,
            at=at,
        )

    def settle(hold: Hold, when) -> LedgerEntry:
        return hold_settle(
            hold=hold,
            key=f"{hold.key}:charge",
            model=sonnet,
            mode=Mode.BATCH,
            usage=Usage(input_tokens=3_000, cached_input_tokens=1_000, output_tokens=640),
            at=when,
        )[0]

    settled = reserve(demo, "desc-1", worst(4_000), workload="product-descriptions").hold
    charge = settle(settled, at)
    released = reserve(demo, "desc-2", worst(8_000), workload="product-descriptions").hold
    hold_release(hold=released)
    late = reserve(demo, "desc-3", worst(4_000), workload="product-descriptions", ttl=HOUR).hold
    assert holds_sweep(now=at + 2 * HOUR) == 1
    settle(late, at + 3 * HOUR)
    reserve(demo, "desc-4", worst(6_000), workload="product-descriptions", at=at + 3 * HOUR)
    ledger_reverse(entry=charge, reason="customer refund")


def reconcile() -> tuple[str, str]:
    out, err = io.StringIO(), io.StringIO()
    call_command("reconcile_ledger", stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def test_reconcile_finds_no_drift_after_a_month_of_mixed_traffic(demo):
    a_month_of_traffic(demo)

    out, _ = reconcile()

    assert "No drift" in out
    spent, reserved = counters(demo.budget(demo.acme), demo.at)
    assert spent > 0  # the check compared something
    assert reserved == Hold.objects.get(key="desc-4").amount_usd > 0
    assert LedgerEntry.objects.count() == 5
    assert ledger_drift() == []


@pytest.mark.parametrize("field", ["spent_usd", "reserved_usd"])
def test_reconcile_exits_1_naming_a_corrupted_counter(demo, field):
    a_month_of_traffic(demo)
    period = BudgetPeriod.objects.get(budget=demo.budget(demo.acme))
    BudgetPeriod.objects.filter(pk=period.pk).update(
        **{field: F(field) + usd_value(Decimal("0.000001"))}
    )

    with pytest.raises(SystemExit) as exit_info:
        reconcile()

    assert exit_info.value.code == 1
    [drift] = ledger_drift()
    assert (drift.period.pk, drift.field) == (period.pk, field)
    assert drift.counter - drift.derived == Decimal("0.000001")


def test_reconcile_output_names_the_budget_and_the_drifted_counter(demo):
    a_month_of_traffic(demo)
    BudgetPeriod.objects.filter(budget=demo.budget(demo.acme)).update(
        spent_usd=F("spent_usd") - usd_value(Decimal("0.5"))
    )
    out, err = io.StringIO(), io.StringIO()

    with pytest.raises(SystemExit):
        call_command("reconcile_ledger", stdout=out, stderr=err)

    assert "DRIFT acme month" in out.getvalue()
    assert "spent_usd" in out.getvalue()
    assert "reserved_usd" not in out.getvalue()
    assert "1 counter(s) drifted" in err.getvalue()


def test_a_budget_created_mid_month_agrees_with_the_months_ledger(demo):
    """A budget added after the month's first requests: its counter must still equal the sum of
    the period's entries, or reconcile_ledger cries drift on an ordinary day."""
    charge, _ = record(demo, "qa-1", workload="dashboard-qa", model="gpt-4o")
    qa_budget = budget_create(
        team=demo.globex,
        workload=demo.workloads["dashboard-qa"],
        period=Budget.Period.MONTH,
        limit_usd=Decimal("1"),
    )
    reserve(demo, "qa-2", "0.01", workload="dashboard-qa", at=demo.at + HOUR)
    assert charge.cost_usd > 0

    out, _ = reconcile()  # exits 1 on drift

    assert "No drift" in out
    assert counters(qa_budget, demo.at)[1] == Decimal("0.01")


# --- I4: holds resolve once --------------------------------------------------------------


@pytest.fixture
def sonnet_hold(demo) -> Hold:
    """A batch request's worst case held against acme and its product-descriptions budget."""
    amount = reservation_amount(
        model=demo.models["claude-sonnet-4-6"],
        mode=Mode.BATCH,
        prompt_tokens=2_000,
        max_output_tokens=500,
        at=demo.at,
    )
    return reserve(demo, "req-1", amount, workload="product-descriptions", ttl=HOUR).hold


def settle(demo, hold: Hold, *, at=None, output_tokens: int = 120):
    return hold_settle(
        hold=hold,
        key=f"{hold.key}:charge",
        model=demo.models["claude-sonnet-4-6"],
        mode=Mode.BATCH,
        usage=Usage(input_tokens=2_000, output_tokens=output_tokens),
        at=at or demo.at,
    )


def held_budgets(demo) -> list[Budget]:
    return [demo.budget(demo.acme), demo.budget(demo.acme, demo.workloads["product-descriptions"])]


def test_settling_twice_records_once_and_gives_the_reservation_back_once(demo, sonnet_hold):
    entry, created = settle(demo, sonnet_hold)
    again, created_again = settle(demo, sonnet_hold, output_tokens=500)

    assert (created, created_again) == (True, False)
    assert again.pk == entry.pk
    assert entry.cost_usd == Decimal("0.0039")  # 2k x $1.5 + 120 x $7.5, per million
    assert LedgerEntry.objects.count() == 1
    sonnet_hold.refresh_from_db()
    assert sonnet_hold.status == Hold.Status.SETTLED
    for budget in held_budgets(demo):
        assert counters(budget, demo.at) == (entry.cost_usd, 0)


def test_releasing_a_settled_hold_changes_nothing(demo, sonnet_hold):
    entry, _ = settle(demo, sonnet_hold)
    sonnet_hold.refresh_from_db()
    resolved_at = sonnet_hold.resolved_at

    assert hold_release(hold=sonnet_hold) is False

    sonnet_hold.refresh_from_db()
    assert (sonnet_hold.status, sonnet_hold.resolved_at) == (Hold.Status.SETTLED, resolved_at)
    for budget in held_budgets(demo):
        assert counters(budget, demo.at) == (entry.cost_usd, 0)


def test_releasing_twice_gives_the_reservation_back_once(demo, sonnet_hold):
    other = reserve(demo, "req-2", "1.25", workload="product-descriptions").hold

    assert hold_release(hold=sonnet_hold) is True
    assert hold_release(hold=sonnet_hold) is False

    sonnet_hold.refresh_from_db()
    assert sonnet_hold.status == Hold.Status.RELEASED
    for budget in held_budgets(demo):
        assert counters(budget, demo.at) == (0, other.amount_usd)


def test_the_sweeper_expires_only_holds_past_their_deadline(demo, sonnet_hold):
    later = reserve(demo, "req-2", "1.25", workload="product-descriptions", ttl=3 * HOUR).hold
    released = reserve(demo, "req-3", "2", workload="product-descriptions", ttl=HOUR).hold
    hold_release(hold=released)

    assert holds_sweep(now=demo.at + HOUR) == 0  # exactly at the deadline is not past it
    assert holds_sweep(now=demo.at + 2 * HOUR) == 1
    assert holds_sweep(now=demo.at + 2 * HOUR) == 0

    statuses = dict(Hold.objects.values_list("key", "status"))
    assert statuses == {"req-1": "expired", "req-2": "held", "req-3": "released"}
    for budget in held_budgets(demo):
        assert counters(budget, demo.at) == (0, later.amount_usd)

    assert holds_sweep(now=demo.at + 4 * HOUR) == 1
    assert Hold.objects.get(key="req-2").status == Hold.Status.EXPIRED
    for budget in held_budgets(demo):
        assert counters(budget, demo.at) == (0, 0)


def test_settling_a_hold_the_sweeper_expired_still_records_the_usage_once(demo, sonnet_hold):
    assert holds_sweep(now=demo.at + 2 * HOUR) == 1

    entry, created = settle(demo, sonnet_hold, at=demo.at + 3 * HOUR)
    again, created_again = settle(demo, sonnet_hold, at=demo.at + 3 * HOUR)

    assert (created, created_again) == (True, False)
    assert again.pk == entry.pk
    assert LedgerEntry.objects.count() == 1
    sonnet_hold.refresh_from_db()
    assert sonnet_hold.status == Hold.Status.EXPIRED
    for budget in held_budgets(demo):
        # The sweeper gave the reservation back; settling must not give it back again.
        assert counters(budget, demo.at) == (entry.cost_usd, 0)
    assert ledger_drift() == []


# --- I5: no overspend --------------------------------------------------------------------


@pytest.fixture
def tight_budgets(demo) -> tuple[Budget, Budget]:
    """globex: a hard $10 team budget and a hard $1 budget on dashboard-qa."""
    team_budget = budget_update(budget=demo.budget(demo.globex), limit_usd=Decimal("10"))
    qa_budget = budget_create(
        team=demo.globex,
        workload=demo.workloads["dashboard-qa"],
        period=Budget.Period.MONTH,
        limit_usd=Decimal("1"),
    )
    return team_budget, qa_budget


def test_a_hard_budget_admits_up_to_its_limit_and_refuses_beyond(demo, tight_budgets):
    team_budget, _ = tight_budgets

    reserve(demo, "r-1", "7.75", team=demo.globex)
    reserve(demo, "r-2", "2.25", team=demo.globex)
    with pytest.raises(BudgetExceeded) as refused:
        reserve(demo, "r-3", "0.000000000001", team=demo.globex)

    assert refused.value.budget == team_budget
    assert not Hold.objects.filter(key="r-3").exists()
    assert counters(team_budget, demo.at) == (0, Decimal("10"))


@pytest.mark.parametrize(
    ("team_limit", "qa_limit", "refusing"),
    [("10", "1", "workload"), ("1", "10", "team")],
)
def test_a_refusal_by_one_budget_reserves_nothing_on_any(demo, team_limit, qa_limit, refusing):
    team_budget = budget_update(budget=demo.budget(demo.globex), limit_usd=Decimal(team_limit))
    qa_budget = budget_create(
        team=demo.globex,
        workload=demo.workloads["dashboard-qa"],
        period=Budget.Period.MONTH,
        limit_usd=Decimal(qa_limit),
    )
    reserve(demo, "r-1", "0.5", workload="dashboard-qa")

    with pytest.raises(BudgetExceeded) as refused:
        reserve(demo, "r-2", "2", workload="dashboard-qa")

    assert refused.value.budget == (qa_budget if refusing == "workload" else team_budget)
    assert list(Hold.objects.values_list("key", flat=True)) == ["r-1"]
    assert counters(team_budget, demo.at) == (0, Decimal("0.5"))
    assert counters(qa_budget, demo.at) == (0, Decimal("0.5"))


def test_a_soft_budget_admits_and_reports_its_breach(demo):
    descriptions = demo.budget(demo.acme, demo.workloads["product-descriptions"])
    assert not descriptions.hard and descriptions.limit_usd == 150

    within = reserve(demo, "r-1", "100", workload="product-descriptions")
    over = reserve(demo, "r-2", "51", workload="product-descriptions")

    assert (within.created, within.soft_breaches) == (True, [])
    assert (over.created, over.soft_breaches) == (True, [descriptions])
    assert counters(descriptions, demo.at) == (0, Decimal("151"))
    assert counters(demo.budget(demo.acme), demo.at) == (0, Decimal("151"))


def test_cents_that_exactly_fill_a_hard_budget_are_all_admitted(demo):
    team_budget = budget_update(budget=demo.budget(demo.globex), limit_usd=Decimal("0.37"))

    for n in range(37):
        reserve(demo, f"r-{n}", "0.01", team=demo.globex)
    with pytest.raises(BudgetExceeded):
        reserve(demo, "r-37", "0.01", team=demo.globex)

    assert Hold.objects.count() == 37
    assert counters(team_budget, demo.at) == (0, Decimal("0.37"))


def test_releasing_every_hold_brings_the_reservation_back_to_zero(demo):
    team_budget = demo.budget(demo.globex)
    holds = [
        reserve(demo, key, amount, team=demo.globex).hold
        for key, amount in [("r-1", "0.70"), ("r-2", "0.10")]
    ]

    assert [hold_release(hold=hold) for hold in holds] == [True, True]

    assert set(Hold.objects.values_list("status", flat=True)) == {Hold.Status.RELEASED}
    assert counters(team_budget, demo.at) == (0, 0)


def test_the_reserved_worst_case_covers_a_prompt_written_to_the_cache(demo):
    """Anthropic bills cache writes above the input rate; a hold must still cover them."""
    sonnet = demo.models["claude-sonnet-4-6"]
    worst = reservation_amount(
        model=sonnet, mode=Mode.STREAM, prompt_tokens=10_000, max_output_tokens=1_000, at=demo.at
    )
    team_budget = budget_update(budget=demo.budget(demo.globex), limit_usd=worst)
    hold = reserve(demo, "r-1", worst, workload="dashboard-qa").hold

    entry, _ = hold_settle(
        hold=hold,
        key="r-1:charge",
        model=sonnet,
        mode=Mode.STREAM,
        usage=Usage(cache_write_tokens=10_000, output_tokens=1_000),
        at=demo.at,
    )

    spent, reserved = counters(team_budget, demo.at)
    assert entry.cost_usd <= hold.amount_usd
    assert spent + reserved <= team_budget.limit_usd


# --- I6: no float money, no silent $0 ----------------------------------------------------


def unknown_model(demo):
    model = LlmModel.objects.create(
        provider=demo.models["gpt-4o"].provider,
        model_id="gpt-9-unreleased",
        context_window=128_000,
        max_output_tokens=16_384,
    )
    report = prices_sync(at=demo.synced_at, models=[model])
    assert "does not know" in report.skipped[str(model)]
    return model, demo.at


def model_without_price(demo):
    provider = Provider.objects.create(
        slug="local-vllm",
        name="Local vLLM",
        kind=Provider.Kind.OPENAI_COMPATIBLE,
        base_url="http://127.0.0.1:9/v1",
    )
    model = LlmModel.objects.create(
        provider=provider, model_id="llama-3.1-8b", context_window=8_192, max_output_tokens=4_096
    )
    return model, demo.at


def price_not_yet_in_force(demo):
    return demo.models["gpt-4o"], demo.synced_at - timedelta(days=1)


@pytest.mark.parametrize("case", [unknown_model, model_without_price, price_not_yet_in_force])
def test_usage_that_cannot_be_priced_is_an_error_and_writes_nothing(demo, case):
    record(demo, "req-0:charge")
    open_hold = reserve(demo, "req-1", "0.5", workload="product-search").hold
    periods, entries = all_periods(), LedgerEntry.objects.count()
    model, at = case(demo)
    usage = Usage(input_tokens=1_000, output_tokens=200)
    search = demo.workloads["product-search"]

    with pytest.raises(PricingError, match=re.escape(str(model))):
        ledger_record_usage(
            key="req-2:charge",
            team=demo.acme,
            workload=search,
            model=model,
            mode=Mode.REALTIME,
            usage=usage,
            at=at,
        )
    with pytest.raises(PricingError):
        hold_settle(
            hold=open_hold,
            key="req-1:charge",
            model=model,
            mode=Mode.REALTIME,
            usage=usage,
            at=at,
        )
    with pytest.raises(PricingError):
        reservation_amount(
            model=model, mode=Mode.REALTIME, prompt_tokens=1_000, max_output_tokens=200, at=at
        )

    assert LedgerEntry.objects.count() == entries == 1
    assert all_periods() == periods
    open_hold.refresh_from_db()
    assert open_hold.status == Hold.Status.HELD


def test_a_workload_whose_primary_model_has_no_price_cannot_record_usage(demo):
    local, _ = model_without_price(demo)
    policy = RoutingPolicy.objects.create(team=demo.acme, name="local-first")
    PolicyModel.objects.create(policy=policy, model=local, position=0)
    PolicyModel.objects.create(policy=policy, model=demo.models["gpt-4o-mini"], position=1)
    workload = Workload.objects.create(
        team=demo.acme, slug="local-first", latency_class="realtime", policy=policy
    )
    periods = all_periods()

    # The served model is priced, but the counterfactual (the primary's price) is not.
    with pytest.raises(PricingError, match=re.escape("llama-3.1-8b")):
        ledger_record_usage(
            key="req-1:charge",
            team=demo.acme,
            workload=workload,
            model=demo.models["gpt-4o-mini"],
            mode=Mode.REALTIME,
            usage=Usage(input_tokens=1_000),
            at=demo.at,
        )

    assert not LedgerEntry.objects.exists()
    assert all_periods() == periods


TOKEN_FIELDS = [
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
]


@pytest.mark.parametrize("field", TOKEN_FIELDS)
@pytest.mark.parametrize("value", [-1, True, 12.0, MAX_TOKENS_PER_RECORD + 1, "12", None])
def test_a_bad_token_count_is_a_pricing_error_naming_the_field(field, value):
    with pytest.raises(PricingError, match=field):
        Usage(**{field: value})


def test_the_largest_plausible_token_count_is_still_priced(demo):
    usage = Usage(input_tokens=MAX_TOKENS_PER_RECORD)
    cost, _ = pricing_estimate(
        model=demo.models["gpt-4o-mini"], usage=usage, mode=Mode.REALTIME, at=demo.at
    )
    assert cost.total == Decimal(15)  # 100M x $0.15 per million


def test_money_is_decimal_with_twelve_places_in_the_database_and_out_of_it(demo, sonnet_hold):
    entry, _ = settle(demo, sonnet_hold)
    entry.refresh_from_db()
    sonnet_hold.refresh_from_db()
    period = BudgetPeriod.objects.get(budget=demo.budget(demo.acme))
    cost, counterfactual = pricing_estimate(
        model=demo.models["claude-sonnet-4-6"],
        usage=Usage(input_tokens=7),
        mode=Mode.BATCH,
        at=demo.at,
    )

    amounts = [
        entry.cost_usd,
        entry.counterfactual_cost_usd,
        sonnet_hold.amount_usd,
        period.spent_usd,
        period.reserved_usd,
        period.limit_usd,
        cost.total,
        counterfactual.total,
    ]
    for amount in amounts:
        assert type(amount) is Decimal
        assert amount.as_tuple().exponent == -12
    assert cost.total == Decimal("0.0000105")  # 7 x $1.5 per million: a fraction of a cent
    for model, field in [
        (LedgerEntry, "cost_usd"),
        (LedgerEntry, "counterfactual_cost_usd"),
        (Hold, "amount_usd"),
        (Budget, "limit_usd"),
        (BudgetPeriod, "limit_usd"),
        (BudgetPeriod, "spent_usd"),
        (BudgetPeriod, "reserved_usd"),
    ]:
        assert isinstance(model._meta.get_field(field), MoneyField)
    # In the database: whole picodollars, an integer on both SQLite and PostgreSQL.
    with connection.cursor() as cursor:
        cursor.execute("SELECT cost_usd FROM billing_ledgerentry WHERE id = %s", [entry.pk])
        (raw,) = cursor.fetchone()
    assert int(raw) == raw == entry.cost_usd.scaleb(12)


def test_cents_add_up_exactly_in_the_database(demo):
    """0.70 + 0.10 - 0.80 is 0 only if the database does not keep money as binary floats."""
    team_budget = demo.budget(demo.globex)
    holds = [
        reserve(demo, key, amount, team=demo.globex).hold
        for key, amount in [("r-1", "0.70"), ("r-2", "0.10"), ("r-3", "0.20")]
    ]
    with connection.cursor() as cursor:
        cursor.execute("SELECT SUM(amount_usd) FROM billing_hold")
        (raw_sum,) = cursor.fetchone()
    assert from_units(raw_sum) == Decimal("1.00")
    for hold in holds:
        hold_release(hold=hold)
    assert counters(team_budget, demo.at) == (0, 0)


# --- the counterfactual ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("served_by", "cost"),
    [
        ("claude-sonnet-4-6", Decimal("0.0225")),  # 10k x $1.5 + 1k x $7.5 per million
        ("gpt-4o", Decimal("0.0175")),  # 10k x $1.25 + 1k x $5 per million
    ],
)
def test_a_batch_entry_costs_the_batch_price_against_the_primary_models_standard_price(
    demo, served_by, cost
):
    descriptions = demo.workloads["product-descriptions"]  # overnight-batch: sonnet first
    assert descriptions.policy.links.order_by("position")[0].model.model_id == "claude-sonnet-4-6"

    entry, _ = record(
        demo,
        "desc-1:charge",
        workload="product-descriptions",
        model=served_by,
        mode=Mode.BATCH,
        usage=Usage(input_tokens=10_000, output_tokens=1_000),
    )

    entry.refresh_from_db()
    assert entry.cost_usd == cost
    assert entry.counterfactual_cost_usd == Decimal("0.045")  # sonnet standard: $3 / $15
    assert (entry.price.model.model_id, entry.price.processing) == (served_by, "batch")
    assert (entry.counterfactual_price.model.model_id, entry.counterfactual_price.processing) == (
        "claude-sonnet-4-6",
        "standard",
    )
    assert counters(demo.budget(demo.acme, descriptions), demo.at) == (cost, 0)


def test_a_cache_hit_costs_nothing_and_saves_what_the_primary_would_have_cost(demo):
    entry, _ = record(
        demo,
        "search-1:charge",
        mode=Mode.CACHE,
        usage=Usage(input_tokens=1_000, output_tokens=200),
    )

    entry.refresh_from_db()
    assert (entry.cost_usd, entry.price) == (0, None)
    assert entry.counterfactual_cost_usd == Decimal("0.00027")  # gpt-4o-mini: $0.15 / $0.6
    assert counters(demo.budget(demo.acme), demo.at) == (0, 0)
