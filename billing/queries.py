"""Report and calculator questions as people and clients ask them: query parameters and
calculator input, validated into what billing.reports takes. The money API (billing.apis)
and the billing pages (billing.views) both read them here, so a filter means the same on
each and an error names the same field."""

from __future__ import annotations

import re
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone
from django.utils.dateparse import parse_duration
from drf_spectacular.utils import extend_schema_serializer
from rest_framework import serializers
from rest_framework.exceptions import ValidationError

from billing import reports
from billing.pricing import MAX_TOKENS_PER_RECORD, PricingError
from routing import selectors as routing_selectors
from routing.models import LlmModel, Mode


@extend_schema_serializer(component_name="ReportFilter")
class ReportFilterSerializer(serializers.Serializer):
    team = serializers.SlugField(required=False, help_text="Staff and members of several teams.")
    workload = serializers.SlugField(required=False)
    model = serializers.CharField(required=False, max_length=200)
    mode = serializers.ChoiceField(choices=Mode.choices, required=False)
    range = serializers.ChoiceField(
        choices=list(reports.RANGE_PRESETS),
        required=False,
        error_messages={
            "invalid_choice": f'"{{input}}" is not a range: use one of '
            f"{', '.join(reports.RANGE_PRESETS)}."
        },
        help_text=f"A named range of UTC days (default: {reports.DEFAULT_RANGE}); "
        "since and until win over it.",
    )
    since = serializers.DateField(
        required=False,
        help_text=f"UTC day; default: the range's first ({reports.DEFAULT_RANGE_DAYS} days "
        "ending on until).",
    )
    until = serializers.DateField(required=False, help_text="UTC day, inclusive; default: today.")


def report_scope(params, user, *, fields=("team", "workload", "model", "mode")) -> reports.Scope:
    """A report's scope from query parameters (empty ones are absent, as a form sends them).
    Raises ValidationError naming the field."""
    wanted = {*fields, "since", "until", "range"}
    raw = {k: v for k, v in params.items() if k in wanted and v != ""}
    data = ReportFilterSerializer(data=raw)
    data.is_valid(raise_exception=True)
    values = dict(data.validated_data)
    preset = values.pop("range", "")
    try:
        return reports.scope_build(user=user, today=timezone.now().date(), preset=preset, **values)
    except reports.ScopeError as exc:
        raise ValidationError({exc.field: [exc.message]}) from None


# A repeat counts if asked at most this long after: 90s, 30m, 1h, 2d, or whole seconds (3600),
# or a duration as Django reads one (01:00:00, P1D).
CACHE_TTL_UNITS = {"s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400}
CACHE_TTL_RE = re.compile(r"(\d{1,9})\s*(s|m|min|h|d)")
# The longest window the audit looks back for repeats: the range plus this many days is read.
MAX_CACHE_TTL = timedelta(days=30)
CACHE_TTL_HELP = "a duration such as 3600 (seconds), 90s, 30m, 1h or 1d"


def audit_cache_ttl(params) -> timedelta | None:
    """The workload audit's `cache_ttl` (None: each workload's policy's). Raises
    ValidationError naming the field."""
    raw = (params.get("cache_ttl") or "").strip()
    if not raw:
        return None
    if match := CACHE_TTL_RE.fullmatch(raw.lower()):
        ttl = timedelta(seconds=int(match[1]) * CACHE_TTL_UNITS[match[2]])
    else:
        try:
            ttl = parse_duration(raw)
        except (OverflowError, ValueError):  # more days than a timedelta holds
            ttl = None
    if ttl is None:
        raise ValidationError({"cache_ttl": [f"{raw!r} is not {CACHE_TTL_HELP}."]})
    if ttl <= timedelta(0):
        raise ValidationError({"cache_ttl": ["Must be longer than 0 seconds."]})
    if ttl > MAX_CACHE_TTL:
        raise ValidationError({"cache_ttl": [f"Must be at most {MAX_CACHE_TTL.days} days."]})
    return ttl


def savings_granularity(params) -> str:
    value = params.get("granularity") or "month"
    if value not in reports.GRANULARITIES:
        raise ValidationError(
            {"granularity": [f"Must be one of {', '.join(reports.GRANULARITIES)}."]}
        )
    return value


# What the calculator's fields are called where people read its errors (the page says the
# same above its inputs); the API keys its errors by field name, each message led by this.
CALCULATOR_LABELS = {
    "model": "Model",
    "provider": "Provider",
    "monthly_requests": "Requests per month",
    "input_tokens": "Input tokens per request",
    "output_tokens": "Output tokens per request",
    "batch_share": "Batch-eligible share",
    "cache_hit_rate": "Cache hit rate",
}


REQUIRED = {"required": "required.", "null": "required.", "blank": "required."}


WHOLE_NUMBER = "must be a whole number ≥ 0."


SHARE = "must be a share from 0 to 1."


def count(*, max_value: int, **kwargs) -> serializers.IntegerField:
    return serializers.IntegerField(
        min_value=0,
        max_value=max_value,
        error_messages={
            **REQUIRED,
            "invalid": WHOLE_NUMBER,
            "min_value": WHOLE_NUMBER,
            "max_string_length": WHOLE_NUMBER,
            "max_value": "must be at most {max_value:,}.",
        },
        **kwargs,
    )


def share(**kwargs) -> serializers.DecimalField:
    return serializers.DecimalField(
        max_digits=7,
        decimal_places=6,
        min_value=Decimal(0),
        max_value=Decimal(1),
        error_messages={
            **REQUIRED,
            "invalid": SHARE,
            "min_value": SHARE,
            "max_value": SHARE,
            "max_digits": SHARE,
            "max_whole_digits": SHARE,
            "max_string_length": SHARE,
            "max_decimal_places": "must have at most {max_decimal_places} decimal places.",
        },
        **kwargs,
    )


@extend_schema_serializer(component_name="CalculatorRequest")
class CalculatorInputSerializer(serializers.Serializer):
    model = serializers.CharField(
        max_length=200, error_messages={**REQUIRED, "max_length": "no such model."}
    )
    provider = serializers.SlugField(
        required=False,
        help_text="When two providers serve it.",
        error_messages={**REQUIRED, "invalid": "no such provider."},
    )
    monthly_requests = count(max_value=10**10)
    input_tokens = count(max_value=MAX_TOKENS_PER_RECORD, help_text="Prompt tokens per request.")
    output_tokens = count(max_value=MAX_TOKENS_PER_RECORD, help_text="Output tokens per request.")
    batch_share = share(help_text="Share of requests that can wait for a batch, 0 to 1.")
    cache_hit_rate = share(default=Decimal(0), help_text="Share answered from the cache, 0 to 1.")

    def validate_model(self, value: str) -> str:
        # Here rather than after validation, so an unknown model is reported with the rest.
        if not routing_selectors.model_list().filter(model_id=value).exists():
            raise serializers.ValidationError(f"no enabled model {value!r}.")
        return value


def labelled(detail, labels: dict[str, str]) -> dict[str, list[str]]:
    """Field errors with each message led by the field's label ("Requests per month: must be
    a whole number ≥ 0."), keyed by field name as DRF keys them."""
    if not isinstance(detail, dict):
        detail = {"non_field_errors": detail}
    return {
        name: [
            str(message) if name not in labels else f"{labels[name]}: {message}"
            for message in (messages if isinstance(messages, list) else [messages])
        ]
        for name, messages in detail.items()
    }


def calculator_input(data, labels: dict[str, str] = CALCULATOR_LABELS) -> dict:
    """The calculator's validated input; a ValidationError with every field's errors at once,
    labelled for people."""
    serializer = CalculatorInputSerializer(data=data)
    if not serializer.is_valid():
        raise ValidationError(labelled(serializer.errors, labels))
    return serializer.validated_data


def enabled_model(data: dict) -> LlmModel:
    """The enabled model `data["model"]` names (and `data["provider"]`, when two serve it)."""
    models = routing_selectors.model_list().filter(model_id=data["model"])
    if data.get("provider"):
        models = models.filter(provider__slug=data["provider"])
    models = list(models[:2])
    if not models:
        raise ValidationError({"model": [f"no enabled model {data['model']!r}"]})
    if len(models) > 1:
        raise ValidationError({"provider": ["Several providers serve this model; name one."]})
    return models[0]


def calculation(data: dict, labels: dict[str, str] = CALCULATOR_LABELS) -> reports.Calculation:
    """Validated calculator input → the calculation; ValidationError for a model that several
    providers serve or one without prices."""
    try:
        return reports.calculate(
            model=enabled_model(data),
            monthly_requests=data["monthly_requests"],
            input_tokens=data["input_tokens"],
            output_tokens=data["output_tokens"],
            batch_share=data["batch_share"],
            cache_hit_rate=data["cache_hit_rate"],
            at=timezone.now(),
        )
    except ValidationError as exc:
        raise ValidationError(labelled(exc.detail, labels)) from None
    except PricingError as exc:
        raise ValidationError(labelled({"model": [str(exc)]}, labels)) from None
