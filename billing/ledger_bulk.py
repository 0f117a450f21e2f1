"""Many priced usage events recorded at once: a provider batch's results, thousands per
transaction. Each charge is written exactly as billing.services.ledger_record_usage writes one
(hold_settle when it has a hold): the same entry row, the same idempotency by key, its hold
settled only if its entry is new and the hold still held, the spend added to the periods the
entry counts in and the hold's reservation given back to the periods it reserved in. Only the
statements differ: one multi-row INSERT of the entries, one UPDATE of the holds and one UPDATE
per budget period (in id order, the fixed locking order of every budget write) for the whole
set, where one at a time took five or more statements per charge.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache

from django.db import connection, transaction
from django.utils import timezone

from billing import selectors
from billing.fields import to_units
from billing.models import Hold, LedgerEntry
from billing.pricing import PricingError, Usage
from billing.services import (
    COUNT_PERIOD,
    Priced,
    UsagePrices,
    _held_periods,
    _periods_for,
    entry_values,
)
from llmops import memo
from llmops.dbthreads import event_loop
from llmops.rows import Prepared, values_in
from routing.models import LlmModel, Team, Workload

# Host parameters per statement: SQLite allows 32,766 (3.32+), PostgreSQL 65,535.
MAX_PARAMS = 30_000


@dataclass(frozen=True)
class Charge:
    """One usage event to bill: what ledger_record_usage takes for one call."""

    key: str  # the entry's idempotency key
    team: Team
    usage: Usage
    workload: Workload | None = None
    request_id: object = None  # the request's primary key, if any
    hold: Hold | None = None  # settled by this charge if its entry is new and it is still held
    note: str = ""


@dataclass(frozen=True)
class PricedCharges:
    """Charges priced and their ledger rows built (charges_price), to be written with
    charges_write: a batch's ingest prices a chunk before its transaction begins, so that the
    write lock it takes on SQLite, the one every tenant's writes wait for, is held for the
    statements alone."""

    charges: tuple[Charge, ...]  # one per key, those priced
    priced: dict[str, Priced]
    rows: dict[str, list]  # each charge's entry row, by key
    at: datetime


def charges_record(
    charges: Sequence[Charge],
    *,
    model: LlmModel,
    mode: str,
    at: datetime | None = None,
    kind: str = LedgerEntry.Kind.CHARGE,
) -> set[str]:
    """Record every charge as ledger_record_usage(model=model, mode=mode, at=at, ...) would,
    counterfactual included (the workload's primary model): the keys of the entries written now
    (a key already in the ledger writes nothing, settles nothing and counts nothing). Raises
    PricingError, as it does, for a usage that cannot be priced unless its key is recorded
    already. The entries, holds and counters change together: in the caller's transaction, or
    in one of its own."""
    return charges_write(charges_price(charges, model=model, mode=mode, at=at, kind=kind))


def charges_price(
    charges: Sequence[Charge],
    *,
    model: LlmModel,
    mode: str,
    at: datetime | None = None,
    kind: str = LedgerEntry.Kind.CHARGE,
) -> PricedCharges:
    """The first half of charges_record, which writes nothing: each charge priced (raising
    PricingError as it does) and its entry's row built."""
    if kind == LedgerEntry.Kind.REVERSAL:
        raise ValueError("use ledger_reverse for reversals")
    # One charge per key: a repeat in the set is a retry of the first, as a second call would be.
    firsts: dict[str, Charge] = {}
    for charge in charges:
        firsts.setdefault(charge.key, charge)
    at = at or timezone.now()
    with _memo_pinned():
        priced = _price(list(firsts.values()), model=model, mode=mode, at=at)
    kept = tuple(c for c in firsts.values() if c.key in priced)
    fields, _ = _insert_sql(connection.vendor, 1)
    built = _entry_rows(kept, priced, fields, model, mode, kind, at)
    return PricedCharges(
        charges=kept,
        priced=priced,
        rows={c.key: row for c, row in zip(kept, built, strict=True)},
        at=at,
    )


def charges_write(priced: PricedCharges, *, keys: set[str] | None = None) -> set[str]:
    """The second half of charges_record: the priced charges (those of `keys` only, if given)
    written, their holds settled and their periods counted, in the caller's transaction or in
    one of its own. The keys of the entries written now."""
    charges = [c for c in priced.charges if keys is None or c.key in keys]
    if not charges:
        return set()
    # In the caller's transaction, without a savepoint (nothing here is expected to fail: a key
    # already recorded is no error), or in one of its own.
    with transaction.atomic(savepoint=False):
        # Periods first (as one at a time): one opened now counts the ledger so far, which
        # must not include these entries.
        with _memo_pinned():
            spent_in = _entry_periods(charges, at=priced.at)
        inserted = _entries_insert([priced.rows[c.key] for c in charges])
        if inserted:
            _count(
                [c for c in charges if c.key in inserted], priced=priced.priced, spent_in=spent_in
            )
    return inserted


def _count(new: list[Charge], *, priced: dict[str, Priced], spent_in: dict[str, list[int]]) -> None:
    """Settle the new entries' holds still held, and count: each entry's cost added to its
    periods, each settled hold's reservation given back to its own, in one UPDATE per period
    (in id order, as every budget write locks them)."""
    closed = _holds_settle([c.hold for c in new if c.hold is not None])
    spent: dict[int, int] = defaultdict(int)
    for charge in new:
        units = to_units(priced[charge.key].cost.total)
        for pk in spent_in[charge.key]:
            spent[pk] += units
    released: dict[int, int] = defaultdict(int)
    for hold, period_ids in _hold_periods(closed).values():
        units = to_units(hold.amount_usd)
        for pk in period_ids:
            released[pk] += units
    with connection.cursor() as cursor:
        for pk in sorted(set(spent) | set(released)):
            add, give = spent.get(pk, 0), released.get(pk, 0)
            if add or give:
                cursor.execute(COUNT_PERIOD, [add, give, pk])


def _memo_pinned():
    """The configuration memo read under one version token for the whole set (a cache read per
    lookup otherwise: several per charge). A serving thread's unit has pinned it already."""
    return memo.pinned() if event_loop() is None else nullcontext()


def _price(
    charges: Sequence[Charge], *, model: LlmModel, mode: str, at: datetime
) -> dict[str, Priced]:
    """Each charge priced as ledger_record_usage prices it. A charge that cannot be priced is
    left out if its key is recorded already (a retry of an entry whose price went away since),
    and raises otherwise."""
    # The prices of each workload's counterfactual, looked up once for the set (or the
    # PricingError that looking them up raised).
    prices: dict[int | None, UsagePrices | PricingError] = {}
    # Usages repeat within a set (a classification batch's answers are a few token counts):
    # each distinct one priced once per workload. Priced is immutable, so sharing it is safe.
    done: dict[tuple[int | None, Usage], Priced] = {}
    priced: dict[str, Priced] = {}
    failed: dict[str, PricingError] = {}
    for charge in charges:
        workload = charge.workload
        workload_id = workload.pk if workload is not None else None
        if workload_id not in prices:
            try:
                prices[workload_id] = UsagePrices(
                    model=model,
                    mode=mode,
                    counterfactual_model=(
                        selectors.primary_model(workload) if workload is not None else None
                    ),
                    at=at,
                )
            except PricingError as exc:
                prices[workload_id] = exc
        found = prices[workload_id]
        if isinstance(found, PricingError):
            failed[charge.key] = found
            continue
        seen = (workload_id, charge.usage)
        if seen in done:
            priced[charge.key] = done[seen]
            continue
        try:
            priced[charge.key] = done[seen] = found.price(charge.usage)
        except PricingError as exc:
            failed[charge.key] = exc
    if failed:
        recorded = set(
            LedgerEntry.objects.filter(idempotency_key__in=list(failed)).values_list(
                "idempotency_key", flat=True
            )
        )
        for key, exc in failed.items():
            if key not in recorded:
                raise exc
    return priced


def _entry_periods(charges: Sequence[Charge], *, at: datetime) -> dict[str, list[int]]:
    """The ids of the budget periods each charge's entry counts in: its hold's, if they still
    are (as one at a time), else looked up once per (team, workload)."""
    looked_up: dict[tuple[int, int | None], list[int]] = {}
    periods: dict[str, list[int]] = {}
    for charge in charges:
        if held := _held_periods(charge.hold, at):
            periods[charge.key] = [p.pk for p in held]
            continue
        workload = charge.workload
        scope = (charge.team.pk, workload.pk if workload is not None else None)
        if scope not in looked_up:
            found = _periods_for(team=charge.team, workload=workload, at=at)
            looked_up[scope] = [p.pk for p in found]
        periods[charge.key] = looked_up[scope]
    return periods


# A few sizes recur (a full chunk's, a last part's): not one string kept per size ever seen.
@lru_cache(maxsize=16)
def _insert_sql(vendor: str, rows: int) -> tuple[tuple, str]:
    meta = LedgerEntry._meta
    quote = connection.ops.quote_name
    fields = tuple(f for f in meta.local_concrete_fields if not f.primary_key)
    columns = ", ".join(quote(f.column) for f in fields)
    marks = ", ".join(["(" + ", ".join(["%s"] * len(fields)) + ")"] * rows)
    key = quote(meta.get_field("idempotency_key").column)
    # Identifiers from the model's metadata only; every value is a parameter.
    sql = (
        f"INSERT INTO {quote(meta.db_table)} ({columns}) VALUES {marks} "  # noqa: S608
        f"ON CONFLICT ({key}) DO NOTHING RETURNING {key}"
    )
    return fields, sql


def _entries_insert(rows: list[list]) -> set[str]:
    """INSERT the entries' rows, a key already recorded winning (no error, so no savepoint):
    the keys written."""
    fields, _ = _insert_sql(connection.vendor, 1)
    per_statement = max(1, MAX_PARAMS // len(fields))
    inserted: set[str] = set()
    with connection.cursor() as cursor:
        for start in range(0, len(rows), per_statement):
            part = rows[start : start + per_statement]
            _, sql = _insert_sql(connection.vendor, len(part))
            cursor.execute(sql, [value for row in part for value in row])
            inserted.update(key for (key,) in cursor.fetchall())
    return inserted


def _entry_rows(
    charges: Sequence[Charge],
    priced: dict[str, Priced],
    fields: tuple,
    model: LlmModel,
    mode: str,
    kind: str,
    at: datetime,
) -> list[list]:
    """The entries' column values, each as ledger_record_usage's LedgerEntry would be saved
    (the same entry_values): every value through its field's get_db_prep_save (money as integer
    picodollars). Values repeated across the set (the team, the model, the prices, the time)
    are prepared once."""
    prep = Prepared(fields)
    rows = []
    for charge in charges:
        values = entry_values(
            key=charge.key,
            kind=kind,
            mode=mode,
            team=charge.team,
            workload=charge.workload,
            request_id=charge.request_id,
            model=model,
            usage=charge.usage,
            priced=priced[charge.key],
            at=at,
            note=charge.note,
        )
        rows.append(prep.row([values[f.attname] for f in fields]))
    return rows


@lru_cache(maxsize=16)
def _settle_sql(vendor: str, holds: int) -> str:
    table = connection.ops.quote_name(Hold._meta.db_table)
    marks = ", ".join(["%s"] * holds)
    held = f'"id" IN ({marks}) AND "status" = %s'
    if vendor == "postgresql":
        # Row locks taken in id order, as every writer of several holds should take them.
        held = f'"id" IN (SELECT "id" FROM {table} WHERE {held} ORDER BY "id" FOR UPDATE)'  # noqa: S608
    # The table's name from the model's metadata; every value is a parameter.
    return f'UPDATE {table} SET "status" = %s, "resolved_at" = %s WHERE {held} RETURNING "id"'  # noqa: S608


def _holds_settle(holds: list[Hold]) -> list[Hold]:
    """Settle the holds still held, in one statement: those it settled (one a concurrent sweep
    or release resolved first is left as it is, with its own accounting done)."""
    if not holds:
        return []
    now = timezone.now()
    resolved_at = Hold._meta.get_field("resolved_at").get_db_prep_save(now, connection)
    by_id = {hold.pk: hold for hold in holds}
    ids = sorted(by_id)
    closed: list[Hold] = []
    with connection.cursor() as cursor:
        for start in range(0, len(ids), MAX_PARAMS):
            part = ids[start : start + MAX_PARAMS]
            cursor.execute(
                _settle_sql(connection.vendor, len(part)),
                [Hold.Status.SETTLED, resolved_at, *part, Hold.Status.HELD],
            )
            for (pk,) in cursor.fetchall():
                hold = by_id[pk]
                hold.status, hold.resolved_at = Hold.Status.SETTLED, now
                closed.append(hold)
    return closed


def _hold_periods(holds: list[Hold]) -> dict[int, tuple[Hold, set[int]]]:
    """Each hold (by id) with the ids of the periods it reserved in: those kept with a hold
    admitted in this process, the others' from the link table in one SELECT."""
    periods: dict[int, tuple[Hold, set[int]]] = {}
    unknown: list[int] = []
    for hold in holds:
        known = getattr(hold, "known_periods", None)
        periods[hold.pk] = (hold, {p.pk for p in known} if known is not None else set())
        if known is None:
            unknown.append(hold.pk)
    links = values_in(Hold.periods.through, ("hold", "budgetperiod"), "hold", unknown)
    for _, hold_id, period_id in links:
        periods[hold_id][1].add(period_id)
    return periods
