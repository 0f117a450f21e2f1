"""Azure OpenAI and Gemini providers in the admin and the model: base URLs kept in one form,
credentials (a key, or Entra ID) checked and encrypted, deployments per model, how each is
called (endpoint, auth headers), and a client naming an Azure deployment."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError

from batches.services.rules import QUOTA_FIRST, QUOTA_MAX, quota_backoff
from routing import asks, selectors
from routing.models import LlmModel, Provider, Workload
from routing.providers import batch_api, gemini_api, openai_api
from tests.routing.test_admin import provider_form

pytestmark = pytest.mark.django_db


def cleaned(kind: str, base_url: str, **fields) -> Provider:
    provider = Provider(slug="p", name="P", kind=kind, base_url=base_url, **fields)
    provider.full_clean()
    return provider


@pytest.mark.parametrize(
    "given",
    [
        "https://acme.openai.azure.com",
        "https://acme.openai.azure.com/",
        "https://acme.openai.azure.com/openai",
        "https://acme.openai.azure.com/openai/v1",
        "https://acme.openai.azure.com/openai/v1/",
    ],
)
def test_an_azure_resource_url_is_kept_with_its_v1_path(given):
    assert cleaned("azure_openai", given).base_url == "https://acme.openai.azure.com/openai/v1"


def test_an_azure_resource_behind_a_gateway_keeps_the_gateways_path():
    cleaned_url = cleaned("azure_openai", "https://apim.example.com/contoso/").base_url
    assert cleaned_url == "https://apim.example.com/contoso/openai/v1"


def test_an_azure_url_naming_a_deployment_is_refused_with_the_reason():
    with pytest.raises(ValidationError) as refused:
        cleaned("azure_openai", "https://acme.openai.azure.com/openai/deployments/gpt-4o")
    assert "deployments are named per model" in str(refused.value)


@pytest.mark.parametrize(
    "given",
    [
        "https://generativelanguage.googleapis.com",
        "https://generativelanguage.googleapis.com/v1beta",
        "https://generativelanguage.googleapis.com/v1beta/openai/",
    ],
)
def test_a_gemini_url_is_kept_as_its_host_and_each_api_is_derived_from_it(given):
    provider = cleaned("gemini", given)
    assert provider.base_url == "https://generativelanguage.googleapis.com"
    endpoint = provider.endpoint()
    assert endpoint.base_url == "https://generativelanguage.googleapis.com/v1beta/openai"
    assert endpoint.native_url == "https://generativelanguage.googleapis.com"


def test_entra_credentials_belong_to_azure_and_come_in_pairs():
    with pytest.raises(ValidationError, match="Azure OpenAI providers only"):
        cleaned("openai", "https://api.openai.com/v1", azure_tenant_id="t", azure_client_id="c")
    with pytest.raises(ValidationError, match="both the tenant id and the client id"):
        cleaned("azure_openai", "https://acme.openai.azure.com", azure_tenant_id="t")


def test_an_azure_key_goes_in_the_api_key_header_and_entra_as_a_bearer_token():
    provider = cleaned("azure_openai", "https://acme.openai.azure.com")
    provider.set_api_key("azure-key")
    assert openai_api.auth_headers(provider.endpoint()) == {"api-key": "azure-key"}

    provider.azure_tenant_id, provider.azure_client_id = "tenant", "client"
    provider.set_azure_client_secret("s3cret")
    endpoint = provider.endpoint()
    assert endpoint.entra.client_secret == "s3cret"
    assert endpoint.entra.authority == "https://login.microsoftonline.com"
    assert openai_api.auth_headers(endpoint, "tok") == {"Authorization": "Bearer tok"}
    assert "s3cret" not in repr(endpoint) and "azure-key" not in repr(endpoint)


def test_other_openai_kinds_keep_their_bearer_key():
    provider = cleaned("gemini", "https://generativelanguage.googleapis.com")
    provider.set_api_key("g-key")
    assert openai_api.auth_headers(provider.endpoint()) == {"Authorization": "Bearer g-key"}


def test_gemini_batches_go_to_its_native_api_and_its_realtime_to_the_openai_one():
    assert batch_api("gemini") is gemini_api
    assert batch_api("azure_openai") is openai_api
    gemini = Provider(kind="gemini")
    assert gemini.speaks_openai and not gemini.has_responses_api and not gemini.serves_flex
    azure = Provider(kind="azure_openai")
    assert azure.speaks_openai and azure.has_responses_api and not azure.serves_flex


def test_the_admin_refuses_an_azure_provider_without_any_credential(admin_client):
    form = provider_form(
        slug="azure",
        kind="azure_openai",
        base_url="https://acme.openai.azure.com",
        new_api_key="",
    )
    response = admin_client.post("/admin/routing/provider/add/", form)
    assert response.status_code == 200
    assert "needs its resource&#x27;s key, or Entra ID credentials" in response.content.decode()
    assert not Provider.objects.exists()


def test_the_admin_stores_an_entra_secret_encrypted_and_never_shows_it(admin_client):
    form = provider_form(
        slug="azure",
        kind="azure_openai",
        base_url="https://acme.openai.azure.com",
        new_api_key="",
        azure_tenant_id="tenant-1",
        azure_client_id="client-1",
        new_azure_client_secret="entra-very-secret",
        azure_authority="https://login.microsoftonline.com",
    )
    response = admin_client.post("/admin/routing/provider/add/", form)
    assert response.status_code == 302, response.content.decode()[:2000]
    provider = Provider.objects.get()
    assert provider.base_url == "https://acme.openai.azure.com/openai/v1"
    assert "entra-very-secret" not in provider.azure_client_secret_encrypted
    assert provider.endpoint().entra.client_secret == "entra-very-secret"
    page = admin_client.get(f"/admin/routing/provider/{provider.pk}/change/").content.decode()
    assert "entra-very-secret" not in page


def test_entra_needs_its_secret(admin_client):
    form = provider_form(
        slug="azure",
        kind="azure_openai",
        base_url="https://acme.openai.azure.com",
        new_api_key="",
        azure_tenant_id="tenant-1",
        azure_client_id="client-1",
    )
    response = admin_client.post("/admin/routing/provider/add/", form)
    assert "Entra ID needs the client secret." in response.content.decode()


def test_only_an_azure_model_has_a_deployment():
    openai_provider = Provider.objects.create(
        slug="o", name="O", kind="openai", base_url="https://api.openai.com/v1"
    )
    model = LlmModel(
        provider=openai_provider,
        model_id="gpt-4o-mini",
        deployment="prod-mini",
        context_window=128_000,
        max_output_tokens=16_384,
    )
    with pytest.raises(ValidationError, match="Only Azure OpenAI"):
        model.full_clean()


def test_an_azure_model_is_called_by_its_deployment_and_named_by_either(demo):
    azure = LlmModel.objects.get(provider__slug="sim-azure", model_id="gpt-4.1-mini")
    assert azure.upstream_id == azure.deployment == "llmops-gpt-41-mini"
    assert selectors.model_named("llmops-gpt-41-mini") == azure
    assert selectors.model_named("gpt-4.1-mini") == azure
    workload = Workload.objects.get(team__slug="globex", slug="exec-briefings")
    for name in ("gpt-4.1-mini", "llmops-gpt-41-mini"):
        model, pinned = asks.openai_model(workload, name)
        assert (model, pinned) == (azure, True)


def test_a_quota_refusal_waits_longer_each_time_up_to_a_cap():
    waits = [quota_backoff(n) for n in range(1, 10)]
    assert waits[0] == QUOTA_FIRST and waits[1] == 2 * QUOTA_FIRST
    assert waits == sorted(waits) and waits[-1] == QUOTA_MAX
    assert timedelta(minutes=30) >= QUOTA_MAX


@pytest.mark.parametrize(
    ("kind", "model_kind", "batchable"),
    [
        ("gemini", "chat", True),
        ("gemini", "embedding", False),  # its batch mode runs generateContent only
        ("azure_openai", "embedding", True),
        ("openai", "embedding", True),
    ],
)
def test_which_models_can_go_in_a_provider_batch(kind, model_kind, batchable):
    provider = Provider(kind=kind, supports_batch=True)
    assert LlmModel(provider=provider, kind=model_kind).batchable is batchable
    provider.supports_batch = False
    assert LlmModel(provider=provider, kind=model_kind).batchable is False


def test_the_provider_list_counts_entra_as_credentials(admin_client):
    Provider.objects.create(
        slug="contoso",
        name="Contoso",
        kind="azure_openai",
        base_url="https://contoso.openai.azure.com/openai/v1",
        azure_tenant_id="t",
        azure_client_id="c",
    )
    page = admin_client.get("/admin/routing/provider/?q=contoso").content.decode()
    # Its one row: credentials, batches and enabled all ticked (no key, yet not missing one).
    assert 'alt="True"' in page and 'alt="False"' not in page
    detail = admin_client.get(
        f"/admin/routing/provider/{Provider.objects.get(slug='contoso').pk}/change/"
    ).content.decode()
    assert "not set (Entra ID is used)" in detail
