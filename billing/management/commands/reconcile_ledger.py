from __future__ import annotations

from django.core.management.base import BaseCommand

from billing.selectors import ledger_drift


class Command(BaseCommand):
    help = "Check every budget counter against the ledger and open holds; exit 1 on any drift."

    def handle(self, *args, **options):
        drifts = ledger_drift()
        for d in drifts:
            self.stdout.write(
                f"DRIFT {d.period.budget} period {d.period.starts_at:%Y-%m-%d}: {d.field} "
                f"counter {d.counter} != derived {d.derived} (off by {d.counter - d.derived})"
            )
        if drifts:
            self.stderr.write(f"{len(drifts)} counter(s) drifted from the ledger.")
            raise SystemExit(1)
        self.stdout.write("No drift: every budget counter equals its ledger entries and holds.")
