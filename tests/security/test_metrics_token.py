"""/metrics names every team's workloads: in production it wants LLMOPS_METRICS_TOKEN and, without
one set, shows nothing to anyone; on a developer's machine (debug mode) it stays open."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


@pytest.fixture
def production(settings):
    settings.LLMOPS_METRICS_NEED_TOKEN = True  # what LLMOPS_DEBUG=false sets
    return settings


def test_production_metrics_want_the_token(client, production, figures):
    production.LLMOPS_METRICS_TOKEN = "scrape-token-0123456789"

    anonymous = client.get("/metrics")
    wrong = client.get("/metrics", HTTP_AUTHORIZATION="Bearer not-the-token")
    scraper = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-token-0123456789")
    figures.record(
        "T8",
        "/metrics in production with LLMOPS_METRICS_TOKEN set",
        anonymous=anonymous.status_code,
        wrong_token=wrong.status_code,
        the_token=scraper.status_code,
    )

    assert anonymous.status_code == 401
    assert wrong.status_code == 401
    assert scraper.status_code == 200
    assert b"llmops_" in scraper.content


def test_production_without_a_token_shows_metrics_to_no_one(client, production, figures):
    production.LLMOPS_METRICS_TOKEN = ""

    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer anything")
    figures.record(
        "T8", "/metrics in production, LLMOPS_METRICS_TOKEN unset", anyone=response.status_code
    )

    assert response.status_code == 403
    assert "LLMOPS_METRICS_TOKEN" in response.content.decode()


def test_debug_mode_leaves_metrics_open_without_a_token(client, settings):
    assert settings.LLMOPS_METRICS_NEED_TOKEN is False  # LLMOPS_DEBUG's default
    settings.LLMOPS_METRICS_TOKEN = ""

    response = client.get("/metrics")

    assert response.status_code == 200
    assert b"llmops_" in response.content
