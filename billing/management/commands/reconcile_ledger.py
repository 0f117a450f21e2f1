from __future__ import annotations

from django.core.management.base import BaseCommand

from billing.pricing import plain
from billing.selectors import ledger_drift, unheld_charges


class Command(BaseCommand):
    help = (
        "Check every budget counter against the ledger and open holds, and that every charge "
        "settled a hold; exit 1 on any drift."
    )

    def handle(self, *args, **options):
        drifts = ledger_drift()
        for d in drifts:
            self.stdout.write(
                f"DRIFT {d.period.budget} period {d.period.starts_at:%Y-%m-%d}: {d.field} "
                f"counter ${plain(d.counter)} != derived ${plain(d.derived)} "
                f"(off by ${plain(d.counter - d.derived)})"
            )
        # A charge with no hold behind it was never reserved: a hard budget could have been
        # passed by it (a provider answering after its request's hold went back).
        unheld = unheld_charges()
        for request in unheld[:50]:
            self.stdout.write(
                f"UNHELD request {request.pk}: {request.charges} charge(s), "
                f"{request.settled} settled hold(s)"
            )
        if drifts or unheld:
            self.stderr.write(
                f"{len(drifts)} counter(s) drifted from the ledger; {len(unheld)} request(s) "
                "billed without a hold."
            )
            raise SystemExit(1)
        self.stdout.write(
            "No drift: every budget counter equals its ledger entries and holds, and every "
            "charge settled a hold."
        )
