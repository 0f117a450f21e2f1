"""Money: budgets now; versioned prices and the append-only ledger come with the money engine."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from routing.models import Team, Workload


class Budget(models.Model):
    """A spending limit for a team, or one workload of it, per period."""

    class Period(models.TextChoices):
        DAY = "day"
        WEEK = "week"
        MONTH = "month"

    class Enforcement(models.TextChoices):
        HARD = "hard", "Hard (refuse when it would be exceeded)"
        SOFT = "soft", "Soft (apply the policy's breach action)"

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
    limit_usd = models.DecimalField(max_digits=20, decimal_places=10)  # US dollars
    enforcement = models.CharField(
        max_length=4, choices=Enforcement.choices, default=Enforcement.HARD
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
        ]

    def __str__(self) -> str:
        scope = f"{self.team.slug}/{self.workload.slug}" if self.workload_id else self.team.slug
        return f"{scope} {self.period} ${self.limit_usd:.2f}"

    def clean(self) -> None:
        if self.workload_id and self.team_id and self.workload.team_id != self.team_id:
            raise ValidationError({"workload": "The workload belongs to another team."})
