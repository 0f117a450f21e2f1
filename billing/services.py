"""Writes for money: price versions, ledger entries, budget holds.

Invariants (the fault suite, tests/faults, checks each under load and crashes): the ledger is
append-only (also enforced by a database trigger) and idempotent by key; budget counters are
caches that reconcile_ledger rebuilds from entries and holds; a hold resolves exactly once;
admission can never take spent + reserved above a hard limit, because it is a conditional
UPDATE on each budget-period row, taken in a fixed order inside one transaction; nothing is
ever priced as $0 by accident.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal

from django.db import IntegrityError, transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing import selectors
from billing.fields import usd_value
from billing.models import Budget, BudgetPeriod, Hold, LedgerEntry, Price, Processing
from billing.price_sources import published_versions
from billing.pricing import (
    Cost,
    PriceVersion,
    PricingError,
    Usage,
    plain,
    price_usage,
    request_output_bound,
    request_prompt_bound,
)
from routing.models import LlmModel, Mode, Request, Team, Workload

# A hold whose request never reported back is released after this long.
DEFAULT_HOLD_TTL = timedelta(hours=25)  # batches may take 24 h


class BudgetExceeded(Exception):
    """Admission refused: the worst case would take a hard budget over its limit."""

    def __init__(self, budget: Budget, period: BudgetPeriod, amount: Decimal) -> None:
        super().__init__(
            f"budget {budget} would be exceeded: spent ${plain(period.spent_usd)} + reserved "
            f"${plain(period.reserved_usd)} + this request's worst case ${plain(amount)} > "
            f"limit ${plain(period.limit_usd)}"
        )
        self.budget = budget
        self.period = period
        self.amount = amount


# --- prices ---------------------------------------------------------------------------


@dataclass
class SyncReport:
    created: list[Price] = field(default_factory=list)
    unchanged: int = 0
    skipped: dict[str, str] = field(default_factory=dict)  # model → why


def prices_sync(
    *,
    at: datetime | None = None,
    models: list[LlmModel] | None = None,
    missing_only: bool = False,
    note: str = "",
) -> SyncReport:
    """Copy genai-prices' current prices into new versions where they differ from ours.

    Idempotent: a model whose latest version already has these rates gets nothing new.
    `missing_only` adds a published version only where a model has no price of that kind of
    processing in force at `at`, so a version in force stays so, an operator's negotiated one
    included (the demo seed and its history price what they create, and change nothing else).
    """
    at = at or timezone.now()
    report = SyncReport()
    models = models if models is not None else list(LlmModel.objects.select_related("provider"))
    for model in models:
        try:
            versions = published_versions(
                model_id=model.model_id,
                provider_kind=model.provider.kind,
                at=at,
                embedding=model.embeds,
            )
        except PricingError as exc:
            report.skipped[str(model)] = str(exc)
            continue
        for version in versions:
            prices = Price.objects.filter(model=model, processing=version.processing)
            if missing_only:
                current = prices.filter(effective_from__lte=at).first()
                unchanged = current is not None
            else:
                current = prices.order_by("-effective_from").first()
                unchanged = current is not None and (
                    selectors.price_version(current).rates == version.rates
                    and selectors.price_version(current).tiers == version.tiers
                )
            if unchanged:
                report.unchanged += 1
                continue
            report.created.append(
                price_create(model=model, version=version, effective_from=at, note=note)
            )
    return report


def price_create(
    *, model: LlmModel, version: PriceVersion, effective_from: datetime, created_by=None, note=""
) -> Price:
    """A new price version (history is never edited)."""
    rates = version.rates
    return Price.objects.create(
        model=model,
        processing=version.processing,
        effective_from=effective_from,
        input_per_mtok=rates.input,
        cached_input_per_mtok=rates.cached_input,
        cache_write_per_mtok=rates.cache_write,
        output_per_mtok=rates.output,
        reasoning_per_mtok=rates.reasoning,
        tiers=[selectors.tier_json(tier) for tier in version.tiers],
        source=version.source or "admin",
        derived=version.derived,
        note=note,
        created_by=created_by,
    )


# --- ledger ---------------------------------------------------------------------------


# The price each mode is billed at (a cache hit costs nothing; streamed is standard).
PROCESSING_OF_MODE = {Mode.BATCH: Processing.BATCH, Mode.FLEX: Processing.FLEX}


def processing_for(mode: str) -> str:
    return PROCESSING_OF_MODE.get(mode, Processing.STANDARD)


@dataclass(frozen=True)
class Priced:
    """One usage priced every way the ledger keeps (LedgerEntry's columns say why)."""

    cost: Cost  # as served
    counterfactual: Cost  # realtime, standard price, the workload's primary model
    standard: Cost  # realtime, standard price, the model that served it
    batch: Cost | None  # batch price on that model; None when it has no batch price
    flex: Cost | None = None  # flex price on that model; None when it has no flex price


def usage_price(
    *,
    model: LlmModel,
    usage: Usage,
    mode: str,
    counterfactual_model: LlmModel | None = None,
    at: datetime | None = None,
) -> Priced:
    """Price `usage` as served and as it could have been. Raises PricingError, never returns
    a silent $0. Two price lookups, a third when the counterfactual model differs."""
    at = at or timezone.now()
    standard = price_usage(usage, selectors.price_in_force(model, Processing.STANDARD, at))
    # A model without batch or flex processing: nothing to compare with, unless served so.
    batch = _priced_if_sold(model, Processing.BATCH, usage, at, required=mode == Mode.BATCH)
    flex = _priced_if_sold(model, Processing.FLEX, usage, at, required=mode == Mode.FLEX)
    if mode == Mode.CACHE:
        cost = Cost(total=Decimal(0), breakdown={}, version=None)
    else:
        cost = {Mode.BATCH: batch, Mode.FLEX: flex}.get(mode, standard)
    if counterfactual_model is None or counterfactual_model.pk == model.pk:
        counterfactual = standard
    else:
        counterfactual = price_usage(
            usage, selectors.price_in_force(counterfactual_model, Processing.STANDARD, at)
        )
    return Priced(
        cost=cost, counterfactual=counterfactual, standard=standard, batch=batch, flex=flex
    )


def _priced_if_sold(
    model: LlmModel, processing: str, usage: Usage, at: datetime, *, required: bool
) -> Cost | None:
    """`usage` at the model's `processing` price, None if it has none (PricingError if
    `required`: what was served so must be priced so)."""
    if required:
        return price_usage(usage, selectors.price_in_force(model, processing, at))
    version = selectors.price_or_none(model, processing, at)
    return None if version is None else price_usage(usage, version)


def pricing_estimate(
    *,
    model: LlmModel,
    usage: Usage,
    mode: str,
    counterfactual_model: LlmModel | None = None,
    at: datetime | None = None,
) -> tuple[Cost, Cost]:
    """(cost, counterfactual cost) of `usage`. Raises PricingError, never returns a silent $0."""
    priced = usage_price(
        model=model, usage=usage, mode=mode, counterfactual_model=counterfactual_model, at=at
    )
    return priced.cost, priced.counterfactual


def reservation_amount(
    *,
    model: LlmModel,
    mode: str,
    prompt_tokens: int,
    max_output_tokens: int,
    at: datetime | None = None,
) -> Decimal:
    """The worst case a request can cost: its whole prompt at the dearer of the input and
    cache-write rates (Anthropic bills writing a prompt to the cache above reading it fresh)
    plus max_tokens of output, at the price of the mode it will be served in."""
    if mode == Mode.CACHE:
        return Decimal(0)
    version = selectors.price_in_force(model, processing_for(mode), at or timezone.now())
    return max(
        price_usage(
            Usage(input_tokens=prompt_tokens, output_tokens=max_output_tokens), version
        ).total,
        price_usage(
            Usage(cache_write_tokens=prompt_tokens, output_tokens=max_output_tokens), version
        ).total,
    )


def ledger_record_usage(
    *,
    key: str,
    team: Team,
    model: LlmModel,
    mode: str,
    usage: Usage,
    workload: Workload | None = None,
    request: Request | None = None,
    kind: str = LedgerEntry.Kind.CHARGE,
    counterfactual_model: LlmModel | None = None,
    at: datetime | None = None,
    note: str = "",
    hold: Hold | None = None,
) -> tuple[LedgerEntry, bool]:
    """Record one priced usage event. Returns (entry, created).

    Idempotent: a second call with the same key returns the first entry and
    changes nothing (the unique key decides, so concurrent retries are safe too).
    The counterfactual is the same usage at the standard price of the model the
    workload would otherwise stream to (its policy's primary model).
    """
    if kind == LedgerEntry.Kind.REVERSAL:
        raise ValueError("use ledger_reverse for reversals")
    if (existing := LedgerEntry.objects.filter(idempotency_key=key).first()) is not None:
        return existing, False
    at = at or timezone.now()
    if counterfactual_model is None and workload is not None:
        counterfactual_model = selectors.primary_model(workload)
    priced = usage_price(
        model=model, usage=usage, mode=mode, counterfactual_model=counterfactual_model, at=at
    )
    cost, counterfactual = priced.cost, priced.counterfactual

    def write() -> LedgerEntry:
        # Periods first: one opened now counts the ledger so far, which must not include this.
        periods = _periods_for(team=team, workload=workload, at=at)
        entry = LedgerEntry.objects.create(
            idempotency_key=key,
            kind=kind,
            mode=mode,
            team=team,
            workload=workload,
            request=request,
            model=model,
            input_tokens=usage.input_tokens,
            cached_input_tokens=usage.cached_input_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            output_tokens=usage.output_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            price_id=cost.version.id if cost.version else None,
            cost_usd=cost.total,
            counterfactual_price_id=counterfactual.version.id,
            counterfactual_cost_usd=counterfactual.total,
            standard_cost_usd=priced.standard.total,
            batch_cost_usd=priced.batch.total if priced.batch else None,
            flex_cost_usd=priced.flex.total if priced.flex else None,
            occurred_at=at,
            note=note,
        )
        _add_spent(periods, cost.total)
        if hold is not None:
            _resolve_hold(hold, Hold.Status.SETTLED)
        return entry

    return _insert_once(key, write)


def ledger_reverse(*, entry: LedgerEntry, reason: str) -> tuple[LedgerEntry, bool]:
    """Cancel an entry with a negating one (entries are never edited). Idempotent."""
    if entry.kind == LedgerEntry.Kind.REVERSAL:
        raise ValueError("a reversal cannot itself be reversed; record a new charge instead")
    key = f"reversal:{entry.idempotency_key}"
    if (existing := LedgerEntry.objects.filter(idempotency_key=key).first()) is not None:
        return existing, False

    def write() -> LedgerEntry:
        periods = _periods_for(team=entry.team, workload=entry.workload, at=entry.occurred_at)
        reversal = LedgerEntry.objects.create(
            idempotency_key=key,
            kind=LedgerEntry.Kind.REVERSAL,
            mode=entry.mode,
            team_id=entry.team_id,
            workload_id=entry.workload_id,
            request_id=entry.request_id,
            model_id=entry.model_id,
            input_tokens=-entry.input_tokens,
            cached_input_tokens=-entry.cached_input_tokens,
            cache_write_tokens=-entry.cache_write_tokens,
            output_tokens=-entry.output_tokens,
            reasoning_tokens=-entry.reasoning_tokens,
            price_id=entry.price_id,
            cost_usd=-entry.cost_usd,
            counterfactual_price_id=entry.counterfactual_price_id,
            counterfactual_cost_usd=-entry.counterfactual_cost_usd,
            standard_cost_usd=-entry.standard_cost_usd,
            batch_cost_usd=None if entry.batch_cost_usd is None else -entry.batch_cost_usd,
            flex_cost_usd=None if entry.flex_cost_usd is None else -entry.flex_cost_usd,
            reverses=entry,
            # Booked in the original's period, so that period's spend goes back down.
            occurred_at=entry.occurred_at,
            note=reason[:300],
        )
        _add_spent(periods, -entry.cost_usd)
        return reversal

    return _insert_once(key, write)


def _insert_once(key: str, write) -> tuple[LedgerEntry, bool]:
    """Run `write` (an entry and its counter updates) once per key: (entry, created).

    The unique key decides, so a retry, or a concurrent call that loses the insert,
    gets the recorded entry back and changes nothing. Callers look the key up first.
    """
    try:
        with transaction.atomic():
            return write(), True
    except IntegrityError:
        existing = LedgerEntry.objects.filter(idempotency_key=key).first()
        if existing is None:
            raise
        return existing, False


# --- budgets --------------------------------------------------------------------------


def _periods_for(*, team: Team, workload: Workload | None, at: datetime) -> list[BudgetPeriod]:
    """The counter rows of every budget touching (team, workload) at `at`, in a fixed order (by
    id) so concurrent transactions lock them alike. A period opens with what the ledger already
    holds for it: a budget created mid-month counts the month's spend so far."""
    periods = []
    for budget in selectors.budgets_touching(team=team, workload=workload):
        starts_at, ends_at = selectors.period_bounds(budget.period, at)
        period, created = BudgetPeriod.objects.get_or_create(
            budget=budget,
            starts_at=starts_at,
            defaults={"ends_at": ends_at, "limit_usd": budget.limit_usd},
        )
        period.budget = budget
        if created and (spent := selectors.period_spent(period)):
            BudgetPeriod.objects.filter(pk=period.pk).update(spent_usd=usd_value(spent))
            period.spent_usd = spent
        periods.append(period)
    return sorted(periods, key=lambda p: p.pk)


def _add_spent(periods: list[BudgetPeriod], amount: Decimal) -> None:
    if amount == 0:
        return
    for period in periods:
        BudgetPeriod.objects.filter(pk=period.pk).update(
            spent_usd=F("spent_usd") + usd_value(amount)
        )


@dataclass
class Admission:
    hold: Hold
    created: bool
    soft_breaches: list[Budget] = field(default_factory=list)  # for the router's breach action


def budget_reserve(
    *,
    key: str,
    team: Team,
    amount: Decimal,
    workload: Workload | None = None,
    request: Request | None = None,
    at: datetime | None = None,
    ttl: timedelta = DEFAULT_HOLD_TTL,
) -> Admission:
    """Reserve `amount` (the worst case) against every budget the request touches.

    Raises BudgetExceeded, reserving nothing, if a hard budget cannot take it.
    Soft budgets always take the reservation; those it pushes over their limit
    are returned so the caller can apply the policy's breach action.
    """
    if amount < 0:
        raise ValueError("a reservation cannot be negative")
    # No lookup of `key` first: it is almost always new, and a retry's INSERT fails on the
    # unique key, rolling its reservation back, and returns the first hold (below).
    at = at or timezone.now()
    soft_breaches = []
    try:
        with transaction.atomic():
            periods = _periods_for(team=team, workload=workload, at=at)
            for period in periods:
                rows = BudgetPeriod.objects.filter(pk=period.pk)
                if period.budget.hard:
                    # The check and the increment are one statement: concurrent
                    # admissions cannot both see the same headroom (no check-then-spend).
                    changed = rows.filter(
                        spent_usd__lte=F("limit_usd") - F("reserved_usd") - usd_value(amount)
                    ).update(reserved_usd=F("reserved_usd") + usd_value(amount))
                    if changed != 1:
                        period.refresh_from_db()
                        raise BudgetExceeded(period.budget, period, amount)
                else:
                    rows.update(reserved_usd=F("reserved_usd") + usd_value(amount))
                    period.refresh_from_db()
                    if period.spent_usd + period.reserved_usd > period.limit_usd:
                        soft_breaches.append(period.budget)
            hold = Hold.objects.create(
                key=key,
                team=team,
                workload=workload,
                request=request,
                amount_usd=amount,
                created_at=at,
                expires_at=at + ttl,
            )
            Hold.periods.through.objects.bulk_create(
                [Hold.periods.through(hold=hold, budgetperiod=period) for period in periods]
            )
    except (IntegrityError, BudgetExceeded):
        # A concurrent call with the same key may have won (a retry racing its original): its
        # reservation is the one, even when it left no room for ours. The winner committed
        # before our UPDATE or INSERT could proceed, so it is visible here; ours rolled back.
        existing = Hold.objects.filter(key=key).first()
        if existing is None:
            raise
        return Admission(hold=existing, created=False)
    return Admission(hold=hold, created=True, soft_breaches=soft_breaches)


def request_hold(
    *,
    request: Request,
    models: list[LlmModel],
    mode: str,
    key: str,
    ttl: timedelta,
    at: datetime | None = None,
) -> Admission:
    """Reserve a request's worst case over the models that may serve it (its prompt bounded by
    its bytes, max_tokens of output, the dearest model in `mode`) against every budget it
    touches. Raises PricingError for an unpriced model, BudgetExceeded if a hard budget
    cannot take it."""
    at = at or timezone.now()
    prompt_tokens = request_prompt_bound(request.params)
    amount = max(
        reservation_amount(
            model=model,
            mode=mode,
            prompt_tokens=prompt_tokens,
            max_output_tokens=request_output_bound(request.params),
            at=at,
        )
        for model in models
    )
    return budget_reserve(
        key=key,
        team=request.team,
        workload=request.workload,
        request=request,
        amount=amount,
        at=at,
        ttl=ttl,
    )


def _resolve_hold(hold: Hold, status: str) -> bool:
    """Move a held hold to `status` and give back its reservation. False if already resolved."""
    changed = Hold.objects.filter(pk=hold.pk, status=Hold.Status.HELD).update(
        status=status, resolved_at=timezone.now()
    )
    if changed != 1:
        return False
    BudgetPeriod.objects.filter(holds=hold).update(
        reserved_usd=F("reserved_usd") - usd_value(hold.amount_usd)
    )
    hold.status = status
    return True


def hold_settle(
    *, hold: Hold, key: str, model: LlmModel, mode: str, usage: Usage, **record
) -> tuple[LedgerEntry, bool]:
    """Turn a hold into the actual cost: one ledger entry, and the reservation given back,
    in one transaction. Settling twice records once; a hold the sweeper already expired
    still gets its usage recorded (the provider billed it)."""
    with transaction.atomic():
        return ledger_record_usage(
            key=key,
            team=hold.team,
            workload=hold.workload,
            request=hold.request,
            model=model,
            mode=mode,
            usage=usage,
            hold=hold,
            **record,
        )


def hold_release(*, hold: Hold) -> bool:
    """Give a hold back unused (the request failed before any billable work)."""
    with transaction.atomic():
        return _resolve_hold(hold, Hold.Status.RELEASED)


def hold_split(
    *, parent: Hold, children: list[tuple[str, Request, Decimal]], at: datetime | None = None
) -> list[Hold]:
    """Carve holds for single requests out of one reservation taken for all of them (a client's
    batch file is reserved whole, all or nothing, then admitted chunk by chunk). The children
    count against the parent's budget periods and expire with it; the parent shrinks by what
    they take, so the periods' reserved totals do not move. Call inside a transaction. Raises
    ValueError if the parent no longer holds that much (resolved, or already split)."""
    total = sum((amount for _, _, amount in children), Decimal(0))
    taken = Hold.objects.filter(
        pk=parent.pk, status=Hold.Status.HELD, amount_usd__gte=usd_value(total)
    ).update(amount_usd=F("amount_usd") - usd_value(total))
    if taken != 1:
        raise ValueError(f"{parent} cannot give {plain(total)} USD to {len(children)} hold(s)")
    parent.amount_usd -= total
    at = at or timezone.now()
    holds = Hold.objects.bulk_create(
        [
            Hold(
                key=key,
                team_id=parent.team_id,
                workload_id=parent.workload_id,
                request=request,
                amount_usd=amount,
                created_at=at,
                expires_at=parent.expires_at,
            )
            for key, request, amount in children
        ]
    )
    period_ids = list(parent.periods.values_list("pk", flat=True))
    Hold.periods.through.objects.bulk_create(
        [
            Hold.periods.through(hold_id=hold.pk, budgetperiod_id=period_id)
            for hold in holds
            for period_id in period_ids
        ]
    )
    return holds


def holds_release(*, requests) -> int:
    """Give back every open hold of `requests` (a queryset of requests) in a few statements,
    not one transaction per hold: cancelling a client's 50,000-line batch must not hold the
    database for minutes. Returns how many were released."""
    with transaction.atomic():
        # PostgreSQL: lock them, so a concurrent settle cannot resolve one between our read and
        # our UPDATE (SQLite's IMMEDIATE transaction already excludes other writers).
        ids = list(
            Hold.objects.filter(request__in=requests, status=Hold.Status.HELD)
            .select_for_update()
            .values_list("pk", flat=True)
        )
        if not ids:
            return 0
        per_period = (
            Hold.periods.through.objects.filter(hold_id__in=ids)
            .values("budgetperiod_id")
            .annotate(total=Sum("hold__amount_usd"))
            .order_by("budgetperiod_id")  # the fixed locking order of every budget write
        )
        for row in per_period:
            BudgetPeriod.objects.filter(pk=row["budgetperiod_id"]).update(
                reserved_usd=F("reserved_usd") - usd_value(row["total"])
            )
        return Hold.objects.filter(pk__in=ids).update(
            status=Hold.Status.RELEASED, resolved_at=timezone.now()
        )


def holds_sweep(*, now: datetime | None = None) -> int:
    """Expire holds past their deadline (requests that died). Returns how many."""
    now = now or timezone.now()
    expired = 0
    for hold in Hold.objects.filter(status=Hold.Status.HELD, expires_at__lt=now):
        with transaction.atomic():
            expired += _resolve_hold(hold, Hold.Status.EXPIRED)
    return expired


def budget_create(
    *,
    team: Team,
    period: str,
    limit_usd: Decimal,
    workload: Workload | None = None,
    hard: bool = True,
    alert_threshold: Decimal = Decimal("0.8"),
) -> Budget:
    """Raises ValueError naming the conflict if the scope already has a budget for the period."""
    if workload is not None and workload.team_id != team.pk:
        raise ValueError("the workload belongs to another team")
    if Budget.objects.filter(team=team, workload=workload, period=period).exists():
        scope = f"workload {workload.slug}" if workload else f"team {team.slug}"
        raise ValueError(f"{scope} already has a {period} budget")
    return Budget.objects.create(
        team=team,
        workload=workload,
        period=period,
        limit_usd=limit_usd,
        hard=hard,
        alert_threshold=alert_threshold,
    )


@transaction.atomic
def budget_update(
    *,
    budget: Budget,
    limit_usd: Decimal | None = None,
    hard: bool | None = None,
    alert_threshold: Decimal | None = None,
    at: datetime | None = None,
) -> Budget:
    """Change a budget's limit or behaviour; the current period's counter row follows the new
    limit at once (later periods copy it when they open)."""
    fields = []
    if limit_usd is not None:
        budget.limit_usd = limit_usd
        fields.append("limit_usd")
        starts_at, _ = selectors.period_bounds(budget.period, at or timezone.now())
        BudgetPeriod.objects.filter(budget=budget, starts_at__gte=starts_at).update(
            limit_usd=limit_usd
        )
    if hard is not None:
        budget.hard = hard
        fields.append("hard")
    if alert_threshold is not None:
        budget.alert_threshold = alert_threshold
        fields.append("alert_threshold")
    if fields:
        budget.save(update_fields=fields)
    return budget
