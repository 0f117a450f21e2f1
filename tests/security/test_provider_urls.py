"""A provider base URL is where prompts and provider keys are sent: only http(s) to a named
host, with no credentials, query or fragment, whether set through the model or the admin; and
not a loopback, private or metadata address unless the operator allows it (llmops.outbound),
checked when saved and again when the SDK connects."""

from __future__ import annotations

from datetime import timedelta
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from llmops import outbound
from routing import providers
from routing.models import LatencyClass, Provider, RoutingPolicy, Workload
from routing.providers import ChatRequest, ProviderError
from routing.providers.types import Endpoint, Timeouts

pytestmark = pytest.mark.django_db

REFUSED = [
    ("ftp://files.example.com/v1", "must start with http:// or https://"),
    ("file:///etc/passwd", "must start with http:// or https://"),
    ("javascript:alert(1)", "must start with http:// or https://"),
    ("gopher://127.0.0.1:6379/_FLUSHALL", "must start with http:// or https://"),
    ("api.openai.com/v1", "must start with http:// or https://"),
    ("not a url at all", "must not contain spaces or control characters"),
    ("", "This field cannot be blank."),
    # urlsplit would drop these silently and the URL would "pass" cleaned
    ("https://api.exa\tmple.com/v1", "must not contain spaces or control characters"),
    ("https://api.example.com/v1\r\nX-Injected: 1", "must not contain spaces or control"),
    ("https://", "must name a host"),
    ("http:///v1", "must name a host"),
    ("https://sk-live-123@api.example.com/v1", "must not contain credentials"),
    ("https://user:pw@api.example.com/v1", "must not contain credentials"),
    ("https://api.example.com/v1?api_key=sk-live-123", "must not have a query string"),
    ("https://api.example.com/v1#fragment", "must not have a query string or fragment"),
]


def provider(base_url: str) -> Provider:
    return Provider(slug="upstream", name="Upstream", kind="openai", base_url=base_url)


@pytest.mark.parametrize(("base_url", "message"), REFUSED)
def test_a_bad_base_url_is_refused_by_model_validation(base_url, message):
    with pytest.raises(ValidationError) as refused:
        provider(base_url).full_clean()

    assert message in " ".join(refused.value.message_dict["base_url"])


@pytest.mark.parametrize(
    "base_url",
    ["https://api.openai.com/v1", "https://api.anthropic.com", "http://127.0.0.1:8100/openai/v1"],
)
def test_an_http_or_https_base_url_is_accepted(base_url):
    provider(base_url).full_clean()  # raises if refused
    assert provider(base_url).base_url == base_url


@pytest.mark.parametrize(
    ("base_url", "message"),
    [
        ("javascript:alert(1)", "must start with http:// or https://"),
        ("not a url at all", "must not contain spaces or control characters"),
        ("https://user:pw@api.example.com/v1", "must not contain credentials"),
    ],
)
def test_the_admin_refuses_a_bad_base_url_with_the_reason(client, base_url, message):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))

    response = client.post(
        "/admin/routing/provider/add/",
        {
            "slug": "upstream",
            "name": "Upstream",
            "kind": "openai",
            "base_url": base_url,
            "expected_batch_turnaround": "24:00:00",
            "supports_flex": "on",
            "expected_flex_latency": "00:01:00",
            "enabled": "on",
        },
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Provider.objects.exists()


def test_a_batch_webhook_url_gets_the_same_validation(team):
    workload = Workload(
        team=team,
        slug="nightly",
        latency_class=LatencyClass.SCHEDULED,
        deadline=timedelta(hours=24),
        policy=RoutingPolicy.objects.create(team=team, name="overnight"),
        batch_webhook_url="file:///etc/passwd",
    )

    with pytest.raises(ValidationError) as refused:
        workload.full_clean()

    assert "must start with http:// or https://" in " ".join(
        refused.value.message_dict["batch_webhook_url"]
    )


# --- where it points (llmops.outbound) -------------------------------------------------------


@pytest.fixture
def _fresh_lookups():
    outbound.reset()
    yield
    outbound.reset()


def add_provider(client, base_url: str):
    return client.post(
        "/admin/routing/provider/add/",
        {
            "slug": "upstream",
            "name": "Upstream",
            "kind": "openai",
            "base_url": base_url,
            "expected_batch_turnaround": "24:00:00",
            "supports_flex": "on",
            "expected_flex_latency": "00:01:00",
            "enabled": "on",
        },
    )


@pytest.mark.parametrize(
    ("base_url", "reason"),
    [
        ("http://127.0.0.1:8100/openai/v1", "127.0.0.1 is loopback"),
        ("http://localhost:8000/admin", "localhost resolves to 127.0.0.1, which is loopback"),
        ("http://169.254.169.254/latest", "169.254.169.254 is link-local"),
        ("http://10.1.2.3:8080/v1", "10.1.2.3 is private"),
        ("http://[::]:8000/v1", ":: is unspecified"),
    ],
)
def test_a_private_base_url_is_refused_unless_the_operator_allows_it(
    client, settings, base_url, reason, _fresh_lookups
):
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE = []

    refused = add_provider(client, base_url)
    with pytest.raises(ValidationError) as by_model:
        provider(base_url).full_clean()
    assert not Provider.objects.exists()
    settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE = ["127.0.0.0/8", "::", "10.0.0.0/8", "169.254.169.254"]
    allowed = add_provider(client, base_url)

    assert refused.status_code == 200
    assert reason in refused.content.decode()
    assert "LLMOPS_OUTBOUND_ALLOW_PRIVATE" in refused.content.decode()
    assert reason in " ".join(by_model.value.message_dict["base_url"])
    assert allowed.status_code == 302
    assert Provider.objects.get().base_url == base_url


def test_debug_mode_trusts_the_simulator_and_this_machines_loopback(settings):
    # The demo (`make run`) and the test suite run the simulator on loopback out of the box.
    assert settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE[:2] == ["127.0.0.0/8", "::1"]
    assert urlsplit(settings.LLMOPS_SIMULATOR_URL).netloc in settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE


def test_a_provider_call_is_refused_at_connect_once_the_target_is_no_longer_allowed(
    sim, settings, figures, _fresh_lookups
):
    """Saved while allowed, then dropped from the list (or the name re-pointed at loopback):
    the SDK's connection is refused before a byte is sent; the simulator bills nothing."""
    port = urlsplit(sim.base_url).port
    request = ChatRequest(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}], max_tokens=5
    )

    def call(base_url: str):
        endpoint = Endpoint(kind="openai", base_url=base_url, api_key="sim", timeouts=Timeouts())
        try:
            return providers.complete_sync(endpoint, request)
        except ProviderError as error:
            return error

    allowed = call(f"http://localhost:{port}/openai/v1")
    settings.LLMOPS_OUTBOUND_ALLOW_PRIVATE = []
    before = sim.usage()["totals"]
    refused = [
        call(f"http://localhost:{port}/openai/v1"),
        call(f"http://127.0.0.1:{port}/openai/v1"),
    ]
    after = sim.usage()["totals"]
    figures.record(
        "T8",
        "provider base URL on loopback, allow-list emptied after saving",
        before="answered" if not isinstance(allowed, ProviderError) else str(allowed),
        after=[e.kind if isinstance(e, ProviderError) else "answered" for e in refused],
        simulator_calls_after=after != before,
    )

    assert not isinstance(allowed, ProviderError)
    assert all(isinstance(e, ProviderError) and e.kind == "connection" for e in refused)
    assert "LLMOPS_OUTBOUND_ALLOW_PRIVATE" in repr(refused[0].__cause__.__cause__)
    assert after == before
