from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import Count
from django.utils.html import format_html

from batches import services as batches_services
from billing.admin import LIST_CSS, when_cell
from llmops.admin import ReadOnlyAdmin, team_choices
from routing import circuit, selectors
from routing.keys import api_key_create, api_key_revoke
from routing.models import (
    ApiKey,
    LlmModel,
    PolicyModel,
    Provider,
    Request,
    RequestAttempt,
    RoutingPolicy,
    StoredResponse,
    Team,
    Workload,
)


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["slug", "name", "member_count", "created_at"]
    search_fields = ["slug", "name"]
    prepopulated_fields = {"slug": ["name"]}
    filter_horizontal = ["members"]

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(_members=Count("members", distinct=True))

    @admin.display(description="members", ordering="_members")
    def member_count(self, obj: Team) -> int:
        return obj._members


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["team", "name", "role", "default_workload"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # ApiKey.clean refuses another team's workload.
        team_choices(self, "default_workload", Workload, team_id=self.instance.team_id)


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    form = ApiKeyForm
    list_display = [
        "name",
        "team",
        "role",
        "prefix_display",
        "is_active",
        "last_used_at",
        "created_at",
    ]
    list_filter = ["team", "role", ("revoked_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "prefix", "team__slug"]
    list_select_related = ["team"]
    readonly_fields = ["prefix", "created_by", "created_at", "last_used_at", "revoked_at"]
    actions = ["revoke"]

    def get_fields(self, request, obj=None):
        if obj is None:
            return ["team", "name", "role"]
        return [
            "team",
            "name",
            "role",
            "default_workload",
            "prefix",
            "created_by",
            "created_at",
            "last_used_at",
            "revoked_at",
        ]

    def get_readonly_fields(self, request, obj=None):
        # A key's team is part of its identity: moving it would hand one team's
        # traffic history to another.
        return [*self.readonly_fields, "team"] if obj else self.readonly_fields

    @admin.display(description="prefix")
    def prefix_display(self, obj: ApiKey) -> str:
        return f"{obj.prefix}…"

    @admin.display(boolean=True, description="active")
    def is_active(self, obj: ApiKey) -> bool:
        return obj.is_active

    def save_model(self, request, obj, form, change):
        if change:
            super().save_model(request, obj, form, change)
            return
        key, raw = api_key_create(
            team=obj.team, name=obj.name, role=obj.role, created_by=request.user
        )
        obj.pk = key.pk
        obj.prefix, obj.key_hash, obj.created_at = key.prefix, key.key_hash, key.created_at
        # Shown exactly once; only the hash is stored. Messages live in the
        # server-side session (MESSAGE_STORAGE), not in a cookie.
        messages.warning(
            request,
            format_html(
                "Copy the new API key now, it will not be shown again: <code>{}</code>", raw
            ),
        )

    @admin.action(description="Revoke selected API keys")
    def revoke(self, request, queryset):
        revoked = 0
        for key in queryset:
            if api_key_revoke(key=key):
                # Actions write no admin log entry by themselves; a revocation must leave one.
                self.log_change(request, key, "Revoked (admin action).")
                revoked += 1
        self.message_user(request, f"Revoked {revoked} key(s).", messages.SUCCESS)


class ProviderForm(forms.ModelForm):
    new_api_key = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Stored encrypted and never shown again. Leave blank to keep the current key.",
    )
    clear_api_key = forms.BooleanField(required=False, help_text="Remove the stored key.")
    new_azure_client_secret = forms.CharField(
        label="New Entra client secret",
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Azure OpenAI with Entra ID: the service principal's secret. Stored "
        "encrypted, never shown again; blank keeps the current one.",
    )

    class Meta:
        model = Provider
        fields = [
            "slug",
            "name",
            "kind",
            "base_url",
            "azure_tenant_id",
            "azure_client_id",
            "azure_authority",
            "supports_batch",
            "batch_max_requests",
            "batch_max_bytes",
            "expected_batch_turnaround",
            "supports_flex",
            "expected_flex_latency",
            "enabled",
        ]

    def clean(self):
        data = super().clean()
        provider = self.instance
        has_key = bool(data.get("new_api_key")) or (
            provider.has_api_key and not data.get("clear_api_key")
        )
        entra = bool(data.get("azure_tenant_id"))
        has_secret = bool(data.get("new_azure_client_secret")) or provider.has_azure_client_secret
        if data.get("kind") == Provider.Kind.AZURE_OPENAI and not has_key and not entra:
            # Without either, every call would be a 401: say so now, not at the first request.
            self.add_error(
                "new_api_key",
                "An Azure OpenAI provider needs its resource's key, or Entra ID credentials "
                "(tenant id, client id and secret).",
            )
        if entra and not has_secret:
            self.add_error("new_azure_client_secret", "Entra ID needs the client secret.")
        return data

    def save(self, commit=True):
        provider = super().save(commit=False)
        if self.cleaned_data.get("clear_api_key"):
            provider.set_api_key("")
        elif self.cleaned_data.get("new_api_key"):
            provider.set_api_key(self.cleaned_data["new_api_key"])
        if self.cleaned_data.get("new_azure_client_secret"):
            provider.set_azure_client_secret(self.cleaned_data["new_azure_client_secret"])
        elif not self.cleaned_data.get("azure_tenant_id"):
            provider.set_azure_client_secret("")
        if commit:
            provider.save()
        return provider


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = [
        "slug",
        "name",
        "kind",
        "base_url",
        "api_key_set",
        "supports_batch",
        "circuit_state",
        "enabled",
    ]
    list_filter = ["kind", "enabled", "supports_batch"]
    search_fields = ["slug", "name", "base_url"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["api_key_status", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["slug", "name", "kind", "base_url", "enabled"]}),
        ("Credentials", {"fields": ["api_key_status", "new_api_key", "clear_api_key"]}),
        (
            "Azure OpenAI: Entra ID instead of a key",
            {
                "classes": ["collapse"],
                "fields": [
                    "azure_tenant_id",
                    "azure_client_id",
                    "new_azure_client_secret",
                    "azure_authority",
                ],
            },
        ),
        (
            "Batches",
            {
                "fields": [
                    "supports_batch",
                    "batch_max_requests",
                    "batch_max_bytes",
                    "expected_batch_turnaround",
                ]
            },
        ),
        ("Flex processing", {"fields": ["supports_flex", "expected_flex_latency"]}),
        ("Health", {"fields": ["circuit_status"]}),
        ("History", {"fields": ["created_at", "updated_at"]}),
    ]
    actions = ["close_circuit"]

    def get_readonly_fields(self, request, obj=None):
        return [*self.readonly_fields, "circuit_status"]

    @admin.display(description="circuit")
    def circuit_state(self, obj: Provider) -> str:
        return circuit.circuit(obj.slug).state

    @admin.display(description="circuit breaker")
    def circuit_status(self, obj: Provider) -> str:
        if obj.pk is None:
            return "—"
        state = circuit.circuit(obj.slug)
        text = f"{state.state}, {state.consecutive_failures} consecutive failure(s)"
        if state.retry_at:
            text += f", probe after {state.retry_at:%Y-%m-%d %H:%M:%S} UTC"
        if state.last_error:
            text += f"; last error: {state.last_error}"
        return text

    @admin.action(description="Close the circuit breaker of selected providers")
    def close_circuit(self, request, queryset):
        for provider in queryset:
            circuit.reset(provider.slug)
            self.log_change(request, provider, "Circuit breaker closed (admin action).")
        self.message_user(request, f"Closed {queryset.count()} circuit(s).", messages.SUCCESS)

    @admin.display(boolean=True, description="credentials")
    def api_key_set(self, obj: Provider) -> bool:
        # An Azure resource reached with Entra ID has no key and needs none.
        return obj.has_api_key or obj.uses_entra

    @admin.display(description="stored API key")
    def api_key_status(self, obj: Provider) -> str:
        if obj.has_api_key:
            return "set (encrypted)"
        return "not set (Entra ID is used)" if obj.uses_entra else "not set"


@admin.register(LlmModel)
class LlmModelAdmin(admin.ModelAdmin):
    list_display = [
        "model_id",
        "provider",
        "deployment",
        "kind",
        "tier",
        "context_window",
        "max_output_tokens",
        "enabled",
    ]
    list_filter = ["kind", "tier", "enabled", "provider"]
    search_fields = ["model_id", "deployment", "provider__slug"]
    list_select_related = ["provider"]
    list_editable = ["enabled"]


class PolicyModelFormSet(forms.BaseInlineFormSet):
    def clean(self):
        super().clean()
        kinds = {
            form.cleaned_data["model"].kind
            for form in self.forms
            if form.cleaned_data.get("model") and not form.cleaned_data.get("DELETE")
        }
        if len(kinds) > 1:
            # A chain answers one surface: a fallback from an embedding model to a chat model
            # (or back) would answer with something else than was asked.
            raise forms.ValidationError(
                "A model chain is all chat models or all embedding models, not both."
            )


class PolicyModelInline(admin.TabularInline):
    model = PolicyModel
    formset = PolicyModelFormSet
    extra = 1
    autocomplete_fields = ["model"]
    ordering = ["position"]


@admin.register(RoutingPolicy)
class RoutingPolicyAdmin(admin.ModelAdmin):
    list_display = [
        "name",
        "team",
        "tier",
        "allow_batch",
        "allow_flex",
        "max_batch_wait_seconds",
        "chain_display",
    ]
    list_filter = ["team", "tier", "allow_batch", "allow_flex", "cache_enabled"]
    search_fields = ["name", "team__slug"]
    list_select_related = ["team"]
    inlines = [PolicyModelInline]
    fieldsets = [
        (None, {"fields": ["team", "name", "tier", "fallback_across_tiers"]}),
        ("Models clients may name", {"fields": ["model_aliases", "allow_any_model"]}),
        (
            "Deferral to provider batches",
            {
                "fields": [
                    "allow_batch",
                    "max_batch_wait_seconds",
                    "deadline_margin",
                    "on_deadline_risk",
                ]
            },
        ),
        ("Flex processing (OpenAI)", {"fields": ["allow_flex", "on_flex_unavailable"]}),
        ("Response cache", {"fields": ["cache_enabled", "cache_ttl", "cache_key"]}),
        ("Budgets", {"fields": ["soft_breach_action"]}),
    ]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("links__model")

    @admin.display(description="model chain")
    def chain_display(self, obj: RoutingPolicy) -> str:
        return " → ".join(link.model.model_id for link in obj.links.all()) or "—"


class WorkloadForm(forms.ModelForm):
    new_webhook_secret = forms.CharField(
        required=False,
        strip=True,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="Signs batch webhooks; stored encrypted, never shown again. Blank keeps it.",
    )

    class Meta:
        model = Workload
        fields = [
            "team",
            "slug",
            "description",
            "latency_class",
            "deadline",
            "policy",
            "batch_webhook_url",
            "enabled",
        ]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # Workload.clean refuses another team's policy on the add form.
        team_choices(self, "policy", RoutingPolicy, team_id=self.instance.team_id)

    def clean(self):
        cleaned = super().clean()
        has_secret = bool(
            cleaned.get("new_webhook_secret")
            or (self.instance and self.instance.batch_webhook_secret_encrypted)
        )
        if cleaned.get("batch_webhook_url") and not has_secret:
            self.add_error("new_webhook_secret", "A webhook needs a signing secret.")
        return cleaned

    def save(self, commit=True):
        workload = super().save(commit=False)
        if self.cleaned_data.get("new_webhook_secret"):
            workload.set_webhook_secret(self.cleaned_data["new_webhook_secret"])
        if commit:
            workload.save()
        return workload


@admin.register(Workload)
class WorkloadAdmin(admin.ModelAdmin):
    form = WorkloadForm
    list_display = [
        "slug",
        "team",
        "latency_class",
        "deadline",
        "policy",
        "requests_30d",
        "cache_hit_rate",
        "enabled",
    ]
    list_filter = ["team", "latency_class", "enabled"]
    search_fields = ["slug", "description", "team__slug"]
    list_select_related = ["team", "policy"]
    actions = ["flush_batches"]

    def get_readonly_fields(self, request, obj=None):
        # A workload's team is part of its identity: its requests, ledger entries, budgets and
        # the keys defaulting to it are that team's. Fixed, it also fixes the policy choices.
        return [*self.readonly_fields, "team"] if obj else self.readonly_fields

    def get_queryset(self, request):
        return selectors.workloads_with_cache_stats(super().get_queryset(request))

    @admin.action(description="Flush their deferred requests into batch jobs now")
    def flush_batches(self, request, queryset):
        with transaction.atomic():
            report = batches_services.flush_then_enqueue(
                workload_ids=list(queryset.values_list("pk", flat=True)), force=True
            )
            for workload in queryset:
                self.log_change(request, workload, "Deferred requests flushed (admin action).")
        self.message_user(
            request,
            f"Flushed {report.requests} request(s) into {len(report.jobs)} batch job(s)"
            + (f"; {len(report.escalated)} escalated to realtime" if report.escalated else "")
            + ".",
            messages.SUCCESS if report.jobs else messages.INFO,
        )

    @admin.display(description="requests (30 days)", ordering="_served")
    def requests_30d(self, obj: Workload) -> int:
        return obj._served

    @admin.display(description="cache hit rate (30 days)")
    def cache_hit_rate(self, obj: Workload) -> str:
        return f"{obj._hits / obj._lookups:.1%}" if obj._lookups else "—"


class RequestAttemptInline(admin.TabularInline):
    model = RequestAttempt
    extra = 0
    can_delete = False
    fields = [
        "position",
        "model",
        "service_tier",
        "outcome",
        "error_kind",
        "status_code",
        "latency_ms",
        "first_byte_ms",
        "error",
    ]
    readonly_fields = fields

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(Request)
class RequestAdmin(ReadOnlyAdmin):
    """Read-only: requests are written by the API, never by hand."""

    list_display = [
        "id",
        "team",
        "workload",
        "status",
        "mode",
        "model",
        "missed_saving",
        "created_at",
        "completed_at",
    ]
    list_filter = [
        "status",
        "mode",
        "source",
        "missed_saving",
        "team",
        ("created_at", admin.DateFieldListFilter),
    ]
    search_fields = ["id", "workload__slug", "idempotency_key"]
    list_select_related = ["team", "workload", "model__provider"]
    date_hierarchy = "created_at"
    inlines = [RequestAttemptInline]


@admin.register(StoredResponse)
class StoredResponseAdmin(ReadOnlyAdmin):
    """The Responses API answers clients may name again (`previous_response_id`, GET and
    DELETE /v1/responses/{id}): which request answered each, on which provider, and whether
    the client deleted it."""

    # Narrow enough for 1400 px beside both sidebars: long ids shortened, the whole on hover.
    list_display = ["response", "team", "provider", "answered_by", "continues", "created"]
    list_display += ["deleted"]
    list_filter = ["provider", "team", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["response_id", "request__id"]
    list_select_related = ["team", "request__model", "provider", "previous"]
    date_hierarchy = "created_at"

    class Media:
        css = LIST_CSS

    @admin.display(description="response", ordering="response_id")
    def response(self, row: StoredResponse) -> str:
        return _short_id(row.response_id)

    @admin.display(description="answered by")
    def answered_by(self, row: StoredResponse) -> str:
        request = _short_id(f"req_{row.request_id.hex}")
        return format_html("{} · {}", row.request.model.model_id, request)

    @admin.display(description="continues")
    def continues(self, row: StoredResponse) -> str:
        return _short_id(row.previous.response_id) if row.previous else "—"

    @admin.display(description="created", ordering="created_at")
    def created(self, row: StoredResponse) -> str:
        return when_cell(row.created_at)

    @admin.display(boolean=True, ordering="deleted_at")
    def deleted(self, row: StoredResponse) -> bool:
        return row.deleted_at is not None


def _short_id(value: str) -> str:
    return (
        format_html('<span title="{}">{}…</span>', value, value[:13]) if len(value) > 14 else value
    )
