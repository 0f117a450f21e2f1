from __future__ import annotations

from django.core.management.base import BaseCommand
from django.utils.dateparse import parse_datetime

from billing.price_sources import SOURCE
from billing.services import prices_sync


class Command(BaseCommand):
    help = "Fill the price table from the genai-prices package (offline, idempotent)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--effective-from",
            help="ISO 8601 time new versions take effect (default: now), e.g. to price history.",
        )

    def handle(self, *args, **options):
        at = None
        if options["effective_from"]:
            at = parse_datetime(options["effective_from"])
            if at is None or at.tzinfo is None:
                self.stderr.write("--effective-from must be an ISO 8601 time with a zone")
                raise SystemExit(2)
        report = prices_sync(at=at)
        for price in report.created:
            derived = " (derived: batch = 50% of standard)" if price.derived else ""
            self.stdout.write(f"new {price.processing} price for {price.model}{derived}")
        for model, reason in report.skipped.items():
            self.stdout.write(self.style.WARNING(f"skipped {model}: {reason}"))
        self.stdout.write(
            f"{SOURCE}: {len(report.created)} new version(s), {report.unchanged} unchanged, "
            f"{len(report.skipped)} model(s) without a published price."
        )
