"""Changes made through the admin leave Django's admin log (LogEntry): who, what, when, and
which fields, never the value of a secret."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.admin.models import ADDITION, CHANGE, DELETION, LogEntry
from django.contrib.auth.models import User
from django.contrib.contenttypes.models import ContentType

from billing.models import Budget
from routing.keys import api_key_create
from routing.models import ApiKey, LlmModel, Provider, Team

pytestmark = pytest.mark.django_db

PROVIDER_SECRET = "sk-live-audit-secret-5b1e"


@pytest.fixture
def root(client) -> User:
    user = User.objects.create_superuser("root", "root@example.com", "pw-for-tests-only")
    client.force_login(user)
    return user


def entries_for(obj) -> list[LogEntry]:
    return list(
        LogEntry.objects.filter(
            content_type=ContentType.objects.get_for_model(obj), object_id=str(obj.pk)
        ).order_by("action_time", "pk")
    )


def log_text() -> str:
    return repr(list(LogEntry.objects.values_list("object_repr", "change_message")))


def provider_form(**overrides) -> dict:
    return {
        "slug": "openai",
        "name": "OpenAI",
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "expected_batch_turnaround": "24:00:00",
        "supports_flex": "on",
        "expected_flex_latency": "00:01:00",
        "enabled": "on",
        "new_api_key": PROVIDER_SECRET,
        **overrides,
    }


def test_a_new_api_key_is_logged_as_an_addition_without_its_secret(client, root):
    team = Team.objects.create(slug="acme", name="Acme")

    response = client.post(
        "/admin/routing/apikey/add/", {"team": team.pk, "name": "ci", "role": "member"}, follow=True
    )

    assert response.status_code == 200
    raw = str(next(iter(response.context["messages"]))).split("<code>")[1].split("</code>")[0]
    key = ApiKey.objects.get()
    [entry] = entries_for(key)
    assert (entry.action_flag, entry.user, entry.object_repr) == (ADDITION, root, str(key))
    assert raw not in log_text() and raw[12:] not in log_text()


def test_provider_changes_are_logged_with_the_fields_never_the_key(client, root):
    assert client.post("/admin/routing/provider/add/", provider_form()).status_code == 302
    provider = Provider.objects.get()

    response = client.post(
        f"/admin/routing/provider/{provider.pk}/change/",
        provider_form(base_url="https://eu.api.openai.com/v1", new_api_key=PROVIDER_SECRET + "2"),
    )

    assert response.status_code == 302
    added, changed = entries_for(provider)
    assert (added.action_flag, changed.action_flag) == (ADDITION, CHANGE)
    assert {added.user, changed.user} == {root}
    assert "Base url" in changed.get_change_message()
    assert "new_api_key" in changed.get_change_message()  # that it changed, not to what
    assert PROVIDER_SECRET not in log_text()


def test_a_bulk_delete_action_logs_each_deletion(client, root, team):
    keys = [api_key_create(team=team, name=f"k{n}")[0] for n in range(2)]

    response = client.post(
        "/admin/routing/apikey/",
        {"action": "delete_selected", "_selected_action": [k.pk for k in keys], "post": "yes"},
    )

    assert response.status_code == 302
    assert not ApiKey.objects.exists()
    for key in keys:
        [entry] = entries_for(key)
        assert (entry.action_flag, entry.user, entry.object_repr) == (DELETION, root, str(key))


def test_an_edit_in_the_model_list_is_logged_as_a_change(client, root, demo):
    model = LlmModel.objects.get(model_id="gpt-4.1")
    assert model.enabled

    response = client.post(
        "/admin/routing/llmmodel/",
        {
            "form-TOTAL_FORMS": "1",
            "form-INITIAL_FORMS": "1",
            "form-0-id": str(model.pk),
            "_save": "Save",
        },  # enabled unticked
    )

    assert response.status_code == 302
    model.refresh_from_db()
    assert model.enabled is False
    [entry] = entries_for(model)
    assert (entry.action_flag, entry.user) == (CHANGE, root)
    assert "Enabled" in entry.get_change_message()


def test_a_budget_change_is_logged(client, root, demo):
    budget = Budget.objects.get(team__slug="acme", workload=None)

    response = client.post(
        f"/admin/billing/budget/{budget.pk}/change/",
        {
            "team": budget.team_id,
            "workload": "",
            "period": budget.period,
            "limit_usd": "1234.5",
            "hard": "on" if budget.hard else "",
            "alert_threshold": str(budget.alert_threshold),
            "created_at_0": budget.created_at.strftime("%Y-%m-%d"),
            "created_at_1": budget.created_at.strftime("%H:%M:%S"),
        },
    )

    assert response.status_code == 302, response.context["adminform"].form.errors
    budget.refresh_from_db()
    assert budget.limit_usd == Decimal("1234.5")
    [entry] = entries_for(budget)
    assert (entry.action_flag, entry.user) == (CHANGE, root)
    assert "Limit" in entry.get_change_message()
