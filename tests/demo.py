from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from billing.models import Budget
from routing.models import LlmModel, Team, Workload


def mid_next_month(now: datetime) -> datetime:
    """Noon on the 15th of the month after `now`: every price synced at `now` is in force,
    and usage at this time ± a few days falls in one budget month whatever today is."""
    first = now.astimezone(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=15)


@dataclass
class Demo:
    acme: Team
    globex: Team
    models: dict[str, LlmModel]  # by model id
    workloads: dict[str, Workload]  # by slug (unique across the demo's two teams)
    at: datetime  # when tests record usage: after the price sync, mid-month
    synced_at: datetime  # no price is in force before this

    def budget(self, team: Team, workload: Workload | None = None) -> Budget:
        return Budget.objects.get(team=team, workload=workload, period=Budget.Period.MONTH)


@pytest.fixture
def demo(db) -> Demo:
    """The seeded demo world: acme (hard $500 team budget; soft $150 on product-descriptions)
    and globex (hard $200), six models with standard and batch prices from genai-prices."""
    before = timezone.now()
    call_command("seed_demo", "--simulator-url", "http://127.0.0.1:9", stdout=io.StringIO())
    return Demo(
        acme=Team.objects.get(slug="acme"),
        globex=Team.objects.get(slug="globex"),
        models={m.model_id: m for m in LlmModel.objects.select_related("provider")},
        workloads={w.slug: w for w in Workload.objects.select_related("policy", "team")},
        at=mid_next_month(before),
        synced_at=before,
    )
