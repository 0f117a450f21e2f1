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

from django.db import IntegrityError, connection, transaction
from django.db.models import F, Sum
from django.utils import timezone

from billing import selectors
from billing.fields import from_units, to_units, usd_value
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
from llmops import memo, rows
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
    a silent $0. Three price lookups (standard, batch, flex), a fourth when the
    counterfactual model differs."""
    at = at or timezone.now()
    return UsagePrices(
        model=model, mode=mode, counterfactual_model=counterfactual_model, at=at
    ).price(usage)


class UsagePrices:
    """The prices usage_price applies for one model, mode, counterfactual model and time,
    looked up once: a batch chunk prices thousands of usages with the same ones."""

    def __init__(
        self, *, model: LlmModel, mode: str, counterfactual_model: LlmModel | None, at: datetime
    ) -> None:
        self.mode = mode
        self.standard = selectors.price_in_force(model, Processing.STANDARD, at)
        # A model without batch or flex processing: nothing to compare with, unless served so.
        self.batch = _version_if_sold(model, Processing.BATCH, at, required=mode == Mode.BATCH)
        self.flex = _version_if_sold(model, Processing.FLEX, at, required=mode == Mode.FLEX)
        self.counterfactual = (
            None
            if counterfactual_model is None or counterfactual_model.pk == model.pk
            else selectors.price_in_force(counterfactual_model, Processing.STANDARD, at)
        )

    def price(self, usage: Usage) -> Priced:
        standard = price_usage(usage, self.standard)
        batch = None if self.batch is None else price_usage(usage, self.batch)
        flex = None if self.flex is None else price_usage(usage, self.flex)
        if self.mode == Mode.CACHE:
            cost = Cost(total=Decimal(0), breakdown={}, version=None)
        else:
            cost = {Mode.BATCH: batch, Mode.FLEX: flex}.get(self.mode, standard)
        counterfactual = (
            standard if self.counterfactual is None else price_usage(usage, self.counterfactual)
        )
        return Priced(
            cost=cost, counterfactual=counterfactual, standard=standard, batch=batch, flex=flex
        )


def _version_if_sold(model: LlmModel, processing: str, at: datetime, *, required: bool):
    """The model's `processing` price, None if it has none (PricingError if `required`: what
    was served so must be priced so)."""
    if required:
        return selectors.price_in_force(model, processing, at)
    return selectors.price_or_none(model, processing, at)


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


def entry_values(
    *,
    key: str,
    kind: str,
    mode: str,
    team: Team,
    workload: Workload | None,
    request_id: object,
    model: LlmModel,
    usage: Usage,
    priced: Priced,
    at: datetime,
    note: str,
) -> dict[str, object]:
    """The field values, by attribute name (ids for the related rows), of the LedgerEntry that
    records one priced usage: what ledger_record_usage saves, and what billing.ledger_bulk
    writes for each of many."""
    cost, counterfactual = priced.cost, priced.counterfactual
    return {
        "idempotency_key": key,
        "kind": kind,
        "mode": mode,
        "team_id": team.pk,
        "workload_id": workload.pk if workload is not None else None,
        "request_id": request_id,
        "model_id": model.pk,
        "input_tokens": usage.input_tokens,
        "cached_input_tokens": usage.cached_input_tokens,
        "cache_write_tokens": usage.cache_write_tokens,
        "output_tokens": usage.output_tokens,
        "reasoning_tokens": usage.reasoning_tokens,
        "price_id": cost.version.id if cost.version else None,
        "cost_usd": cost.total,
        "counterfactual_price_id": counterfactual.version.id,
        "counterfactual_cost_usd": counterfactual.total,
        "standard_cost_usd": priced.standard.total,
        "batch_cost_usd": priced.batch.total if priced.batch else None,
        "flex_cost_usd": priced.flex.total if priced.flex else None,
        "reverses_id": None,
        "occurred_at": at,
        "note": note,
    }


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
    at = at or timezone.now()
    if counterfactual_model is None and workload is not None:
        counterfactual_model = selectors.primary_model(workload)
    try:
        priced = usage_price(
            model=model, usage=usage, mode=mode, counterfactual_model=counterfactual_model, at=at
        )
    except PricingError:
        # A retry of an entry recorded before its price went away still gets it back.
        if (existing := LedgerEntry.objects.filter(idempotency_key=key).first()) is not None:
            return existing, False
        raise
    entry = LedgerEntry(
        **entry_values(
            key=key,
            kind=kind,
            mode=mode,
            team=team,
            workload=workload,
            request_id=request.pk if request is not None else None,
            model=model,
            usage=usage,
            priced=priced,
            at=at,
            note=note,
        )
    )
    # The related rows as given, cached on the entry (as LedgerEntry(team=team, ...) would):
    # the entry returned reads them without a query.
    entry.team, entry.workload, entry.request, entry.model = team, workload, request, model
    # No savepoint: nothing in it is expected to fail (a conflict on the key is no error), and
    # inside the caller's transaction a savepoint is two more statements per entry.
    with transaction.atomic(savepoint=False):
        # Periods first: one opened now counts the ledger so far, which must not include this.
        periods = _held_periods(hold, at) or _periods_for(team=team, workload=workload, at=at)
        # No lookup of the key first: it is almost always new. A retry's INSERT does nothing
        # (the unique key decides, so concurrent retries are safe too) and gets the first.
        if not rows.insert(entry, unless_exists="idempotency_key"):
            return LedgerEntry.objects.get(idempotency_key=key), False
        released = hold is not None and _close_hold(hold, Hold.Status.SETTLED)
        _count(
            spent={p.pk for p in periods},
            amount=priced.cost.total,
            released=_hold_period_ids(hold) if released else (),
            hold=hold,
        )
    return entry, True


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
    id) so concurrent transactions lock them alike, with their budget (only their ids and
    bounds are read: counts are changed in SQL, each by one statement). A period opens with
    what the ledger already holds for it: a budget created mid-month counts the month's spend
    so far."""
    periods = []
    for budget in selectors.budgets_touching(team=team, workload=workload):
        starts_at, ends_at = selectors.period_bounds(budget.period, at)
        # A period's row keeps its id as long as its budget lives (deleting a budget drops the
        # memo): memoized, so that a request looks none up. Not one this transaction opened,
        # which may yet roll back.
        pk = memo.memoized(
            ("budget_period", budget.pk, starts_at),
            lambda budget=budget, starts_at=starts_at: (
                BudgetPeriod.objects.filter(budget=budget, starts_at=starts_at)
                .values_list("pk", flat=True)
                .first()
            ),
            keep=lambda pk: pk is not None and not _opened_here(),
        )
        if pk is not None:
            period = BudgetPeriod(
                pk=pk,
                budget=budget,
                starts_at=starts_at,
                ends_at=ends_at,
                limit_usd=budget.limit_usd,
            )
        else:
            period, created = BudgetPeriod.objects.get_or_create(
                budget=budget,
                starts_at=starts_at,
                defaults={"ends_at": ends_at, "limit_usd": budget.limit_usd},
            )
            period.budget = budget
            if created:
                transaction.on_commit(_period_opened)
                if spent := selectors.period_spent(period):
                    BudgetPeriod.objects.filter(pk=period.pk).update(spent_usd=usd_value(spent))
                    period.spent_usd = spent
        periods.append(period)
    return sorted(periods, key=lambda p: p.pk)


def _period_opened() -> None:
    """Marks a transaction that opened a budget period (see _opened_here)."""


def _opened_here() -> bool:
    """Whether this transaction opened a budget period: its rows are not memoized until then."""
    return any(fn is _period_opened for _, fn, _ in connection.run_on_commit)


def _add_spent(periods: list[BudgetPeriod], amount: Decimal) -> None:
    _count(spent={p.pk for p in periods}, amount=amount)


# The statements every request runs on budgets and holds, in SQL (the same on SQLite and
# PostgreSQL, both of which RETURN from an UPDATE): each the ORM built anew per call.
COUNT_PERIOD = (
    'UPDATE "billing_budgetperiod" SET "spent_usd" = "spent_usd" + %s, '
    '"reserved_usd" = "reserved_usd" - %s WHERE "id" = %s'
)
RESERVE = (
    'UPDATE "billing_budgetperiod" SET "reserved_usd" = "reserved_usd" + %s WHERE "id" = %s '
    'RETURNING "spent_usd", "reserved_usd", "limit_usd"'
)
RESERVE_HARD = (
    'UPDATE "billing_budgetperiod" SET "reserved_usd" = "reserved_usd" + %s WHERE "id" = %s '
    'AND "spent_usd" <= "limit_usd" - "reserved_usd" - %s '
    'RETURNING "spent_usd", "reserved_usd", "limit_usd"'
)
CLOSE_HOLD = (
    'UPDATE "billing_hold" SET "status" = %s, "resolved_at" = %s WHERE "id" = %s AND "status" = %s'
)


def _count(
    *, spent=(), amount: Decimal = Decimal(0), released=(), hold: Hold | None = None
) -> None:
    """Add `amount` to the spend of the `spent` periods and give `hold`'s reservation back to
    the `released` ones (ids): one UPDATE per period, in id order so that concurrent
    transactions lock them alike. Raw SQL: on a realtime request these ran through the ORM's
    update machinery twice per period, for two integer additions."""
    spent_units = to_units(amount) if spent else 0
    released_units = to_units(hold.amount_usd) if released and hold is not None else 0
    with connection.cursor() as cursor:
        for pk in sorted(set(spent) | set(released)):
            add = spent_units if pk in spent else 0
            give = released_units if pk in released else 0
            if add or give:
                cursor.execute(COUNT_PERIOD, [add, give, pk])


def _held_periods(hold: Hold | None, at: datetime) -> list[BudgetPeriod]:
    """The periods a hold reserved in, if they are still every period its ledger entry at `at`
    counts in (the same budgets, `at` inside each): then none is looked up again. Empty when
    unknown (a hold read back from the database) or changed (a new day or month, a budget
    added or removed since): the caller looks them up."""
    periods = getattr(hold, "known_periods", None)
    if not periods:
        return []
    budgets = selectors.budgets_touching(team=hold.team, workload=hold.workload)
    if sorted(b.pk for b in budgets) != sorted(p.budget_id for p in periods):
        return []
    by_id = {b.pk: b for b in budgets}
    for period in periods:
        if selectors.period_bounds(by_id[period.budget_id].period, at)[0] != period.starts_at:
            return []
    return periods


def _hold_period_ids(hold: Hold) -> set[int]:
    if (periods := getattr(hold, "known_periods", None)) is not None:
        return {p.pk for p in periods}
    links = Hold.periods.through.objects.filter(hold=hold)
    return set(links.values_list("budgetperiod", flat=True))


def _close_hold(hold: Hold, status: str) -> bool:
    """Move a held hold to `status`: False if something resolved it first."""
    now = timezone.now()
    field = Hold._meta.get_field("resolved_at")
    with connection.cursor() as cursor:
        cursor.execute(
            CLOSE_HOLD,
            [status, field.get_db_prep_save(now, connection), hold.pk, Hold.Status.HELD],
        )
        if cursor.rowcount != 1:
            return False
    hold.status, hold.resolved_at = status, now
    return True


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
    fresh: bool = False,
) -> Admission:
    """Reserve `amount` (the worst case) against every budget the request touches.

    Raises BudgetExceeded, reserving nothing, if a hard budget cannot take it.
    Soft budgets always take the reservation; those it pushes over their limit
    are returned so the caller can apply the policy's breach action. `fresh`: the key
    cannot exist yet (a request being admitted, in the caller's transaction, which a refusal
    rolls back): no savepoint, no search for a winner.
    """
    if amount < 0:
        raise ValueError("a reservation cannot be negative")
    # No lookup of `key` first: it is almost always new, and a retry's INSERT fails on the
    # unique key, rolling its reservation back, and returns the first hold (below).
    at = at or timezone.now()
    soft_breaches = []
    units = to_units(amount)
    try:
        with transaction.atomic(savepoint=not fresh):
            periods = _periods_for(team=team, workload=workload, at=at)
            with connection.cursor() as cursor:
                for period in periods:
                    hard = period.budget.hard
                    # Hard: the check and the increment are one statement, so concurrent
                    # admissions cannot both see the same headroom (no check-then-spend).
                    params = [units, period.pk, units] if hard else [units, period.pk]
                    cursor.execute(RESERVE_HARD if hard else RESERVE, params)
                    row = cursor.fetchone()
                    if row is None:
                        period.refresh_from_db()
                        raise BudgetExceeded(period.budget, period, amount)
                    spent, reserved, limit = (from_units(v) for v in row)
                    if not hard and spent + reserved > limit:
                        soft_breaches.append(period.budget)
            hold = Hold(
                key=key,
                team=team,
                workload=workload,
                request=request,
                amount_usd=amount,
                created_at=at,
                expires_at=at + ttl,
            )
            if not rows.insert(hold, unless_exists="key"):
                raise IntegrityError(f"hold {key} exists")  # a winner (below)
            for period in periods:
                rows.insert(Hold.periods.through(hold=hold, budgetperiod=period))
            # Kept with the hold: settling it in this process needs not look them up again.
            hold.known_periods = periods
    except (IntegrityError, BudgetExceeded):
        if fresh:
            raise
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
    fresh: bool = False,
) -> Admission:
    """Reserve a request's worst case over the models that may serve it (its prompt bounded by
    its bytes, max_tokens of output, the dearest model in `mode`) against every budget it
    touches. Raises PricingError for an unpriced model, BudgetExceeded if a hard budget
    cannot take it. `fresh`: as budget_reserve's."""
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
        fresh=fresh,
    )


def _resolve_hold(hold: Hold, status: str) -> bool:
    """Move a held hold to `status` and give back its reservation. False if already resolved."""
    if not _close_hold(hold, status):
        return False
    _count(released=_hold_period_ids(hold), hold=hold)
    return True


def hold_settle(
    *, hold: Hold, key: str, model: LlmModel, mode: str, usage: Usage, **record
) -> tuple[LedgerEntry, bool]:
    """Turn a hold into the actual cost: one ledger entry, and the reservation given back,
    in one transaction. Settling twice records once; a hold the sweeper already expired
    still gets its usage recorded (the provider billed it)."""
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
