"""Ledger entries are append-only, enforced by the database itself.

The ORM is not the only writer a database ever has (a shell, a script, a
migration); these triggers refuse UPDATE and DELETE on ledger rows whoever
sends them. A correction is a reversing entry.
"""

MESSAGE = "ledger entries are append-only: record a reversal instead"

SQLITE = [
    f"""CREATE TRIGGER IF NOT EXISTS billing_ledger_no_update BEFORE UPDATE ON billing_ledgerentry
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS billing_ledger_no_delete BEFORE DELETE ON billing_ledgerentry
        BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END""",
]
SQLITE_REVERSE = [
    "DROP TRIGGER IF EXISTS billing_ledger_no_update",
    "DROP TRIGGER IF EXISTS billing_ledger_no_delete",
]
POSTGRES = [
    f"""CREATE OR REPLACE FUNCTION billing_ledger_append_only() RETURNS trigger AS $$
        BEGIN RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'integrity_constraint_violation'; END;
        $$ LANGUAGE plpgsql""",
    """CREATE TRIGGER billing_ledger_append_only BEFORE UPDATE OR DELETE ON billing_ledgerentry
        FOR EACH ROW EXECUTE FUNCTION billing_ledger_append_only()""",
]
POSTGRES_REVERSE = [
    "DROP TRIGGER IF EXISTS billing_ledger_append_only ON billing_ledgerentry",
    "DROP FUNCTION IF EXISTS billing_ledger_append_only()",
]


def run(statements_by_vendor):
    def apply(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return apply


forward = run({"sqlite": SQLITE, "postgresql": POSTGRES})
backward = run({"sqlite": SQLITE_REVERSE, "postgresql": POSTGRES_REVERSE})
# SQLite drops a table's triggers when a migration rebuilds the table; put them back after.
forward_sqlite = run({"sqlite": SQLITE})
