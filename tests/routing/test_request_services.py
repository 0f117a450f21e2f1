"""The front door in-process (the Django test client drives the async views): budgets,
throttling, failures and holds. The live tests cover the same path over a real socket."""

from __future__ import annotations

from decimal import Decimal

import pytest
from asgiref.sync import async_to_sync

from billing.models import Budget, Hold, LedgerEntry
from billing.selectors import budget_status
from billing.services import budget_update
from routing.keys import api_key_create
from routing.models import Request, RoutingPolicy, Workload

pytestmark = pytest.mark.django_db
ASK = {"messages": [{"role": "user", "content": "Is the kettle in stock?"}], "max_tokens": 20}


def post(api, workload="product-search", **body):
    return api.post("/api/v1/requests", {"workload": workload, **ASK, **body}, format="json")


async def drain(response) -> str:
    return b"".join([chunk async for chunk in response.streaming_content]).decode()


def team_budget() -> Budget:
    return Budget.objects.get(team__slug="acme", workload=None)


def test_a_request_a_hard_budget_cannot_cover_is_402_and_holds_nothing(api):
    budget_update(budget=team_budget(), limit_usd=Decimal("0.000001"))

    response = post(api)

    assert response.status_code == 402
    assert response.json()["field"] == "budget"
    assert not LedgerEntry.objects.exists() and not Hold.objects.exists()
    # Without an Idempotency-Key a refusal writes nothing: it is counted instead.
    assert not Request.objects.exists()


def test_a_soft_budget_over_its_limit_refuses_when_the_policy_says_so(api):
    workload = Workload.objects.get(slug="product-search")
    RoutingPolicy.objects.filter(pk=workload.policy_id).update(soft_breach_action="refuse")
    Budget.objects.create(
        team=workload.team, workload=workload, limit_usd=Decimal("0.000001"), hard=False
    )
    assert post(api).status_code == 200  # under the limit until this one is spent

    response = post(api, messages=[{"role": "user", "content": "another question"}])

    assert response.status_code == 429
    assert response.json()["code"] == "soft_budget_exceeded"


def test_a_soft_budget_over_its_limit_downgrades_to_a_cheaper_tier(client_for, demo):
    workload = Workload.objects.get(slug="dashboard-qa")  # globex; standard tier
    Budget.objects.create(
        team=workload.team, workload=workload, limit_usd=Decimal("0.000001"), hard=False
    )
    _, raw = api_key_create(team=workload.team, name="globex-app")
    api = client_for(raw)
    assert post(api, workload="dashboard-qa").json()["model"] == "gpt-4o"

    response = post(api, workload="dashboard-qa", messages=[{"role": "user", "content": "next"}])

    body = response.json()
    assert response.status_code == 200, body
    assert "downgraded standard to economy" in body["decision_reason"]
    assert body["model"] == "gpt-4o-mini"


def test_when_every_model_fails_the_client_gets_502_and_the_hold_is_released(api, sim):
    sim.fault(provider="*", status=500, count=10)

    response = post(api)

    body = response.json()
    assert response.status_code == 502
    assert body["status"] == "failed"
    assert [a["outcome"] for a in body["attempts"]] == ["error", "error"]
    assert Hold.objects.get().status == Hold.Status.RELEASED
    assert budget_status(team_budget(), Request.objects.get().created_at).reserved_usd == 0
    assert not LedgerEntry.objects.exists()


def test_when_every_provider_is_busy_the_client_gets_its_status_and_a_wait(api, sim):
    sim.fault(provider="openai", status=429, retry_after=7, count=10)
    sim.fault(provider="anthropic", status=529, retry_after=3, count=10)

    response = post(api)

    # Busy, not broken: a 429 (one was a rate limit) with the shortest wait any asked for.
    assert response.status_code == 429, response.json()
    assert response["Retry-After"] == "3" and response["retry-after-ms"] == "3000"
    assert [a["status_code"] for a in response.json()["attempts"]] == [429, 529]
    assert not LedgerEntry.objects.exists()


def test_a_request_the_provider_rejects_as_malformed_does_not_fall_back(api, sim):
    sim.fault(provider="openai", status=400, message="Bad tool schema.", count=1)

    response = post(api)

    # The provider's own status and words, and no other model tried (it would refuse alike).
    assert response.status_code == 400
    assert "Bad tool schema." in response.json()["detail"]
    assert [a["outcome"] for a in response.json()["attempts"]] == ["error"]


def test_a_stream_cut_mid_way_is_billed_once_as_a_flagged_estimate(api, sim):
    sim.fault(provider="openai", kind="stream_cut", after_tokens=5, count=1)

    response = post(api, stream=True)
    body = async_to_sync(drain)(response)

    assert "event: error" in body
    entry = LedgerEntry.objects.get()
    assert entry.kind == LedgerEntry.Kind.ESTIMATE and entry.cost_usd > 0
    assert Hold.objects.get().status == Hold.Status.SETTLED
    assert Request.objects.get().status == Request.Status.FAILED


def test_requests_beyond_the_per_key_rate_are_429(api, settings):
    settings.LLMOPS_API_RATE = "2/minute"

    statuses = [
        post(api, messages=[{"role": "user", "content": f"q{n}"}]).status_code for n in range(3)
    ]

    assert statuses == [200, 200, 429]
    assert api.get("/api/v1/me").status_code == 429  # DRF views share the same budget


def test_the_admin_refuses_a_deferrable_deadline_no_batch_can_meet(admin_client, demo):
    workload = Workload.objects.get(slug="review-moderation")  # deferrable-economy policy
    response = admin_client.post(
        f"/admin/routing/workload/{workload.pk}/change/",
        {
            "team": workload.team_id,
            "slug": workload.slug,
            "latency_class": "near_realtime",
            "deadline": "00:05:00",
            "policy": workload.policy_id,
            "enabled": "on",
        },
    )

    assert response.status_code == 200
    assert "Too short to defer" in response.content.decode()


def test_the_admin_shows_a_requests_decision_attempts_and_the_circuits(admin_client, api, sim):
    sim.fault(provider="openai", status=503, count=1)
    request_id = post(api).json()["id"]

    page = admin_client.get(f"/admin/routing/request/{request_id}/change/").content.decode()
    providers = admin_client.get("/admin/routing/provider/").content.decode()
    provider = admin_client.get(
        f"/admin/routing/provider/{Request.objects.get().model.provider.pk}/change/"
    )
    workloads = admin_client.get("/admin/routing/workload/").content.decode()
    policy = admin_client.get(
        f"/admin/routing/routingpolicy/{Workload.objects.get(slug='product-search').policy_id}"
        "/change/"
    ).content.decode()

    assert "Served now: a realtime workload" in page
    assert "overloaded" in page and "claude-haiku-4-5" in page  # the failed attempt, then ok
    assert "closed" in providers  # one failure of five does not open a circuit
    assert provider.status_code == 200 and "consecutive failure" in provider.content.decode()
    assert "cache hit rate" in workloads.lower()
    assert "Response cache" in policy and "soft_breach_action" in policy


def test_the_native_answer_is_the_request_as_get_reads_it_back(api, sim):
    """The native API renders its answer in the unit that completed the request, from the
    request in memory plus its cost and attempts read then: it must say what a later GET
    says, a fallback's failed attempt and the ledger's cost included."""
    sim.fault(provider="openai", status=500, count=1)  # the primary fails once: a fallback

    answered = post(api)
    assert answered.status_code == 200, answered.content
    body = answered.json()
    read = api.get(f"/api/v1/requests/{body['id']}").json()

    assert [a["outcome"] for a in body["attempts"]] == ["error", "ok"]
    assert Decimal(body["cost_usd"]) > 0
    assert body == read
