"""The flex lane in the front door (in-process, against the session's simulator): the hold is
taken at the flex price, a refused flex call is re-reserved at the standard price before it is
retried (a hard budget that cannot take that fails the request, never overspends), the policy
chooses between the same model at the standard tier and the rest of the chain, and a client
that names its own service tier is served at it."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Budget, Hold, LedgerEntry
from billing.pricing import request_output_bound, request_prompt_bound
from billing.selectors import budget_status
from billing.services import budget_update, reservation_amount
from routing.models import LlmModel, Request, RoutingPolicy, Workload

pytestmark = pytest.mark.django_db
ASK = {"messages": [{"role": "user", "content": "Tag this support email."}], "max_tokens": 40}
WORKLOAD = "support-triage"  # near_realtime, 10 min; flex-economy: gpt-5-mini → gpt-4o-mini


def post(api, **body):
    return api.post("/api/v1/requests", {"workload": WORKLOAD, **ASK, **body}, format="json")


@pytest.fixture
def refusing(sim):
    sim.config(flex_unavailable_rate=1.0)
    return sim


def reserved_at(request: Request, model_id: str, mode: str) -> Decimal:
    return reservation_amount(
        model=LlmModel.objects.get(model_id=model_id),
        mode=mode,
        prompt_tokens=request_prompt_bound(request.params),
        max_output_tokens=request_output_bound(request.params),
    )


def test_a_flex_request_is_held_at_the_flex_price_and_billed_at_it(api, sim):
    response = post(api)

    body = response.json()
    assert response.status_code == 200, body
    assert body["mode"] == "flex"
    request = Request.objects.get(pk=body["id"])
    hold = Hold.objects.get(request=request)
    assert hold.status == Hold.Status.SETTLED
    assert hold.amount_usd == reserved_at(request, "gpt-5-mini", "flex")
    assert hold.amount_usd * 2 == reserved_at(request, "gpt-5-mini", "realtime")
    entry = LedgerEntry.objects.get(request=request)
    assert (entry.mode, entry.model.model_id) == ("flex", "gpt-5-mini")
    assert entry.cost_usd == entry.flex_cost_usd
    assert entry.counterfactual_cost_usd == entry.standard_cost_usd == 2 * entry.cost_usd


def test_a_refused_flex_call_is_served_at_standard_under_a_standard_hold(api, refusing):
    body = post(api).json()

    request = Request.objects.get(pk=body["id"])
    assert body["mode"] == "realtime" and body["status"] == "completed"
    tiers = list(request.attempts.values_list("service_tier", "outcome", "status_code"))
    assert tiers == [("flex", "error", 429), ("", "ok", None)]
    holds = {h.key: h for h in Hold.objects.filter(request=request)}
    assert holds[f"req:{request.pk}"].status == Hold.Status.RELEASED
    standard = holds[f"req:{request.pk}:standard"]
    assert standard.status == Hold.Status.SETTLED
    assert standard.amount_usd == reserved_at(request, "gpt-5-mini", "realtime")
    entry = LedgerEntry.objects.get(request=request)
    assert entry.mode == "realtime" and entry.cost_usd == entry.standard_cost_usd


def test_a_hard_budget_that_fits_flex_but_not_standard_fails_a_refused_flex_call(api, refusing):
    probe = Request.objects.get(pk=post(api).json()["id"])  # the reservations of this ask
    flex, standard = reserved_at(probe, "gpt-5-mini", "flex"), reserved_at(probe, "gpt-5-mini",
                                                                            "realtime")  # fmt: skip
    budget = Budget.objects.get(team__slug="acme", workload=None)
    spent = budget_status(budget, probe.created_at).spent_usd
    budget_update(budget=budget, limit_usd=spent + (flex + standard) / 2)

    response = post(api, messages=[{"role": "user", "content": "Another email."}])

    assert response.status_code == 402, response.content
    request = Request.objects.exclude(pk=probe.pk).get(workload__slug=WORKLOAD)
    assert request.status == Request.Status.FAILED
    assert "Flex was refused" in request.error
    assert not LedgerEntry.objects.filter(request=request).exists()
    assert not Hold.objects.filter(request=request, status=Hold.Status.HELD).exists()
    status = budget_status(budget, request.created_at)
    assert status.spent_usd == spent and status.reserved_usd == 0


def test_the_policy_can_send_a_refused_flex_call_down_the_chain(api, refusing):
    policy_id = Workload.objects.get(slug=WORKLOAD).policy_id
    RoutingPolicy.objects.filter(pk=policy_id).update(
        on_flex_unavailable=RoutingPolicy.FlexFallback.CHAIN
    )

    body = post(api).json()

    attempts = [(a["model"], a["service_tier"], a["outcome"]) for a in body["attempts"]]
    assert attempts == [("gpt-5-mini", "flex", "error"), ("gpt-4o-mini", "", "ok")]
    assert body["model"] == "gpt-4o-mini" and body["mode"] == "realtime"


def test_a_client_that_names_its_tier_is_served_at_it(api, sim):
    response = api.post(
        "/v1/chat/completions",
        {"model": "gpt-5-mini", "service_tier": "default", **ASK},
        format="json",
        HTTP_X_WORKLOAD=WORKLOAD,
    )

    assert response.status_code == 200, response.content
    assert response.json()["service_tier"] == "default"
    request = Request.objects.get(workload__slug=WORKLOAD)
    assert request.mode == "realtime"


def test_a_client_asking_flex_itself_is_billed_at_flex(api, sim):
    policy_id = Workload.objects.get(slug=WORKLOAD).policy_id
    RoutingPolicy.objects.filter(pk=policy_id).update(allow_flex=False)  # llmops would not

    response = api.post(
        "/v1/chat/completions",
        {"model": "gpt-5-mini", "service_tier": "flex", **ASK},
        format="json",
        HTTP_X_WORKLOAD=WORKLOAD,
    )

    assert response.status_code == 200, response.content
    assert response.json()["service_tier"] == "flex"
    entry = LedgerEntry.objects.get(request__workload__slug=WORKLOAD)
    assert entry.mode == "flex" and entry.cost_usd == entry.flex_cost_usd
