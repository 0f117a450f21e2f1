"""Ledger entries are append-only, enforced by the database itself.

The ORM is not the only writer a database ever has (a shell, a script, a
migration); these triggers refuse UPDATE and DELETE on ledger rows whoever
sends them. A correction is a reversing entry.
"""

from django.db import migrations

from billing.migrations import _append_only


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]

    operations = [migrations.RunPython(_append_only.forward, _append_only.backward)]
