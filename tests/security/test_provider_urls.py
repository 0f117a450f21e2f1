"""A provider base URL is where prompts and provider keys are sent: only http(s) to a named
host, with no credentials, query or fragment, whether set through the model or the admin."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError

from routing.models import LatencyClass, Provider, RoutingPolicy, Workload

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
