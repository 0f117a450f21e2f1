from __future__ import annotations

from django.apps import AppConfig


class BillingConfig(AppConfig):
    """Prices, the append-only ledger, budgets and their holds, and the savings reports."""

    name = "billing"

    def ready(self) -> None:
        from billing.models import Budget, Price
        from llmops import memo

        # Prices and budgets are memoized per process (llmops.memo): drop them on every change.
        memo.watch(Price, Budget)
