"""Money API: budgets, the pricing estimate, the ledger. Amounts are USD decimal strings."""

from __future__ import annotations

from decimal import Decimal

from django.http import StreamingHttpResponse
from django.utils import timezone
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema, extend_schema_serializer, inline_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import queries, reports, selectors, services
from billing.fields import MAX_USD
from billing.models import Budget, LedgerEntry
from billing.pricing import MAX_TOKENS_PER_RECORD, PricingError, Usage, plain
from routing import selectors as routing_selectors
from routing.auth import IsTeamAdmin
from routing.models import Mode


def money(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(max_digits=24, decimal_places=12, **kwargs)


def positive_usd(value) -> None:
    if value <= 0:
        raise serializers.ValidationError("Must be a positive amount of US dollars.")
    if value > MAX_USD:
        raise serializers.ValidationError(f"Must be at most {MAX_USD} US dollars.")


def share_above_zero(value) -> None:
    if value <= 0:
        raise serializers.ValidationError("Must be a share of the limit above 0.")


def tokens(**kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(min_value=0, max_value=MAX_TOKENS_PER_RECORD, **kwargs)


# --- budgets --------------------------------------------------------------------------


@extend_schema_serializer(component_name="Budget")
class BudgetOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField(source="budget.pk")
    team = serializers.CharField(source="budget.team.slug")
    scope = serializers.SerializerMethodField()
    workload = serializers.CharField(source="budget.workload.slug", allow_null=True)
    period = serializers.CharField(source="budget.period")
    limit_usd = money(source="budget.limit_usd")
    hard = serializers.BooleanField(source="budget.hard")
    alert_threshold = serializers.DecimalField(
        max_digits=4, decimal_places=3, source="budget.alert_threshold"
    )
    period_starts_at = serializers.DateTimeField(source="starts_at")
    period_ends_at = serializers.DateTimeField(source="ends_at")
    spent_usd = money()
    reserved_usd = money()
    remaining_usd = money()
    utilisation = serializers.DecimalField(max_digits=12, decimal_places=4)
    alerting = serializers.BooleanField(help_text="Utilisation is at or past alert_threshold.")

    def get_scope(self, obj) -> str:
        return "workload" if obj.budget.workload_id else "team"


def budget_output(budget: Budget) -> dict:
    return BudgetOutputSerializer(selectors.budget_status(budget, timezone.now())).data


class BudgetListApi(APIView):
    permission_classes = [*APIView.permission_classes, IsTeamAdmin]

    @extend_schema_serializer(component_name="BudgetCreate")
    class InputSerializer(serializers.Serializer):
        team = serializers.SlugField(
            required=False, help_text="Only for sessions in several teams."
        )
        scope = serializers.ChoiceField(choices=["team", "workload"])
        workload = serializers.SlugField(required=False)
        period = serializers.ChoiceField(choices=Budget.Period.choices)
        limit_usd = money(validators=[positive_usd])
        hard = serializers.BooleanField(default=True)
        alert_threshold = serializers.DecimalField(
            max_digits=4,
            decimal_places=3,
            max_value=1,
            default=Decimal("0.8"),
            validators=[share_above_zero],
        )

        def validate(self, data):
            if data["scope"] == "workload" and not data.get("workload"):
                raise serializers.ValidationError(
                    {"workload": ["Required when scope is workload."]}
                )
            if data["scope"] == "team" and data.get("workload"):
                raise serializers.ValidationError({"workload": ["Only with scope workload."]})
            return data

    @extend_schema(responses=BudgetOutputSerializer(many=True), summary="Budgets of your team")
    def get(self, request):
        budgets = Budget.objects.filter(
            team__in=routing_selectors.teams_for(request.user)
        ).select_related("team", "workload")
        return Response([budget_output(b) for b in budgets])

    @extend_schema(request=InputSerializer, responses={201: BudgetOutputSerializer})
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        data = data.validated_data
        try:
            team = routing_selectors.team_for_write(user=request.user, team_slug=data.get("team"))
        except LookupError as exc:
            raise ValidationError({"team": [str(exc)]}) from None
        workload = None
        if data.get("workload"):
            workload = team.workloads.filter(slug=data["workload"]).first()
            if workload is None:
                raise ValidationError(
                    {"workload": [f"team {team} has no workload {data['workload']!r}"]}
                )
        try:
            budget = services.budget_create(
                team=team,
                workload=workload,
                period=data["period"],
                limit_usd=data["limit_usd"],
                hard=data["hard"],
                alert_threshold=data["alert_threshold"],
            )
        except ValueError as exc:
            raise ValidationError({"period": [str(exc)]}) from None
        return Response(budget_output(budget), status=status.HTTP_201_CREATED)


class BudgetDetailApi(APIView):
    permission_classes = [*APIView.permission_classes, IsTeamAdmin]

    @extend_schema_serializer(component_name="BudgetUpdate")
    class UpdateSerializer(serializers.Serializer):
        limit_usd = money(required=False, validators=[positive_usd])
        hard = serializers.BooleanField(required=False)
        alert_threshold = serializers.DecimalField(
            max_digits=4,
            decimal_places=3,
            max_value=1,
            required=False,
            validators=[share_above_zero],
        )

        def validate(self, data):
            fixed = {"scope", "workload", "period", "team"} & set(self.initial_data)
            if fixed:
                raise serializers.ValidationError(
                    {name: "Cannot be changed; create another budget." for name in sorted(fixed)}
                )
            return data

    def get_budget(self, request, pk: int) -> Budget:
        return generics.get_object_or_404(
            Budget.objects.select_related("team", "workload"),
            pk=pk,
            team__in=routing_selectors.teams_for(request.user),
        )

    @extend_schema(responses=BudgetOutputSerializer)
    def get(self, request, pk: int):
        return Response(budget_output(self.get_budget(request, pk)))

    @extend_schema(request=UpdateSerializer, responses=BudgetOutputSerializer)
    def patch(self, request, pk: int):
        budget = self.get_budget(request, pk)
        data = self.UpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.budget_update(budget=budget, **data.validated_data)
        return Response(budget_output(budget))


# --- pricing ----------------------------------------------------------------------------


class PricingEstimateApi(APIView):
    @extend_schema_serializer(component_name="PricingEstimateRequest")
    class InputSerializer(serializers.Serializer):
        model = serializers.CharField(max_length=200)
        provider = serializers.SlugField(
            required=False, help_text="When two providers serve the model."
        )
        mode = serializers.ChoiceField(choices=Mode.choices, default=Mode.REALTIME)
        input_tokens = tokens(help_text="All prompt tokens, cached ones included.")
        cached_input_tokens = tokens(default=0, help_text="Prompt tokens read from cache.")
        cache_write_tokens = tokens(default=0, help_text="Prompt tokens written to cache.")
        output_tokens = tokens(default=0)
        reasoning_tokens = tokens(default=0, help_text="Part of output_tokens.")

        def validate(self, data):
            if data["cached_input_tokens"] + data["cache_write_tokens"] > data["input_tokens"]:
                raise serializers.ValidationError(
                    {
                        "cached_input_tokens": "Cached and cache-write tokens are part of "
                        "input_tokens."
                    }
                )
            if data["reasoning_tokens"] > data["output_tokens"]:
                raise serializers.ValidationError(
                    {"reasoning_tokens": "Reasoning tokens are part of output_tokens."}
                )
            return data

    @extend_schema_serializer(component_name="PricingEstimate")
    class OutputSerializer(serializers.Serializer):
        model = serializers.CharField()
        mode = serializers.CharField()
        cost_usd = money()
        counterfactual_cost_usd = money()
        saved_usd = money()
        price_version = serializers.IntegerField(allow_null=True)
        counterfactual_price_version = serializers.IntegerField()
        derived_price = serializers.BooleanField()
        breakdown = serializers.DictField(child=money())

    @extend_schema(
        request=InputSerializer,
        responses=OutputSerializer,
        summary="What a usage would cost, and what it would cost served realtime at standard price",
    )
    def post(self, request):
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        data = data.validated_data
        model = queries.enabled_model(data)
        usage = Usage(
            input_tokens=data["input_tokens"]
            - data["cached_input_tokens"]
            - data["cache_write_tokens"],
            cached_input_tokens=data["cached_input_tokens"],
            cache_write_tokens=data["cache_write_tokens"],
            output_tokens=data["output_tokens"],
            reasoning_tokens=data["reasoning_tokens"],
        )
        try:
            cost, counterfactual = services.pricing_estimate(
                model=model, usage=usage, mode=data["mode"]
            )
        except PricingError as exc:
            raise ValidationError({"model": [str(exc)]}) from None
        return Response(
            self.OutputSerializer(
                {
                    "model": data["model"],
                    "mode": data["mode"],
                    "cost_usd": cost.total,
                    "counterfactual_cost_usd": counterfactual.total,
                    "saved_usd": counterfactual.total - cost.total,
                    "price_version": cost.version.id if cost.version else None,
                    "counterfactual_price_version": counterfactual.version.id,
                    "derived_price": bool(cost.version and cost.version.derived),
                    "breakdown": cost.breakdown,
                }
            ).data
        )


# --- ledger -----------------------------------------------------------------------------


@extend_schema_serializer(component_name="LedgerEntry")
class LedgerEntryOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    occurred_at = serializers.DateTimeField()
    kind = serializers.CharField()
    mode = serializers.CharField()
    team = serializers.CharField(source="team.slug")
    workload = serializers.CharField(source="workload.slug", allow_null=True)
    request = serializers.UUIDField(source="request_id", allow_null=True)
    provider = serializers.CharField(source="model.provider.slug")
    model = serializers.CharField(source="model.model_id")
    input_tokens = serializers.IntegerField()
    cached_input_tokens = serializers.IntegerField()
    cache_write_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    reasoning_tokens = serializers.IntegerField()
    price_version = serializers.IntegerField(source="price_id", allow_null=True)
    cost_usd = money()
    counterfactual_cost_usd = money()
    standard_cost_usd = money(help_text="The same usage on this model at its standard price.")
    batch_cost_usd = money(allow_null=True, help_text="The same usage at its batch price.")
    flex_cost_usd = money(
        allow_null=True,
        help_text="The same usage at its flex price (OpenAI's flex tier); null without one.",
    )
    reverses = serializers.IntegerField(source="reverses_id", allow_null=True)
    note = serializers.CharField()


class LedgerListApi(generics.ListAPIView):
    serializer_class = LedgerEntryOutputSerializer

    class FilterSerializer(serializers.Serializer):
        workload = serializers.SlugField(required=False)
        model = serializers.CharField(required=False)
        mode = serializers.ChoiceField(choices=Mode.choices, required=False)
        kind = serializers.ChoiceField(choices=LedgerEntry.Kind.choices, required=False)
        since = serializers.DateTimeField(required=False)
        until = serializers.DateTimeField(required=False, help_text="Exclusive.")
        request = serializers.UUIDField(required=False)

    def get_queryset(self):
        filters = self.FilterSerializer(data=self.request.query_params)
        filters.is_valid(raise_exception=True)
        f = filters.validated_data
        entries = LedgerEntry.objects.filter(
            team__in=routing_selectors.teams_for(self.request.user)
        ).select_related("team", "workload", "model__provider")
        lookups = {
            "workload": "workload__slug",
            "model": "model__model_id",
            "mode": "mode",
            "kind": "kind",
            "since": "occurred_at__gte",
            "until": "occurred_at__lt",
            "request": "request_id",
        }
        return entries.filter(**{lookups[k]: v for k, v in f.items()}).order_by(
            "-occurred_at", "-id"
        )

    @extend_schema(
        parameters=[FilterSerializer], summary="Ledger entries, with totals for the filter"
    )
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        totals = selectors.ledger_totals(self.get_queryset())
        response.data["totals"] = {
            k: (plain(v) if k.endswith("_usd") else v) for k, v in totals.items()
        }
        return response


# --- reports ----------------------------------------------------------------------------
# The JSON behind the billing pages (billing/views.py renders the same selectors).


@extend_schema_serializer(component_name="ReportRange")
class ScopeOutputSerializer(serializers.Serializer):
    since = serializers.DateField()
    until = serializers.DateField()
    days = serializers.IntegerField()
    preset = serializers.CharField(
        allow_null=True, help_text="The named range these days are; null for a custom range."
    )
    team = serializers.CharField(source="team.slug", allow_null=True, default=None)
    workload = serializers.CharField(source="workload.slug", allow_null=True, default=None)
    model = serializers.CharField()
    mode = serializers.CharField()


@extend_schema_serializer(component_name="Savings")
class SavingsOutputSerializer(serializers.Serializer):
    label = serializers.CharField(help_text="Workload slug, or the period's first day.")
    team = serializers.CharField()
    entries = serializers.IntegerField()
    cost_usd = money()
    counterfactual_cost_usd = money(help_text="Everything realtime at the standard price.")
    saved_usd = money()
    saved_share = serializers.DecimalField(max_digits=8, decimal_places=4, allow_null=True)
    saved_by_batch_usd = money()
    saved_by_flex_usd = money(help_text="Served now at the flex price instead of the standard.")
    saved_by_cache_usd = money()
    saved_by_tiering_usd = money(help_text="Model choice: tier downgrades and fallbacks.")
    missed_savings_usd = money(help_text="Deferrable traffic served now at full price.")


@extend_schema_serializer(component_name="Spend")
class SpendOutputSerializer(serializers.Serializer):
    name = serializers.CharField()
    cost_usd = money()
    counterfactual_cost_usd = money()
    saved_usd = money()


@extend_schema_serializer(component_name="CacheRate")
class CacheRateOutputSerializer(serializers.Serializer):
    team = serializers.CharField()
    workload = serializers.CharField()
    lookups = serializers.IntegerField(help_text="Requests that consulted the cache.")
    hits = serializers.IntegerField(help_text="Requests the cache answered.")
    hit_rate = serializers.DecimalField(max_digits=8, decimal_places=4, allow_null=True)


@extend_schema_serializer(component_name="BudgetLine")
class BudgetLineOutputSerializer(BudgetOutputSerializer):
    projected_usd = money(
        allow_null=True, help_text="Spend at the period's end at this period's pace so far."
    )
    projected_over = serializers.BooleanField()


class ReportOverviewApi(APIView):
    @extend_schema_serializer(component_name="ReportOverview")
    class OutputSerializer(serializers.Serializer):
        range = ScopeOutputSerializer()
        totals = SavingsOutputSerializer()
        by_team = SpendOutputSerializer(many=True)
        by_workload = SpendOutputSerializer(many=True)
        by_model = SpendOutputSerializer(many=True)
        by_mode = SpendOutputSerializer(many=True)
        daily = inline_serializer(
            "DailySpend",
            fields={
                "day": serializers.DateField(),
                "cost_usd": money(),
                "by_mode": serializers.DictField(child=money()),
            },
            many=True,
        )
        budgets = BudgetLineOutputSerializer(many=True)
        cache = CacheRateOutputSerializer(
            many=True, help_text="Response cache hit rate of each workload that consulted it."
        )

    @extend_schema(
        parameters=[queries.ReportFilterSerializer],
        responses=OutputSerializer,
        summary="Spend by team, workload, model and mode; daily spend; budgets; savings",
    )
    def get(self, request):
        scope = queries.report_scope(request.query_params, request.user)
        return Response(self.OutputSerializer(reports.overview(scope, timezone.now())).data)


class ReportLedgerApi(generics.ListAPIView):
    serializer_class = LedgerEntryOutputSerializer

    def get_queryset(self):
        self.scope = queries.report_scope(self.request.query_params, self.request.user)
        return reports.ledger_page_entries(self.scope)

    @extend_schema(
        parameters=[queries.ReportFilterSerializer],
        summary="Ledger entries of a report's filter, totals",
    )
    def get(self, request, *args, **kwargs):
        response = super().get(request, *args, **kwargs)
        totals = selectors.ledger_totals(reports.entries_for(self.scope))
        response.data["totals"] = {
            k: (plain(v) if k.endswith("_usd") else v) for k, v in totals.items()
        }
        response.data["range"] = ScopeOutputSerializer(self.scope).data
        return response


class ReportLedgerCsvApi(APIView):
    @extend_schema(
        parameters=[queries.ReportFilterSerializer],
        responses={(200, "text/csv"): OpenApiTypes.STR},
        summary="The filtered ledger as CSV, streamed (any size, flat memory)",
    )
    def get(self, request):
        scope = queries.report_scope(request.query_params, request.user)
        response = StreamingHttpResponse(
            reports.ledger_csv_stream(scope), content_type="text/csv; charset=utf-8"
        )
        name = f"ledger-{scope.since}-{scope.until}.csv"
        response["Content-Disposition"] = f'attachment; filename="{name}"'
        return response


class ReportSavingsApi(APIView):
    class FilterSerializer(queries.ReportFilterSerializer):
        granularity = serializers.ChoiceField(choices=list(reports.GRANULARITIES), default="month")

    @extend_schema_serializer(component_name="ReportSavings")
    class OutputSerializer(serializers.Serializer):
        range = ScopeOutputSerializer()
        granularity = serializers.CharField()
        totals = SavingsOutputSerializer()
        by_workload = SavingsOutputSerializer(many=True)
        by_period = SavingsOutputSerializer(many=True)

    @extend_schema(
        parameters=[FilterSerializer],
        responses=OutputSerializer,
        summary="Actual against counterfactual, split into batch, flex, cache and tiering; missed",
    )
    def get(self, request):
        granularity = queries.savings_granularity(request.query_params)
        scope = queries.report_scope(request.query_params, request.user)
        return Response(self.OutputSerializer(reports.savings(scope, granularity)).data)


@extend_schema_serializer(component_name="AuditRecommendation")
class RecommendationOutputSerializer(serializers.Serializer):
    action = serializers.CharField()
    label = serializers.CharField()
    text = serializers.CharField()
    value_per_month_usd = money()
    eligible = serializers.IntegerField(help_text="Requests in the range it applies to.")
    eligible_per_month = serializers.IntegerField()
    cost_per_request_usd = money(allow_null=True, help_text="What one of them cost.")
    then_per_request_usd = money(allow_null=True, help_text="What it would have cost.")


@extend_schema_serializer(component_name="AuditRow")
class AuditRowOutputSerializer(serializers.Serializer):
    team = serializers.CharField(source="workload.team.slug")
    workload = serializers.CharField(source="workload.slug")
    latency_class = serializers.CharField(source="workload.latency_class")
    deadline_seconds = serializers.SerializerMethodField()
    allow_batch = serializers.BooleanField(source="workload.policy.allow_batch")
    allow_flex = serializers.BooleanField(source="workload.policy.allow_flex")
    cache_enabled = serializers.BooleanField(source="workload.policy.cache_enabled")
    requests = serializers.IntegerField()
    by_mode = serializers.DictField(child=serializers.IntegerField())
    requests_by_hour = serializers.ListField(
        source="hours", child=serializers.IntegerField(), help_text="24 UTC hours."
    )
    night_share = serializers.FloatField(allow_null=True, help_text="22:00-06:00 UTC.")
    read_count = serializers.IntegerField()
    read_p50_seconds = serializers.FloatField(source="read_p50_s", allow_null=True)
    read_p90_seconds = serializers.FloatField(source="read_p90_s", allow_null=True)
    streams = serializers.IntegerField()
    streams_read_to_end = serializers.IntegerField()
    stream_consumed_share = serializers.FloatField(
        allow_null=True, help_text="Share of streamed output tokens in answers read to the end."
    )
    served_now = serializers.IntegerField()
    stream_cost_per_request_usd = money(allow_null=True)
    batch_cost_per_request_usd = money(allow_null=True)
    missed = serializers.IntegerField()
    missed_usd = money()
    batched = serializers.IntegerField()
    saved_by_batch_usd = money()
    flexed = serializers.IntegerField(help_text="Served at flex.")
    saved_by_flex_usd = money()
    flex_missed = serializers.IntegerField(
        help_text="Deferrable, due in 2 min or more, served now at full price on a model with "
        "a flex price."
    )
    flex_value_per_month_usd = money(help_text="What flex would have saved on them, a month.")
    cache_ttl_seconds = serializers.SerializerMethodField()
    fingerprinted = serializers.IntegerField(help_text="Completed requests with a fingerprint.")
    repeats = serializers.IntegerField(
        help_text="Of those, asking what was asked at most cache_ttl_seconds before."
    )
    repeat_share = serializers.FloatField(allow_null=True)
    cache_value_per_month_usd = money(help_text="What they cost, a month: a hit costs nothing.")
    cache_lookups = serializers.IntegerField(help_text="Requests that consulted the cache.")
    cache_hits = serializers.IntegerField()
    cache_hit_rate = serializers.FloatField(allow_null=True)
    recommendations = RecommendationOutputSerializer(
        many=True, help_text="Every one that applies, the most valuable first."
    )
    action = serializers.CharField(help_text="The most valuable recommendation's, or keep.")
    recommendation = serializers.CharField()
    eligible = serializers.IntegerField(help_text="Requests in the range the action applies to.")
    eligible_per_month = serializers.IntegerField()
    value_per_month_usd = money()

    def get_deadline_seconds(self, row) -> int | None:
        deadline = row.workload.deadline
        return None if deadline is None else int(deadline.total_seconds())

    def get_cache_ttl_seconds(self, row) -> int:
        return int(row.cache_ttl.total_seconds())


class ReportAuditApi(APIView):
    class FilterSerializer(queries.ReportFilterSerializer):
        cache_ttl = serializers.CharField(
            required=False,
            help_text=f"Count a repeat within this window: {queries.CACHE_TTL_HELP} "
            "(default: each workload's policy's cache TTL).",
        )

    @extend_schema(
        parameters=[FilterSerializer],
        responses=AuditRowOutputSerializer(many=True),
        summary="Each workload's latency class against observed use, with recommendations",
    )
    def get(self, request):
        cache_ttl = queries.audit_cache_ttl(request.query_params)
        scope = queries.report_scope(
            request.query_params, request.user, fields=("team", "workload")
        )
        rows = reports.workload_audit(scope, cache_ttl=cache_ttl)
        return Response(AuditRowOutputSerializer(rows, many=True).data)


class ReportBudgetsApi(APIView):
    @extend_schema(
        parameters=[queries.ReportFilterSerializer],
        responses=BudgetLineOutputSerializer(many=True),
        summary="Each budget's period: limit, spent, reserved, remaining and projection",
    )
    def get(self, request):
        scope = queries.report_scope(request.query_params, request.user, fields=("team",))
        lines = reports.budget_lines(scope.teams, timezone.now())
        return Response(BudgetLineOutputSerializer(lines, many=True).data)


@extend_schema_serializer(component_name="Calculation")
class CalculationOutputSerializer(serializers.Serializer):
    model = serializers.CharField(source="model.model_id")
    provider = serializers.CharField(source="model.provider.slug")
    monthly_requests = serializers.IntegerField()
    input_tokens = serializers.IntegerField()
    output_tokens = serializers.IntegerField()
    batch_share = serializers.DecimalField(max_digits=7, decimal_places=6)
    cache_hit_rate = serializers.DecimalField(max_digits=7, decimal_places=6)
    standard_per_request_usd = money()
    batch_per_request_usd = money()
    all_realtime_usd = money()
    all_batch_usd = money()
    hybrid_usd = money()
    delta_usd = money(help_text="All realtime minus hybrid: what the hybrid saves a month.")
    all_batch_delta_usd = money()
    standard_price_version = serializers.IntegerField(source="standard_price_id", allow_null=True)
    batch_price_version = serializers.IntegerField(source="batch_price_id", allow_null=True)
    flex_per_request_usd = money(allow_null=True, help_text="Null: the model has no flex price.")
    all_flex_usd = money(allow_null=True, help_text="Everything served now at the flex price.")
    all_flex_delta_usd = money(allow_null=True)
    flex_price_version = serializers.IntegerField(source="flex_price_id", allow_null=True)


class ReportCalculatorApi(APIView):
    @extend_schema(
        request=queries.CalculatorInputSerializer,
        responses=CalculationOutputSerializer,
        summary="Monthly cost all realtime, all batch and hybrid, from the ledger's price table",
    )
    def post(self, request):
        data = queries.calculator_input(request.data)
        return Response(CalculationOutputSerializer(queries.calculation(data)).data)
