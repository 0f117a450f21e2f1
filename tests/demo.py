"""The demo world the `demo` fixture (tests/conftest.py) seeds for a test: `seed_demo` against
the session's simulator, with one API key every test module shares (DEMO_KEY)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from billing.models import Budget
from routing.models import LlmModel, Team, Workload

# Acme's admin-role API key 'demo' (`seed_demo --api-key`); calls that name no workload go to
# product-search, its default.
DEMO_KEY = "llm_demo-test-key-0123456789"


def mid_next_month(now: datetime) -> datetime:
    """Noon on the 15th of the month after `now`: every price synced at `now` is in force,
    and usage at this time ± a few days falls in one budget month whatever today is."""
    first = now.astimezone(UTC).replace(day=1, hour=12, minute=0, second=0, microsecond=0)
    return (first + timedelta(days=32)).replace(day=15)


@dataclass
class Demo:
    """acme (hard $500 team budget; soft $150 on product-descriptions) and globex (hard $200),
    six models with standard and batch prices from genai-prices, providers at the simulator."""

    acme: Team
    globex: Team
    models: dict[str, LlmModel]  # by model id
    workloads: dict[str, Workload]  # by slug (unique across the demo's two teams)
    at: datetime  # when tests record usage: after the price sync, mid-month
    synced_at: datetime  # no price is in force before this
    key: str = DEMO_KEY  # the raw secret of acme's admin-role key 'demo'

    def budget(self, team: Team, workload: Workload | None = None) -> Budget:
        return Budget.objects.get(team=team, workload=workload, period=Budget.Period.MONTH)
