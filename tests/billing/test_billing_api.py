"""Budgets, the pricing estimate and the ledger through the API: team-scoped, decimal strings."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from genai_prices import Usage as GenaiUsage
from genai_prices import calc_price

from billing.models import Budget, BudgetPeriod, LedgerEntry
from billing.pricing import Usage, quantize
from billing.services import budget_reserve, ledger_record_usage
from routing.keys import api_key_create
from routing.models import ApiKey, LlmModel, Workload

pytestmark = pytest.mark.django_db


@pytest.fixture
def admin_key(demo, client_for):
    _, raw = api_key_create(team=demo.acme, name="admin", role=ApiKey.Role.ADMIN)
    return client_for(raw)


@pytest.fixture
def member_key(demo, client_for):
    _, raw = api_key_create(team=demo.acme, name="member", role=ApiKey.Role.MEMBER)
    return client_for(raw)


def test_budgets_list_only_the_keys_team_with_live_counters(admin_key, demo):
    acme = demo.acme
    budget = Budget.objects.get(team=acme, workload=None)
    budget_reserve(key="r1", team=acme, amount=Decimal("1.25"))
    body = admin_key.get("/api/v1/budgets").json()
    assert {b["team"] for b in body} == {"acme"}
    mine = next(b for b in body if b["id"] == budget.pk)
    assert mine["scope"] == "team"
    assert mine["limit_usd"] == "500.000000000000"
    assert mine["reserved_usd"] == "1.250000000000"
    assert mine["remaining_usd"] == "498.750000000000"
    assert mine["alerting"] is False
    budget_reserve(key="r2", team=acme, amount=Decimal("398.75"))  # 80% of 500
    assert admin_key.get(f"/api/v1/budgets/{budget.pk}").json()["alerting"] is True
    other = Budget.objects.get(team__slug="globex", workload=None)
    assert admin_key.get(f"/api/v1/budgets/{other.pk}").status_code == 404


def test_admin_key_creates_a_workload_budget(admin_key, demo):
    response = admin_key.post(
        "/api/v1/budgets",
        {
            "scope": "workload",
            "workload": "review-moderation",
            "period": "day",
            "limit_usd": "12.50",
            "hard": False,
            "alert_threshold": "0.9",
        },
        format="json",
    )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["workload"], body["period"], body["limit_usd"], body["hard"]) == (
        "review-moderation",
        "day",
        "12.500000000000",
        False,
    )
    budget = Budget.objects.get(pk=body["id"])
    assert budget.limit_usd == Decimal("12.5")
    assert budget.workload.slug == "review-moderation"


def test_member_key_cannot_change_budgets(member_key, demo):
    budget = Budget.objects.get(team=demo.acme, workload=None)
    response = member_key.patch(f"/api/v1/budgets/{budget.pk}", {"limit_usd": "1"}, format="json")
    assert response.status_code == 403
    assert "admin role" in response.json()["detail"]
    assert member_key.get(f"/api/v1/budgets/{budget.pk}").status_code == 200
    budget.refresh_from_db()
    assert budget.limit_usd == Decimal("500")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"scope": "team", "period": "month", "limit_usd": "-5"}, "limit_usd"),
        ({"scope": "team", "period": "month", "limit_usd": "0"}, "limit_usd"),
        ({"scope": "team", "period": "month", "limit_usd": "lots"}, "limit_usd"),
        ({"scope": "team", "period": "day", "limit_usd": "1000000.01"}, "limit_usd"),
        ({"scope": "team", "period": "day", "limit_usd": "0.0000000000001"}, "limit_usd"),
        ({"scope": "team", "period": "week", "limit_usd": "5"}, "period"),
        ({"scope": "workload", "period": "day", "limit_usd": "5"}, "workload"),
        (
            {"scope": "workload", "workload": "dashboard-qa", "period": "day", "limit_usd": "5"},
            "workload",
        ),
        ({"scope": "team", "period": "month", "limit_usd": "5"}, "period"),  # already exists
        (
            {"scope": "team", "period": "day", "limit_usd": "5", "alert_threshold": "1.5"},
            "alert_threshold",
        ),
    ],
)
def test_bad_budgets_are_400_naming_the_field_and_write_nothing(admin_key, payload, field):
    before = Budget.objects.count()
    response = admin_key.post("/api/v1/budgets", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Budget.objects.count() == before


def test_patching_the_limit_moves_the_current_period_with_it(admin_key, demo):
    acme = demo.acme
    budget = Budget.objects.get(team=acme, workload=None)
    budget_reserve(key="r1", team=acme, amount=Decimal("10"))
    response = admin_key.patch(f"/api/v1/budgets/{budget.pk}", {"limit_usd": "20"}, format="json")
    assert response.status_code == 200
    assert response.json()["remaining_usd"] == "10.000000000000"
    assert BudgetPeriod.objects.get(budget=budget).limit_usd == Decimal("20")
    refused = admin_key.patch(f"/api/v1/budgets/{budget.pk}", {"period": "day"}, format="json")
    assert refused.status_code == 400
    assert "period" in refused.json()


@pytest.mark.parametrize(
    ("model", "provider_id"),
    [
        ("gpt-4o-mini", "openai"),
        ("gpt-4o", "openai"),
        ("gpt-4.1", "openai"),
        ("claude-haiku-4-5", "anthropic"),
        ("claude-sonnet-4-6", "anthropic"),
    ],
)
@pytest.mark.parametrize("mode", ["realtime", "batch"])
def test_estimate_equals_genai_prices_on_the_demo_models(member_key, model, provider_id, mode):
    usage = {"input_tokens": 12_000, "cached_input_tokens": 3_000, "output_tokens": 800}
    body = member_key.post(
        "/api/v1/pricing/estimate", {"model": model, "mode": mode, **usage}, format="json"
    ).json()
    context = {"processing": "batch"} if mode == "batch" else None
    expected = calc_price(
        GenaiUsage(input_tokens=12_000, cache_read_tokens=3_000, output_tokens=800),
        model,
        provider_id=provider_id,
        price_context=context,
    ).total_price
    assert Decimal(body["cost_usd"]) == quantize(expected)
    standard = calc_price(
        GenaiUsage(input_tokens=12_000, cache_read_tokens=3_000, output_tokens=800),
        model,
        provider_id=provider_id,
    ).total_price
    assert Decimal(body["counterfactual_cost_usd"]) == quantize(standard)
    assert body["derived_price"] is False


def test_estimate_of_a_derived_batch_price_is_half_the_standard(member_key):
    body = member_key.post(
        "/api/v1/pricing/estimate",
        {
            "model": "claude-opus-4-1",
            "mode": "batch",
            "input_tokens": 10_000,
            "output_tokens": 1_000,
        },
        format="json",
    ).json()
    assert body["derived_price"] is True
    assert Decimal(body["cost_usd"]) == Decimal("0.1125")  # (10k x $15 + 1k x $75) / 1M / 2
    assert Decimal(body["saved_usd"]) == Decimal("0.1125")


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"model": "gpt-9-ultra", "input_tokens": 1}, "model"),
        ({"model": "gpt-4o", "input_tokens": -1}, "input_tokens"),
        ({"model": "gpt-4o", "input_tokens": 1.5}, "input_tokens"),
        ({"model": "gpt-4o", "input_tokens": 10**12}, "input_tokens"),
        ({"model": "gpt-4o", "input_tokens": 10, "cached_input_tokens": 11}, "cached_input_tokens"),
        (
            {"model": "gpt-4o", "input_tokens": 10, "output_tokens": 1, "reasoning_tokens": 2},
            "reasoning_tokens",
        ),
        ({"model": "gpt-4o", "input_tokens": 10, "mode": "carrier-pigeon"}, "mode"),
        ({"input_tokens": 10}, "model"),
    ],
)
def test_bad_estimates_are_400_naming_the_field(member_key, payload, field):
    response = member_key.post("/api/v1/pricing/estimate", payload, format="json")
    assert response.status_code == 400
    assert field in response.json()


def test_a_model_without_a_price_is_an_error_not_zero(member_key):
    model = LlmModel.objects.get(model_id="gpt-4o")
    model.prices.all().delete()  # prices are not ledger rows; test-only removal
    response = member_key.post(
        "/api/v1/pricing/estimate", {"model": "gpt-4o", "input_tokens": 10}, format="json"
    )
    assert response.status_code == 400
    assert "no standard price for" in response.json()["model"][0]


def test_ledger_lists_the_teams_entries_with_totals_for_the_filter(member_key, demo):
    acme, globex = demo.acme, demo.globex
    now = timezone.now()
    search = Workload.objects.get(team=acme, slug="product-search")
    nightly = Workload.objects.get(team=acme, slug="product-descriptions")
    mini = LlmModel.objects.get(model_id="gpt-4o-mini")
    sonnet = LlmModel.objects.get(model_id="claude-sonnet-4-6")
    usage = Usage(input_tokens=1000, output_tokens=100)
    ledger_record_usage(
        key="a", team=acme, workload=search, model=mini, mode="stream", usage=usage, at=now
    )
    ledger_record_usage(
        key="b", team=acme, workload=nightly, model=sonnet, mode="batch", usage=usage, at=now
    )
    ledger_record_usage(
        key="c",
        team=globex,
        workload=Workload.objects.get(team=globex, slug="nightly-reports"),
        model=sonnet,
        mode="batch",
        usage=usage,
        at=now,
    )

    body = member_key.get("/api/v1/ledger").json()
    assert body["count"] == 2
    assert {e["team"] for e in body["results"]} == {"acme"}
    total = sum(Decimal(e["cost_usd"]) for e in body["results"])
    assert Decimal(body["totals"]["cost_usd"]) == total

    batch = member_key.get("/api/v1/ledger?mode=batch").json()
    assert [e["workload"] for e in batch["results"]] == ["product-descriptions"]
    entry = batch["results"][0]
    # Sonnet batch: (1000 x 1.5 + 100 x 7.5) / 1M; counterfactual at Sonnet standard (its primary).
    assert Decimal(entry["cost_usd"]) == Decimal("0.00225")
    assert Decimal(entry["counterfactual_cost_usd"]) == Decimal("0.0045")
    assert Decimal(batch["totals"]["saved_usd"]) == Decimal("0.00225")

    later = member_key.get(
        f"/api/v1/ledger?since={(now + timedelta(seconds=1)).isoformat().replace('+00:00', 'Z')}"
    )
    assert later.json()["count"] == 0
    assert member_key.get("/api/v1/ledger?mode=teleport").status_code == 400
    assert LedgerEntry.objects.count() == 3


def test_reports_through_a_key_open_on_the_last_30_days_and_take_a_named_range(member_key):
    today = timezone.now().date()
    default = member_key.get("/api/v1/reports/overview").json()["range"]
    assert (default["since"], default["until"], default["days"], default["preset"]) == (
        (today - timedelta(days=29)).isoformat(),
        today.isoformat(),
        30,
        "last_30_days",
    )
    quarter = member_key.get("/api/v1/reports/savings?range=last_90_days").json()["range"]
    assert (quarter["days"], quarter["preset"]) == (90, "last_90_days")
    custom = member_key.get(
        "/api/v1/reports/overview?range=last_90_days&since=2026-01-01&until=2026-01-31"
    ).json()["range"]
    assert (custom["days"], custom["preset"]) == (31, None)
    refused = member_key.get("/api/v1/reports/overview?range=fortnight")
    assert refused.status_code == 400
    assert list(refused.json()) == ["range"]


def test_the_calculator_names_every_bad_field_at_once_for_a_key(member_key):
    response = member_key.post(
        "/api/v1/reports/calculator",
        {"model": "gpt-4o-mini", "monthly_requests": "many", "input_tokens": 10,
         "output_tokens": -5, "batch_share": 2, "cache_hit_rate": "0.1234567"},
        format="json",
    )  # fmt: skip
    assert response.status_code == 400
    assert response.json() == {
        "monthly_requests": ["Requests per month: must be a whole number ≥ 0."],
        "output_tokens": ["Output tokens per request: must be a whole number ≥ 0."],
        "batch_share": ["Batch-eligible share: must be a share from 0 to 1."],
        "cache_hit_rate": ["Cache hit rate: must have at most 6 decimal places."],
    }


def test_a_zero_cost_entry_reads_as_plain_zeros_in_every_money_api(member_key, admin_key, demo):
    acme = demo.acme
    search = Workload.objects.get(team=acme, slug="product-search")
    mini = LlmModel.objects.get(model_id="gpt-4o-mini")
    entry, _ = ledger_record_usage(
        key="zero",
        team=acme,
        workload=search,
        model=mini,
        mode="realtime",
        usage=Usage(input_tokens=0, output_tokens=0),
        at=timezone.now(),
    )
    assert str(entry.cost_usd) == "0E-12"  # what a careless str() would print

    listed = member_key.get("/api/v1/ledger").json()
    (row,) = listed["results"]
    for name in ("cost_usd", "counterfactual_cost_usd", "standard_cost_usd", "batch_cost_usd"):
        assert row[name] == "0.000000000000", name
    assert listed["totals"]["cost_usd"] == listed["totals"]["saved_usd"] == "0.000000000000"
    for path in ("/api/v1/ledger", "/api/v1/reports/ledger", "/api/v1/reports/overview",
                 "/api/v1/reports/budgets", "/api/v1/budgets"):  # fmt: skip
        client = admin_key if path == "/api/v1/budgets" else member_key
        text = client.get(path).content.decode()
        assert not re.search(r"\dE[-+]?\d", text), path
