"""Issue 19 items 7 and 10: an Idempotency-Key replays its first answer, whatever it was (a 402
as a 402 with the same body, never a 502), and a refused flood writes nothing per request: a
refusal without a key is counted in llmops_requests_refused_total instead of a failed row."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.test import Client

from billing.models import Budget, Hold
from billing.services import budget_update
from routing.models import Request
from tests.security.serving_demo import (
    WORKLOAD,
    chat,
    http_fixture,
    native,
    refused_count,
)

pytestmark = pytest.mark.django_db
__all__ = ["http_fixture"]  # the fixture this module uses


@pytest.fixture
def broke(demo):
    """acme's team budget can take no request."""
    budget_update(
        budget=Budget.objects.get(team__slug="acme", workload=None), limit_usd=Decimal("0.000001")
    )


@pytest.mark.parametrize("api", ["native", "openai"])
def test_a_402_under_an_idempotency_key_replays_as_the_same_402(http, broke, api, figures):
    send = native if api == "native" else chat
    before = refused_count("budget_exceeded")

    answers = [send(http, {}, HTTP_IDEMPOTENCY_KEY="order-17") for _ in range(3)]
    figures.record(
        "T8",
        f"402 then retries with one Idempotency-Key ({api})",
        statuses=[a.status_code for a in answers],
        rows=Request.objects.count(),
    )

    assert [a.status_code for a in answers] == [402, 402, 402]
    assert answers[0].json() == answers[1].json() == answers[2].json()
    if api == "native":
        assert answers[0].json()["code"] == "budget_exceeded"
    else:
        assert answers[0].json()["error"]["code"] == "budget_exceeded"
    stored = Request.objects.get()  # what the replays are answered from
    assert (stored.status, stored.idempotency_key) == (Request.Status.FAILED, "order-17")
    assert not Hold.objects.exists()
    assert refused_count("budget_exceeded") == before + 1  # the replays refuse nothing new


def test_the_same_key_with_another_body_after_a_402_is_still_a_422(http, broke):
    assert native(http, {}, HTTP_IDEMPOTENCY_KEY="k").status_code == 402

    response = native(http, {"max_tokens": 21}, HTTP_IDEMPOTENCY_KEY="k")

    assert response.status_code == 422
    assert response.json()["code"] == "idempotency_key_reused"


def test_a_key_that_was_refused_is_served_once_the_budget_allows_only_under_a_new_key(http, broke):
    assert native(http, {}, HTTP_IDEMPOTENCY_KEY="k").status_code == 402
    budget_update(
        budget=Budget.objects.get(team__slug="acme", workload=None), limit_usd=Decimal("500")
    )

    # Stripe's rule: the key's answer is its first one; a new attempt takes a new key.
    assert native(http, {}, HTTP_IDEMPOTENCY_KEY="k").status_code == 402
    assert native(http, {}, HTTP_IDEMPOTENCY_KEY="k2").status_code == 200


@pytest.mark.parametrize("api", ["native", "openai"])
def test_a_refused_flood_without_a_key_writes_no_rows_and_is_counted(http, broke, api, figures):
    send = native if api == "native" else chat
    before = refused_count("budget_exceeded")

    statuses = {send(http, {}).status_code for _ in range(25)}
    figures.record(
        "T8",
        f"25 budget refusals without a key ({api})",
        statuses=sorted(statuses),
        request_rows=Request.objects.count(),
        counted=refused_count("budget_exceeded") - before,
    )

    assert statuses == {402}
    assert not Request.objects.exists()
    assert not Hold.objects.exists()
    assert refused_count("budget_exceeded") == before + 25


def test_the_refusal_counter_is_on_metrics_with_team_workload_and_reason(http, broke, settings):
    settings.DEBUG = True  # /metrics is open on a developer's machine
    native(http, {})

    text = Client().get("/metrics").content.decode()

    # The counter is process-wide: other tests' refusals are on it too, so find this one's row.
    rows = [row for row in text.splitlines() if row.startswith("llmops_requests_refused_total{")]
    line = next((row for row in rows if f'workload="{WORKLOAD}"' in row), "")
    assert 'team="acme"' in line, rows
    assert 'reason="budget_exceeded"' in line


def test_a_served_request_replays_under_its_key_as_before(http):
    first = native(http, {}, HTTP_IDEMPOTENCY_KEY="ok-1")
    again = native(http, {}, HTTP_IDEMPOTENCY_KEY="ok-1")

    assert first.status_code == again.status_code == 200
    assert first.json()["id"] == again.json()["id"]
    assert Request.objects.count() == 1
