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

from billing import charts, queries, reports, selectors
from billing.pricing import plain
from billing.templatetags.money import format_usd
from routing.models import Mode
from routing.selectors import model_list, readable_teams

LEDGER_PER_PAGE = 50
SAVINGS_FIELDS = ("team", "workload", "model")
PERCENT_FIELDS = ("batch_share", "cache_hit_rate")
# The calculator page's input labels; its percentages are the API's shares times 100.
CALCULATOR_LABELS = {
    **queries.CALCULATOR_LABELS,
    **{name: f"{queries.CALCULATOR_LABELS[name]} (%)" for name in PERCENT_FIELDS},
}
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


def _range_links(params) -> list[tuple[str, str, str]]:
    """(name, label, href) of each named range, keeping the page's other filters."""
    keep = {
        k: v for k, v in params.items() if k not in ("since", "until", "range", "page") and v != ""
    }
    return [
        (name, label, "?" + urlencode({**keep, "range": name}))
        for name, label in reports.RANGE_PRESETS.items()
    ]


def _page(
    request,
    template: str,
    context: dict,
    *,
    fields=("team", "workload", "model", "mode"),
    ranged: bool = True,
):
    """Render a report page: its filter bar (with the caller's teams, workloads and models),
    the range in force with the named ranges one click away (`ranged`), and either the report
    or, for a bad filter, what is wrong (400)."""
    teams = readable_teams(request.user).order_by("slug")
    base = {
        "fields": fields,
        "ranged": ranged,
        # A lone team needs no picker; a form with nothing to pick is left out.
        "filterable": ranged or bool(set(fields) - {"team"}) or len(teams) > 1,
        "ranges": _range_links(request.GET) if ranged else [],
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
        scope = queries.report_scope(request.GET, request.user, fields=fields)
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
        return {**body, "chart": charts.stacked_days(days, money_label=format_usd)}

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
        granularity = queries.savings_granularity(request.GET)
        return {
            **reports.savings(scope, granularity),
            "granularities": list(reports.GRANULARITIES),
        }

    return _page(request, "billing/savings.html", {"build": build}, fields=SAVINGS_FIELDS)


@login_required
def audit(request):
    def build(scope):
        cache_ttl = queries.audit_cache_ttl(request.GET)
        rows = reports.workload_audit(scope, cache_ttl=cache_ttl)
        return {
            "rows": [(row, charts.hour_bars(row.hours)) for row in rows],
            "total_value": sum((r.value_per_month_usd for r in rows), Decimal(0)),
            "cache_ttl": cache_ttl,
            "cache_ttl_help": queries.CACHE_TTL_HELP,
        }

    return _page(request, "billing/audit.html", {"build": build}, fields=("team", "workload"))


@login_required
def budgets(request):
    def build(scope):
        return {"lines": reports.budget_lines(scope.teams, timezone.now())}

    return _page(request, "billing/budgets.html", {"build": build}, fields=("team",), ranged=False)


@login_required
def calculator(request):
    """GET with the form's values; percentages on the page, shares (0 to 1) in the API. Every
    error is shown at once, by the label its input has on the page."""
    values = {**CALCULATOR_DEFAULTS, **{k: v for k, v in request.GET.items() if v != ""}}
    models = list(model_list())
    values.setdefault("model", models[0].model_id if models else "")
    raw = dict(values)
    errors: dict[str, list[str]] = {}
    for name in PERCENT_FIELDS:
        share = _share(values[name])
        if share is None:
            errors[name] = [f"{CALCULATOR_LABELS[name]}: must be a percentage from 0 to 100."]
            raw[name] = "0"  # reported above; let the other fields be checked too
        else:
            raw[name] = plain(share)
    result = None
    try:
        data = queries.calculator_input(raw, CALCULATOR_LABELS)
        if not errors:
            result = queries.calculation(data, CALCULATOR_LABELS)
    except ValidationError as exc:
        errors = {**exc.detail, **errors}
    context = {
        "values": values,
        "models": models,
        "labels": CALCULATOR_LABELS,
        "result": result,
        "invalid": set(errors),
        "errors": [m for name in _in_form_order(errors) for m in errors[name]],
    }
    return render(request, "billing/calculator.html", context, status=400 if errors else 200)


def _share(percent: str) -> Decimal | None:
    """A percentage from the form as a share from 0 to 1 (to the API's 6 places), or None."""
    try:
        value = Decimal(percent)
    except ArithmeticError:
        return None
    if not value.is_finite() or not 0 <= value <= 100:
        return None
    return (value / 100).quantize(Decimal("0.000001"))


def _in_form_order(errors: dict) -> list[str]:
    order = list(CALCULATOR_LABELS)
    return sorted(errors, key=lambda name: order.index(name) if name in order else len(order))
