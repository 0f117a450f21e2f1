"""Reads for money: prices in force, budget state, ledger sums, drift."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from django.db import connection
from django.db.models import Count, F, OuterRef, QuerySet, Subquery, Sum
from django.db.models.functions import Coalesce

from billing.fields import from_units, usd_value
from billing.models import Budget, BudgetPeriod, Hold, LedgerEntry, Price, Processing
from billing.pricing import ContextTier, PriceVersion, PricingError, Rates
from llmops import memo
from routing.config import policy_chain
from routing.models import LlmModel, Mode, Request, Team, Workload

ZERO = Decimal(0)


def price_version(price: Price) -> PriceVersion:
    return PriceVersion(
        id=price.pk,
        model=str(price.model_id),
        processing=price.processing,
        effective_from=price.effective_from,
        rates=Rates(
            input=price.input_per_mtok,
            cached_input=price.cached_input_per_mtok,
            cache_write=price.cache_write_per_mtok,
            output=price.output_per_mtok,
            reasoning=price.reasoning_per_mtok,
        ),
        tiers=tuple(
            ContextTier(
                above_input_tokens=int(t["above_input_tokens"]),
                rates=Rates(
                    input=Decimal(t["input"]),
                    cached_input=Decimal(t["cached_input"]),
                    cache_write=Decimal(t["cache_write"]),
                    output=Decimal(t["output"]),
                    reasoning=Decimal(t["reasoning"]) if t.get("reasoning") else None,
                ),
            )
            for t in price.tiers
        ),
        derived=price.derived,
        source=price.source,
    )


def tier_json(tier: ContextTier) -> dict[str, Any]:
    """A tier as JSON with decimal strings (JSON numbers would come back as floats)."""
    rates = tier.rates
    return {
        "above_input_tokens": tier.above_input_tokens,
        "input": str(rates.input),
        "cached_input": str(rates.cached_input),
        "cache_write": str(rates.cache_write),
        "output": str(rates.output),
        "reasoning": None if rates.reasoning is None else str(rates.reasoning),
    }


def price_in_force(model: LlmModel, processing: str, at: datetime) -> PriceVersion:
    """The version in force at `at`. A model with no price is an error, never $0."""
    if (version := price_or_none(model, processing, at)) is not None:
        return version
    raise PricingError(
        f"no {processing} price for {model} is in force at {at.isoformat()} "
        "(run `python manage.py sync_prices`, or add a price in the admin)"
    )


def price_or_none(model: LlmModel, processing: str, at: datetime) -> PriceVersion | None:
    """The version in force at `at`, None if there is none: most models have no flex price,
    and asking is cheaper than raising (price_in_force is the call that must find one)."""
    return next((v for v in price_versions(model.pk, processing) if v.effective_from <= at), None)


def flex_terms(model: LlmModel, at: datetime) -> tuple[bool, bool]:
    """(the model has a flex price in force, and it is no dearer than its batch price): what
    the router weighs flex by. No batch price: flex is compared with nothing, so no dearer."""
    flex = price_or_none(model, Processing.FLEX, at)
    if flex is None:
        return False, False
    batch = price_or_none(model, Processing.BATCH, at)
    return True, batch is None or all(
        getattr(flex.rates, rate) <= getattr(batch.rates, rate)
        for rate in ("input", "cached_input", "cache_write", "output")
    )


def price_versions(model_id: int, processing: str) -> tuple[PriceVersion, ...]:
    """A model's price versions for `processing`, newest first (memoized: read per request)."""

    def build() -> tuple[PriceVersion, ...]:
        prices = Price.objects.filter(model_id=model_id, processing=processing)
        return tuple(price_version(p) for p in prices.order_by("-effective_from", "-pk"))

    return memo.memoized(("price_versions", model_id, processing), build)


def primary_model(workload: Workload) -> LlmModel | None:
    """The model a workload streams to when nothing else applies: its policy chain's first."""
    chain = policy_chain(workload.policy_id)
    return chain[0] if chain else None


def budgets_touching(*, team: Team, workload: Workload | None) -> list[Budget]:
    """The team's budgets and the workload's, by id (memoized: read per request)."""

    def build() -> tuple[Budget, ...]:
        return tuple(Budget.objects.filter(team_id=team.pk).order_by("pk"))

    workload_id = workload.pk if workload is not None else None
    return [
        budget
        for budget in memo.memoized(("budgets", team.pk), build)
        if budget.workload_id is None or budget.workload_id == workload_id
    ]


def period_bounds(period: str, at: datetime) -> tuple[datetime, datetime]:
    """[start, end) of the UTC day or month containing `at`."""
    at = at.astimezone(UTC)
    if period == Budget.Period.DAY:
        start = at.replace(hour=0, minute=0, second=0, microsecond=0)
        end = datetime.fromordinal(start.toordinal() + 1).replace(tzinfo=UTC)
        return start, end
    start = at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = (
        start.replace(year=start.year + 1, month=1)
        if start.month == 12
        else start.replace(month=start.month + 1)
    )
    return start, end


def entries_in_scope(period: BudgetPeriod) -> QuerySet[LedgerEntry]:
    budget = period.budget
    entries = LedgerEntry.objects.filter(
        team_id=budget.team_id, occurred_at__gte=period.starts_at, occurred_at__lt=period.ends_at
    )
    if budget.workload_id:
        entries = entries.filter(workload_id=budget.workload_id)
    return entries


def period_spent(period: BudgetPeriod) -> Decimal:
    """What the ledger says a budget period has spent (its counter should agree)."""
    return entries_in_scope(period).aggregate(s=Coalesce(Sum("cost_usd"), usd_value(ZERO)))["s"]


@dataclass
class BudgetStatus:
    budget: Budget
    starts_at: datetime
    ends_at: datetime
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal

    @property
    def remaining_usd(self) -> Decimal:
        return max(ZERO, self.limit_usd - self.spent_usd - self.reserved_usd)

    @property
    def utilisation(self) -> Decimal:
        return (self.spent_usd + self.reserved_usd) / self.limit_usd if self.limit_usd else ZERO

    @property
    def alerting(self) -> bool:
        """At or past the budget's alert threshold this period."""
        return self.utilisation >= self.budget.alert_threshold


def budget_status(budget: Budget, at: datetime) -> BudgetStatus:
    starts_at, ends_at = period_bounds(budget.period, at)
    period = BudgetPeriod.objects.filter(budget=budget, starts_at=starts_at).first()
    return BudgetStatus(
        budget=budget,
        starts_at=starts_at,
        ends_at=ends_at,
        limit_usd=budget.limit_usd,
        spent_usd=period.spent_usd if period else ZERO,
        reserved_usd=period.reserved_usd if period else ZERO,
    )


def ledger_totals(entries: QuerySet[LedgerEntry]) -> dict[str, Any]:
    sums = entries.aggregate(
        cost_usd=Coalesce(Sum("cost_usd"), usd_value(ZERO)),
        counterfactual_cost_usd=Coalesce(Sum("counterfactual_cost_usd"), usd_value(ZERO)),
        input_tokens=Coalesce(Sum("input_tokens"), 0),
        cached_input_tokens=Coalesce(Sum("cached_input_tokens"), 0),
        cache_write_tokens=Coalesce(Sum("cache_write_tokens"), 0),
        output_tokens=Coalesce(Sum("output_tokens"), 0),
        reasoning_tokens=Coalesce(Sum("reasoning_tokens"), 0),
    )
    sums["saved_usd"] = sums["counterfactual_cost_usd"] - sums["cost_usd"]
    return sums


def ledger_sums_by(entries: QuerySet[LedgerEntry], dimension: str) -> list[dict[str, Any]]:
    """Cost and counterfactual grouped by team, workload, model or mode."""
    field = {
        "team": "team__slug",
        "workload": "workload__slug",
        "model": "model__model_id",
        "mode": "mode",
    }[dimension]
    return list(
        entries.values(field)
        .annotate(
            cost_usd=Coalesce(Sum("cost_usd"), usd_value(ZERO)),
            counterfactual_cost_usd=Coalesce(Sum("counterfactual_cost_usd"), usd_value(ZERO)),
        )
        .order_by(field)
    )


@dataclass
class Drift:
    period: BudgetPeriod
    field: str
    counter: Decimal
    derived: Decimal


def ledger_drift() -> list[Drift]:
    """Every budget-period counter that differs from what its entries and holds say."""
    drifts = []
    for period in BudgetPeriod.objects.select_related("budget__team", "budget__workload"):
        spent = period_spent(period)
        reserved = period.holds.filter(status=Hold.Status.HELD).aggregate(
            s=Coalesce(Sum("amount_usd"), usd_value(ZERO))
        )["s"]
        if spent != period.spent_usd:
            drifts.append(Drift(period, "spent_usd", period.spent_usd, spent))
        if reserved != period.reserved_usd:
            drifts.append(Drift(period, "reserved_usd", period.reserved_usd, reserved))
    return drifts


def unheld_charges() -> list[Request]:
    """Requests billed more often than a hold was settled for them: a charge recorded with no
    reservation behind it, so a hard budget could have been passed. Cache hits cost
    nothing and reserve nothing."""
    charges = (
        LedgerEntry.objects.filter(request=OuterRef("pk"), kind=LedgerEntry.Kind.CHARGE)
        .exclude(mode=Mode.CACHE)
        .order_by()
        .values("request")
        .annotate(n=Count("pk"))
        .values("n")
    )
    settled = (
        Hold.objects.filter(request=OuterRef("pk"), status=Hold.Status.SETTLED)
        .order_by()
        .values("request")
        .annotate(n=Count("pk"))
        .values("n")
    )
    billed = LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CHARGE).exclude(mode=Mode.CACHE)
    return list(
        Request.objects.filter(pk__in=billed.values("request_id"))
        .annotate(charges=Coalesce(Subquery(charges), 0), settled=Coalesce(Subquery(settled), 0))
        .filter(charges__gt=F("settled"))
        .order_by("created_at")
    )


# What a request costs: the sums of these columns of its ledger entries.
REQUEST_COST_FIELDS = ("cost_usd", "counterfactual_cost_usd")


def request_cost_totals(request_id) -> dict[str, Decimal | None]:
    """A request's cost and counterfactual cost, by field name: the sums of its ledger
    entries (None with none), in a statement built once (the native API reads it for every
    answer)."""
    key = LedgerEntry._meta.get_field("request").get_db_prep_value(request_id, connection)
    with connection.cursor() as cursor:
        cursor.execute(_cost_sql(connection.vendor), [key])
        totals = cursor.fetchone()
    return {
        name: None if total is None else from_units(total)
        for name, total in zip(REQUEST_COST_FIELDS, totals, strict=True)
    }


@functools.cache
def _cost_sql(vendor: str) -> str:
    quote = connection.ops.quote_name
    meta = LedgerEntry._meta
    sums = ", ".join(f"SUM({quote(meta.get_field(name).column)})" for name in REQUEST_COST_FIELDS)
    where = quote(meta.get_field("request").column)
    # Identifiers from the model's metadata; the value is a parameter.
    return f"SELECT {sums} FROM {quote(meta.db_table)} WHERE {where} = %s"  # noqa: S608
