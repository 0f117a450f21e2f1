"""The admin manages routing's models (teams, keys, providers, models, policies, workloads,
requests); secrets are shown once or never. The billing models' admin is
tests/billing/test_billing_admin.py."""

from __future__ import annotations

import pytest

from routing.keys import hash_api_key
from routing.models import ApiKey, Provider, Team
from tests.admin_pages import picker_labels

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "path",
    [
        "/admin/",
        "/admin/routing/team/",
        "/admin/routing/apikey/",
        "/admin/routing/provider/",
        "/admin/routing/llmmodel/?tier__exact=economy",
        "/admin/routing/routingpolicy/",
        "/admin/routing/workload/?latency_class__exact=scheduled&q=product",
        "/admin/routing/request/",
        "/admin/routing/storedresponse/?deleted_at__isempty=1",
        "/admin/routing/apikey/add/",
        "/admin/routing/provider/add/",
    ],
)
def test_admin_pages_render(admin_client, demo, path):
    assert admin_client.get(path).status_code == 200


def test_change_forms_render_for_seeded_rows(admin_client, demo):
    from routing.models import RoutingPolicy, Workload

    for model, obj in [
        ("workload", Workload.objects.first()),
        ("routingpolicy", RoutingPolicy.objects.first()),
    ]:
        assert admin_client.get(f"/admin/routing/{model}/{obj.pk}/change/").status_code == 200


def test_new_api_key_is_shown_once_and_only_its_hash_is_stored(admin_client):
    team = Team.objects.create(slug="acme", name="Acme")
    response = admin_client.post(
        "/admin/routing/apikey/add/", {"team": team.pk, "name": "ci", "role": "member"}, follow=True
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"]]
    assert len(shown) == 2 and "will not be shown again" in shown[0]
    raw = shown[0].split("<code>")[1].split("</code>")[0]
    key = ApiKey.objects.get()
    assert key.key_hash == hash_api_key(raw)
    assert key.created_by.username == "root"

    # The next page no longer has it, nor does the key's own page.
    assert raw not in admin_client.get("/admin/routing/apikey/").content.decode()
    assert raw not in admin_client.get(f"/admin/routing/apikey/{key.pk}/change/").content.decode()


def test_revoke_action_revokes_keys(admin_client, api_key):
    key, _ = api_key
    admin_client.post(
        "/admin/routing/apikey/", {"action": "revoke", "_selected_action": [key.pk]}, follow=True
    )
    key.refresh_from_db()
    assert key.revoked_at is not None


def provider_form(**overrides):
    data = {
        "slug": "openai",
        "name": "OpenAI",
        "kind": "openai",
        "base_url": "https://api.openai.com/v1",
        "supports_batch": "on",
        "expected_batch_turnaround": "24:00:00",
        "supports_flex": "on",
        "expected_flex_latency": "00:01:00",
        "enabled": "on",
        "new_api_key": "sk-live-very-secret-value",
    }
    data.update(overrides)
    return data


def test_provider_key_is_encrypted_and_never_shown_back(admin_client):
    response = admin_client.post("/admin/routing/provider/add/", provider_form())
    assert response.status_code == 302
    provider = Provider.objects.get()
    assert "sk-live-very-secret-value" not in provider.api_key_encrypted
    assert provider.get_api_key() == "sk-live-very-secret-value"
    page = admin_client.get(f"/admin/routing/provider/{provider.pk}/change/").content.decode()
    assert "sk-live-very-secret-value" not in page
    assert "set (encrypted)" in page

    # Saving without a new key keeps the old one; clearing removes it.
    admin_client.post(
        f"/admin/routing/provider/{provider.pk}/change/", provider_form(new_api_key="")
    )
    provider.refresh_from_db()
    assert provider.get_api_key() == "sk-live-very-secret-value"
    admin_client.post(
        f"/admin/routing/provider/{provider.pk}/change/",
        provider_form(new_api_key="", clear_api_key="on"),
    )
    provider.refresh_from_db()
    assert provider.has_api_key is False


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("ftp://files.example.com", "must start with http"),
        ("https://user:pw@api.example.com/v1", "must not contain credentials"),
        ("https://api.example.com/v1?key=abc", "must not have a query string"),
    ],
)
def test_provider_base_url_is_validated(admin_client, base_url, message):
    response = admin_client.post("/admin/routing/provider/add/", provider_form(base_url=base_url))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Provider.objects.exists()


def test_requests_are_read_only_in_the_admin(admin_client):
    assert admin_client.get("/admin/routing/request/add/").status_code == 403


def policy_labels(response) -> list[str]:
    field = response.context["adminform"].form.fields["policy"]
    return [label for value, label in field.choices if value]


def test_the_workload_policy_picker_offers_only_the_workloads_teams_policies(admin_client, demo):
    from routing.models import Workload

    workload = Workload.objects.get(team__slug="acme", slug="product-descriptions")
    response = admin_client.get(f"/admin/routing/workload/{workload.pk}/change/")

    assert policy_labels(response) == [
        "acme / alerts",
        "acme / azure-batch",
        "acme / deferrable-economy",
        "acme / embeddings-batch",
        "acme / embeddings-realtime",
        "acme / flex-economy",
        "acme / gemini-batch",
        "acme / interactive",
        "acme / interactive-economy",
        "acme / multi-cloud",
        "acme / overnight-batch",
    ]
    page = response.content.decode()
    assert "acme / overnight-batch" in page and "globex /" not in page
    assert "team" not in response.context["adminform"].form.fields  # shown, not editable


def test_the_workload_admin_refuses_another_teams_policy(admin_client, demo):
    from routing.models import RoutingPolicy, Workload

    workload = Workload.objects.get(team__slug="acme", slug="product-descriptions")
    theirs = RoutingPolicy.objects.get(team__slug="globex", name="overnight-batch")
    response = admin_client.post(
        f"/admin/routing/workload/{workload.pk}/change/",
        {
            "slug": workload.slug,
            "latency_class": "scheduled",
            "deadline": "24:00:00",
            "policy": theirs.pk,
            "enabled": "on",
        },
    )

    assert response.status_code == 200
    assert response.context["adminform"].form.errors["policy"] == [
        "Select a valid choice. That choice is not one of the available choices."
    ]
    workload.refresh_from_db()
    assert workload.policy.team.slug == "acme"


def test_a_new_workloads_policy_picker_names_teams_and_refuses_a_mismatch(admin_client, demo):
    from routing.models import RoutingPolicy, Workload

    labels = policy_labels(admin_client.get("/admin/routing/workload/add/"))
    assert labels.count("acme / overnight-batch") == labels.count("globex / overnight-batch") == 1
    acme = Team.objects.get(slug="acme")
    form = {"team": acme.pk, "slug": "faq", "latency_class": "realtime", "enabled": "on"}
    theirs = RoutingPolicy.objects.get(team__slug="globex", name="interactive")
    ours = RoutingPolicy.objects.get(team=acme, name="interactive")

    refused = admin_client.post("/admin/routing/workload/add/", {**form, "policy": theirs.pk})
    assert refused.status_code == 200
    assert refused.context["adminform"].form.errors["policy"] == [
        "The policy belongs to another team."
    ]
    assert not Workload.objects.filter(slug="faq").exists()

    added = admin_client.post("/admin/routing/workload/add/", {**form, "policy": ours.pk})
    assert added.status_code == 302
    assert Workload.objects.get(slug="faq").policy == ours


def test_a_keys_default_workload_picker_offers_its_teams_workloads_by_team(admin_client, demo):
    from routing.keys import api_key_create

    key, _ = api_key_create(team=Team.objects.get(slug="acme"), name="ci")
    response = admin_client.get(f"/admin/routing/apikey/{key.pk}/change/")

    labels = picker_labels(response, "default_workload")
    assert labels and all(label.startswith("acme / ") for label in labels)
    assert "acme / product-search" in labels


def test_a_model_chain_cannot_mix_chat_and_embedding_models(demo):
    from django.forms import inlineformset_factory

    from routing.admin import PolicyModelFormSet
    from routing.models import LlmModel, PolicyModel, RoutingPolicy

    policy = RoutingPolicy.objects.get(team__slug="acme", name="embeddings-batch")
    chain = [LlmModel.objects.get(model_id=m) for m in ("text-embedding-3-large", "gpt-4o-mini")]
    FormSet = inlineformset_factory(
        RoutingPolicy, PolicyModel, formset=PolicyModelFormSet, fields=["model", "position"]
    )

    def formset(models):
        data = {"links-TOTAL_FORMS": str(len(models)), "links-INITIAL_FORMS": "0"}
        for i, model in enumerate(models):
            data |= {f"links-{i}-model": str(model.pk), f"links-{i}-position": str(i)}
        return FormSet(data, instance=policy, prefix="links")

    mixed = formset(chain)
    assert not mixed.is_valid()
    assert "all chat models or all embedding models" in str(mixed.non_form_errors())
    assert formset(chain[:1]).is_valid()
