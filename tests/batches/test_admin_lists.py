"""The admin's batch-job and ledger lists: a job's status says how its items ended, the ledger's
tokens are one compact column, money and dates are short and never in exponent form. How the
lists fit a 1400 px screen is checked in a browser (tests/live/test_admin_browser.py)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from django.urls import reverse

from batches.admin import job_outcome
from batches.models import BatchJob
from billing.admin import token_parts, usd_cell, when_cell
from billing.models import LedgerEntry
from billing.pricing import Usage
from billing.services import ledger_record_usage, ledger_reverse
from routing.models import LlmModel, Team, Workload


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        (dict(status="completed", item_count=3, errored_count=3), "completed · 3 errored"),
        (
            dict(status="completed", item_count=3, succeeded_count=1, errored_count=2),
            "completed · 1 succeeded, 2 errored",
        ),
        (
            dict(status="completed", item_count=3, succeeded_count=2, unfinished_count=1),
            "completed · 2 succeeded, 1 not run",
        ),
        (
            dict(status="cancelled", item_count=10, succeeded_count=3, unfinished_count=7),
            "cancelled · 3 succeeded, 7 cancelled",
        ),
        (
            dict(status="expired", item_count=6, succeeded_count=3, unfinished_count=3),
            "expired · 3 succeeded, 3 expired",
        ),
        (dict(status="failed", item_count=5, errored_count=5), "failed · 5 errored"),
        (dict(status="completed", item_count=0), "completed · no items"),
        (
            dict(status="completed", item_count=12_345, succeeded_count=12_345),
            "completed · 12,345 succeeded",
        ),
        (
            dict(status="running", item_count=100, provider_completed=40),
            "running · 40/100 answered",
        ),
        (
            dict(status="running", item_count=100, provider_completed=37, provider_failed=3),
            "running · 40/100 answered, 3 errored",
        ),
        (
            dict(status="ingesting", item_count=100, provider_completed=100),
            "ingesting · 100/100 answered",
        ),
        (dict(status="pending", item_count=1), "pending · 1 item"),
        (dict(status="submitting", item_count=2_000), "submitting · 2,000 items"),
    ],
)
def test_a_jobs_outcome_says_how_its_items_ended(fields, expected):
    assert job_outcome(BatchJob(**fields)) == expected


def test_a_job_whose_cancel_is_not_yet_confirmed_reads_as_cancelling():
    job = BatchJob(
        status="running",
        item_count=100,
        provider_completed=40,
        cancel_requested_at=datetime(2026, 3, 1, tzinfo=UTC),
    )

    assert job_outcome(job) == "cancelling · 40/100 answered"


def test_token_parts_name_cached_and_cache_write_input_only_when_there_is_some():
    plain_entry = LedgerEntry(input_tokens=1234, output_tokens=56)
    cached = LedgerEntry(
        input_tokens=1_234_567, cached_input_tokens=98_765, cache_write_tokens=4_321,
        output_tokens=654_321, reasoning_tokens=12_345,
    )  # fmt: skip

    assert token_parts(plain_entry) == ["1,234 in", "56 out"]
    assert token_parts(cached) == [
        "1,234,567 in", "98,765 cached", "4,321 cache write", "654,321 out",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("amount", "shown", "exact"),
    [
        (Decimal("0E-12"), "$0.00", "0.000000000000"),
        (Decimal("0.000029250000"), "$0.00002925", "0.000029250000"),
        (Decimal("0.000000120000"), "$0.0000001200", "0.000000120000"),
        (Decimal("-67.815000000000"), "-$67.82", "-67.815000000000"),
        (Decimal("1234.5"), "$1,234.50", "1234.5"),
    ],
)
def test_money_cells_are_short_with_the_exact_amount_on_hover_never_in_exponent_form(
    amount, shown, exact
):
    cell = usd_cell(amount)

    assert cell == f'<span title="{exact} USD">{shown}</span>'
    assert "E" not in cell
    assert usd_cell(None) == "—"


def test_dates_are_short_this_year_and_name_the_year_before():
    now = datetime(2026, 12, 2, 15, 0, tzinfo=UTC)

    this_year = when_cell(datetime(2026, 3, 9, 14, 3, 7, tzinfo=UTC), now)
    last_year = when_cell(datetime(2025, 12, 31, 23, 59, tzinfo=UTC), now)

    assert this_year == '<span title="2026-03-09 14:03:07 UTC">9 Mar 14:03</span>'
    assert last_year == '<span title="2025-12-31 23:59:00 UTC">31 Dec 2025</span>'
    assert when_cell(None) == "—"


@pytest.mark.django_db
def test_the_job_list_shows_outcomes_and_keeps_its_actions(admin_client, demo):
    acme = Team.objects.get(slug="acme")
    mini = LlmModel.objects.get(model_id="gpt-4o-mini")
    errored = BatchJob.objects.create(
        team=acme, provider=mini.provider, model=mini, lane="scheduled", reason="size",
        status="completed", item_count=3, errored_count=3,
    )  # fmt: skip

    listing = admin_client.get(reverse("admin:batches_batchjob_changelist"))

    assert listing.status_code == 200
    page = listing.content.decode()
    assert 'completed · <span class="nowrap">3 errored</span>' in page
    assert "3/3" not in page
    assert "llmops/admin-lists.css" in page
    actions = [name for name, _ in listing.context["action_form"].fields["action"].choices]
    assert {"cancel", "recover", "retry_failed"} <= set(actions)
    change = admin_client.get(reverse("admin:batches_batchjob_change", args=[errored.pk]))
    assert change.status_code == 200
    assert [name for name, _ in change.context["adminform"].fieldsets] == [
        None, "Items", "Provider", "Timings", "Cancellation and errors", "Cost",
    ]  # fmt: skip


@pytest.mark.django_db
def test_the_ledger_list_shows_tokens_in_one_column_and_both_costs(admin_client, demo):
    acme = Team.objects.get(slug="acme")
    charge, _ = ledger_record_usage(
        key="admin-list-charge",
        team=acme,
        model=LlmModel.objects.get(model_id="gpt-4o-mini"),
        mode="batch",
        usage=Usage(input_tokens=1234, cached_input_tokens=1000, output_tokens=56),
        workload=Workload.objects.get(team=acme, slug="review-moderation"),
    )
    reversal, _ = ledger_reverse(entry=charge, reason="test")
    charge.refresh_from_db()  # the amounts as stored (12 places), as the list reads them
    reversal.refresh_from_db()

    listing = admin_client.get(reverse("admin:billing_ledgerentry_changelist"))

    assert listing.status_code == 200
    page = listing.content.decode()
    assert (
        '<span class="nowrap">1,234 in</span> · <span class="nowrap">1,000 cached</span> · '
        '<span class="nowrap">56 out</span>'
    ) in page
    assert "batch · reversal" in page
    for amount in (charge.cost_usd, charge.counterfactual_cost_usd, reversal.cost_usd):
        assert f'title="{amount:f} USD"' in page
    assert "E-" not in page
    assert listing.context["totals"]["cost_usd"] == 0
