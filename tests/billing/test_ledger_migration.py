"""billing 0005 prices existing entries once and leaves the ledger append-only."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import DatabaseError, connection, transaction
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("billing", "0004_money_in_picodollars"), ("routing", "0005_workload_batch_webhook")]
AFTER = [("billing", "0005_ledger_standard_and_batch_cost")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.fixture(autouse=True)
def _latest_schema_after():
    """Every app back at its latest migration, whatever the test left: the tests after it
    share this database (an app migrated back and not forward again lacks its new columns)."""
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("ledger_emptied_after")
def test_existing_entries_get_their_standard_and_batch_cost_and_stay_append_only():
    apps = migrate(BEFORE)
    Team = apps.get_model("routing", "Team")
    Provider = apps.get_model("routing", "Provider")
    LlmModel = apps.get_model("routing", "LlmModel")
    Price = apps.get_model("billing", "Price")
    LedgerEntry = apps.get_model("billing", "LedgerEntry")
    at = timezone.now() - timedelta(days=3)
    team = Team.objects.create(slug="t", name="T")
    provider = Provider.objects.create(slug="p", name="P", kind="openai", base_url="http://x/v1")
    model = LlmModel.objects.create(
        provider=provider, model_id="m", tier="economy", context_window=1000, max_output_tokens=100
    )
    rates = {"cached_input_per_mtok": "0.1", "cache_write_per_mtok": "0", "source": "test"}
    standard = Price.objects.create(
        model=model,
        processing="standard",
        effective_from=at - timedelta(days=1),
        input_per_mtok="2",
        output_per_mtok="8",
        **rates,
    )
    batch = Price.objects.create(
        model=model,
        processing="batch",
        effective_from=at - timedelta(days=1),
        input_per_mtok="1",
        output_per_mtok="4",
        **rates,
    )
    common = {"team": team, "model": model, "counterfactual_price": standard, "occurred_at": at}
    # 1000 input + 500 output tokens: $0.006 standard, $0.003 batch.
    tokens = {"input_tokens": 1000, "output_tokens": 500}
    realtime = LedgerEntry.objects.create(
        idempotency_key="a",
        kind="charge",
        mode="realtime",
        price=standard,
        cost_usd=Decimal("0.006"),
        counterfactual_cost_usd=Decimal("0.006"),
        **tokens,
        **common,
    )
    batched = LedgerEntry.objects.create(
        idempotency_key="b",
        kind="charge",
        mode="batch",
        price=batch,
        cost_usd=Decimal("0.003"),
        counterfactual_cost_usd=Decimal("0.006"),
        **tokens,
        **common,
    )
    LedgerEntry.objects.create(
        idempotency_key="reversal:b",
        kind="reversal",
        mode="batch",
        price=batch,
        cost_usd=Decimal("-0.003"),
        counterfactual_cost_usd=Decimal("-0.006"),
        reverses=batched,
        input_tokens=-1000,
        output_tokens=-500,
        **common,
    )

    apps = migrate(AFTER)
    LedgerEntry = apps.get_model("billing", "LedgerEntry")
    got = {
        e.idempotency_key: (e.standard_cost_usd, e.batch_cost_usd)
        for e in LedgerEntry.objects.all()
    }
    assert got == {
        "a": (Decimal("0.006"), Decimal("0.003")),
        "b": (Decimal("0.006"), Decimal("0.003")),
        "reversal:b": (Decimal("-0.006"), Decimal("-0.003")),
    }
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=realtime.pk).update(note="edited")
    with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
        LedgerEntry.objects.filter(pk=realtime.pk).delete()
