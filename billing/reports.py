"""Reads behind the billing pages and /api/v1/reports/: spend, savings, the workload audit,
budgets and the savings calculator.

Every dollar figure is an exact sum of ledger entries (LedgerEntry says what each money
column means), never an estimate: saved = counterfactual - cost, split exactly into what
the model choice saved (counterfactual - standard), what batching saved (standard - cost
of batch entries) and what the response cache saved (standard - cost of cache hits).
Realtime and streamed entries cost their standard price, so nothing is left over.
"""

from __future__ import annotations

import csv
import io
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from asgiref.sync import sync_to_async
from django.db.models import Count, Q, QuerySet, Sum
from django.db.models.functions import Coalesce, ExtractHour, TruncDate, TruncMonth, TruncWeek

from billing import selectors
from billing.charts import NIGHT_HOURS
from billing.fields import usd_value
from billing.models import Budget, LedgerEntry, Processing
from billing.pricing import Usage, plain, price_usage, quantize
from llmops.stats import nearest_rank
from routing.models import LatencyClass, LlmModel, Mode, Request, Team, Workload
from routing.selectors import readable_teams

ZERO = Decimal(0)
DAYS_PER_MONTH = Decimal(30)  # "per month" in recommendations: 30 days of the window's pace
# Longest range a report covers in one go (a daily chart of more is unreadable anyway).
MAX_RANGE_DAYS = 731
# Named ranges of UTC days, in the order the pages offer them. A report opens on the default:
# "this month" shows two days of figures on the 2nd.
RANGE_PRESETS = {
    "this_month": "This month",
    "last_month": "Last month",
    "last_30_days": "Last 30 days",
    "last_90_days": "Last 90 days",
}
ROLLING_DAYS = {"last_30_days": 30, "last_90_days": 90}  # ranges that end today
DEFAULT_RANGE = "last_30_days"
DEFAULT_RANGE_DAYS = ROLLING_DAYS[DEFAULT_RANGE]  # also the length before an `until` alone
SERVED_NOW = (Mode.REALTIME, Mode.STREAM)


class ScopeError(ValueError):
    """A filter names something the caller cannot see, or a range that makes no sense."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


@dataclass(frozen=True)
class Scope:
    """Which entries a report covers: visible teams (narrowed to one if chosen), an inclusive
    range of UTC days, and optional workload, model and mode."""

    teams: QuerySet[Team]
    since: date
    until: date  # inclusive
    team: Team | None = None
    workload: Workload | None = None
    model: str = ""
    mode: str = ""
    preset: str | None = None  # the named range these days are (None: a custom range)

    @property
    def preset_label(self) -> str:
        return RANGE_PRESETS.get(self.preset or "", "")

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        """Exclusive: midnight after `until`."""
        return datetime.combine(self.until + timedelta(days=1), time.min, tzinfo=UTC)

    @property
    def days(self) -> int:
        return (self.until - self.since).days + 1

    def query(self) -> dict[str, str]:
        """As query parameters (links that keep the filter)."""
        params = {"since": self.since.isoformat(), "until": self.until.isoformat()}
        for name, value in (
            ("team", self.team.slug if self.team else ""),
            ("workload", self.workload.slug if self.workload else ""),
            ("model", self.model),
            ("mode", self.mode),
        ):
            if value:
                params[name] = value
        return params


def preset_bounds(preset: str, today: date) -> tuple[date, date]:
    """The first and last UTC day (inclusive) of a named range on `today`."""
    if preset == "this_month":
        return today.replace(day=1), today
    if preset == "last_month":
        end = today.replace(day=1) - timedelta(days=1)
        return end.replace(day=1), end
    return today - timedelta(days=ROLLING_DAYS[preset] - 1), today


def _range(
    today: date, preset: str, since: date | None, until: date | None
) -> tuple[date, date, str | None]:
    """The days a report covers and the named range they are, if any. Explicit since/until
    win over a preset: one alone keeps its meaning and the other end is filled in."""
    if preset and preset not in RANGE_PRESETS:
        raise ScopeError("range", f"Must be one of {', '.join(RANGE_PRESETS)}.")
    if since is None and until is None:
        since, until = preset_bounds(preset or DEFAULT_RANGE, today)
    elif since is None:
        # The default's length, ending on the chosen day (never before the first date).
        since = until - timedelta(days=min(DEFAULT_RANGE_DAYS - 1, (until - date.min).days))
    elif until is None:
        until = max(since, today)
    if until >= date.max:
        raise ScopeError("until", f"Must be a day before {date.max}.")
    if since > until:
        raise ScopeError("since", f"The range starts ({since}) after it ends ({until}).")
    if (until - since).days + 1 > MAX_RANGE_DAYS:
        raise ScopeError("until", f"A report covers at most {MAX_RANGE_DAYS} days.")
    # Name the range when its days are a preset's, so a page that re-submits the dates of a
    # preset (its filter form does) still says which one it shows.
    wanted = preset or DEFAULT_RANGE
    for name in (wanted, *RANGE_PRESETS):
        if preset_bounds(name, today) == (since, until):
            return since, until, name
    return since, until, None


def scope_build(
    *,
    user,
    today: date,
    team: str = "",
    workload: str = "",
    model: str = "",
    mode: str = "",
    since: date | None = None,
    until: date | None = None,
    preset: str = "",
) -> Scope:
    """Turn validated filter values into a Scope, or raise ScopeError naming the field.
    The range: `since`/`until` when given, else the named `preset`, else the last 30 days.
    Names of other teams' workloads get the same answer as names that do not exist."""
    teams = readable_teams(user)
    chosen = None
    if team:
        chosen = teams.filter(slug=team).first()
        if chosen is None:
            raise ScopeError("team", f"You have no team {team!r}.")
        teams = teams.filter(pk=chosen.pk)
    since, until, named = _range(today, preset, since, until)
    chosen_workload = None
    if workload:
        found = list(Workload.objects.filter(team__in=teams, slug=workload).select_related("team"))
        if not found:
            raise ScopeError("workload", f"No workload {workload!r} in your teams.")
        if len(found) > 1:
            raise ScopeError("team", f"Several teams have a workload {workload!r}: pick a team.")
        chosen_workload = found[0]
    if model and not LlmModel.objects.filter(model_id=model).exists():
        raise ScopeError("model", f"No model {model!r}.")
    if mode and mode not in Mode.values:
        raise ScopeError("mode", f"Mode must be one of {', '.join(Mode.values)}.")
    return Scope(
        teams=teams,
        since=since,
        until=until,
        team=chosen,
        workload=chosen_workload,
        model=model,
        mode=mode,
        preset=named,
    )


def entries_for(scope: Scope) -> QuerySet[LedgerEntry]:
    entries = LedgerEntry.objects.filter(
        team__in=scope.teams, occurred_at__gte=scope.start, occurred_at__lt=scope.end
    )
    if scope.workload is not None:
        entries = entries.filter(workload=scope.workload)
    if scope.model:
        entries = entries.filter(model__model_id=scope.model)
    if scope.mode:
        entries = entries.filter(mode=scope.mode)
    return entries


def ledger_page_entries(scope: Scope) -> QuerySet[LedgerEntry]:
    """Newest first, with what a ledger row shows."""
    return (
        entries_for(scope)
        .select_related("team", "workload", "model__provider")
        .order_by("-occurred_at", "-id")
    )


# --- savings ----------------------------------------------------------------------------


def _sum(column: str, condition: Q | None = None) -> Coalesce:
    return Coalesce(Sum(column, filter=condition), usd_value(ZERO))


# Deferrable traffic served now at full price (the router flagged it) on a model that has a
# batch price: what it cost minus what the same usage costs batched.
MISSED = Q(request__missed_saving=True, mode__in=SERVED_NOW, batch_cost_usd__isnull=False)
# Keys are not column names: Django refuses an aggregate that shadows a field.
SAVINGS_SUMS = {
    "cost": _sum("cost_usd"),
    "counterfactual": _sum("counterfactual_cost_usd"),
    "standard": _sum("standard_cost_usd"),
    "batch_standard": _sum("standard_cost_usd", Q(mode=Mode.BATCH)),
    "batch_cost": _sum("cost_usd", Q(mode=Mode.BATCH)),
    "cache_standard": _sum("standard_cost_usd", Q(mode=Mode.CACHE)),
    "cache_cost": _sum("cost_usd", Q(mode=Mode.CACHE)),
    "missed_cost": _sum("cost_usd", MISSED),
    "missed_batch": _sum("batch_cost_usd", MISSED),
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
            "saved_by_cache_usd": self.saved_by_cache_usd,
            "saved_by_tiering_usd": self.saved_by_tiering_usd,
            "missed_savings_usd": self.missed_savings_usd,
        }


def _savings(row: dict[str, Any], label: str = "", team: str = "") -> Savings:
    return Savings(
        cost_usd=row["cost"],
        counterfactual_cost_usd=row["counterfactual"],
        saved_by_batch_usd=row["batch_standard"] - row["batch_cost"],
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
        .annotate(cost_usd=_sum("cost_usd"))
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


# --- the workload audit -----------------------------------------------------------------


ACTION_LABELS = {
    "keep": "keep",
    "defer": "defer to batch",
    "allow_batch": "allow batch",
    "use_batch_api": "use the batch API",
}


@dataclass
class AuditRow:
    workload: Workload
    requests: int = 0
    by_mode: dict[str, int] = field(default_factory=dict)
    hours: list[int] = field(default_factory=lambda: [0] * 24)
    read_count: int = 0
    read_p50_s: float | None = None
    read_p90_s: float | None = None
    streams: int = 0
    streams_read_to_end: int = 0
    stream_tokens: int = 0
    stream_tokens_read_to_end: int = 0
    served_now: int = 0  # realtime and streamed entries on a model with a batch price
    served_now_standard_usd: Decimal = ZERO
    served_now_batch_usd: Decimal = ZERO
    missed: int = 0
    missed_usd: Decimal = ZERO
    batched: int = 0
    saved_by_batch_usd: Decimal = ZERO
    days: int = 1
    recommendation: str = ""
    action: str = "keep"  # keep | defer | allow_batch | use_batch_api
    eligible: int = 0
    value_per_month_usd: Decimal = ZERO

    @property
    def action_label(self) -> str:
        return ACTION_LABELS[self.action]

    @property
    def night_share(self) -> float | None:
        return sum(self.hours[h] for h in NIGHT_HOURS) / self.requests if self.requests else None

    @property
    def stream_consumed_share(self) -> float | None:
        """Share of streamed output tokens in answers the client read to the end."""
        return self.stream_tokens_read_to_end / self.stream_tokens if self.stream_tokens else None

    @property
    def per_month(self) -> Decimal:
        return DAYS_PER_MONTH / Decimal(self.days)

    @property
    def eligible_per_month(self) -> int:
        return round(self.eligible * self.per_month)

    @property
    def stream_cost_per_request_usd(self) -> Decimal | None:
        if not self.served_now:
            return None
        return quantize(self.served_now_standard_usd / self.served_now)

    @property
    def batch_cost_per_request_usd(self) -> Decimal | None:
        if not self.served_now:
            return None
        return quantize(self.served_now_batch_usd / self.served_now)


def workload_audit(scope: Scope) -> list[AuditRow]:
    """Each workload's declared latency class against how it is used, and what deferring the
    traffic that does not need an answer now would save per month."""
    workloads = Workload.objects.filter(team__in=scope.teams).select_related("team", "policy")
    if scope.workload is not None:
        workloads = workloads.filter(pk=scope.workload.pk)
    rows = {w.pk: AuditRow(workload=w, days=scope.days) for w in workloads}
    requests = Request.objects.filter(
        workload_id__in=list(rows), created_at__gte=scope.start, created_at__lt=scope.end
    )
    for r in requests.values("workload_id", "mode").annotate(n=Count("id")).order_by():
        row = rows[r["workload_id"]]
        row.by_mode[r["mode"] or "refused"] = r["n"]
        row.requests += r["n"]
    hourly = (
        requests.annotate(hour=ExtractHour("created_at", tzinfo=UTC))
        .values("workload_id", "hour")
        .annotate(n=Count("id"))
        .order_by()
    )
    for r in hourly:
        rows[r["workload_id"]].hours[r["hour"]] = r["n"]
    delays: dict[int, list[float]] = {pk: [] for pk in rows}
    read = requests.filter(first_read_at__isnull=False, completed_at__isnull=False)
    for workload_id, completed, first_read in read.values_list(
        "workload_id", "completed_at", "first_read_at"
    ).iterator():
        delays[workload_id].append(max(0.0, (first_read - completed).total_seconds()))
    for pk, values in delays.items():
        rows[pk].read_count = len(values)
        rows[pk].read_p50_s = nearest_rank(values, 0.5)
        rows[pk].read_p90_s = nearest_rank(values, 0.9)

    entries = LedgerEntry.objects.filter(
        workload_id__in=list(rows), occurred_at__gte=scope.start, occurred_at__lt=scope.end
    )
    read_to_end = Q(mode=Mode.STREAM, request__status=Request.Status.COMPLETED)
    served_now = Q(mode__in=SERVED_NOW, batch_cost_usd__isnull=False)
    sums = entries.values("workload_id").annotate(
        streams=Count("request", filter=Q(mode=Mode.STREAM), distinct=True),
        streams_read_to_end=Count("request", filter=read_to_end, distinct=True),
        stream_tokens=Coalesce(Sum("output_tokens", filter=Q(mode=Mode.STREAM)), 0),
        stream_tokens_read_to_end=Coalesce(Sum("output_tokens", filter=read_to_end), 0),
        served_now=Count("id", filter=served_now & ~Q(kind=LedgerEntry.Kind.REVERSAL)),
        served_now_standard_usd=_sum("standard_cost_usd", served_now),
        served_now_batch_usd=_sum("batch_cost_usd", served_now),
        missed=Count("id", filter=MISSED & ~Q(kind=LedgerEntry.Kind.REVERSAL)),
        missed_cost=_sum("cost_usd", MISSED),
        missed_batch=_sum("batch_cost_usd", MISSED),
        batched=Count("id", filter=Q(mode=Mode.BATCH) & ~Q(kind=LedgerEntry.Kind.REVERSAL)),
        batch_standard=_sum("standard_cost_usd", Q(mode=Mode.BATCH)),
        batch_cost=_sum("cost_usd", Q(mode=Mode.BATCH)),
    )
    for s in sums.order_by():
        row = rows[s["workload_id"]]
        for name in (
            "streams",
            "streams_read_to_end",
            "stream_tokens",
            "stream_tokens_read_to_end",
            "served_now",
            "served_now_standard_usd",
            "served_now_batch_usd",
            "missed",
            "batched",
        ):
            setattr(row, name, s[name])
        row.missed_usd = s["missed_cost"] - s["missed_batch"]
        row.saved_by_batch_usd = s["batch_standard"] - s["batch_cost"]
    result = list(rows.values())
    for row in result:
        _recommend(row)
    return sorted(result, key=lambda r: (-r.value_per_month_usd, r.workload.team.slug,
                                         r.workload.slug))  # fmt: skip


def _recommend(row: AuditRow) -> None:
    """The recommendation and its value: (stream cost - batch cost) x batch-eligible requests,
    per month at the window's pace. Per request the saving is exact (both prices of the
    request's own usage), so the product is the sum over the eligible entries."""
    workload = row.workload
    per_month = row.per_month
    defer_value = quantize((row.served_now_standard_usd - row.served_now_batch_usd) * per_month)
    if workload.latency_class != LatencyClass.REALTIME:
        if not workload.policy.allow_batch and row.served_now:
            row.action, row.eligible = "allow_batch", row.served_now
            row.value_per_month_usd = defer_value
            row.recommendation = (
                f"Allow batch in policy {workload.policy.name}: this {workload.latency_class} "
                "workload is served now at full price."
            )
        elif row.missed:
            row.action, row.eligible = "use_batch_api", row.missed
            row.value_per_month_usd = quantize(row.missed_usd * per_month)
            row.recommendation = (
                "Send these requests through the native API (a 202 ticket) or /v1/batches: "
                "the OpenAI-compatible chat endpoint, or a deadline too short for a batch, "
                "served them now at full price."
            )
        else:
            row.recommendation = "Keep: deferred to provider batches as declared."
        return
    night = row.night_share
    late = row.read_p50_s is not None and row.read_p50_s >= 300
    if row.served_now and ((night is not None and night >= 0.5) or late):
        row.action, row.eligible = "defer", row.served_now
        row.value_per_month_usd = defer_value
        why = (
            f"{night:.0%} of its traffic arrives at night (22:00-06:00 UTC)"
            if night is not None and night >= 0.5
            else "its answers are read minutes after they are ready"
        )
        row.recommendation = (
            f"Declared realtime, but {why}: no one seems to wait. Declare it near_realtime and "
            "allow batch."
        )
    elif row.served_now:
        row.recommendation = "Keep realtime: traffic follows the day and answers are read at once."
    else:
        row.recommendation = "Keep: nothing served at full price in this range."


# --- the savings calculator -----------------------------------------------------------


@dataclass(frozen=True)
class Calculation:
    model: LlmModel
    monthly_requests: int
    input_tokens: int
    output_tokens: int
    batch_share: Decimal
    cache_hit_rate: Decimal
    standard_per_request_usd: Decimal
    batch_per_request_usd: Decimal
    all_realtime_usd: Decimal
    all_batch_usd: Decimal
    hybrid_usd: Decimal
    standard_price_id: int | None
    batch_price_id: int | None

    @property
    def delta_usd(self) -> Decimal:
        """What the hybrid saves against serving everything realtime."""
        return self.all_realtime_usd - self.hybrid_usd

    @property
    def all_batch_delta_usd(self) -> Decimal:
        return self.all_realtime_usd - self.all_batch_usd


def calculate(
    *,
    model: LlmModel,
    monthly_requests: int,
    input_tokens: int,
    output_tokens: int,
    batch_share: Decimal,
    cache_hit_rate: Decimal,
    at: datetime,
) -> Calculation:
    """A month of traffic priced with the ledger's own price table and pricing function:
    all realtime; all batch; and the hybrid, where cache hits cost nothing and the
    batch-eligible share of the rest runs at the batch price. Raises PricingError."""
    usage = Usage(input_tokens=input_tokens, output_tokens=output_tokens)
    standard = price_usage(usage, selectors.price_in_force(model, Processing.STANDARD, at))
    batch = price_usage(usage, selectors.price_in_force(model, Processing.BATCH, at))
    n = Decimal(monthly_requests)
    misses = n * (1 - cache_hit_rate)
    hybrid = misses * (batch_share * batch.total + (1 - batch_share) * standard.total)
    return Calculation(
        model=model,
        monthly_requests=monthly_requests,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        batch_share=batch_share,
        cache_hit_rate=cache_hit_rate,
        standard_per_request_usd=standard.total,
        batch_per_request_usd=batch.total,
        all_realtime_usd=quantize(n * standard.total),
        all_batch_usd=quantize(n * batch.total),
        hybrid_usd=quantize(hybrid),
        standard_price_id=standard.version.id if standard.version else None,
        batch_price_id=batch.version.id if batch.version else None,
    )


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


# --- CSV export -------------------------------------------------------------------------

CSV_PAGE_SIZE = 2000
CSV_COLUMNS = [
    "id",
    "occurred_at",
    "kind",
    "mode",
    "team",
    "workload",
    "request",
    "provider",
    "model",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "price_version",
    "cost_usd",
    "counterfactual_cost_usd",
    "standard_cost_usd",
    "batch_cost_usd",
    "note",
]
_CSV_VALUES = [
    "id",
    "occurred_at",
    "kind",
    "mode",
    "team__slug",
    "workload__slug",
    "request_id",
    "model__provider__slug",
    "model__model_id",
    "input_tokens",
    "cached_input_tokens",
    "cache_write_tokens",
    "output_tokens",
    "reasoning_tokens",
    "price_id",
    "cost_usd",
    "counterfactual_cost_usd",
    "standard_cost_usd",
    "batch_cost_usd",
    "note",
]


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, str) and value[:1] in ("=", "+", "-", "@", "\t", "\r"):
        return "'" + value  # a spreadsheet would run it as a formula
    return value


def ledger_csv_page(
    scope: Scope, *, last_id: int, after: tuple[datetime, int] | None
) -> tuple[str, tuple[datetime, int] | None]:
    """One page of CSV rows after the keyset `after` (newest first), and the next keyset (None
    at the end). Entries appended after the export started (id above `last_id`) are left
    out, so the file is one consistent cut of an append-only ledger."""
    entries = entries_for(scope).filter(id__lte=last_id)
    if after is not None:
        at, pk = after
        entries = entries.filter(Q(occurred_at__lt=at) | Q(occurred_at=at, id__lt=pk))
    rows = list(entries.order_by("-occurred_at", "-id").values_list(*_CSV_VALUES)[:CSV_PAGE_SIZE])
    if not rows:
        return "", None
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    for row in rows:
        writer.writerow([_csv_cell(v) for v in row])
    last = rows[-1]
    return out.getvalue(), ((last[1], last[0]) if len(rows) == CSV_PAGE_SIZE else None)


async def ledger_csv_stream(scope: Scope) -> AsyncIterator[str]:
    """The filtered ledger as CSV, one page at a time: memory stays flat whatever the size.
    Async, because under ASGI Django would first read a sync iterator into a list."""
    yield ",".join(CSV_COLUMNS) + "\n"
    last_id = await sync_to_async(_last_ledger_id)()
    after = None
    while True:
        text, after = await sync_to_async(ledger_csv_page)(scope, last_id=last_id, after=after)
        if text:
            yield text
        if after is None:
            return


def _last_ledger_id() -> int:
    return LedgerEntry.objects.order_by("-id").values_list("id", flat=True).first() or 0
