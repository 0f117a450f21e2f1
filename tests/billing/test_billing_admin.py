"""The admin of billing's models: price history is add-only, the ledger is read-only and totals
its filter, budgets show their use and take only their team's workloads."""

from __future__ import annotations

from decimal import Decimal

import pytest

from routing.models import Team
from tests.admin_pages import picker_labels

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/admin/billing/budget/",
        "/admin/billing/price/?processing__exact=batch",
        "/admin/billing/price/add/",
        "/admin/billing/ledgerentry/?mode__exact=batch",
    ],
)
def test_admin_pages_render(admin_client, demo, path):
    assert admin_client.get(path).status_code == 200


def test_price_history_is_add_only(admin_client, demo):
    from billing.models import Price

    price = Price.objects.filter(model__model_id="gpt-4o", processing="standard").get()
    assert admin_client.get(f"/admin/billing/price/{price.pk}/change/").status_code == 200  # view
    response = admin_client.post(
        "/admin/billing/price/add/",
        {
            "model": price.model_id,
            "processing": "standard",
            "effective_from_0": "2030-01-01",
            "effective_from_1": "00:00:00",
            "input_per_mtok": "2.00",
            "cached_input_per_mtok": "1.00",
            "cache_write_per_mtok": "2.00",
            "output_per_mtok": "8.00",
            "tiers": "[]",
            "note": "negotiated",
        },
    )
    assert response.status_code == 302
    new = Price.objects.get(model=price.model, processing="standard", note="negotiated")
    assert (new.source, new.created_by.username) == ("admin", "root")
    price.refresh_from_db()
    assert price.input_per_mtok == Decimal("2.5")  # history untouched
    edit = admin_client.post(f"/admin/billing/price/{price.pk}/change/", {"input_per_mtok": "0"})
    assert edit.status_code == 403


def test_ledger_admin_is_read_only_and_totals_the_filter(admin_client, demo):
    from billing.models import LedgerEntry
    from billing.pricing import Usage
    from billing.services import ledger_record_usage
    from routing.models import LlmModel, Workload

    workload = Workload.objects.get(slug="product-descriptions")
    model = LlmModel.objects.get(model_id="claude-sonnet-4-6")
    for key, mode in [("a", "batch"), ("b", "realtime")]:
        ledger_record_usage(
            key=key, team=workload.team, workload=workload, model=model, mode=mode,
            usage=Usage(input_tokens=1000, output_tokens=100),
        )  # fmt: skip
    response = admin_client.get("/admin/billing/ledgerentry/?mode__exact=batch")
    assert response.context["totals"]["cost_usd"] == Decimal("0.00225")
    assert "Totals for this filter" in response.content.decode()
    entry = LedgerEntry.objects.first()
    assert admin_client.post(f"/admin/billing/ledgerentry/{entry.pk}/delete/").status_code == 403
    assert LedgerEntry.objects.count() == 2


def test_budget_admin_shows_utilisation(admin_client, demo):
    from billing.services import budget_reserve

    team = Team.objects.get(slug="acme")
    budget_reserve(key="r", team=team, amount=Decimal("125"))
    page = admin_client.get(f"/admin/billing/budget/?team__id__exact={team.pk}").content.decode()
    assert "25.0%" in page  # 125 of the 500 monthly team budget


def test_a_budgets_workload_picker_names_teams_and_refuses_another_teams(admin_client, demo):
    from billing.models import Budget
    from routing.models import Workload

    budget = Budget.objects.get(team__slug="acme", workload=None)
    labels = picker_labels(
        admin_client.get(f"/admin/billing/budget/{budget.pk}/change/"), "workload"
    )
    assert labels and all(label.startswith("acme / ") for label in labels)
    added = admin_client.get("/admin/billing/budget/add/")
    assert "globex / nightly-reports" in picker_labels(added, "workload")

    theirs = Workload.objects.get(team__slug="globex", slug="nightly-reports")
    refused = admin_client.post(
        "/admin/billing/budget/add/",
        {
            "team": Team.objects.get(slug="acme").pk,
            "workload": theirs.pk,
            "period": "day",
            "limit_usd": "10",
            "hard": "on",
            "alert_threshold": "0.8",
            "created_at_0": "2026-12-02",
            "created_at_1": "10:00:00",
        },
    )
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["workload"] == [
        "The workload belongs to another team."
    ]
