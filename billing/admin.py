from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from billing import selectors
from billing.models import Budget, LedgerEntry, Price
from billing.pricing import plain
from billing.templatetags.money import format_usd
from llmops.admin import ReadOnlyAdmin, team_choices
from routing.models import Workload

# Admin change lists narrow enough for 1400 px beside both sidebars (nowrap, money right).
LIST_CSS = {"all": ["llmops/admin-lists.css"]}


def usd_cell(amount: Decimal | None) -> str:
    """Money for a list cell: short (four significant digits under $1), the exact amount on
    hover; never in exponent form."""
    if amount is None:
        return "—"
    return format_html('<span title="{} USD">{}</span>', plain(amount), format_usd(amount))


def when_cell(moment: datetime | None, now: datetime | None = None) -> str:
    """A timestamp for a list cell: '2 Dec 14:03' this year, '2 Dec 2025' before; the full
    time with its zone on hover."""
    if moment is None:
        return "—"
    local, today = timezone.localtime(moment), timezone.localtime(now or timezone.now())
    short = (
        f"{local.day} {local:%b %H:%M}"
        if local.year == today.year
        else f"{local.day} {local:%b %Y}"
    )
    return format_html('<span title="{}">{}</span>', f"{local:%Y-%m-%d %H:%M:%S %Z}", short)


def token_parts(entry: LedgerEntry) -> list[str]:
    """['1,234 in', '56 out'], with cached and cache-write input named only when there is
    some (reasoning is inside 'out')."""
    parts = [f"{entry.input_tokens:,} in"]
    if entry.cached_input_tokens:
        parts.append(f"{entry.cached_input_tokens:,} cached")
    if entry.cache_write_tokens:
        parts.append(f"{entry.cache_write_tokens:,} cache write")
    parts.append(f"{entry.output_tokens:,} out")
    return parts


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

    # Seven columns: at 1400 px the table gets about 750 px between the sidebars. Kind shows
    # only when an entry is not a charge; the token counts are one column.
    list_display = ["when", "entry", "spender", "model_short", "tokens", "cost", "counterfactual"]
    list_filter = ["kind", "mode", "team", "model", ("occurred_at", admin.DateFieldListFilter)]
    search_fields = ["idempotency_key", "workload__slug", "request__id"]
    list_select_related = ["team", "workload", "model"]
    date_hierarchy = "occurred_at"
    change_list_template = "admin/billing/ledgerentry/change_list.html"

    class Media:
        css = LIST_CSS

    @admin.display(description="when", ordering="occurred_at")
    def when(self, entry: LedgerEntry) -> str:
        return when_cell(entry.occurred_at)

    @admin.display(description="mode", ordering="mode")
    def entry(self, entry: LedgerEntry) -> str:
        # Nearly every entry is a charge: name the kind only when it is not.
        if entry.kind == LedgerEntry.Kind.CHARGE:
            return entry.mode
        return f"{entry.mode} · {entry.kind}"

    @admin.display(description="workload · team", ordering="workload__slug")
    def spender(self, entry: LedgerEntry) -> str:
        if entry.workload is None:
            return format_html('<span class="quiet">{}</span>', entry.team.slug)
        return format_html(
            '{}<br><span class="quiet">{}</span>', entry.workload.slug, entry.team.slug
        )

    @admin.display(description="model", ordering="model__model_id")
    def model_short(self, entry: LedgerEntry) -> str:
        return entry.model.model_id

    @admin.display(description="tokens")
    def tokens(self, entry: LedgerEntry) -> str:
        # '1,234 in · 56 out'; a narrow cell wraps between the parts, not inside one.
        parts = ((part,) for part in token_parts(entry))
        return format_html_join(" · ", '<span class="nowrap">{}</span>', parts)

    @admin.display(description="cost", ordering="cost_usd")
    def cost(self, entry: LedgerEntry) -> str:
        return usd_cell(entry.cost_usd)

    @admin.display(description="all realtime", ordering="counterfactual_cost_usd")
    def counterfactual(self, entry: LedgerEntry) -> str:
        return usd_cell(entry.counterfactual_cost_usd)

    def changelist_view(self, request, extra_context=None):
        response = super().changelist_view(request, extra_context)
        changelist = getattr(response, "context_data", {}).get("cl")
        if changelist is not None:
            response.context_data["totals"] = selectors.ledger_totals(changelist.queryset)
        return response


class BudgetForm(forms.ModelForm):
    class Meta:
        model = Budget
        fields = "__all__"  # noqa: DJ007 - what the admin's default form showed

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        team_choices(self, "workload", Workload, team_id=self.instance.team_id)

    def clean(self):
        cleaned = super().clean()
        team, workload = cleaned.get("team"), cleaned.get("workload")
        if team and workload and workload.team_id != team.pk:
            self.add_error("workload", "The workload belongs to another team.")
        return cleaned


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = [
        "__str__", "team", "workload", "period", "limit_usd", "hard", "spent", "reserved",
        "utilisation",
    ]  # fmt: skip
    list_filter = ["team", "period", "hard"]
    search_fields = ["team__slug", "workload__slug"]
    list_select_related = ["team", "workload"]
    form = BudgetForm

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
