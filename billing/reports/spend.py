"""Spend and savings: the overview, the savings split, budgets and the response cache's hit
rate, and the report bodies the pages and the API render."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, TruncDate, TruncMonth, TruncWeek

from billing import selectors
from billing.fields import usd_value
from billing.models import Budget, LedgerEntry
from billing.pricing import quantize
from billing.reports.scope import Scope, entries_for
from routing.models import Mode, Request, Team

ZERO = Decimal(0)
SERVED_NOW = (Mode.REALTIME, Mode.STREAM)


# --- savings ----------------------------------------------------------------------------


def usd_sum(column: str, condition: Q | None = None) -> Coalesce:
    """The sum of a money column (of the entries `condition` picks), $0 when there are none."""
    return Coalesce(Sum(column, filter=condition), usd_value(ZERO))


# Deferrable traffic served now at full price (the router flagged it) on a model that has a
# batch price: what it cost minus what the same usage costs batched.
MISSED = Q(request__missed_saving=True, mode__in=SERVED_NOW, batch_cost_usd__isnull=False)
# Keys are not column names: Django refuses an aggregate that shadows a field.
SAVINGS_SUMS = {
    "cost": usd_sum("cost_usd"),
    "counterfactual": usd_sum("counterfactual_cost_usd"),
    "standard": usd_sum("standard_cost_usd"),
    "batch_standard": usd_sum("standard_cost_usd", Q(mode=Mode.BATCH)),
    "batch_cost": usd_sum("cost_usd", Q(mode=Mode.BATCH)),
    "cache_standard": usd_sum("standard_cost_usd", Q(mode=Mode.CACHE)),
    "cache_cost": usd_sum("cost_usd", Q(mode=Mode.CACHE)),
    "flex_standard": usd_sum("standard_cost_usd", Q(mode=Mode.FLEX)),
    "flex_cost": usd_sum("cost_usd", Q(mode=Mode.FLEX)),
    "missed_cost": usd_sum("cost_usd", MISSED),
    "missed_batch": usd_sum("batch_cost_usd", MISSED),
    "entries": Count("id"),
}


@dataclass(frozen=True)
class Savings:
    cost_usd: Decimal
    counterfactual_cost_usd: Decimal
    saved_by_batch_usd: Decimal
    saved_by_cache_usd: Decimal
    saved_by_tiering_usd: Decimal
    missed_savings_usd: Decimal
    entries: int
    label: str = ""
    team: str = ""
    saved_by_flex_usd: Decimal = ZERO

    @property
    def saved_usd(self) -> Decimal:
        return self.counterfactual_cost_usd - self.cost_usd

    @property
    def saved_share(self) -> Decimal | None:
        """Saved as a share of the counterfactual (None when there is nothing to compare)."""
        if not self.counterfactual_cost_usd:
            return None
        return self.saved_usd / self.counterfactual_cost_usd

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "team": self.team,
            "entries": self.entries,
            "cost_usd": self.cost_usd,
            "counterfactual_cost_usd": self.counterfactual_cost_usd,
            "saved_usd": self.saved_usd,
            "saved_share": self.saved_share,
            "saved_by_batch_usd": self.saved_by_batch_usd,
            "saved_by_flex_usd": self.saved_by_flex_usd,
            "saved_by_cache_usd": self.saved_by_cache_usd,
            "saved_by_tiering_usd": self.saved_by_tiering_usd,
            "missed_savings_usd": self.missed_savings_usd,
        }


def _savings(row: dict[str, Any], label: str = "", team: str = "") -> Savings:
    return Savings(
        cost_usd=row["cost"],
        counterfactual_cost_usd=row["counterfactual"],
        saved_by_batch_usd=row["batch_standard"] - row["batch_cost"],
        saved_by_flex_usd=row["flex_standard"] - row["flex_cost"],
        saved_by_cache_usd=row["cache_standard"] - row["cache_cost"],
        saved_by_tiering_usd=row["counterfactual"] - row["standard"],
        missed_savings_usd=row["missed_cost"] - row["missed_batch"],
        entries=row["entries"],
        label=label,
        team=team,
    )


def savings_total(entries: QuerySet[LedgerEntry]) -> Savings:
    return _savings(entries.aggregate(**SAVINGS_SUMS), label="total")


def savings_by_workload(entries: QuerySet[LedgerEntry]) -> list[Savings]:
    rows = (
        entries.values("team__slug", "workload__slug")
        .annotate(**SAVINGS_SUMS)
        .order_by("team__slug", "workload__slug")
    )
    return [
        _savings(row, label=row["workload__slug"] or "(no workload)", team=row["team__slug"])
        for row in rows
    ]


GRANULARITIES = {"day": TruncDate, "week": TruncWeek, "month": TruncMonth}


def savings_by_period(entries: QuerySet[LedgerEntry], granularity: str) -> list[Savings]:
    trunc = GRANULARITIES[granularity]
    rows = (
        entries.annotate(period=trunc("occurred_at", tzinfo=UTC))
        .values("period")
        .annotate(**SAVINGS_SUMS)
        .order_by("period")
    )
    return [_savings(row, label=_day(row["period"]).isoformat()) for row in rows]


def _day(value: date | datetime) -> date:
    return value.date() if isinstance(value, datetime) else value


# --- overview ---------------------------------------------------------------------------


@dataclass
class DailySpend:
    day: date
    by_mode: dict[str, Decimal] = field(default_factory=dict)

    @property
    def total(self) -> Decimal:
        return sum(self.by_mode.values(), ZERO)


def daily_spend(entries: QuerySet[LedgerEntry], scope: Scope) -> list[DailySpend]:
    """Cost per UTC day and mode, every day of the range present (zero when quiet)."""
    days = {scope.since + timedelta(days=i): DailySpend(scope.since + timedelta(days=i))
            for i in range(scope.days)}  # fmt: skip
    rows = (
        entries.annotate(day=TruncDate("occurred_at", tzinfo=UTC))
        .values("day", "mode")
        .annotate(cost_usd=usd_sum("cost_usd"))
        .order_by()
    )
    for row in rows:
        days[_day(row["day"])].by_mode[row["mode"]] = row["cost_usd"]
    return list(days.values())


def spend_by(entries: QuerySet[LedgerEntry], dimension: str) -> list[dict[str, Any]]:
    """Cost, counterfactual and saving grouped by team, workload, model or mode."""
    rows = selectors.ledger_sums_by(entries, dimension)
    key = {"team": "team__slug", "workload": "workload__slug", "model": "model__model_id"}.get(
        dimension, dimension
    )
    return [
        {
            "name": row[key] or "(none)",
            "cost_usd": row["cost_usd"],
            "counterfactual_cost_usd": row["counterfactual_cost_usd"],
            "saved_usd": row["counterfactual_cost_usd"] - row["cost_usd"],
        }
        for row in rows
    ]


# --- budgets ----------------------------------------------------------------------------


@dataclass
class BudgetLine(selectors.BudgetStatus):
    projected_usd: Decimal | None = None  # spend at the period's end at this period's pace

    @property
    def projected_over(self) -> bool:
        return self.projected_usd is not None and self.projected_usd > self.limit_usd


def budget_lines(teams: QuerySet[Team], now: datetime) -> list[BudgetLine]:
    budgets = Budget.objects.filter(team__in=teams).select_related("team", "workload")
    lines = []
    for budget in budgets.order_by("team__slug", "workload__slug", "period"):
        status = selectors.budget_status(budget, now)
        elapsed = (now - status.starts_at).total_seconds()
        length = (status.ends_at - status.starts_at).total_seconds()
        projected = None
        if elapsed > 0:
            # Decimal from the integer seconds: the projection stays exact money arithmetic.
            pace = Decimal(int(length)) / Decimal(max(1, int(elapsed)))
            projected = quantize(status.spent_usd * pace)
        lines.append(BudgetLine(**vars(status), projected_usd=projected))
    return lines


# --- the response cache ---------------------------------------------------------------


@dataclass(frozen=True)
class CacheRate:
    """A workload's response cache in a range: lookups (requests that consulted it, hit or
    miss) and hits (requests it answered)."""

    team: str
    workload: str
    lookups: int
    hits: int

    @property
    def hit_rate(self) -> Decimal | None:
        return Decimal(self.hits) / Decimal(self.lookups) if self.lookups else None


def cache_hit_rates(scope: Scope) -> list[CacheRate]:
    """Hits over lookups per workload whose cache was consulted in the range. Counted on
    requests, not entries (a lookup that failed upstream has no entry); the scope's model and
    mode filters do not apply (a hit has the mode cache, a miss another)."""
    requests = Request.objects.filter(
        team__in=scope.teams,
        created_at__gte=scope.start,
        created_at__lt=scope.end,
        cache_lookup=True,
    )
    if scope.workload is not None:
        requests = requests.filter(workload=scope.workload)
    rows = (
        requests.values("team__slug", "workload__slug")
        .annotate(lookups=Count("id"), hits=Count("id", filter=Q(mode=Mode.CACHE)))
        .order_by("team__slug", "workload__slug")
    )
    return [
        CacheRate(
            team=row["team__slug"],
            workload=row["workload__slug"],
            lookups=row["lookups"],
            hits=row["hits"],
        )
        for row in rows
    ]


# --- report bodies (the pages and the API render these) -------------------------------


def overview(scope: Scope, now: datetime) -> dict[str, Any]:
    entries = entries_for(scope)
    return {
        "range": scope,
        "totals": savings_total(entries),
        "by_team": spend_by(entries, "team"),
        "by_workload": spend_by(entries, "workload"),
        "by_model": spend_by(entries, "model"),
        "by_mode": spend_by(entries, "mode"),
        "daily": [
            {"day": d.day, "cost_usd": d.total, "by_mode": d.by_mode}
            for d in daily_spend(entries, scope)
        ],
        "budgets": budget_lines(scope.teams, now),
        "cache": cache_hit_rates(scope),
    }


def savings(scope: Scope, granularity: str) -> dict[str, Any]:
    entries = entries_for(scope)
    return {
        "range": scope,
        "granularity": granularity,
        "totals": savings_total(entries),
        "by_workload": savings_by_workload(entries),
        "by_period": savings_by_period(entries, granularity),
    }
