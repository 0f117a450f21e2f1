"""/healthz: 200 only when database, workers, channel layer and every enabled provider are up."""

from __future__ import annotations

import pytest

from routing.models import Provider

pytestmark = pytest.mark.django_db


def add_providers(sim):
    Provider.objects.create(
        slug="sim-openai", name="o", kind="openai", base_url=sim.openai_base_url
    )
    Provider.objects.create(
        slug="sim-anthropic", name="a", kind="anthropic", base_url=sim.anthropic_base_url
    )


def test_healthz_probes_each_component_and_fails_without_a_worker_cluster(client, sim):
    add_providers(sim)
    response = client.get("/healthz")
    body = response.json()
    assert body["database"]["ok"] is True
    assert body["channel_layer"]["ok"] is True
    assert body["providers"]["sim-openai"]["ok"] is True
    assert body["providers"]["sim-anthropic"]["ok"] is True
    # No qcluster runs inside the test process: the report says so and the status is 503.
    assert body["workers"] == {
        "ok": False,
        "detail": "no worker cluster heartbeat in the last 30 s",
        "ms": body["workers"]["ms"],
    }
    assert response.status_code == 503
    assert body["status"] == "unavailable"
    assert response["Cache-Control"].startswith("max-age=0")


def test_unreachable_provider_is_reported_by_name(client):
    Provider.objects.create(slug="dead", name="d", kind="openai", base_url="http://127.0.0.1:9/v1")
    body = client.get("/healthz").json()
    assert body["providers"]["dead"]["ok"] is False
    assert "cannot connect" in body["providers"]["dead"]["detail"]


def test_provider_answering_errors_is_down(client, sim):
    add_providers(sim)
    sim.fault(provider="openai", endpoint="models", status=503)
    body = client.get("/healthz").json()
    assert body["providers"]["sim-openai"]["ok"] is False
    assert "503" in body["providers"]["sim-openai"]["detail"]
    assert body["providers"]["sim-anthropic"]["ok"] is True


def test_disabled_providers_are_not_probed(client):
    Provider.objects.create(
        slug="off", name="o", kind="openai", base_url="http://127.0.0.1:9/v1", enabled=False
    )
    assert client.get("/healthz").json()["providers"] == {}


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405


def test_a_503_from_healthz_is_not_logged_as_a_server_error(client, caplog):
    with caplog.at_level("WARNING", logger="django.request"):
        assert client.get("/healthz").status_code == 503
    assert [r for r in caplog.records if r.name == "django.request"] == []
