"""Money moves from DecimalField to MoneyField: exact integer picodollars (billing/fields.py).

SQLite stored the old decimals as binary floats, so there is nothing exact to
convert; the money tables were only ever filled by the demo before this change.
The migration refuses to run over existing money rows rather than guess, and
restores the append-only triggers, which SQLite drops when it rebuilds a table.
"""

from decimal import Decimal

import django.core.validators
from django.db import migrations, models

import billing.fields
from billing.migrations import _append_only

MONEY_MODELS = ["Budget", "BudgetPeriod", "Hold", "LedgerEntry"]


def refuse_existing_money(apps, schema_editor):
    filled = [name for name in MONEY_MODELS if apps.get_model("billing", name).objects.exists()]
    if filled:
        raise RuntimeError(
            f"billing tables {', '.join(filled)} hold amounts in the old float-prone format, which "
            "this release cannot convert exactly. This only happens to a pre-release database: "
            "recreate it (make clean, or drop it) and run migrate again."
        )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_sweeper_schedule"),
    ]

    operations = [
        migrations.RunPython(refuse_existing_money, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="budget",
            name="limit_usd",
            field=billing.fields.MoneyField(
                decimal_places=12,
                max_digits=24,
                validators=[
                    django.core.validators.MaxValueValidator(
                        Decimal("1000000"), "A budget limit is at most $%(limit_value)s."
                    )
                ],
            ),
        ),
        migrations.AlterField(
            model_name="budgetperiod",
            name="limit_usd",
            field=billing.fields.MoneyField(decimal_places=12, max_digits=24),
        ),
        migrations.AlterField(
            model_name="budgetperiod",
            name="reserved_usd",
            field=billing.fields.MoneyField(decimal_places=12, default=0, max_digits=24),
        ),
        migrations.AlterField(
            model_name="budgetperiod",
            name="spent_usd",
            field=billing.fields.MoneyField(decimal_places=12, default=0, max_digits=24),
        ),
        migrations.AlterField(
            model_name="hold",
            name="amount_usd",
            field=billing.fields.MoneyField(decimal_places=12, max_digits=24),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="cost_usd",
            field=billing.fields.MoneyField(decimal_places=12, max_digits=24),
        ),
        migrations.AlterField(
            model_name="ledgerentry",
            name="counterfactual_cost_usd",
            field=billing.fields.MoneyField(decimal_places=12, max_digits=24),
        ),
        migrations.AlterField(
            model_name="price",
            name="cache_write_per_mtok",
            field=models.DecimalField(decimal_places=10, max_digits=15),
        ),
        migrations.AlterField(
            model_name="price",
            name="cached_input_per_mtok",
            field=models.DecimalField(decimal_places=10, help_text="Cache reads.", max_digits=15),
        ),
        migrations.AlterField(
            model_name="price",
            name="input_per_mtok",
            field=models.DecimalField(decimal_places=10, max_digits=15),
        ),
        migrations.AlterField(
            model_name="price",
            name="output_per_mtok",
            field=models.DecimalField(decimal_places=10, max_digits=15),
        ),
        migrations.AlterField(
            model_name="price",
            name="reasoning_per_mtok",
            field=models.DecimalField(blank=True, decimal_places=10, max_digits=15, null=True),
        ),
        migrations.RunPython(_append_only.forward_sqlite, migrations.RunPython.noop),
    ]
