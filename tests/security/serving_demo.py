"""The serving endpoints driven in-process with Django's test client on the demo (the `demo`
fixture of tests/conftest.py), for the security tests. A test module imports the fixture under
its function name (http_fixture); pytest knows it as http."""

from __future__ import annotations

import pytest
from django.test import Client

from routing import metrics

WORKLOAD = "product-search"  # acme's realtime workload in the demo
ASK = {"messages": [{"role": "user", "content": "Is the kettle in stock?"}], "max_tokens": 20}


@pytest.fixture(name="http")
def http_fixture(demo) -> Client:
    """The server's answers, never an exception re-raised into the test."""
    return Client(HTTP_AUTHORIZATION=f"Bearer {demo.key}", raise_request_exception=False)


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
