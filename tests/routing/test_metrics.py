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
