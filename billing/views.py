"""Billing pages for signed-in people: the same selectors as /api/v1/reports/, rendered on the
server (charts are SVG drawn here; nothing is fetched from a CDN)."""

from __future__ import annotations

from decimal import Decimal
from urllib.parse import urlencode

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.shortcuts import render
from django.utils import timezone
from rest_framework.exceptions import ValidationError

from billing import apis, charts, reports, selectors
from billing.models import Mode
from billing.templatetags.money import usd
from routing.selectors import model_list, readable_teams

LEDGER_PER_PAGE = 50
SAVINGS_FIELDS = ("team", "workload", "model")
PERCENT_FIELDS = ("batch_share", "cache_hit_rate")
CALCULATOR_DEFAULTS = {
    "monthly_requests": "100000",
    "input_tokens": "1000",
    "output_tokens": "300",
    "batch_share": "60",
    "cache_hit_rate": "10",
}


def _errors(exc: ValidationError) -> list[str]:
    """A ValidationError's detail as sentences naming the field."""
    detail = exc.detail if isinstance(exc.detail, dict) else {"filter": exc.detail}
    return [
        f"{name}: {message}"
        for name, messages in detail.items()
        for message in (messages if isinstance(messages, list) else [messages])
    ]


def _page(request, template: str, context: dict, *, fields=("team", "workload", "model", "mode")):
    """Render a report page: its filter bar (with the caller's teams, workloads and models)
    and either the report or, for a bad filter, what is wrong (400)."""
    teams = readable_teams(request.user).order_by("slug")
    base = {
        "fields": fields,
        "teams": teams,
        "workloads": sorted(
            {w for t in teams.prefetch_related("workloads") for w in t.workloads.all()},
            key=lambda w: (w.team.slug, w.slug),
        ),
        "models": sorted({m.model_id for m in model_list()}),
        "modes": Mode.values,
        "values": request.GET,
    }
    build = context.pop("build")
    try:
        scope = apis.report_scope(request.GET, request.user, fields=fields)
        body = build(scope)
    except ValidationError as exc:
        return render(request, template, {**base, "errors": _errors(exc)}, status=400)
    query = urlencode(scope.query())
    return render(request, template, {**base, **context, **body, "scope": scope, "query": query})


@login_required
def overview(request):
    def build(scope):
        body = reports.overview(scope, timezone.now())
        days = [(d["day"], d["by_mode"]) for d in body["daily"]]
        return {**body, "chart": charts.stacked_days(days, money_label=usd)}

    return _page(request, "billing/overview.html", {"build": build})


@login_required
def ledger(request):
    def build(scope):
        entries = reports.ledger_page_entries(scope)
        return {
            "page": Paginator(entries, LEDGER_PER_PAGE).get_page(request.GET.get("page")),
            "totals": selectors.ledger_totals(reports.entries_for(scope)),
        }

    return _page(request, "billing/ledger.html", {"build": build})


@login_required
def savings(request):
    def build(scope):
        granularity = apis.savings_granularity(request.GET)
        return {
            **reports.savings(scope, granularity),
            "granularities": list(reports.GRANULARITIES),
        }

    return _page(request, "billing/savings.html", {"build": build}, fields=SAVINGS_FIELDS)


@login_required
def audit(request):
    def build(scope):
        rows = reports.workload_audit(scope)
        return {
            "rows": [(row, charts.hour_bars(row.hours)) for row in rows],
            "total_value": sum((r.value_per_month_usd for r in rows), Decimal(0)),
        }

    return _page(request, "billing/audit.html", {"build": build}, fields=("team", "workload"))


@login_required
def budgets(request):
    def build(scope):
        return {"lines": reports.budget_lines(scope.teams, timezone.now())}

    return _page(request, "billing/budgets.html", {"build": build}, fields=("team",))


@login_required
def calculator(request):
    """GET with the form's values; percentages on the page, shares (0 to 1) in the API."""
    values = {**CALCULATOR_DEFAULTS, **{k: v for k, v in request.GET.items() if v != ""}}
    models = list(model_list())
    values.setdefault("model", models[0].model_id if models else "")
    context = {"values": values, "models": models, "result": None}
    raw = dict(values)
    errors = []
    for name in PERCENT_FIELDS:
        try:
            percent = Decimal(values[name])
        except ArithmeticError:
            percent = None
        if percent is None or not percent.is_finite() or not 0 <= percent <= 100:
            errors.append(f"{name}: must be a percentage from 0 to 100.")
        else:
            raw[name] = str(percent / 100)
    data = apis.CalculatorInputSerializer(data=raw)
    if not errors:
        try:
            data.is_valid(raise_exception=True)
            context["result"] = apis.calculation(data.validated_data)
        except ValidationError as exc:
            errors = _errors(exc)
    context["errors"] = errors
    status = 400 if errors else 200
    return render(request, "billing/calculator.html", context, status=status)
