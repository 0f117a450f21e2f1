"""Money: versioned prices, the append-only ledger, budgets with their period counters and holds.

All amounts are US dollars as Decimal with 12 decimal places: a request often
costs a fraction of a cent, which micro-dollars would round away. They are
MoneyFields, stored as exact integers of picodollars (billing/fields.py says why).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.fields import MAX_USD, MoneyField
from billing.pricing import plain
from routing.models import LlmModel, Mode, Request, Team, Workload

# At most 15 significant digits: SQLite keeps a decimal as a binary float, which round-trips
# exactly only that far. Up to $99,999.9999999999 per million tokens.
RATE = {"max_digits": 15, "decimal_places": 10}


class Processing(models.TextChoices):
    STANDARD = "standard"
    BATCH = "batch"
    FLEX = "flex"
    PRIORITY = "priority"


class Price(models.Model):
    """One version of a model's rates for one kind of processing. Never edited: a change is a
    new row with a later effective_from (a negotiated rate, a provider price change)."""

    model = models.ForeignKey(LlmModel, on_delete=models.PROTECT, related_name="prices")
    processing = models.CharField(max_length=10, choices=Processing.choices)
    effective_from = models.DateTimeField()
    # USD per million tokens.
    input_per_mtok = models.DecimalField(**RATE)
    cached_input_per_mtok = models.DecimalField(**RATE, help_text="Cache reads.")
    cache_write_per_mtok = models.DecimalField(**RATE)
    output_per_mtok = models.DecimalField(**RATE)
    # Blank: reasoning tokens cost what output tokens cost.
    reasoning_per_mtok = models.DecimalField(**RATE, null=True, blank=True)
    # Long-context "cliff" tiers: [{"above_input_tokens": 200000, "input": "6", ...}], rates
    # as decimal strings (JSON numbers would come back as floats).
    tiers = models.JSONField(default=list, blank=True)
    source = models.CharField(max_length=100, help_text="e.g. genai-prices 0.2.3, or admin.")
    derived = models.BooleanField(
        default=False, help_text="Computed by the provider's documented rule (batch = 50%)."
    )
    note = models.CharField(max_length=300, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["model", "processing", "-effective_from"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "processing", "effective_from"], name="price_version_unique"
            ),
        ]
        indexes = [models.Index(fields=["model", "processing", "-effective_from"])]

    def __str__(self) -> str:
        when = f"{self.effective_from:%Y-%m-%d}"
        return f"price #{self.pk} {self.model_id}/{self.processing} from {when}"


class LedgerEntry(models.Model):
    """One priced usage event. Append-only: a database trigger refuses UPDATE and DELETE."""

    class Kind(models.TextChoices):
        CHARGE = "charge"
        REVERSAL = "reversal"
        ESTIMATE = "estimate"  # usage we could not read back (a cut stream), flagged as such

    idempotency_key = models.CharField(max_length=200, unique=True)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    mode = models.CharField(max_length=10, choices=Mode.choices)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="ledger_entries")
    workload = models.ForeignKey(
        Workload, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    request = models.ForeignKey(
        Request, null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    model = models.ForeignKey(LlmModel, on_delete=models.PROTECT, related_name="ledger_entries")
    # Negative only on reversals.
    input_tokens = models.BigIntegerField(default=0, help_text="Uncached input tokens.")
    cached_input_tokens = models.BigIntegerField(default=0)
    cache_write_tokens = models.BigIntegerField(default=0)
    output_tokens = models.BigIntegerField(default=0, help_text="Including reasoning tokens.")
    reasoning_tokens = models.BigIntegerField(default=0)
    price = models.ForeignKey(
        Price, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )  # null for cache hits, which cost nothing
    cost_usd = MoneyField()  # USD
    counterfactual_price = models.ForeignKey(Price, on_delete=models.PROTECT, related_name="+")
    # USD: the same usage served realtime at the standard price of the workload's primary model.
    counterfactual_cost_usd = MoneyField()
    # USD: the same usage on the model that served it, at its standard (realtime) price. With
    # it a saving splits exactly: counterfactual - standard is the model choice (tiering,
    # fallbacks), standard - cost what the mode (batch, cache) saved.
    standard_cost_usd = MoneyField()
    # USD: the same usage on that model at its batch price; null when the model has none. What
    # deferring would have cost: missed savings and the workload audit's recommendations.
    batch_cost_usd = MoneyField(null=True, blank=True)
    # USD: the same usage on that model at its flex price; null when it has none. What flex
    # would have cost (the audit's "allow flex").
    flex_cost_usd = MoneyField(null=True, blank=True)
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    occurred_at = models.DateTimeField(default=timezone.now, db_index=True)
    note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [
            models.Index(fields=["team", "occurred_at"], name="ledger_team_time"),
            models.Index(fields=["workload", "occurred_at"], name="ledger_workload_time"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind="reversal", reverses__isnull=False)
                | (~Q(kind="reversal") & Q(reverses__isnull=True)),
                name="ledger_reversal_names_its_entry",
            ),
            models.CheckConstraint(
                condition=Q(kind="reversal")
                | Q(
                    cost_usd__gte=0,
                    counterfactual_cost_usd__gte=0,
                    standard_cost_usd__gte=0,
                    input_tokens__gte=0,
                    cached_input_tokens__gte=0,
                    cache_write_tokens__gte=0,
                    output_tokens__gte=0,
                    reasoning_tokens__gte=0,
                ),
                name="ledger_only_reversals_are_negative",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.idempotency_key} ${plain(self.cost_usd)}"


class Budget(models.Model):
    """A spending limit for a team, or one workload of it, per period."""

    class Period(models.TextChoices):
        DAY = "day"
        MONTH = "month"

    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="budgets")
    workload = models.ForeignKey(
        Workload,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="budgets",
        help_text="Blank: the whole team.",
    )
    period = models.CharField(max_length=5, choices=Period.choices, default=Period.MONTH)
    limit_usd = MoneyField(  # USD per period
        validators=[MaxValueValidator(MAX_USD, "A budget limit is at most $%(limit_value)s.")]
    )
    hard = models.BooleanField(
        default=True,
        help_text="Hard: refuse a request that could exceed it. Soft: apply the policy's "
        "breach action.",
    )
    alert_threshold = models.DecimalField(
        max_digits=4,
        decimal_places=3,
        default="0.800",
        help_text="Share of the limit (0 to 1) at which to alert.",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["team__slug", "workload__slug", "period"]
        constraints = [
            models.UniqueConstraint(
                fields=["team", "period"],
                condition=Q(workload__isnull=True),
                name="budget_one_team_budget_per_period",
            ),
            models.UniqueConstraint(
                fields=["workload", "period"],
                condition=Q(workload__isnull=False),
                name="budget_one_workload_budget_per_period",
            ),
            models.CheckConstraint(condition=Q(limit_usd__gt=0), name="budget_limit_positive"),
            models.CheckConstraint(
                condition=Q(alert_threshold__gt=0, alert_threshold__lte=1),
                name="budget_alert_threshold_share",
            ),
        ]

    def __str__(self) -> str:
        scope = f"{self.team.slug}/{self.workload.slug}" if self.workload_id else self.team.slug
        return f"{scope} {self.period} ${self.limit_usd:.2f}"

    def clean(self) -> None:
        if self.workload_id and self.team_id and self.workload.team_id != self.team_id:
            raise ValidationError({"workload": "The workload belongs to another team."})


class BudgetPeriod(models.Model):
    """A budget's counters for one period. Caches of the ledger and holds (reconcile_ledger
    checks them); the limit is copied here so admission is a single-row conditional UPDATE."""

    budget = models.ForeignKey(Budget, on_delete=models.CASCADE, related_name="periods")
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    limit_usd = MoneyField()  # USD
    spent_usd = MoneyField(default=0)  # USD, sum of the period's entries
    reserved_usd = MoneyField(default=0)  # USD, sum of open holds

    class Meta:
        ordering = ["budget", "-starts_at"]
        constraints = [
            models.UniqueConstraint(fields=["budget", "starts_at"], name="budget_period_unique"),
            models.CheckConstraint(condition=Q(reserved_usd__gte=0), name="reserved_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.budget} from {self.starts_at:%Y-%m-%d}"


class Hold(models.Model):
    """A reservation of worst-case cost against every budget a request touches."""

    class Status(models.TextChoices):
        HELD = "held"
        SETTLED = "settled"
        RELEASED = "released"
        EXPIRED = "expired"

    key = models.CharField(max_length=200, unique=True)
    team = models.ForeignKey(Team, on_delete=models.PROTECT, related_name="holds")
    workload = models.ForeignKey(
        Workload, null=True, blank=True, on_delete=models.PROTECT, related_name="holds"
    )
    request = models.ForeignKey(
        Request, null=True, blank=True, on_delete=models.PROTECT, related_name="holds"
    )
    amount_usd = MoneyField()  # USD
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.HELD)
    periods = models.ManyToManyField(BudgetPeriod, related_name="holds", blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["status", "expires_at"], name="hold_open_expiry")]
        constraints = [
            models.CheckConstraint(condition=Q(amount_usd__gte=0), name="hold_amount_not_negative")
        ]

    def __str__(self) -> str:
        return f"hold {self.key} ${plain(self.amount_usd)} {self.status}"
