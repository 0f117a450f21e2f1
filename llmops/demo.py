"""The demo world: two teams, simulator providers, models in three tiers, workloads, budgets.

Idempotent: running it again converges to the same rows (and repoints the
providers if the simulator moved) without creating duplicates.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from billing.models import Budget
from billing.services import prices_sync
from routing.models import (
    ApiKey,
    LatencyClass,
    LlmModel,
    PolicyModel,
    Provider,
    RoutingPolicy,
    Team,
    Tier,
    Workload,
)
from routing.services import api_key_reset

# (provider slug, model id, tier, context window, max output tokens)
MODELS = [
    ("sim-openai", "gpt-4o-mini", Tier.ECONOMY, 128_000, 16_384),
    ("sim-openai", "gpt-4o", Tier.STANDARD, 128_000, 16_384),
    ("sim-openai", "gpt-4.1", Tier.PREMIUM, 1_047_576, 32_768),
    ("sim-anthropic", "claude-haiku-4-5", Tier.ECONOMY, 200_000, 64_000),
    ("sim-anthropic", "claude-sonnet-4-5", Tier.STANDARD, 200_000, 64_000),
    ("sim-anthropic", "claude-opus-4-1", Tier.PREMIUM, 200_000, 32_000),
]

# (name, tier, allow batch, max buffer wait s, response cache, chain)
POLICIES = [
    # gpt-4o-mini last: the cheaper tier a soft-budget breach downgrades to.
    ("interactive", Tier.STANDARD, False, 0, False, ["gpt-4o", "claude-sonnet-4-5", "gpt-4o-mini"]),
    # A search box sees the same questions again and again: cache them.
    ("interactive-economy", Tier.ECONOMY, False, 0, True, ["gpt-4o-mini", "claude-haiku-4-5"]),
    ("deferrable-economy", Tier.ECONOMY, True, 300, False, ["gpt-4o-mini", "claude-haiku-4-5"]),
    ("overnight-batch", Tier.STANDARD, True, 3600, False, ["claude-sonnet-4-5", "gpt-4o"]),
]
# The simulator finishes demo batches in minutes (real providers promise 24 h).
SIMULATED_BATCH_TURNAROUND = timedelta(minutes=10)

# team → [(slug, description, latency class, deadline, policy)]
WORKLOADS = {
    "acme": [
        (
            "product-search",
            "Answers shoppers' questions in the search box.",
            LatencyClass.REALTIME,
            None,
            "interactive-economy",
        ),
        (
            "review-moderation",
            "Flags abusive or fake product reviews.",
            LatencyClass.NEAR_REALTIME,
            timedelta(hours=1),
            "deferrable-economy",
        ),
        (
            "product-descriptions",
            "Writes catalogue descriptions overnight.",
            LatencyClass.SCHEDULED,
            timedelta(hours=24),
            "overnight-batch",
        ),
        (
            "ticket-summaries",
            "Summarises closed support tickets for the weekly review.",
            LatencyClass.SCHEDULED,
            timedelta(hours=24),
            "overnight-batch",
        ),
    ],
    "globex": [
        (
            "dashboard-qa",
            "Answers analysts' questions about their dashboards.",
            LatencyClass.REALTIME,
            None,
            "interactive",
        ),
        (
            "nightly-reports",
            "Drafts the nightly KPI report.",
            LatencyClass.SCHEDULED,
            timedelta(hours=24),
            "overnight-batch",
        ),
    ],
}

TEAMS = {"acme": "Acme Retail", "globex": "Globex Analytics"}
# What the OpenAI-compatible API serves for the demo key when a call names no X-Workload.
DEFAULT_WORKLOAD = {"acme": "product-search", "globex": "dashboard-qa"}

# team → (monthly hard limit, {workload: monthly soft limit})
BUDGETS = {
    "acme": (Decimal("500"), {"product-descriptions": Decimal("150")}),
    "globex": (Decimal("200"), {}),
}


@dataclass
class DemoResult:
    admin_username: str
    admin_can_log_in: bool
    api_key_team: str | None


@transaction.atomic
def demo_seed(
    *,
    simulator_url: str,
    admin_username: str = "admin",
    admin_password: str | None = None,
    api_key: str | None = None,
    api_key_team: str = "acme",
) -> DemoResult:
    """Create or update the demo world. `api_key` sets the team's `demo` admin key secret."""
    simulator_url = simulator_url.rstrip("/")
    teams = {
        slug: Team.objects.update_or_create(slug=slug, defaults={"name": name})[0]
        for slug, name in TEAMS.items()
    }
    if api_key_team not in teams:
        raise ValueError(f"unknown team {api_key_team!r}; the demo has {', '.join(teams)}")

    User = get_user_model()
    admin_user, created = User.objects.get_or_create(
        username=admin_username, defaults={"is_staff": True, "is_superuser": True}
    )
    if admin_password is not None or created:
        if admin_password:
            admin_user.set_password(admin_password)
        else:
            admin_user.set_unusable_password()
        admin_user.is_staff = admin_user.is_superuser = True
        admin_user.save()
    teams["acme"].members.add(admin_user)

    providers = {
        "sim-openai": _provider(
            "sim-openai", "Simulated OpenAI", Provider.Kind.OPENAI, f"{simulator_url}/openai/v1"
        ),
        "sim-anthropic": _provider(
            "sim-anthropic",
            "Simulated Anthropic",
            Provider.Kind.ANTHROPIC,
            f"{simulator_url}/anthropic",
        ),
    }
    models = {}
    for provider_slug, model_id, tier, context, max_out in MODELS:
        models[model_id], _ = LlmModel.objects.update_or_create(
            provider=providers[provider_slug],
            model_id=model_id,
            defaults={"tier": tier, "context_window": context, "max_output_tokens": max_out},
        )

    for team_slug, team in teams.items():
        policies = {}
        for name, tier, allow_batch, wait, cache, chain in POLICIES:
            policy, _ = RoutingPolicy.objects.update_or_create(
                team=team,
                name=name,
                defaults={
                    "tier": tier,
                    "allow_batch": allow_batch,
                    "max_batch_wait_seconds": wait,
                    "cache_enabled": cache,
                },
            )
            PolicyModel.objects.filter(policy=policy).delete()
            PolicyModel.objects.bulk_create(
                PolicyModel(policy=policy, model=models[m], position=i) for i, m in enumerate(chain)
            )
            policies[name] = policy
        workloads = {}
        for slug, description, latency, deadline, policy_name in WORKLOADS[team_slug]:
            workloads[slug], _ = Workload.objects.update_or_create(
                team=team,
                slug=slug,
                defaults={
                    "description": description,
                    "latency_class": latency,
                    "deadline": deadline,
                    "policy": policies[policy_name],
                },
            )
        team_limit, workload_limits = BUDGETS[team_slug]
        Budget.objects.update_or_create(
            team=team,
            workload=None,
            period=Budget.Period.MONTH,
            defaults={"limit_usd": team_limit, "hard": True},
        )
        for slug, limit in workload_limits.items():
            Budget.objects.update_or_create(
                team=team,
                workload=workloads[slug],
                period=Budget.Period.MONTH,
                defaults={"limit_usd": limit, "hard": False},
            )

    # Published prices for the demo models (a no-op when they are already current).
    prices_sync(models=list(models.values()))

    if api_key is not None:
        key = api_key_reset(
            team=teams[api_key_team], name="demo", role=ApiKey.Role.ADMIN, secret=api_key
        )
        key.default_workload = Workload.objects.get(
            team=key.team, slug=DEFAULT_WORKLOAD[api_key_team]
        )
        key.save(update_fields=["default_workload"])
    return DemoResult(
        admin_username=admin_username,
        admin_can_log_in=admin_user.has_usable_password(),
        api_key_team=api_key_team if api_key else None,
    )


def _provider(slug: str, name: str, kind: str, base_url: str) -> Provider:
    provider, created = Provider.objects.get_or_create(
        slug=slug,
        defaults={
            "name": name,
            "kind": kind,
            "base_url": base_url,
            "expected_batch_turnaround": SIMULATED_BATCH_TURNAROUND,
        },
    )
    if created or provider.base_url != base_url or not provider.has_api_key:
        provider.base_url = base_url
        # The simulator accepts any key; setting one exercises encryption at rest.
        provider.set_api_key("sim-demo-key")
        provider.save(update_fields=["base_url", "api_key_encrypted", "updated_at"])
    return provider
