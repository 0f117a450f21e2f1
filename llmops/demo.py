"""The demo world: two teams, four simulator providers (OpenAI, Anthropic, Azure OpenAI,
Gemini), models in three tiers, workloads, budgets.

Run again (every `make run` does), it creates what is missing (a deleted demo row comes back
as the demo has it) and leaves every existing row as it is: an operator's edits in the admin
(a workload's latency class, a policy, a chain, a budget, a model's tier, a price) survive.
The exceptions: `api_key` resets the team's `demo` key and `admin_password` the admin's
password, both asked for explicitly (`make run` asks for the first only: it gives the admin
its password only when it creates the admin); and a demo provider nobody changed since the
seed wrote it follows the simulator if that moved (see `_provider`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.contrib.auth import get_user_model
from django.db import transaction

from billing.models import Budget
from billing.services import prices_sync
from llmops.crypto import DecryptionError
from routing.keys import api_key_reset
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

# (provider slug, model id, tier, context window, max output tokens)
MODELS = [
    ("sim-openai", "gpt-4o-mini", Tier.ECONOMY, 128_000, 16_384),
    # Has a flex price: deferrable requests due in minutes are served at flex (about half).
    ("sim-openai", "gpt-5-mini", Tier.ECONOMY, 400_000, 128_000),
    ("sim-openai", "gpt-4o", Tier.STANDARD, 128_000, 16_384),
    ("sim-openai", "gpt-4.1", Tier.PREMIUM, 1_047_576, 32_768),
    ("sim-anthropic", "claude-haiku-4-5", Tier.ECONOMY, 200_000, 64_000),
    ("sim-anthropic", "claude-sonnet-4-6", Tier.STANDARD, 200_000, 64_000),
    ("sim-anthropic", "claude-opus-4-1", Tier.PREMIUM, 200_000, 32_000),
    ("sim-gemini", "gemini-2.5-flash-lite", Tier.ECONOMY, 1_048_576, 65_536),
    ("sim-gemini", "gemini-2.5-flash", Tier.STANDARD, 1_048_576, 65_536),
]
# Azure OpenAI serves OpenAI's models under deployments its customer names: (provider slug,
# model id, deployment, tier, context window, max output tokens). Models sim-openai does not
# serve, so a model id names one model in the demo (the calculator asks for a provider when
# two serve one). genai-prices lists Azure's own price for o4-mini; gpt-4.1-mini is priced at
# OpenAI's (marked derived).
AZURE_MODELS = [
    ("sim-azure", "gpt-4.1-mini", "llmops-gpt-41-mini", Tier.ECONOMY, 1_047_576, 32_768),
    ("sim-azure", "o4-mini", "llmops-o4-mini", Tier.STANDARD, 200_000, 100_000),
]
# Models an earlier seed added that their provider has since retired → what replaces them:
# a demo database keeps working (the seed swaps them in the demo policies' chains).
RETIRED = {"claude-sonnet-4-5": "claude-sonnet-4-6"}  # Anthropic retired it on 2026-11-30
# (provider slug, model id, tier, tokens per input): embedding models write no tokens.
EMBEDDING_MODELS = [
    ("sim-openai", "text-embedding-3-small", Tier.ECONOMY, 8_192),
    ("sim-openai", "text-embedding-3-large", Tier.STANDARD, 8_192),
]

# (name, tier, allow batch, max buffer wait s, response cache, chain)
POLICIES = [
    # gpt-4o-mini last: the cheaper tier a soft-budget breach downgrades to.
    ("interactive", Tier.STANDARD, False, 0, False, ["gpt-4o", "claude-sonnet-4-6", "gpt-4o-mini"]),
    # A search box sees the same questions again and again: cache them.
    ("interactive-economy", Tier.ECONOMY, False, 0, True, ["gpt-4o-mini", "claude-haiku-4-5"]),
    ("deferrable-economy", Tier.ECONOMY, True, 300, False, ["gpt-4o-mini", "claude-haiku-4-5"]),
    ("overnight-batch", Tier.STANDARD, True, 3600, False, ["claude-sonnet-4-6", "gpt-4o"]),
    # Realtime across three clouds: Gemini first, Azure if it fails, Claude last.
    (
        "multi-cloud",
        Tier.STANDARD,
        False,
        0,
        False,
        ["gemini-2.5-flash", "gpt-4.1-mini", "claude-haiku-4-5"],
    ),
    # Batches on Azure's Global Batch and on Gemini's batch mode (each half price).
    ("azure-batch", Tier.ECONOMY, True, 3600, False, ["gpt-4.1-mini", "gpt-4o-mini"]),
    (
        "gemini-batch",
        Tier.ECONOMY,
        True,
        3600,
        False,
        ["gemini-2.5-flash-lite", "gemini-2.5-flash"],
    ),
    # Due in minutes: no batch is back that fast, flex is (at about the batch price).
    ("flex-economy", Tier.ECONOMY, False, 0, False, ["gpt-5-mini", "gpt-4o-mini"]),
    # Flex switched off (as a cautious operator might): the workload audit shows what it costs.
    ("alerts", Tier.ECONOMY, False, 0, False, ["gpt-5-mini", "gpt-4o-mini"]),
    # A search box embeds the same queries again and again: cache them.
    ("embeddings-realtime", Tier.ECONOMY, False, 0, True, ["text-embedding-3-small"]),
    ("embeddings-batch", Tier.ECONOMY, True, 3600, False, ["text-embedding-3-small"]),
]
# Settings other than RoutingPolicy's defaults. The deadline margin (5 min by default, sized
# for batches): a flex call is planned with its p90 latency, so minutes are enough.
POLICY_SETTINGS = {
    "flex-economy": {"deadline_margin": timedelta(minutes=2)},
    "alerts": {"deadline_margin": timedelta(minutes=2), "allow_flex": False},
}
# The simulator finishes demo batches in minutes (real providers promise 24 h).
SIMULATED_BATCH_TURNAROUND = timedelta(minutes=10)
# The provider key seeds stored before it named the URL (_simulator_key).
LEGACY_SIMULATOR_KEY = "sim-demo-key"

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
            "support-triage",
            "Tags and routes incoming support emails within ten minutes.",
            LatencyClass.NEAR_REALTIME,
            timedelta(minutes=10),
            "flex-economy",
        ),
        (
            "product-descriptions",
            "Writes catalogue descriptions overnight.",
            LatencyClass.SCHEDULED,
            timedelta(hours=24),
            "overnight-batch",
        ),
        (
            "query-embeddings",
            "Embeds shoppers' search queries for retrieval.",
            LatencyClass.REALTIME,
            None,
            "embeddings-realtime",
        ),
        (
            "catalog-embeddings",
            "Re-embeds the product catalogue overnight.",
            LatencyClass.SCHEDULED,
            timedelta(hours=24),
            "embeddings-batch",
        ),
        (
            "ticket-summaries",
            "Summarises closed support tickets for the weekly review.",
            LatencyClass.SCHEDULED,
            timedelta(hours=24),
            "overnight-batch",
        ),
        (
            "listing-translations",
            "Translates new listings for the EU storefronts overnight (Azure Global Batch).",
            LatencyClass.SCHEDULED,
            timedelta(hours=24),
            "azure-batch",
        ),
        (
            "log-summaries",
            "Summarises the storefront's application logs nightly (Gemini batch mode).",
            LatencyClass.SCHEDULED,
            timedelta(hours=24),
            "gemini-batch",
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
            "anomaly-alerts",
            "Explains KPI anomalies to the on-call analyst within fifteen minutes.",
            LatencyClass.NEAR_REALTIME,
            timedelta(minutes=15),
            "alerts",
        ),
        (
            "nightly-reports",
            "Drafts the nightly KPI report.",
            LatencyClass.SCHEDULED,
            timedelta(hours=24),
            "overnight-batch",
        ),
        (
            "exec-briefings",
            "Answers executives' questions live; falls back across Gemini, Azure and Claude.",
            LatencyClass.REALTIME,
            None,
            "multi-cloud",
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
    # Demo providers left pointing somewhere other than this simulator because someone
    # changed them: (slug, where they point).
    providers_kept: list[tuple[str, str]] = field(default_factory=list)


@transaction.atomic
def demo_seed(
    *,
    simulator_url: str,
    admin_username: str = "admin",
    admin_password: str | None = None,
    new_admin_password: str | None = None,
    api_key: str | None = None,
    api_key_team: str = "acme",
) -> DemoResult:
    """Create whatever of the demo world is missing; existing rows are left as they are.

    `admin_password` sets the admin's password and `api_key` makes it the secret of the team's
    `demo` admin key (created, or reset if it exists): both are explicit resets.
    `new_admin_password` is the password of an admin this call creates, and nothing else (an
    operator who changed it keeps theirs).
    """
    simulator_url = simulator_url.rstrip("/")
    teams, teams_created = {}, set()
    for slug, name in TEAMS.items():
        teams[slug], created = Team.objects.get_or_create(slug=slug, defaults={"name": name})
        if created:
            teams_created.add(slug)
    if api_key_team not in teams:
        raise ValueError(f"unknown team {api_key_team!r}; the demo has {', '.join(teams)}")

    User = get_user_model()
    admin_user, admin_created = User.objects.get_or_create(
        username=admin_username, defaults={"is_staff": True, "is_superuser": True}
    )
    if admin_created and admin_password is None:
        admin_password = new_admin_password
    if admin_password is not None or admin_created:
        if admin_password:
            admin_user.set_password(admin_password)
        else:
            admin_user.set_unusable_password()
        admin_user.is_staff = admin_user.is_superuser = True
        admin_user.save()
    if admin_created or "acme" in teams_created:
        # Only when one of them is new: an operator may have taken the admin out of acme.
        teams["acme"].members.add(admin_user)

    result = DemoResult(
        admin_username=admin_username,
        admin_can_log_in=admin_user.has_usable_password(),
        api_key_team=api_key_team if api_key else None,
    )
    providers = {
        "sim-openai": _provider(
            "sim-openai",
            "Simulated OpenAI",
            Provider.Kind.OPENAI,
            f"{simulator_url}/openai/v1",
            result,
        ),
        "sim-anthropic": _provider(
            "sim-anthropic",
            "Simulated Anthropic",
            Provider.Kind.ANTHROPIC,
            f"{simulator_url}/anthropic",
            result,
        ),
        "sim-azure": _provider(
            "sim-azure",
            "Simulated Azure OpenAI",
            Provider.Kind.AZURE_OPENAI,
            f"{simulator_url}/azure/openai/v1",
            result,
        ),
        "sim-gemini": _provider(
            "sim-gemini",
            "Simulated Gemini",
            Provider.Kind.GEMINI,
            f"{simulator_url}/gemini",
            result,
        ),
    }
    models = {}
    for provider_slug, model_id, tier, context, max_out in MODELS:
        models[model_id], _ = LlmModel.objects.get_or_create(
            provider=providers[provider_slug],
            model_id=model_id,
            defaults={"tier": tier, "context_window": context, "max_output_tokens": max_out},
        )
    for provider_slug, model_id, deployment, tier, context, max_out in AZURE_MODELS:
        models[model_id], _ = LlmModel.objects.get_or_create(
            provider=providers[provider_slug],
            model_id=model_id,
            defaults={
                "deployment": deployment,
                "tier": tier,
                "context_window": context,
                "max_output_tokens": max_out,
            },
        )
    for provider_slug, model_id, tier, context in EMBEDDING_MODELS:
        models[model_id], _ = LlmModel.objects.get_or_create(
            provider=providers[provider_slug],
            model_id=model_id,
            defaults={
                "kind": LlmModel.Kind.EMBEDDING,
                "tier": tier,
                "context_window": context,
                "max_output_tokens": 0,
            },
        )

    for team_slug, team in teams.items():
        policies = {}
        for name, tier, allow_batch, wait, cache, chain in POLICIES:
            policies[name], created = RoutingPolicy.objects.get_or_create(
                team=team,
                name=name,
                defaults={
                    "tier": tier,
                    "allow_batch": allow_batch,
                    "max_batch_wait_seconds": wait,
                    "cache_enabled": cache,
                    **POLICY_SETTINGS.get(name, {}),
                },
            )
            if created:  # an existing policy's chain is the operator's, even an empty one
                PolicyModel.objects.bulk_create(
                    PolicyModel(policy=policies[name], model=models[m], position=i)
                    for i, m in enumerate(chain)
                )
        workloads = {}
        for slug, description, latency, deadline, policy_name in WORKLOADS[team_slug]:
            workloads[slug], _ = Workload.objects.get_or_create(
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
        Budget.objects.get_or_create(
            team=team,
            workload=None,
            period=Budget.Period.MONTH,
            defaults={"limit_usd": team_limit, "hard": True},
        )
        for slug, limit in workload_limits.items():
            Budget.objects.get_or_create(
                team=team,
                workload=workloads[slug],
                period=Budget.Period.MONTH,
                defaults={"limit_usd": limit, "hard": False},
            )

    _retire(models)
    # A published price wherever a demo model has none in force: an operator's version stays.
    prices_sync(models=list(models.values()), missing_only=True)

    if api_key is not None:
        key = api_key_reset(
            team=teams[api_key_team], name="demo", role=ApiKey.Role.ADMIN, secret=api_key
        )
        key.default_workload = Workload.objects.get(
            team=key.team, slug=DEFAULT_WORKLOAD[api_key_team]
        )
        key.save(update_fields=["default_workload"])
    return result


def _retire(models: dict[str, LlmModel]) -> None:
    """A retired model an earlier seed added gives its place in every chain to its successor
    (where the chain does not hold it already) and is disabled: the provider answers it no
    more. An operator's own model of that name (another provider) is not touched."""
    for old_id, new_id in RETIRED.items():
        new = models[new_id]
        for old in LlmModel.objects.filter(provider=new.provider, model_id=old_id, enabled=True):
            for link in PolicyModel.objects.filter(model=old).select_related("policy"):
                if link.policy.links.filter(model=new).exists():
                    link.delete()
                else:
                    link.model = new
                    link.save(update_fields=["model"])
            old.enabled = False
            old.save(update_fields=["enabled"])


def _provider(slug: str, name: str, kind: str, base_url: str, result: DemoResult) -> Provider:
    """The demo provider `slug`: created pointing at the simulator, or as it is.

    The simulator's URL can change between runs (LLMOPS_SIMULATOR_URL, LLMOPS_SIM_PORT), and a
    provider still pointing at the old one breaks the demo; but an operator may have pointed
    the provider somewhere on purpose. The seed tells the two apart by the API key it stores:
    the simulator accepts any key, so the seed's key names the URL it was written with
    (`_simulator_key`). A provider whose key still matches its URL is the seed's and follows
    the simulator; one whose URL or key someone changed since is left alone (and reported).
    """
    provider, created = Provider.objects.get_or_create(
        slug=slug,
        defaults={
            "name": name,
            "kind": kind,
            "base_url": base_url,
            "expected_batch_turnaround": SIMULATED_BATCH_TURNAROUND,
        },
    )
    if created:
        _point(provider, base_url)
        return provider
    key = _stored_key(provider)
    if provider.base_url != base_url and key == _simulator_key(provider.base_url):
        _point(provider, base_url)  # the seed's, and the simulator moved
    elif provider.base_url != base_url:
        result.providers_kept.append((slug, provider.base_url))
    elif key == LEGACY_SIMULATOR_KEY:
        # Written by a seed before keys named their URL, and still at this simulator: the
        # seed's, so from now on it can follow the simulator too.
        _point(provider, base_url)
    return provider


def _point(provider: Provider, base_url: str) -> None:
    provider.base_url = base_url
    provider.set_api_key(_simulator_key(base_url))  # a key also exercises encryption at rest
    provider.save(update_fields=["base_url", "api_key_encrypted", "updated_at"])


def _simulator_key(base_url: str) -> str:
    return "sim-demo-" + hashlib.sha256(base_url.encode()).hexdigest()[:16]


def _stored_key(provider: Provider) -> str:
    try:
        return provider.get_api_key()
    except DecryptionError:  # not under our keys: not the seed's either
        return ""
