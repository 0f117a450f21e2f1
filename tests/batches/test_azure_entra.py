"""An Azure OpenAI resource reached with a service principal (Entra ID) instead of a key:
llmops fetches a token from the tenant's authority (the simulator's, over HTTP) and sends it
as a bearer, on the serving path (a realtime chat) and in batch workers (a Global Batch to
completion through the openai SDK, which asks for the token before each call)."""

from __future__ import annotations

import pytest

from batches import services
from batches.models import BatchJob
from routing.models import Provider, Request
from routing.providers import entra
from tests.batches.test_lifecycle import run_until_idle

pytestmark = pytest.mark.django_db


@pytest.fixture
def entra_azure(demo, sim):
    entra.forget()
    azure = Provider.objects.get(slug="sim-azure")
    azure.set_api_key("")
    azure.azure_tenant_id = "contoso"
    azure.azure_client_id = "llmops-app"
    azure.set_azure_client_secret("entra-secret")
    azure.azure_authority = f"{sim.base_url}/azure-login"
    azure.full_clean()
    azure.save()
    yield azure
    entra.forget()


def test_realtime_and_batch_on_azure_with_entra_id(entra_azure, api, defer, sim):
    assert not entra_azure.has_api_key
    answer = api.post(
        "/v1/chat/completions",
        {"model": "llmops-gpt-41-mini", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
        HTTP_X_WORKLOAD="listing-translations",
    )
    assert answer.status_code == 200, answer.content
    request = Request.objects.get(pk=answer["x-request-id"])
    assert (request.model.provider, request.status) == (entra_azure, "completed")

    defer("listing-translations", 2)
    [job] = services.batches_flush(force=True).jobs
    run_until_idle()
    job.refresh_from_db()
    assert job.provider == entra_azure and job.status == BatchJob.Status.COMPLETED
    assert job.succeeded_count == 2
    usage = sim.usage()["azure"]["gpt-4.1-mini"]
    assert usage["realtime"]["requests"] == 1 and usage["batch"]["requests"] == 2


def test_a_principal_the_tenant_refuses_is_recorded_and_the_chain_falls_back(entra_azure, api):
    # The secret gone (the admin would refuse that; a database edit does not): Entra answers
    # 401 invalid_client to a grant without one.
    Provider.objects.filter(pk=entra_azure.pk).update(azure_client_secret_encrypted="")
    answer = api.post(
        "/v1/chat/completions",
        {"model": "llmops-gpt-41-mini", "messages": [{"role": "user", "content": "hi"}]},
        format="json",
        HTTP_X_WORKLOAD="listing-translations",
    )

    # azure-batch's chain: gpt-4.1-mini on Azure, then gpt-4o-mini on OpenAI.
    assert answer.status_code == 200, answer.content
    request = Request.objects.get(pk=answer["x-request-id"])
    first, second = request.attempts.select_related("model__provider")
    assert (first.model.provider, first.outcome) == (entra_azure, "error")
    assert "Entra ID refused the service principal" in first.error
    assert (second.model.model_id, second.outcome) == ("gpt-4o-mini", "ok")
