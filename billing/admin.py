from __future__ import annotations

from django.contrib import admin
from django.utils import timezone

from billing import selectors
from billing.models import Budget, LedgerEntry, Price
from routing.admin import ReadOnlyAdmin


@admin.register(Price)
class PriceAdmin(admin.ModelAdmin):
    """Add-only: a negotiated rate or a correction is a new version; history stays as it was."""

    list_display = [
        "model", "processing", "effective_from", "input_per_mtok", "cached_input_per_mtok",
        "cache_write_per_mtok", "output_per_mtok", "derived", "source",
    ]  # fmt: skip
    list_filter = ["processing", "derived", "source", "model__provider"]
    search_fields = ["model__model_id", "source", "note"]
    list_select_related = ["model__provider"]
    date_hierarchy = "effective_from"
    fields = [
        "model", "processing", "effective_from", "input_per_mtok", "cached_input_per_mtok",
        "cache_write_per_mtok", "output_per_mtok", "reasoning_per_mtok", "tiers", "note",
    ]  # fmt: skip

    def get_changeform_initial_data(self, request):
        return {"effective_from": timezone.now(), "processing": "standard"}

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def save_model(self, request, obj, form, change):
        obj.source = "admin"
        obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """Read-only; the totals under the list are for the current filter."""

    list_display = [
        "occurred_at", "kind", "mode", "team", "workload", "model", "input_tokens",
        "cached_input_tokens", "output_tokens", "cost_usd", "counterfactual_cost_usd",
    ]  # fmt: skip
    list_filter = ["kind", "mode", "team", "model", ("occurred_at", admin.DateFieldListFilter)]
    search_fields = ["idempotency_key", "workload__slug", "request__id"]
    list_select_related = ["team", "workload", "model"]
    date_hierarchy = "occurred_at"
    change_list_template = "admin/billing/ledgerentry/change_list.html"

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            response.context_data["totals"] = selectors.ledger_totals(changelist.queryset)
        return response


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = [
        "__str__", "team", "workload", "period", "limit_usd", "hard", "spent", "reserved",
        "utilisation",
    ]  # fmt: skip
    list_filter = ["team", "period", "hard"]
    search_fields = ["team__slug", "workload__slug"]
    list_select_related = ["team", "workload"]
    autocomplete_fields = ["workload"]

    def _status(self, obj: Budget) -> selectors.BudgetStatus:
        # Cached per row: three columns read it.
        if getattr(obj, "_status", None) is None:
            obj._status = selectors.budget_status(obj, timezone.now())
        return obj._status

    @admin.display(description="spent this period")
    def spent(self, obj: Budget) -> str:
        return f"${self._status(obj).spent_usd:,.4f}"

    @admin.display(description="reserved")
    def reserved(self, obj: Budget) -> str:
        return f"${self._status(obj).reserved_usd:,.4f}"

    @admin.display(description="used")
    def utilisation(self, obj: Budget) -> str:
        return f"{self._status(obj).utilisation:.1%}"
