"""Money API: budgets, the pricing estimate, the ledger. Amounts are USD decimal strings."""

from __future__ import annotations

from decimal import Decimal

from django.utils import timezone
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from billing import selectors, services
from billing.fields import MAX_USD
from billing.models import Budget, LedgerEntry, Mode
from billing.pricing import MAX_TOKENS_PER_RECORD, PricingError, Usage
from routing import selectors as routing_selectors
from routing.auth import IsTeamAdmin


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
        models = routing_selectors.model_list().filter(model_id=data["model"])
        if data.get("provider"):
            models = models.filter(provider__slug=data["provider"])
        models = list(models[:2])
        if not models:
            raise ValidationError({"model": [f"no enabled model {data['model']!r}"]})
        if len(models) > 1:
            raise ValidationError({"provider": ["Several providers serve this model; name one."]})
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
                model=models[0], usage=usage, mode=data["mode"]
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
            k: (f"{v:.12f}" if k.endswith("_usd") else v) for k, v in totals.items()
        }
        return response
