from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.core.management import CommandError, call_command

from billing.models import Budget, LedgerEntry
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
        ("product-descriptions", "scheduled"),
        ("product-search", "realtime"),
        ("review-moderation", "near_realtime"),
        ("ticket-summaries", "scheduled"),
    ]
    assert sorted(Workload.objects.filter(team__slug="globex").values_list("slug", flat=True)) == [
        "dashboard-qa",
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
    assert [w["team"] for w in response.json()["results"]] == ["globex", "globex"]
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


def test_reseeding_repoints_providers_at_a_moved_simulator():
    call_command("seed_demo", "--simulator-url", "http://127.0.0.1:8100")
    call_command("seed_demo", "--simulator-url", "http://127.0.0.1:9100/")
    assert Provider.objects.get(slug="sim-openai").base_url == "http://127.0.0.1:9100/openai/v1"


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
