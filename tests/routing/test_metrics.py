from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_metrics_are_open_by_default_in_the_prometheus_format(client, settings):
    settings.LLMOPS_METRICS_NEED_TOKEN = False  # debug mode's default (tests run DEBUG off)
    response = client.get("/metrics")

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "# TYPE llmops_requests_total counter" in response.content.decode()


def test_a_metrics_token_keeps_strangers_out(client, settings):
    settings.LLMOPS_METRICS_TOKEN = "s3cret"

    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200


def test_the_cache_hit_rate_per_workload_is_hits_over_eligible_lookups(
    client, settings, api, admin_client
):
    """Issue 23: llmops_cache_hit_ratio{workload}, from the database (every process reports
    the deployment's rate). product-search caches; support-triage does not (no lookups)."""
    settings.LLMOPS_METRICS_NEED_TOKEN = False
    ask = {"messages": [{"role": "user", "content": "Is the kettle in stock?"}], "max_tokens": 20}
    for _ in range(3):  # a miss, then two hits
        api.post("/api/v1/requests", {"workload": "product-search", **ask}, format="json")
    other = {"messages": [{"role": "user", "content": "And the teapot?"}], "max_tokens": 20}
    api.post("/api/v1/requests", {"workload": "product-search", **other}, format="json")
    api.post("/api/v1/requests", {"workload": "support-triage", **ask}, format="json")

    text = client.get("/metrics").content.decode()

    lines = [line for line in text.splitlines() if line.startswith("llmops_cache_hit_ratio{")]
    assert lines == ['llmops_cache_hit_ratio{workload="product-search"} 0.5']
    # The workload admin gives the same rate (over 30 days).
    workloads = admin_client.get("/admin/routing/workload/?q=product-search").content.decode()
    assert "50.0%" in workloads


def test_a_response_cache_that_fails_costs_a_saving_never_a_request(
    client, settings, api, monkeypatch
):
    """The cache's file unreadable (or Redis down): the lookup is a miss and the provider
    answers; the store fails and the answer still goes out, recorded. Both are counted."""
    import sqlite3

    from routing.models import Request
    from routing.response_cache import CACHE

    settings.LLMOPS_METRICS_NEED_TOKEN = False

    class Unreachable:  # the responses cache only: the others (memo, heartbeats) keep working
        def get_many(self, keys):
            raise sqlite3.OperationalError("database is locked")

        def set(self, key, value, timeout=None):
            raise ConnectionError("Redis went away")

    monkeypatch.setattr("routing.response_cache.caches", {CACHE: Unreachable()})
    ask = {"messages": [{"role": "user", "content": "Is the lamp in stock?"}], "max_tokens": 20}
    answers = [
        api.post("/api/v1/requests", {"workload": "product-search", **ask}, format="json")
        for _ in range(2)
    ]

    assert [a.status_code for a in answers] == [200, 200], answers[0].content
    for answer in answers:  # neither served from the cache: each asked the provider
        request = Request.objects.get(pk=answer.json()["id"])
        assert request.status == Request.Status.COMPLETED and request.output
        assert request.mode != "cached"
    text = client.get("/metrics").content.decode()
    assert 'llmops_cache_errors_total{operation="lookup"} 2.0' in text
    assert 'llmops_cache_errors_total{operation="store"} 2.0' in text
