"""The batch workers' provider clients share one TLS context per process.

A worker makes an SDK client per call (a job's step makes several). Each client used to build
its own TLS context, loading the CA bundle (30 ms here), and Gemini's SDK builds three more per
client: a worker recovering 135 two-request jobs spent 56 of its 72 s loading CA bundles, and
the fault suite's recovering worker outran its 90 s on a slower CI machine."""

from __future__ import annotations

import ssl

import pytest

from llmops import outbound
from routing.models import Provider
from routing.providers import anthropic_api, gemini_api, openai_api

MODULES = {"sim-openai": openai_api, "sim-anthropic": anthropic_api, "sim-gemini": gemini_api}


@pytest.fixture
def bundle_loads(monkeypatch) -> list[object]:
    """Every CA bundle loaded from now on (the context built anew first)."""
    outbound.ssl_context.cache_clear()
    loads: list[object] = []
    real = ssl.SSLContext.load_verify_locations

    def counted(context, *args, **kwargs):
        loads.append(context)
        return real(context, *args, **kwargs)

    monkeypatch.setattr(ssl.SSLContext, "load_verify_locations", counted)
    yield loads
    outbound.ssl_context.cache_clear()


@pytest.mark.django_db
def test_many_batch_calls_to_every_provider_load_the_ca_bundle_once(demo, bundle_loads):
    for slug, module in MODULES.items():
        endpoint = Provider.objects.get(slug=slug).endpoint()
        for _ in range(3):
            # A real call over HTTP to the simulator: the clients work with the shared context.
            assert list(module.batch_list(endpoint, created_after=0)) == []
    assert len(bundle_loads) == 1, f"{len(bundle_loads)} CA bundles loaded for 9 clients"


def test_the_shared_context_still_verifies_certificates_and_host_names(bundle_loads):
    context = outbound.ssl_context()
    assert context is outbound.ssl_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is True
    assert bundle_loads == [context]
    # Every outbound client uses it, the realtime relays' and the workers' alike.
    for client in (outbound.sync_http_client(), outbound.async_http_client()):
        assert client._transport._pool._ssl_context is context
