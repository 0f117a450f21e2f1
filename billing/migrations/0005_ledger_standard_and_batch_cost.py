"""Ledger entries gain standard_cost_usd and batch_cost_usd (see LedgerEntry).

Existing entries are priced once here, from the price versions in force when they
occurred, with the same pure pricing function the ledger uses. That is an UPDATE of
ledger rows, which the append-only triggers exist to refuse: this migration lifts
them for its own backfill only and puts them back (SQLite also drops them whenever
it rebuilds the table, as the NOT NULL change below does).
"""

from decimal import Decimal

from django.db import migrations, models

import billing.fields
from billing.migrations import _append_only


def _version(price):
    # billing.selectors.price_version, on the historical model.
    from billing.pricing import ContextTier as Tier
    from billing.pricing import PriceVersion, Rates

    def rates(r):
        return Rates(
            input=Decimal(r["input"]),
            cached_input=Decimal(r["cached_input"]),
            cache_write=Decimal(r["cache_write"]),
            output=Decimal(r["output"]),
            reasoning=Decimal(r["reasoning"]) if r.get("reasoning") else None,
        )

    return PriceVersion(
        id=price.pk,
        model=str(price.model_id),
        processing=price.processing,
        effective_from=price.effective_from,
        rates=Rates(
            input=price.input_per_mtok,
            cached_input=price.cached_input_per_mtok,
            cache_write=price.cache_write_per_mtok,
            output=price.output_per_mtok,
            reasoning=price.reasoning_per_mtok,
        ),
        tiers=tuple(Tier(int(t["above_input_tokens"]), rates(t)) for t in price.tiers),
    )


def backfill(apps, schema_editor):
    from billing.pricing import Usage, price_usage

    LedgerEntry = apps.get_model("billing", "LedgerEntry")
    Price = apps.get_model("billing", "Price")
    if not LedgerEntry.objects.exists():
        return

    def cost(entry, processing):
        price = (
            Price.objects.filter(
                model_id=entry.model_id,
                processing=processing,
                effective_from__lte=entry.occurred_at,
            )
            .order_by("-effective_from")
            .first()
        )
        if price is None:
            return None
        usage = Usage(
            input_tokens=entry.input_tokens,
            cached_input_tokens=entry.cached_input_tokens,
            cache_write_tokens=entry.cache_write_tokens,
            output_tokens=entry.output_tokens,
            reasoning_tokens=entry.reasoning_tokens,
        )
        return price_usage(usage, _version(price)).total

    _append_only.backward(apps, schema_editor)
    originals = {}
    for entry in LedgerEntry.objects.exclude(kind="reversal").iterator():
        standard = cost(entry, "standard")
        if standard is None:  # no standard price then: the counterfactual is the best we know
            standard = entry.counterfactual_cost_usd
        batch = entry.cost_usd if entry.mode == "batch" else cost(entry, "batch")
        originals[entry.pk] = (standard, batch)
        LedgerEntry.objects.filter(pk=entry.pk).update(
            standard_cost_usd=standard, batch_cost_usd=batch
        )
    for entry in LedgerEntry.objects.filter(kind="reversal").iterator():
        standard, batch = originals[entry.reverses_id]
        LedgerEntry.objects.filter(pk=entry.pk).update(
            standard_cost_usd=-standard, batch_cost_usd=None if batch is None else -batch
        )
    _append_only.forward(apps, schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0004_money_in_picodollars"),
        ("routing", "0005_workload_batch_webhook"),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name="ledgerentry",
            name="ledger_only_reversals_are_negative",
        ),
        # Nullable first: SQLite adds such a column in place, keeping the triggers.
        migrations.AddField(
            model_name="ledgerentry",
            name="batch_cost_usd",
            field=billing.fields.MoneyField(
                blank=True, decimal_places=12, max_digits=24, null=True
            ),
        ),
        migrations.AddField(
            model_name="ledgerentry",
            name="standard_cost_usd",
            field=billing.fields.MoneyField(decimal_places=12, max_digits=24, null=True),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="ledgerentry",
            name="standard_cost_usd",
            field=billing.fields.MoneyField(decimal_places=12, max_digits=24),
        ),
        migrations.AddConstraint(
            model_name="ledgerentry",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    ("kind", "reversal"),
                    models.Q(
                        ("cache_write_tokens__gte", 0),
                        ("cached_input_tokens__gte", 0),
                        ("cost_usd__gte", 0),
                        ("counterfactual_cost_usd__gte", 0),
                        ("input_tokens__gte", 0),
                        ("output_tokens__gte", 0),
                        ("reasoning_tokens__gte", 0),
                        ("standard_cost_usd__gte", 0),
                    ),
                    _connector="OR",
                ),
                name="ledger_only_reversals_are_negative",
            ),
        ),
        migrations.RunPython(_append_only.forward_sqlite, migrations.RunPython.noop),
    ]
