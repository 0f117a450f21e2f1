"""Random interleavings of reserve / settle / release / record / reverse / sweep / retry against
one hard team budget and one hard workload budget, checked against a model after every step.

Every amount is a whole number of cents: the model counts them as integers, so any rounding
in the database (SQLite keeping money as binary floats, before MoneyField) shows up as a
mismatch. The limits are small, so refusals are frequent.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    multiple,
    precondition,
    rule,
)

from billing.models import Budget, BudgetPeriod, Hold, LedgerEntry, Processing
from billing.pricing import PriceVersion, Rates, Usage
from billing.selectors import budget_status, ledger_drift
from billing.services import (
    BudgetExceeded,
    budget_create,
    budget_reserve,
    hold_release,
    hold_settle,
    holds_sweep,
    ledger_record_usage,
    ledger_reverse,
    price_create,
)
from routing.models import LlmModel, Mode, PolicyModel, Provider, RoutingPolicy, Team, Workload

UNIT = Decimal("0.01")  # a cent: not exact in binary, so float money would drift
LIMITS = {"team": 40, "workload": 24}  # units
BUDGETS_OF_SCOPE = {"team": ("team",), "workload": ("team", "workload")}
AT = datetime(2030, 6, 15, 12, tzinfo=UTC)  # every event of an example, in one budget month
HELD, SETTLED, RELEASED, EXPIRED = Hold.Status.values


@pytest.fixture
def interleaving_world(team: Team) -> None:
    """One model at one unit per token (any kind of token), one workload, two hard budgets."""
    provider = Provider.objects.create(
        slug="units",
        name="Units",
        kind=Provider.Kind.OPENAI_COMPATIBLE,
        base_url="http://127.0.0.1:9/v1",
    )
    model = LlmModel.objects.create(
        provider=provider, model_id="unit-model", context_window=1_000, max_output_tokens=100
    )
    per_mtok = UNIT * 1_000_000
    price_create(
        model=model,
        version=PriceVersion(
            id=None,
            model="unit-model",
            processing=Processing.STANDARD,
            effective_from=AT - timedelta(days=1),
            rates=Rates(
                input=per_mtok, cached_input=per_mtok, cache_write=per_mtok, output=per_mtok
            ),
        ),
        effective_from=AT - timedelta(days=1),
    )
    policy = RoutingPolicy.objects.create(team=team, name="units")
    PolicyModel.objects.create(policy=policy, model=model, position=0)
    workload = Workload.objects.create(
        team=team, slug="units", latency_class="realtime", policy=policy
    )
    budget_create(team=team, period="month", limit_usd=LIMITS["team"] * UNIT)
    budget_create(team=team, workload=workload, period="month", limit_usd=LIMITS["workload"] * UNIT)


@dataclass
class ModelHold:
    scope: str
    units: int
    expires_at: datetime
    status: str = HELD


@dataclass
class ModelEntry:
    scope: str
    units: int
    backed: bool  # settled a live hold: admission already counted it
    reversed: bool = False


class LedgerMachine(RuleBasedStateMachine):
    holds = Bundle("holds")
    charges = Bundle("charges")

    def __init__(self) -> None:
        super().__init__()
        # Each example runs in a savepoint that teardown rolls back: a fresh ledger per example.
        self._example = transaction.atomic()
        self._example.__enter__()
        self.team = Team.objects.get(slug="acme")
        self.workload = Workload.objects.get(team=self.team, slug="units")
        self.llm = LlmModel.objects.get(model_id="unit-model")
        self.budgets = {
            "team": Budget.objects.get(team=self.team, workload=None),
            "workload": Budget.objects.get(workload=self.workload),
        }
        self.spent = dict.fromkeys(LIMITS, 0)
        self.reserved = dict.fromkeys(LIMITS, 0)
        # Usage recorded without a live hold behind it (direct records, late settles): the
        # only way spent + reserved may pass a hard limit, and by no more than this.
        self.unbacked = dict.fromkeys(LIMITS, 0)
        self.model_holds: dict[str, ModelHold] = {}
        self.model_entries: dict[str, ModelEntry] = {}
        self.calls: list[tuple[str, tuple]] = []
        self.serial = 0

    def teardown(self) -> None:
        transaction.set_rollback(True)
        self._example.__exit__(None, None, None)

    def _key(self, prefix: str) -> str:
        self.serial += 1
        return f"{prefix}-{self.serial}"

    def _workload(self, scope: str) -> Workload | None:
        return self.workload if scope == "workload" else None

    def _book(self, scope: str, counter: dict[str, int], units: int) -> None:
        for budget in BUDGETS_OF_SCOPE[scope]:
            counter[budget] += units

    # --- rules ---------------------------------------------------------------------------

    @rule(
        target=holds,
        scope=st.sampled_from(sorted(BUDGETS_OF_SCOPE)),
        units=st.integers(0, 16),
        ttl_hours=st.integers(1, 2),
    )
    def reserve(self, scope, units, ttl_hours):
        args = (self._key("req"), scope, units, ttl_hours)
        self.calls.append(("do_reserve", args))
        return args[0] if self.do_reserve(*args) else multiple()

    @rule(target=charges, hold=holds, data=st.data())
    def settle(self, hold, data):
        # The product settles at most the worst case it reserved.
        tokens = data.draw(st.integers(0, self.model_holds[hold].units), label="tokens")
        self.calls.append(("do_settle", (hold, tokens)))
        return self.do_settle(hold, tokens) or multiple()

    @rule(hold=holds)
    def release(self, hold):
        self.calls.append(("do_release", (hold,)))
        self.do_release(hold)

    @rule(
        target=charges,
        scope=st.sampled_from(sorted(BUDGETS_OF_SCOPE)),
        tokens=st.integers(0, 12),
        cache_hit=st.booleans(),
    )
    def record(self, scope, tokens, cache_hit):
        args = (self._key("direct"), scope, tokens, cache_hit)
        self.calls.append(("do_record", args))
        return self.do_record(*args) or multiple()

    @rule(charge=charges)
    def reverse(self, charge):
        self.calls.append(("do_reverse", (charge,)))
        self.do_reverse(charge)

    @rule(hours=st.integers(0, 3))
    def sweep(self, hours):
        now = AT + timedelta(hours=hours)
        due = [h for h in self.model_holds.values() if h.status == HELD and h.expires_at < now]
        assert holds_sweep(now=now) == len(due)
        event(f"sweep: expired {len(due)}")
        for hold in due:
            hold.status = EXPIRED
            self._book(hold.scope, self.reserved, -hold.units)

    @precondition(lambda self: self.calls)
    @rule(data=st.data())
    def retry(self, data):
        """A client or task repeats an earlier call with the same key and arguments."""
        name, args = data.draw(st.sampled_from(self.calls), label="repeated call")
        getattr(self, name)(*args)

    # --- one call and its expected effect --------------------------------------------------

    def do_reserve(self, key: str, scope: str, units: int, ttl_hours: int) -> bool:
        known = key in self.model_holds
        fits = all(
            self.spent[b] + self.reserved[b] + units <= LIMITS[b] for b in BUDGETS_OF_SCOPE[scope]
        )
        try:
            admission = budget_reserve(
                key=key,
                team=self.team,
                workload=self._workload(scope),
                amount=units * UNIT,
                at=AT,
                ttl=timedelta(hours=ttl_hours),
            )
        except BudgetExceeded:
            assert not known, "a repeated reservation was refused"
            assert not fits, "refused a reservation that fits every budget"
            event("reserve: refused")
            return False
        assert admission.hold.key == key
        assert admission.created is not known
        if not known:
            assert fits, "admitted a reservation that takes a hard budget over its limit"
            self.model_holds[key] = ModelHold(scope, units, AT + timedelta(hours=ttl_hours))
            self._book(scope, self.reserved, units)
        return True

    def do_settle(self, hold_key: str, tokens: int) -> str | None:
        key = f"{hold_key}:charge"
        hold = self.model_holds[hold_key]
        entry, created = hold_settle(
            hold=Hold.objects.get(key=hold_key),
            key=key,
            model=self.llm,
            mode=Mode.REALTIME,
            usage=Usage(input_tokens=tokens),
            at=AT,
        )
        assert created is (key not in self.model_entries)
        if not created:
            assert entry.cost_usd == self.model_entries[key].units * UNIT
            event("settle: repeated")
            return None
        assert entry.cost_usd == tokens * UNIT
        backed = hold.status == HELD
        event(f"settle: a hold that was {hold.status}")
        self.model_entries[key] = ModelEntry(hold.scope, tokens, backed)
        self._book(hold.scope, self.spent, tokens)
        if backed:
            hold.status = SETTLED
            self._book(hold.scope, self.reserved, -hold.units)
        else:  # the sweeper or a release gave the reservation back already
            self._book(hold.scope, self.unbacked, tokens)
        return key

    def do_release(self, hold_key: str) -> None:
        hold = self.model_holds[hold_key]
        released = hold_release(hold=Hold.objects.get(key=hold_key))
        assert released is (hold.status == HELD)
        if released:
            hold.status = RELEASED
            self._book(hold.scope, self.reserved, -hold.units)

    def do_record(self, key: str, scope: str, tokens: int, cache_hit: bool) -> str | None:
        entry, created = ledger_record_usage(
            key=key,
            team=self.team,
            workload=self._workload(scope),
            model=self.llm,
            mode=Mode.CACHE if cache_hit else Mode.REALTIME,
            usage=Usage(output_tokens=tokens),
            at=AT,
        )
        assert created is (key not in self.model_entries)
        if created:
            units = 0 if cache_hit else tokens
            self.model_entries[key] = ModelEntry(scope, units, backed=False)
            self._book(scope, self.spent, units)
            self._book(scope, self.unbacked, units)
        assert entry.cost_usd == self.model_entries[key].units * UNIT
        assert entry.counterfactual_cost_usd == tokens * UNIT
        return key if created else None

    def do_reverse(self, charge_key: str) -> None:
        charge = self.model_entries[charge_key]
        reversal, created = ledger_reverse(
            entry=LedgerEntry.objects.get(idempotency_key=charge_key), reason="property test"
        )
        assert created is not charge.reversed
        event(f"reverse: {'first' if created else 'repeated'}")
        assert reversal.cost_usd == -charge.units * UNIT
        if created:
            charge.reversed = True
            self._book(charge.scope, self.spent, -charge.units)
            if not charge.backed:
                self._book(charge.scope, self.unbacked, -charge.units)

    # --- after every step ------------------------------------------------------------------

    @invariant()
    def counters_equal_the_models_and_stay_within_the_hard_limits(self):
        assert BudgetPeriod.objects.count() <= len(self.budgets)
        for name, budget in self.budgets.items():
            status = budget_status(budget, AT)
            assert budget.hard
            assert (status.spent_usd, status.reserved_usd) == (
                self.spent[name] * UNIT,
                self.reserved[name] * UNIT,
            ), name
            # With only reservation-backed usage (unbacked == 0) this is spent + reserved ≤ limit.
            assert status.spent_usd + status.reserved_usd <= (
                status.limit_usd + self.unbacked[name] * UNIT
            ), name

    @invariant()
    def no_key_is_recorded_twice(self):
        keys = list(LedgerEntry.objects.values_list("idempotency_key", flat=True))
        reversals = sum(entry.reversed for entry in self.model_entries.values())
        assert len(keys) == len(set(keys)) == len(self.model_entries) + reversals
        hold_keys = list(Hold.objects.values_list("key", flat=True))
        assert len(hold_keys) == len(set(hold_keys)) == len(self.model_holds)

    @invariant()
    def the_counters_reconcile_with_the_ledger(self):
        assert ledger_drift() == []

    @invariant()
    def every_hold_is_in_exactly_the_state_the_model_expects(self):
        actual = {
            key: (status, resolved_at is None, amount)
            for key, status, resolved_at, amount in Hold.objects.values_list(
                "key", "status", "resolved_at", "amount_usd"
            )
        }
        expected = {
            key: (hold.status, hold.status == HELD, hold.units * UNIT)
            for key, hold in self.model_holds.items()
        }
        assert actual == expected


LedgerMachine.TestCase.settings = settings(
    max_examples=40,
    stateful_step_count=25,
    deadline=None,
    derandomize=True,  # the same interleavings on every run and on both databases
    database=None,  # nothing written into the repository
    suppress_health_check=[HealthCheck.too_slow],
)
TestLedgerInterleavings = LedgerMachine.TestCase
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("interleaving_world")]
