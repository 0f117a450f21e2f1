from __future__ import annotations

import io
from datetime import timedelta
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing.models import Budget, LedgerEntry, Price
from billing.pricing import PriceVersion, Rates
from billing.selectors import price_in_force
from billing.services import budget_update, price_create
from routing.models import (
    ApiKey,
    LlmModel,
    PolicyModel,
    Provider,
    Request,
    RoutingPolicy,
    Team,
    Workload,
)

pytestmark = pytest.mark.django_db

KEY = "llm_demo_key_for_scripts_0001"


def counts():
    return [
        m.objects.count()
        for m in (
            Team,
            User,
            Provider,
            LlmModel,
            RoutingPolicy,
            PolicyModel,
            Workload,
            Budget,
            ApiKey,
        )
    ]


def test_seed_demo_builds_the_demo_world():
    call_command("seed_demo", "--simulator-url", "http://127.0.0.1:8100")
    assert set(Team.objects.values_list("slug", flat=True)) == {"acme", "globex"}
    assert sorted(
        Workload.objects.filter(team__slug="acme").values_list("slug", "latency_class")
    ) == [
        ("catalog-embeddings", "scheduled"),
        ("listing-translations", "scheduled"),
        ("log-summaries", "scheduled"),
        ("product-descriptions", "scheduled"),
        ("product-search", "realtime"),
        ("query-embeddings", "realtime"),
        ("review-moderation", "near_realtime"),
        ("support-triage", "near_realtime"),
        ("ticket-summaries", "scheduled"),
    ]
    assert sorted(Workload.objects.filter(team__slug="globex").values_list("slug", flat=True)) == [
        "anomaly-alerts",
        "dashboard-qa",
        "exec-briefings",
        "nightly-reports",
    ]
    assert Workload.objects.get(slug="review-moderation").deadline.total_seconds() == 3600
    assert set(LlmModel.objects.values_list("tier", flat=True)) == {
        "economy",
        "standard",
        "premium",
    }
    assert Provider.objects.get(slug="sim-openai").base_url == "http://127.0.0.1:8100/openai/v1"
    assert Provider.objects.get(slug="sim-anthropic").base_url == "http://127.0.0.1:8100/anthropic"
    azure = Provider.objects.get(slug="sim-azure")
    assert (azure.kind, azure.base_url) == (
        "azure_openai",
        "http://127.0.0.1:8100/azure/openai/v1",
    )
    gemini = Provider.objects.get(slug="sim-gemini")
    assert (gemini.kind, gemini.base_url) == ("gemini", "http://127.0.0.1:8100/gemini")
    assert LlmModel.objects.get(provider=azure, model_id="gpt-4.1-mini").deployment
    assert User.objects.get(username="admin").is_superuser
    for workload in Workload.objects.select_related("policy"):
        workload.full_clean()  # every seeded row passes the admin's validation


def test_seed_demo_is_idempotent():
    call_command("seed_demo", "--api-key", KEY)
    before = counts()
    call_command("seed_demo", "--api-key", KEY)
    call_command("seed_demo")
    assert counts() == before


def test_api_key_option_creates_a_usable_admin_key(client):
    call_command("seed_demo", "--api-key", KEY, "--team", "globex")
    key = ApiKey.objects.get(name="demo")
    assert (key.team.slug, key.role) == ("globex", "admin")
    response = client.get("/api/v1/workloads", HTTP_AUTHORIZATION=f"Bearer {KEY}")
    assert [w["team"] for w in response.json()["results"]] == ["globex"] * 4
    assert key.default_workload.slug == "dashboard-qa"


def test_api_key_option_resets_a_revoked_or_changed_key(client):
    call_command("seed_demo", "--api-key", KEY)
    ApiKey.objects.update(revoked_at="2026-01-01T00:00:00Z")
    call_command("seed_demo", "--api-key", KEY + "-v2")
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {KEY}").status_code == 401
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {KEY}-v2").status_code == 200
    assert ApiKey.objects.count() == 1


def test_short_api_key_is_refused():
    with pytest.raises(CommandError, match="at least 16 characters"):
        call_command("seed_demo", "--api-key", "short")


def test_unknown_team_is_refused():
    with pytest.raises(CommandError, match="unknown team 'initech'"):
        call_command("seed_demo", "--api-key", KEY, "--team", "initech")


def seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_a_fresh_database_gets_the_whole_demo_and_a_second_seed_adds_nothing():
    seed("--api-key", KEY)
    world = counts()
    prices = Price.objects.count()

    assert world == [2, 1, 4, 13, 22, 44, 13, 3, 1]
    for model in LlmModel.objects.all():  # priced for realtime and batch
        assert {"standard", "batch"} <= set(model.prices.values_list("processing", flat=True))
    seed("--api-key", KEY)
    assert (counts(), Price.objects.count()) == (world, prices)


def test_reseeding_keeps_every_edit_made_since(client):
    seed("--simulator-url", "http://127.0.0.1:8100")
    root = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(root)
    acme = Team.objects.get(slug="acme")
    # The edit, through the admin: product-descriptions to near_realtime, 2 h.
    workload = Workload.objects.get(team=acme, slug="product-descriptions")
    response = client.post(
        f"/admin/routing/workload/{workload.pk}/change/",
        {
            "slug": workload.slug,
            "description": "Now within two hours.",
            "latency_class": "near_realtime",
            "deadline": "02:00:00",
            "policy": workload.policy_id,
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content
    # A policy and its chain, a budget, a model's tier, a team, a membership, a price.
    policy = RoutingPolicy.objects.get(team=acme, name="overnight-batch")
    policy.max_batch_wait_seconds, policy.cache_enabled = 1800, True
    policy.save()
    PolicyModel.objects.filter(policy=policy, model__model_id="gpt-4o").delete()
    opus = LlmModel.objects.get(model_id="claude-opus-4-1")
    PolicyModel.objects.create(policy=policy, model=opus, position=1)
    budget_update(budget=Budget.objects.get(team=acme, workload=None), limit_usd=Decimal("750"))
    Budget.objects.filter(workload=workload).update(hard=True)
    LlmModel.objects.filter(model_id="gpt-4o").update(tier="premium", context_window=64_000)
    Team.objects.filter(pk=acme.pk).update(name="Acme Corp")
    acme.members.remove(User.objects.get(username="admin"))
    mini = LlmModel.objects.get(model_id="gpt-4o-mini")
    published = price_in_force(mini, "standard", timezone.now())
    negotiated = price_create(
        model=mini,
        version=PriceVersion(
            id=None,
            model=str(mini.pk),
            processing="standard",
            effective_from=timezone.now(),
            rates=Rates(
                input=Decimal("0.10"),
                cached_input=Decimal("0.05"),
                cache_write=Decimal("0.10"),
                output=Decimal("0.50"),
            ),
        ),
        effective_from=timezone.now(),
        note="negotiated",
    )
    before = counts()
    prices = Price.objects.count()

    seed("--simulator-url", "http://127.0.0.1:8100", "--api-key", KEY)

    workload.refresh_from_db()
    assert (workload.latency_class, workload.deadline) == ("near_realtime", timedelta(hours=2))
    assert workload.description == "Now within two hours."
    policy.refresh_from_db()
    assert (policy.max_batch_wait_seconds, policy.cache_enabled) == (1800, True)
    assert list(policy.links.values_list("model__model_id", flat=True)) == [
        "claude-sonnet-4-6",
        "claude-opus-4-1",
    ]
    assert Budget.objects.get(team=acme, workload=None).limit_usd == Decimal("750")
    assert Budget.objects.get(workload=workload).hard is True
    assert LlmModel.objects.filter(model_id="gpt-4o", tier="premium", context_window=64_000)
    assert Team.objects.get(pk=acme.pk).name == "Acme Corp"
    assert not acme.members.filter(username="admin").exists()
    assert price_in_force(mini, "standard", timezone.now()).id == negotiated.pk != published.id
    assert Price.objects.count() == prices
    # Nothing was added but the demo key --api-key asked for.
    assert counts() == [*before[:-1], before[-1] + 1]
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {KEY}").status_code == 200


def test_reseeding_recreates_what_was_deleted_with_the_demos_values():
    seed()
    Budget.objects.filter(workload__slug="product-descriptions").delete()
    Workload.objects.filter(slug="ticket-summaries").delete()
    before = counts()

    seed()

    assert counts()[-3:-1] == [before[-3] + 1, before[-2] + 1]  # the workload, the budget
    recreated = Workload.objects.get(slug="ticket-summaries")
    assert (recreated.latency_class, recreated.policy.name) == ("scheduled", "overnight-batch")
    budget = Budget.objects.get(workload__slug="product-descriptions")
    assert (budget.limit_usd, budget.hard) == (Decimal("150"), False)


def test_the_api_key_option_resets_the_demo_key_without_touching_the_rest(client):
    seed("--api-key", KEY)
    key = ApiKey.objects.get(name="demo")
    moderation = Workload.objects.get(team__slug="acme", slug="review-moderation")
    ApiKey.objects.filter(pk=key.pk).update(
        revoked_at=timezone.now(), role="member", default_workload=moderation
    )
    Workload.objects.filter(pk=moderation.pk).update(deadline=timedelta(hours=3))

    seed("--api-key", KEY + "-v2")

    key.refresh_from_db()
    assert (key.is_active, key.role, key.default_workload.slug) == (True, "admin", "product-search")
    assert client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {KEY}-v2").status_code == 200
    assert Workload.objects.get(pk=moderation.pk).deadline == timedelta(hours=3)


def test_reseeding_repoints_providers_at_a_moved_simulator():
    seed("--simulator-url", "http://127.0.0.1:8100")
    out = seed("--simulator-url", "http://127.0.0.1:9100/")
    assert Provider.objects.get(slug="sim-openai").base_url == "http://127.0.0.1:9100/openai/v1"
    assert Provider.objects.get(slug="sim-anthropic").base_url == "http://127.0.0.1:9100/anthropic"
    assert "left as it is" not in out


def test_a_provider_someone_changed_is_not_repointed_and_the_seed_says_so():
    seed("--simulator-url", "http://127.0.0.1:8100")
    openai = Provider.objects.get(slug="sim-openai")
    openai.base_url = "https://api.openai.com/v1"
    openai.save()  # the key the seed wrote is kept: only the URL is the operator's
    anthropic = Provider.objects.get(slug="sim-anthropic")
    anthropic.set_api_key("sk-ant-operators-own")
    anthropic.save()  # the URL the seed wrote is kept: only the key is the operator's

    out = seed("--simulator-url", "http://127.0.0.1:9100")

    openai.refresh_from_db()
    anthropic.refresh_from_db()
    assert openai.base_url == "https://api.openai.com/v1"
    assert anthropic.base_url == "http://127.0.0.1:8100/anthropic"
    assert anthropic.get_api_key() == "sk-ant-operators-own"
    assert (
        "Provider sim-openai points at https://api.openai.com/v1, not at the simulator at "
        "http://127.0.0.1:9100: it was changed since the seed wrote it, so it is left as it is."
    ) in out
    assert "Provider sim-anthropic points at http://127.0.0.1:8100/anthropic" in out


def test_seed_demo_says_how_to_give_the_admin_a_password(capsys):
    call_command("seed_demo")
    assert "python manage.py changepassword admin" in capsys.readouterr().out
    call_command("seed_demo", "--admin-password", "a-local-password-123")
    assert "changepassword" not in capsys.readouterr().out
    assert User.objects.get(username="admin").check_password("a-local-password-123")


def test_history_days_replays_a_demo_history_through_the_simulator_once(sim, capsys):
    args = ["--simulator-url", sim.base_url, "--history-days", "1", "--history-per-day", "10"]
    call_command("seed_demo", *args)

    out = capsys.readouterr().out
    assert "Demo history: " in out and "requests over 1 days" in out
    assert Request.objects.filter(metadata__demo="history").exists()
    entries = LedgerEntry.objects.count()
    assert entries > 0

    call_command("seed_demo", *args)
    assert "already in place" in capsys.readouterr().out
    assert LedgerEntry.objects.count() == entries


def test_history_days_without_a_simulator_is_a_clear_error():
    with pytest.raises(CommandError, match="demo history"):
        call_command("seed_demo", "--simulator-url", "http://127.0.0.1:9", "--history-days", "1")
    assert not Request.objects.exists()


def test_a_provider_seeded_before_keys_named_their_url_follows_the_simulator_from_then_on():
    seed("--simulator-url", "http://127.0.0.1:8100")
    for provider in Provider.objects.all():  # as an earlier seed left them
        provider.set_api_key("sim-demo-key")
        provider.save()

    seed("--simulator-url", "http://127.0.0.1:8100")
    seed("--simulator-url", "http://127.0.0.1:9100")

    assert Provider.objects.get(slug="sim-openai").base_url == "http://127.0.0.1:9100/openai/v1"


def test_a_provider_key_no_configured_encryption_key_opens_is_left_alone():
    seed("--simulator-url", "http://127.0.0.1:8100")
    Provider.objects.filter(slug="sim-openai").update(api_key_encrypted="not-ours")

    out = seed("--simulator-url", "http://127.0.0.1:9100")

    assert Provider.objects.get(slug="sim-openai").api_key_encrypted == "not-ours"
    assert "Provider sim-openai points at http://127.0.0.1:8100/openai/v1" in out


def test_make_runs_seed_gives_the_admin_a_password_only_when_it_creates_the_admin():
    from llmops.demo import demo_seed

    demo_seed(simulator_url="http://127.0.0.1:8100", new_admin_password="first-run-pass-0001")
    admin = User.objects.get(username="admin")
    assert admin.check_password("first-run-pass-0001")
    admin.set_password("the-operators-own-0002")  # changed in the admin
    admin.save()

    demo_seed(simulator_url="http://127.0.0.1:8100", new_admin_password="first-run-pass-0001")

    admin.refresh_from_db()
    assert admin.check_password("the-operators-own-0002")


def test_a_retired_model_gives_its_chain_places_to_its_successor_and_is_disabled():
    """A database seeded when the demo used claude-sonnet-4-5 (retired 2026-11-30): the next
    seed puts claude-sonnet-4-6 in its place in every chain that has it and disables it."""
    seed()
    anthropic = Provider.objects.get(slug="sim-anthropic")
    old = LlmModel.objects.create(
        provider=anthropic,
        model_id="claude-sonnet-4-5",
        tier="standard",
        context_window=200_000,
        max_output_tokens=64_000,
    )
    new = LlmModel.objects.get(provider=anthropic, model_id="claude-sonnet-4-6")
    overnight = RoutingPolicy.objects.get(team__slug="acme", name="overnight-batch")
    interactive = RoutingPolicy.objects.get(team__slug="acme", name="interactive")
    # As an old seed left them: the retired model where its successor is now.
    PolicyModel.objects.filter(policy=overnight, model=new).update(model=old)
    PolicyModel.objects.create(policy=interactive, model=old, position=9)  # both in one chain

    seed()

    old.refresh_from_db()
    assert not old.enabled
    assert list(overnight.links.values_list("model__model_id", flat=True)) == [
        "claude-sonnet-4-6",
        "gpt-4o",
    ]
    assert not interactive.links.filter(model=old).exists()
    assert interactive.links.filter(model=new).count() == 1
