"""The demo (seed_demo) against the session's simulator, for the security tests that drive the
serving endpoints in-process with Django's test client. A test module imports the fixtures
under their function names (demo_fixture, http_fixture); pytest knows them as demo and http."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.test import Client

from routing import metrics

KEY = "llm_security-test-key-0123456789"
WORKLOAD = "product-search"  # acme's realtime workload in the demo
ASK = {"messages": [{"role": "user", "content": "Is the kettle in stock?"}], "max_tokens": 20}


@pytest.fixture(name="demo")
def demo_fixture(sim):
    call_command(
        "seed_demo", "--simulator-url", sim.base_url, "--api-key", KEY, stdout=io.StringIO()
    )


@pytest.fixture(name="http")
def http_fixture(demo) -> Client:
    """The server's answers, never an exception re-raised into the test."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {KEY}", raise_request_exception=False)


def native(http: Client, body: dict | str | bytes, **headers):
    data = body if isinstance(body, str | bytes) else {"workload": WORKLOAD, **ASK, **body}
    return http.post("/api/v1/requests", data, content_type="application/json", **headers)


def chat(http: Client, body: dict | str | bytes, **headers):
    data = (
        body
        if isinstance(body, str | bytes)
        else {"model": "gpt-4o-mini", "messages": ASK["messages"], **body}
    )
    headers.setdefault("HTTP_X_WORKLOAD", WORKLOAD)
    return http.post("/v1/chat/completions", data, content_type="application/json", **headers)


def refused_count(reason: str, team: str = "acme", workload: str = WORKLOAD) -> float:
    return metrics.REFUSED.labels(team, workload, reason)._value.get()
