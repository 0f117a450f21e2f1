"""/healthz: 200 only when database, workers, channel layer and every enabled provider are up;
circuit breaker states are reported alongside without changing the status code."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from routing import circuit
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


@pytest.fixture
def worker_heartbeat():
    """A cluster heartbeat as a running qcluster publishes it (none runs in tests)."""
    from django_q.brokers import get_broker
    from django_q.conf import Conf
    from django_q.signing import SignedPackage
    from django_q.status import Stat, Status

    status = Status(pid=1, cluster_id="test-cluster")
    status.status = Conf.IDLE
    status.workers = [2, 3]
    get_broker().set_stat(Stat.get_key("test-cluster"), SignedPackage.dumps(status, True), 30)


def test_closed_circuits_are_listed_and_nothing_is_degraded(client, sim):
    add_providers(sim)
    body = client.get("/healthz").json()
    assert body["circuits"] == [
        {"provider": p, "state": "closed", "consecutive_failures": 0, "retry_at": None}
        for p in ("sim-anthropic", "sim-openai")
    ]
    assert body["degraded"] == []


def test_an_open_circuit_is_reported_as_degraded_but_healthz_stays_200(
    client, sim, settings, worker_heartbeat
):
    settings.LLMOPS_CIRCUIT_FAILURES = 2
    add_providers(sim)
    circuit.record_failure("sim-openai", "timed out")
    circuit.record_failure("sim-openai", "upstream said: secret detail")
    retry_at = circuit.circuit("sim-openai").retry_at
    assert retry_at > timezone.now() + timedelta(seconds=10)

    response = client.get("/healthz")

    body = response.json()
    assert (response.status_code, body["status"]) == (200, "ok")
    assert body["workers"]["ok"] is True
    assert body["degraded"] == ["sim-openai"]
    assert body["circuits"] == [
        {
            "provider": "sim-anthropic",
            "state": "closed",
            "consecutive_failures": 0,
            "retry_at": None,
        },
        {
            "provider": "sim-openai",
            "state": "open",
            "consecutive_failures": 2,
            "retry_at": retry_at.isoformat(),
        },
    ]
    # The endpoint is unauthenticated: upstream error text stays in the admin.
    assert "secret detail" not in response.content.decode()


def test_disabled_providers_have_no_circuit_in_the_report(client):
    Provider.objects.create(
        slug="off", name="o", kind="openai", base_url="http://127.0.0.1:9/v1", enabled=False
    )
    circuit.record_failure("off", "down")
    body = client.get("/healthz").json()
    assert (body["circuits"], body["degraded"]) == ([], [])


def test_healthz_only_answers_get(client):
    assert client.post("/healthz").status_code == 405


def test_a_503_from_healthz_is_not_logged_as_a_server_error(client, caplog):
    with caplog.at_level("WARNING", logger="django.request"):
        assert client.get("/healthz").status_code == 503
    assert [r for r in caplog.records if r.name == "django.request"] == []
